"""Reading task lists under every reading of the references, against the simulator over HTTP.

The references disagree on DMS `start` (0- or 1-based, and whether 0 is refused) and on the
DCS window parameter's name; a server may also ignore the window. Under every reading the
reader must return each task in the window exactly once, and nothing older.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

import exporter.simulator.server as simserver
from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.providers import ProviderCache
from exporter.cloud.transport import LeanTransport
from exporter.config import load_config_text
from exporter.polling.dialects import TaskReader
from exporter.polling.targets import all_task_lists, build_targets
from exporter.simulator.world import MISSING as SIM_MISSING
from exporter.simulator.world import Fault
from exporter.telemetry.selfmetrics import SelfMetrics
from tests.conftest import (
    PROJECT,
    Metrics,
    Sim,
    config_doc,
    instance_entry,
    run_once,
    write_config,
)

PAGE = 3


async def _fetch(
    sim: Sim,
    tmp_path: Path,
    instances: list[dict[str, str]],
    since: float,
    task_center: bool = False,
    page_size: int = PAGE,
) -> tuple[dict[str, list[str]], int]:
    doc = config_doc(
        sim,
        instances,
        task_center=task_center,
        state_path=tmp_path / "s.db",
        http={"page_size": page_size},
    )
    config = load_config_text(yaml.safe_dump(doc))
    out: dict[str, list[str]] = {}
    requests = 0
    # Wired as the exporter is without a proxy: requests straight to the lean transport.
    transport = LeanTransport(None)
    async with httpx.AsyncClient(transport=transport) as http:
        client = CloudClient(http, config.http, SelfMetrics(CollectorRegistry()), direct=transport)
        reader = TaskReader(client)
        sources = build_targets(config, ProviderCache(http, http), client)
        for target in all_task_lists(sources):
            result = await reader.fetch_tasks(target, since)
            out[target.key] = [t.id for t in result.tasks]
            requests += result.pages
    return out, requests


def _populate(
    sim: Sim, service: str, inside: int, outside: int, since: float
) -> tuple[str, set[str]]:
    inst = sim.world.add_instance(service, f"{service}-1", PROJECT)  # type: ignore[arg-type]
    expected = set()
    for i in range(inside):
        task = sim.world.add_task(
            inst.id, "modify", "SUCCESS", since + 60 + i * 7, since + 70 + i * 7
        )
        expected.add(task.id)
    for i in range(outside):
        sim.world.add_task(inst.id, "modify", "SUCCESS", since - 600 - i * 7, since - 590 - i * 7)
    return inst.id, expected


@pytest.mark.parametrize("window_param", ["start_time", "begin_time", "none"])
@pytest.mark.parametrize("task_count", ["string", "int", "mixed"])
def test_dcs_instance_tasks_every_window_reading(
    sim: Sim, tmp_path: Path, window_param: str, task_count: str
) -> None:
    sim.world.options.dcs_window_param = window_param  # type: ignore[assignment]
    sim.world.options.task_count = task_count  # type: ignore[assignment]
    since = time.time() - 3600
    inst_id, expected = _populate(sim, "dcs", inside=11, outside=5, since=since)
    got, requests = asyncio.run(_fetch(sim, tmp_path, [instance_entry(sim.world, inst_id)], since))
    ids = next(iter(got.values()))
    assert len(ids) == len(set(ids)) == 11
    assert set(ids) == expected
    assert requests >= 4  # 11 tasks in pages of 3: paging really happened
    # Sent parameters are the SDK's: offset from 0, and start_time.
    sent = [r.query for r in sim.world.requests_for(inst_id)]
    assert [q["offset"] for q in sent][:4] == ["0", "3", "6", "9"]
    assert all("start_time" in q for q in sent)


@pytest.mark.parametrize("window_param", ["start_time", "begin_time", "none"])
def test_dcs_task_center_every_window_reading(sim: Sim, tmp_path: Path, window_param: str) -> None:
    sim.world.options.dcs_window_param = window_param  # type: ignore[assignment]
    since = time.time() - 3600
    _, expected = _populate(sim, "dcs", inside=5, outside=3, since=since)
    job = sim.world.add_task(
        None, "dcsExportJob", "SUCCESS", since + 30, since + 40, project_id=PROJECT
    )
    sim.world.add_task(
        sim.world.add_instance("kafka", "k", PROJECT).id,
        "modifyAutoTopic",
        "SUCCESS",
        since + 50,
        since + 60,
    )  # DMS tasks are not in the DCS center
    got, _ = asyncio.run(_fetch(sim, tmp_path, [], since, task_center=True))
    ids = got[f"task_center/ap-southeast-1/{PROJECT}"]
    assert sorted(ids) == sorted(expected | {job.id})


@pytest.mark.parametrize("service", ["kafka", "rabbitmq", "rocketmq"])
@pytest.mark.parametrize("start", ["0", "1", "1-strict"])
@pytest.mark.parametrize("window", [True, False])
def test_dms_tasks_every_start_reading(
    sim: Sim, tmp_path: Path, service: str, start: str, window: bool
) -> None:
    sim.world.options.dms_start = start  # type: ignore[assignment]
    sim.world.options.dms_window = window
    since = time.time() - 3600
    inst_id, expected = _populate(sim, service, inside=10, outside=4, since=since)
    got, _ = asyncio.run(_fetch(sim, tmp_path, [instance_entry(sim.world, inst_id)], since))
    ids = next(iter(got.values()))
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    sent = [r.query for r in sim.world.requests_for(inst_id)]
    assert all("begin_time" in q and "start" in q for q in sent)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 6, 7])
@pytest.mark.parametrize("start", ["0", "1", "1-strict"])
@pytest.mark.parametrize("page_size", [1, 3])
def test_dms_page_boundaries(
    sim: Sim, tmp_path: Path, count: int, start: str, page_size: int
) -> None:
    """Exact multiples of the page size and single leftovers, under each `start` reading."""
    sim.world.options.dms_start = start  # type: ignore[assignment]
    since = time.time() - 3600
    inst_id, expected = _populate(sim, "kafka", inside=count, outside=0, since=since)
    got, _ = asyncio.run(
        _fetch(sim, tmp_path, [instance_entry(sim.world, inst_id)], since, page_size=page_size)
    )
    assert sorted(next(iter(got.values()))) == sorted(expected)


def test_server_ignoring_paging_is_an_error_not_a_loop(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = time.time() - 3600
    inst_id, _ = _populate(sim, "kafka", inside=10, outside=0, since=since)
    real = simserver.list_page

    def first_page_only(world, listener, tasks, query, center):  # type: ignore[no-untyped-def]
        return real(world, listener, tasks, {**query, "start": "0"}, center)

    monkeypatch.setattr(simserver, "list_page", first_page_only)
    with pytest.raises(ApiError, match="does not honour the paging"):
        asyncio.run(_fetch(sim, tmp_path, [instance_entry(sim.world, inst_id)], since))


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("details null", {"details": None}, "SUCCESS"),
    ("details absent", {"details": "MISSING"}, "SUCCESS"),
    ("params absent", {"params": "MISSING"}, "SUCCESS"),
    ("params a JSON string", {"params": '{"a": 1}'}, "SUCCESS"),
    ("created_at missing", {"created_at": "MISSING"}, "SUCCESS"),
    ("created_at unparsable", {"created_at": "yesterday"}, "SUCCESS"),
    ("updated_at null", {"updated_at": None}, "SUCCESS"),
    ("updated before created", {"updated_at": "2000-01-01T00:00:00.000Z"}, "FAILED"),
    ("unknown lower-case status", {"status": "rolled_back"}, "ROLLED_BACK"),
    ("status missing", {"status": "MISSING"}, "UNKNOWN"),
    ("name missing", {"name": "MISSING"}, "SUCCESS"),
    ("id as a number", {"id": 12345}, "SUCCESS"),
]


def test_malformed_tasks_never_break_a_poll(sim: Sim, tmp_path: Path) -> None:
    """Each odd task is exported as it comes, and its neighbours on the page are kept."""
    sim.world.options.task_count = "mixed"
    dcs = sim.world.add_instance("dcs", "odd-dcs", PROJECT)
    kafka = sim.world.add_instance("kafka", "odd-kafka", PROJECT)
    now = time.time()
    for inst in (dcs, kafka):
        sim.world.add_task(inst.id, "good-before", "SUCCESS", now - 300, now - 290)
        for i, (_name, overrides, status) in enumerate(MALFORMED):
            raw: dict[str, Any] = {
                k: (SIM_MISSING if v == "MISSING" else v) for k, v in overrides.items()
            }
            if "id" in raw:
                raw["id"] = raw["id"] + (0 if inst is dcs else 1)
            sim.world.add_task(
                inst.id,
                f"case{i}",
                "SUCCESS" if status != "FAILED" else "FAILED",
                now - 200 + i,
                now - 100 + i,
                raw=raw,
            )
        sim.world.add_task(inst.id, "no-id", "SUCCESS", now - 50, now - 40, raw={"id": SIM_MISSING})
        sim.world.add_task(inst.id, "good-after", "SUCCESS", now - 30, now - 20)
    doc = config_doc(
        sim,
        [instance_entry(sim.world, dcs.id), instance_entry(sim.world, kafka.id)],
        state_path=tmp_path / "s.db",
        http={"page_size": 4},
    )
    run = run_once(write_config(tmp_path / "c.yml", doc))
    assert run.rc == 0, run.stderr
    m = Metrics(run.stdout)
    for inst in (dcs, kafka):
        assert m.value("huaweicloud_task_up", instance_id=inst.id) == 1
        recent = {
            (s.labels["task_name"], s.labels["status"]): s.value
            for s in m.find("huaweicloud_task_recent_tasks", instance_id=inst.id)
        }
        assert recent[("good-before", "SUCCESS")] == 1
        assert recent[("good-after", "SUCCESS")] == 1
        for i, (name, _raw, status) in enumerate(MALFORMED):
            task_name = "unknown" if name == "name missing" else f"case{i}"
            assert recent.get((task_name, status)) == 1, (name, recent)
        assert not any(n == "no-id" for n, _ in recent)  # no ID: cannot be counted exactly
        # The task whose clocks disagree has a duration of 0, never negative.
        assert (
            m.value(
                "huaweicloud_task_last_duration_seconds",
                instance_id=inst.id,
                task_name=f"case{[c[0] for c in MALFORMED].index('updated before created')}",
            )
            == 0
        )
    assert "skipping a task entry without a usable id" in run.stderr


def test_not_json_answer_is_retried_then_reported(sim: Sim, tmp_path: Path) -> None:
    inst = sim.world.add_instance("dcs", "r", PROJECT)
    sim.world.add_fault(Fault("malformed", instance_id=inst.id))
    doc = config_doc(sim, [instance_entry(sim.world, inst.id)], state_path=tmp_path / "s.db")
    run = run_once(write_config(tmp_path / "c.yml", doc))
    assert run.rc == 1
    assert "not valid JSON" in run.stderr
    # retries: 2 in config_doc, so three attempts
    assert len(sim.world.requests_for(inst.id)) == 3
