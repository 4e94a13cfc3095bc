"""The probe's requests: a few GETs per target and service, through the exporter's own
client (paced, retried, counted) and the very reader its polls use.

For each target: the project (configured, or resolved through IAM as the exporter does),
the instance listings when discovery is on, then one task list of each kind (each
service's first instance, and the task center) read as a first poll reads it (`lookback`),
and a few `limit=1` pages that tell the paging dialect and whether the time window is
honoured, and under which name. The checks then run over what came back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialProvider
from exporter.cloud.providers import ProviderCache
from exporter.cloud.session import ssl_context
from exporter.config import Config
from exporter.core.tasklists import TaskList
from exporter.polling.dialects import TaskReader
from exporter.polling.targets import Target, build_targets
from exporter.probe import checks as c
from exporter.probe.checks import Check, Exchange
from exporter.probe.record import Recorder
from exporter.telemetry.logs import register_secret
from exporter.telemetry.selfmetrics import SelfMetrics
from exporter.text import parse_timestamp

log = logging.getLogger(__name__)

# A probe reads at most this many pages of a task list: a few requests, not a backfill.
PROBE_MAX_PAGES = 5
WINDOW_FORMAT = "%Y%m%d%H%M%S"
THROTTLED = "huaweicloud_task_api_throttled_requests_total"


class ProbeClient(CloudClient):
    """The exporter's client, keeping every exchange (and writing it to a recording)."""

    def __init__(self, *args: Any, recorder: Recorder | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exchanges: list[Exchange] = []
        self.purpose = ""
        self.recorder = recorder

    async def request_json(
        self,
        url_text: str,
        params: dict[str, str],
        credentials: CredentialProvider,
        service: str,
        region: str,
    ) -> Any:
        url = self.parsed(url_text)[0]
        exchange = Exchange(
            seq=len(self.exchanges) + 1,
            purpose=self.purpose or _purpose(url.path),
            service=service,
            region=region,
            path=url.path,
            params=dict(params),
        )
        started = time.monotonic()
        try:
            exchange.body = await super().request_json(
                url_text, params, credentials, service, region
            )
            return exchange.body
        except ApiError as exc:
            exchange.error, exchange.status, exchange.code = str(exc), exc.status, exc.code
            exchange.throttled = exc.throttled
            raise
        finally:
            exchange.latency = time.monotonic() - started
            self.exchanges.append(exchange)
            if self.recorder is not None:
                self.recorder.write(exchange)


def _purpose(path: str) -> str:
    if path.rstrip("/").endswith("/tasks"):
        return "read"
    return "discovery" if path.rstrip("/").endswith("/instances") else "project"


@dataclass
class ProbeResult:
    checks: list[Check] = field(default_factory=list)
    requests: int = 0

    @property
    def failed(self) -> list[Check]:
        return [x for x in self.checks if x.verdict == "fail"]


async def run_probe(config: Config, record: Path | None = None) -> ProbeResult:
    """Probe every target of `config`; with `record`, write the scrubbed answers there."""
    for secret in config.secrets():
        register_secret(secret)
    settings = config.http.model_copy(
        update={"max_pages": min(config.http.max_pages, PROBE_MAX_PAGES)}
    )
    recorder = Recorder(record) if record is not None else None
    registry = CollectorRegistry(auto_describe=False)
    metrics = SelfMetrics(registry)
    context = ssl_context(config)
    headers = {"User-Agent": f"huaweicloud-task-exporter/{__version__} (probe)"}
    result = ProbeResult()
    recorded: list[dict[str, Any]] = []
    now = time.time()
    since = now - config.lookback
    async with (
        httpx.AsyncClient(
            headers=headers,
            follow_redirects=False,
            verify=context,
            proxy=settings.proxy,
            timeout=settings.timeout,
        ) as http,
        httpx.AsyncClient(trust_env=False, timeout=5.0, verify=context) as metadata_http,
    ):
        client = ProbeClient(http, settings, metrics, recorder=recorder)
        providers = ProviderCache(http, metadata_http, metrics=metrics, timeout=settings.timeout)
        for target in build_targets(config, providers, client):
            prober = _TargetProbe(target, client, registry, since)
            await prober.run()
            result.checks.extend(prober.checks)
            recorded.extend(prober.read_lists)
        result.requests = len(client.exchanges)
    if recorder is not None:
        recorder.finish(
            {
                "exporter_version": __version__,
                "recorded_at": now,
                "since": since,
                "page_size": settings.page_size,
                "task_lists": [
                    {**recorder.task_list(**r["task_list"]), "requests": r["requests"]}
                    for r in recorded
                ],
                "verdicts": dict(Counter(x.verdict for x in result.checks)),
            }
        )
    return result


class _TargetProbe:
    """The probe of one target: its project, its listings, one task list of each kind."""

    def __init__(
        self, target: Target, client: ProbeClient, registry: CollectorRegistry, since: float
    ) -> None:
        self.target = target
        self.client = client
        self.registry = registry
        self.since = since
        self.checks: list[Check] = []
        self.read_lists: list[dict[str, Any]] = []
        self.name = f"targets[{target.index}]"

    async def run(self) -> None:
        target, tc = self.target, self.target.config
        mark = len(self.client.exchanges)
        throttled = self._throttled()  # before: another target may share the region
        self.client.purpose = ""
        await target.refresh()
        subject = f"{self.name} project"
        if tc.project_id:
            self.checks.append(Check(subject, "project", "ok", "configured"))
        elif target.project_id:
            self.checks.append(
                Check(
                    subject,
                    "project",
                    "ok",
                    "resolved through IAM (the project named after the region)",
                )
            )
        else:
            self.checks.append(
                Check(subject, "project", "fail", target.project_error or "unresolved")
            )
        self._discovery_checks(self.client.exchanges[mark:])
        chosen: dict[tuple[str, str], TaskList] = {}
        for task_list in target.task_lists():
            chosen.setdefault((task_list.service, task_list.kind), task_list)
        if not chosen and target.project_id:
            self.checks.append(
                Check(
                    f"{self.name} task lists",
                    "task_lists",
                    "warn",
                    "no task list to read: no instance configured or found",
                )
            )
        for task_list in chosen.values():
            try:
                await self._task_list(task_list)
            except Exception as exc:  # a bug must not hide what the other lists showed
                log.exception("unexpected error while probing a task list")
                self.checks.append(
                    Check(f"{self.name} {task_list.key}", "probe", "fail", type(exc).__name__)
                )
        self.checks.extend(
            c.request_checks(
                f"{self.name} requests", self.client.exchanges[mark:], self._throttled() - throttled
            )
        )

    def _throttled(self) -> float:
        total = 0.0
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name == THROTTLED and sample.labels.get("region") == self.target.region:
                    total += sample.value
        return total

    def _discovery_checks(self, exchanges: list[Exchange]) -> None:
        discover = self.target.config.discover
        if discover is None or self.target.project_id is None:
            return
        for service in discover.services:
            subject = f"{self.name} discovery {service}"
            health = self.target.health.get(service)
            if health is None:
                continue
            if not health.up:
                self.checks.append(Check(subject, "listing", "fail", health.error or "failed"))
                continue
            found = self.target.discovered.get(service, [])
            bodies = [
                e.body
                for e in exchanges
                if e.service == service and e.purpose == "discovery" and e.ok
            ]
            bad = sum(
                1
                for b in bodies
                for i in (b.get("instances") or [] if isinstance(b, dict) else [])
                if not (isinstance(i, dict) and isinstance(i.get("instance_id"), str))
            )
            saw = f"{len(found)} instances in {len(bodies)} pages"
            if bad:
                self.checks.append(
                    Check(subject, "listing", "fail", f"{saw}; {bad} without a string instance_id")
                )
            else:
                self.checks.append(Check(subject, "listing", "ok", saw, {"instances": len(found)}))

    async def _task_list(self, task_list: TaskList) -> None:
        kind = "task center" if task_list.kind == "task_center" else "instance"
        subject = f"{self.name} {task_list.service} {kind}"
        if task_list.instance_id:
            subject += f" {task_list.instance_id}"
        client = self.client
        reader = TaskReader(client)  # its own: each read sees how the server takes start=0
        mark = len(client.exchanges)
        client.purpose = "read"
        error: str | None = None
        tasks_read = 0
        try:
            tasks_read = len((await reader.fetch_tasks(task_list, self.since)).tasks)
        except ApiError as exc:
            error = str(exc)
        read = client.exchanges[mark:]
        self.read_lists.append(
            {
                "task_list": {
                    "service": task_list.service,
                    "kind": task_list.kind,
                    "region": task_list.region,
                    "project_id": task_list.project_id,
                    "instance_id": task_list.instance_id,
                },
                "requests": [e.seq for e in read],
            }
        )
        bodies = [e.body for e in read if e.ok]
        if error is not None:
            self.checks.append(Check(subject, "read", "fail", error))
            if not bodies:
                return
        else:
            self.checks.append(
                Check(subject, "read", "ok", f"{len(read)} pages, {tasks_read} tasks in the window")
            )
        tasks = c.raw_tasks(bodies)
        self.checks.extend(c.answer_checks(subject, bodies))
        self.checks.extend(c.task_field_checks(subject, task_list.kind, tasks))
        unique = list({str(t.get("id")): t for t in tasks}.values())
        self.checks.extend(c.status_checks(subject, task_list.dialect, unique))
        if any(not isinstance(b, dict) or not isinstance(b.get("tasks"), list) for b in bodies):
            return  # paging and windows cannot be told from answers without tasks
        await self._paging_and_window(subject, task_list, read, tasks)

    async def _paging_and_window(
        self, subject: str, task_list: TaskList, read: list[Exchange], tasks: list[Any]
    ) -> None:
        client = self.client
        window = datetime.fromtimestamp(self.since, timezone.utc).strftime(WINDOW_FORMAT)
        first = next(e for e in read if e.ok)
        listed = c.task_ids(first.body)
        client.purpose = "paging"
        if task_list.dialect == "dcs":
            sent, index_param = "start_time", "offset"
            first_index = "0"
            second = None
            if len(listed) >= 2:
                second = await self._get(task_list, {"offset": "1", "limit": "1", sent: window})
            self.checks.append(c.dcs_paging_check(subject, listed, second))
        else:
            sent, index_param = "begin_time", "start"
            refused = read[0].status == 400 and read[0].params.get("start") == "0"
            first_index = "1" if refused else "0"
            by_start: dict[int, Exchange] = {}
            offset = None
            if len(listed) >= 2:
                for start in (1, 2):
                    found = await self._get(
                        task_list, {"start": str(start), "limit": "1", sent: window}
                    )
                    if found is not None:
                        by_start[start] = found
                offset = await self._get(task_list, {"offset": "1", "limit": "1", sent: window})
            self.checks.extend(c.dms_paging_checks(subject, listed, refused, by_start, offset))
        dates = [parse_timestamp(t.get("created_at")) for t in tasks]
        newest = max((d for d in dates if d is not None), default=None)
        after = None if newest is None else float(math.floor(newest) + 1)
        probes: dict[str, Exchange] = {}
        if after is not None:
            client.purpose = "window"
            text = datetime.fromtimestamp(after, timezone.utc).strftime(WINDOW_FORMAT)
            for name in ("start_time", "begin_time"):
                found = await self._get(
                    task_list, {index_param: first_index, "limit": "1", name: text}
                )
                if found is not None:
                    probes[name] = found
        self.checks.append(c.window_check(subject, sent, after, probes))

    async def _get(self, task_list: TaskList, params: dict[str, str]) -> Exchange | None:
        """One extra page; its exchange (an error included), None if nothing was sent."""
        client = self.client
        mark = len(client.exchanges)
        with contextlib.suppress(ApiError):  # recorded, and judged by the checks
            await client.request_json(
                task_list.url,
                params,
                client.providers[task_list.credentials_id],
                task_list.service,
                task_list.region,
            )
        return client.exchanges[-1] if len(client.exchanges) > mark else None
