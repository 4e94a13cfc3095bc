"""The replay harness: recorded answers through the reader, the counting and the exposition.

A recording (exporter/probe/record.py) holds every request the probe's reader made, with
its parameters and answer. `replay` builds each recorded task list again (with the
recording's pseudonymous IDs), reads it with the real `TaskReader` over a client that
answers from the recording (and fails on any request that was not recorded), merges what
was read as a task list's first poll, summarizes it and publishes it into a real
`SnapshotStore`: what comes out is the exposition the exporter would serve.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialProvider, StaticKeys
from exporter.config import DEFAULT_BUCKETS, Config, HttpSettings, load_config_text
from exporter.core.counting import TaskListState, merge, summarize
from exporter.core.tasklists import Kind, TaskList, task_list_key
from exporter.core.tasks import ZERO_INITIALIZED_STATUSES
from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore, TaskListSnapshot
from exporter.polling.dialects import TaskReader
from exporter.probe.record import load_recording
from exporter.telemetry.selfmetrics import SelfMetrics

BASE_URL = "https://replay.invalid"


def _key(path: str, params: dict[str, str]) -> str:
    return json.dumps([path, sorted(params.items())])


class ReplayClient(CloudClient):
    """A client whose answers come from a recording; an unrecorded request is an error."""

    def __init__(self, exchanges: list[dict[str, Any]], page_size: int) -> None:
        super().__init__(
            httpx.AsyncClient(),
            HttpSettings(page_size=page_size),
            SelfMetrics(CollectorRegistry(auto_describe=False)),
        )
        self.register_credentials(StaticKeys("AK", "SK", None))  # "credentials/0"
        self.answers = {_key(e["path"], e["params"]): e for e in exchanges}
        self.asked: list[str] = []

    async def request_json(
        self,
        url_text: str,
        params: dict[str, str],
        credentials: CredentialProvider,
        service: str,
        region: str,
    ) -> Any:
        path = httpx.URL(url_text).path
        key = _key(path, params)
        self.asked.append(key)
        found = self.answers.get(key)
        if found is None:
            raise AssertionError(f"the reader asked for what was not recorded: {key}")
        if found["status"] == 200:
            return found["body"]
        error = found.get("error") or {}
        raise ApiError(
            f"HTTP {found['status']} (recorded)", status=found["status"], code=error.get("code")
        )


def _config() -> Config:
    return load_config_text(
        "credentials: {access_key: AK, secret_key: SK}\n"
        "targets:\n  - {region: r1, project_id: p1, instances: [{service: dcs, id: i1}]}\n",
        env={},
    )


def recorded_task_lists(manifest: dict[str, Any]) -> list[tuple[TaskList, list[int]]]:
    out = []
    for entry in manifest["task_lists"]:
        kind: Kind = entry["kind"]
        key = task_list_key(
            kind, entry["service"], entry["region"], entry["project_id"], entry["instance_id"]
        )
        task_list = TaskList(
            key=key,
            kind=kind,
            service=entry["service"],
            region=entry["region"],
            project_id=entry["project_id"],
            instance_id=entry["instance_id"],
            instance_name="",
            base_url=BASE_URL,
            credentials_id="credentials/0",
        )
        out.append((task_list, list(entry["requests"])))
    return out


def replay(directory: Path) -> str:
    """The exposition (Prometheus text) of a recording's task lists, read as first polls."""
    manifest, exchanges = load_recording(directory)
    by_seq = {e["seq"]: e for e in exchanges}
    since, now = float(manifest["since"]), float(manifest["recorded_at"])
    config = _config()
    families = TaskFamilies(60.0, False)
    snapshots = SnapshotStore(DEFAULT_BUCKETS, False, families)
    lists = recorded_task_lists(manifest)
    snapshots.set_task_lists([t for t, _ in lists])
    for task_list, seqs in lists:
        client = ReplayClient([by_seq[s] for s in seqs], int(manifest["page_size"]))
        fetched = asyncio.run(TaskReader(client).fetch_tasks(task_list, since))
        state = TaskListState(None, None, None, {}, {})
        merged = merge(
            task_list, state, fetched.tasks, since=since, now=now, poll_started=now, config=config
        )
        rows = {r.id: r for r in merged.commit.upserts}
        summary = summarize(
            rows.values(),
            merged.commit.finished,
            since,
            ZERO_INITIALIZED_STATUSES[task_list.dialect],
            merged.commit.failures,
        )
        snapshots.publish_task_list(
            TaskListSnapshot(task_list, polled=True, up=True, last_success=now, summary=summary)
        )
    return b"".join(snapshots.exposition.render(False)).decode("utf-8")
