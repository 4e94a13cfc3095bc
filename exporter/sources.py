"""Targets: each `targets[]` entry of the configuration, turned into task lists to poll.

The module is named for its job (where task lists come from: configured and discovered
instances); the class is `Target`, after the configuration key. A target knows its cloud's
endpoints and credentials, resolves its project ID through IAM when the configuration
leaves it out, and, with `discover:`, lists the instances of its services (again every
`discover.interval`). A listing that fails keeps the instances of the last one that
worked: a passing error never makes series vanish; a deleted instance does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import httpx

from exporter.cloudapi import ApiError, CloudClient
from exporter.config import (
    AkSkCredentials,
    AnyCredentials,
    Config,
    DiscoverConfig,
    EnvCredentials,
    MetadataCredentials,
    PasswordCredentials,
    TargetConfig,
)
from exporter.credentials import (
    CredentialError,
    CredentialProvider,
    IamPassword,
    MetadataKeys,
    StaticKeys,
)
from exporter.instances import DiscoveryHealth, InstanceInfo
from exporter.replies import clean_text
from exporter.selfmetrics import SelfMetrics
from exporter.sharding import UNSHARDED, Shard
from exporter.tasklists import TaskList, tasklist_key

log = logging.getLogger(__name__)

# How each service is asked for in the DMS list-instances API, and the page sizes allowed.
DMS_ENGINES = {"kafka": "kafka", "rabbitmq": "rabbitmq", "rocketmq": "reliability"}
DCS_LIST_LIMIT = 100
DMS_LIST_LIMIT = 50
DMS_OFFSET_PAST_END = "DMS.40050010"


def _text(value: Any) -> str:
    """A string from a listing, cleaned and cut: names and statuses become label values."""
    return clean_text(str(value), 128) if value is not None else ""


def _tags(raw: Any) -> tuple[tuple[str, str], ...]:
    """Tags as `[{"key": k, "value": v}]` (the APIs) or as a mapping; anything else: none."""
    if isinstance(raw, dict):
        return tuple(sorted((_text(k), _text(v)) for k, v in raw.items()))
    if isinstance(raw, list):
        return tuple(
            sorted(
                (_text(t.get("key")), _text(t.get("value", "")))
                for t in raw
                if isinstance(t, dict) and t.get("key") is not None
            )
        )
    return ()


def matches(info: InstanceInfo, rules: DiscoverConfig) -> bool:
    """Whether a discovered instance passes the name, status and tag filters."""
    if rules.name_regex and not re.search(rules.name_regex, info.name):
        return False
    if rules.exclude_name_regex and re.search(rules.exclude_name_regex, info.name):
        return False
    if rules.statuses and info.status.upper() not in rules.statuses:
        return False
    tags = dict(info.tags)

    def has(key: str, value: str) -> bool:
        return key in tags and (value in ("", "*") or tags[key] == value)

    if not all(has(k, v) for k, v in rules.tags.items()):
        return False
    return not any(has(k, v) for k, v in rules.exclude_tags.items())


class ProviderCache:
    """One credential provider per credentials and scope, shared by the sources that use it.

    AK/SK and metadata keys are not tied to a project; an IAM token is, so password
    credentials get one provider per region and project.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata_http: httpx.AsyncClient,
        *,
        metrics: SelfMetrics | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.http = http
        self.metadata_http = metadata_http
        self.metrics = metrics  # IAM and metadata requests are counted like the others
        self.timeout = timeout
        self._cache: dict[tuple[Any, ...], CredentialProvider] = {}

    def get(self, creds: AnyCredentials, tc: TargetConfig) -> CredentialProvider:
        key: tuple[Any, ...]
        if isinstance(creds, PasswordCredentials):
            key = (id(creds), tc.endpoint("iam"), tc.region, tc.project_id)
        else:
            key = (id(creds),)
        provider = self._cache.get(key)
        if provider is None:
            provider = self._cache[key] = self._make(creds, tc)
        return provider

    def _make(self, creds: AnyCredentials, tc: TargetConfig) -> CredentialProvider:
        if isinstance(creds, AkSkCredentials | EnvCredentials):
            return StaticKeys(creds.access_key, creds.secret(), creds.token())
        if isinstance(creds, MetadataCredentials):
            return MetadataKeys(
                self.metadata_http,
                creds.url,
                metrics=self.metrics,
                timeout=self.timeout,
            )
        return IamPassword(
            self.http,
            tc.endpoint("iam"),
            creds.user,
            creds.domain,
            creds.secret(),
            tc.region,
            tc.project_id,
            metrics=self.metrics,
            timeout=self.timeout,
        )


class Target:
    """One `targets[]` entry at run time: its project, its discovered instances, its health."""

    def __init__(
        self, index: int, tc: TargetConfig, credentials: CredentialProvider, client: CloudClient
    ) -> None:
        self.index = index
        self.config = tc
        self.credentials = credentials
        self.client = client
        self.credentials_id = client.register_credentials(credentials)
        self.project_id: str | None = tc.project_id
        self.project_error: str | None = None
        # Per discovered service: the instances of the last listing that worked.
        self.discovered: dict[str, list[InstanceInfo]] = {}
        self.health: dict[str, DiscoveryHealth] = {}

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def owner_key(self) -> str:
        """What decides which shard polls the task center and exports discovery series."""
        tc = self.config
        return f"target/{tc.cloud}/{tc.region}/{tc.project_id or ''}"

    @property
    def services(self) -> set[str]:
        """Every service this source has task lists of (or looks for)."""
        found: set[str] = {i.service for i in self.config.instances}
        if self.config.task_center:
            found.add("dcs")
        if self.config.discover is not None:
            found.update(self.config.discover.services)
        return found

    def describe(self) -> str:
        return f"targets[{self.index}] ({self.config.cloud} {self.region})"

    # -- refreshing -----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Resolve the project if needed, then list instances if discovery is on.

        Never raises: problems are logged and kept in `project_error` and `health`.
        """
        try:
            await self._refresh()
        except Exception:  # a bug must not stop the other sources or the polls
            log.exception(
                "unexpected error while refreshing a source",
                extra={"fields": {"source": self.describe()}},
            )

    async def _refresh(self) -> None:
        if self.project_id is None:
            try:
                self.project_id = await self._resolve_project()
                self.project_error = None
                log.info(
                    "project resolved",
                    extra={"fields": {"source": self.describe(), "project_id": self.project_id}},
                )
            except ApiError as exc:
                self.project_error = str(exc)
                log.error(
                    "cannot resolve the project ID; set project_id to skip this step",
                    extra={"fields": {"source": self.describe(), "error": str(exc)}},
                )
                return
        if self.config.discover is None:
            return
        project = self.project_id
        for service in self.config.discover.services:
            try:
                found = await self._list(service, project)
            except ApiError as exc:
                self.health[service] = DiscoveryHealth(
                    service, self.region, project, False, str(exc)
                )
                log.warning(
                    "listing instances failed; keeping the last list",
                    extra={
                        "fields": {"source": self.describe(), "service": service, "error": str(exc)}
                    },
                )
                continue
            self.discovered[service] = found
            self.health[service] = DiscoveryHealth(service, self.region, project, True)
            log.debug(
                "instances listed",
                extra={
                    "fields": {"source": self.describe(), "service": service, "found": len(found)}
                },
            )

    async def _resolve_project(self) -> str:
        """The project named after the region, through IAM (an IAM token names it itself)."""
        if isinstance(self.credentials, IamPassword):
            try:
                await self.credentials.auth()
            except CredentialError as exc:
                raise ApiError(f"credentials: {exc}") from None
            if self.credentials.project_id:
                return self.credentials.project_id
        body = await self.client.request_json(
            self.config.endpoint("iam") + "/v3/projects",
            {"name": self.region},
            self.credentials,
            "iam",
            self.region,
        )
        projects = body.get("projects") if isinstance(body, dict) else None
        if not isinstance(projects, list) or not projects or not isinstance(projects[0], dict):
            raise ApiError(f"IAM knows no project named {self.region} for these credentials")
        project = clean_text(str(projects[0].get("id") or ""), 128)
        if not project:
            raise ApiError(f"IAM answered without an ID for the project named {self.region}")
        return project

    async def _list(self, service: str, project: str) -> list[InstanceInfo]:
        """Every instance of a service in the project, page by page."""
        dcs = service == "dcs"
        url = self.config.endpoint("dcs" if dcs else "dms") + f"/v2/{project}/instances"
        limit = DCS_LIST_LIMIT if dcs else DMS_LIST_LIMIT
        found: dict[str, InstanceInfo] = {}
        offset = 0
        while True:
            params = {"offset": str(offset), "limit": str(limit)}
            if not dcs:
                params["engine"] = DMS_ENGINES[service]
            try:
                body = await self.client.request_json(
                    url, params, self.credentials, service, self.region
                )
            except ApiError as exc:
                if exc.code == DMS_OFFSET_PAST_END and offset > 0:
                    break  # DMS's way of saying there is no further page
                raise
            raw = body.get("instances") if isinstance(body, dict) else None
            if not isinstance(raw, list):
                raise ApiError("unexpected answer from the list-instances API")
            for item in raw:
                info = self._instance(service, project, item)
                if info is not None:
                    found[info.instance_id] = info
            total = body.get("instance_num")
            offset += len(raw)
            if not raw or len(raw) < limit or (isinstance(total, int) and offset >= total):
                break
            if offset > 100_000:
                raise ApiError("the list-instances API does not stop paging")
        return list(found.values())

    def _instance(self, service: str, project: str, item: Any) -> InstanceInfo | None:
        if not isinstance(item, dict) or not _text(item.get("instance_id")):
            return None
        engine = _text(item.get("engine") or "")
        if service != "dcs" and engine and engine.lower() != DMS_ENGINES[service]:
            return None  # a server that ignored the engine filter
        return InstanceInfo(
            service=service,
            region=self.region,
            project_id=project,
            instance_id=_text(item["instance_id"]),
            name=_text(item.get("name") or ""),
            engine=engine,
            engine_version=_text(item.get("engine_version") or ""),
            status=_text(item.get("status") or ""),
            tags=_tags(item.get("tags")),
        )

    # -- results --------------------------------------------------------------------------

    def instance_infos(self) -> list[InstanceInfo]:
        """The discovered instances that pass the filters (for `instance_info`)."""
        rules = self.config.discover
        if rules is None:
            return []
        return [i for infos in self.discovered.values() for i in infos if matches(i, rules)]

    def discovery_health(self) -> list[DiscoveryHealth]:
        if self.project_id is None:
            return [
                DiscoveryHealth(s, self.region, "", False, self.project_error)
                for s in sorted(self.services)
            ]
        return sorted(self.health.values(), key=lambda h: h.service)

    def task_lists(self) -> list[TaskList]:
        """The task lists to poll now: configured instances, discovered ones, task center."""
        project = self.project_id
        if project is None:
            return []
        tc = self.config
        wanted: dict[str, tuple[str, str]] = {}  # instance id -> (service, name)
        for info in self.instance_infos():
            wanted[info.instance_id] = (info.service, info.name)
        for inst in tc.instances:  # configured entries win, and their names
            found = wanted.get(inst.id)
            wanted[inst.id] = (inst.service, inst.name or (found[1] if found else ""))
        out: list[TaskList] = []
        if tc.task_center:
            out.append(self._task_list("task_center", "dcs", project, "", ""))
        for instance_id, (service, name) in wanted.items():
            out.append(self._task_list("instance", service, project, instance_id, name))
        return out

    def _task_list(
        self, kind: Any, service: str, project: str, instance_id: str, name: str
    ) -> TaskList:
        dialect = "dcs" if service == "dcs" else "dms"
        return TaskList(
            key=tasklist_key(kind, service, self.region, project, instance_id),
            kind=kind,
            service=service,
            region=self.region,
            project_id=project,
            instance_id=instance_id,
            instance_name=name,
            base_url=self.config.endpoint(dialect),  # type: ignore[arg-type]
            credentials_id=self.credentials_id,
        )


def build_targets(config: Config, providers: ProviderCache, client: CloudClient) -> list[Target]:
    return [
        Target(i, tc, providers.get(config.credentials_for(tc), tc), client)
        for i, tc in enumerate(config.targets)
    ]


def all_task_lists(sources: Iterable[Target], shard: Shard = UNSHARDED) -> list[TaskList]:
    """This shard's targets of every source; a task list claimed twice is polled once."""
    seen: dict[str, TaskList] = {}
    for source in sources:
        for target in source.task_lists():
            owner = source.owner_key if target.kind == "task_center" else target.instance_id
            if not shard.owns(owner):
                continue
            if target.key in seen:
                log.warning(
                    "task list configured twice; polling it once",
                    extra={"fields": {"target": target.key}},
                )
                continue
            seen[target.key] = target
    return list(seen.values())
