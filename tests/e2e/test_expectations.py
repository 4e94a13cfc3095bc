"""Expected durations over the simulator, from a fresh state with weeks of history.

The first poll is a baseline and the history read at first sight only teaches the
expectations: `finished_total` and the duration histogram stay at 0 through it. The values
exported are the exact quantiles of the simulator's own successful runs (per task list and
task name, and per service and task name, each DCS task once), and they are identical after
a SIGKILL restart, which reads no history again.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from exporter.core.expectations import Expectation, expectation_of
from exporter.simulator.world import CENTER_NAMES, Fault, World
from tests.conftest import (
    PROJECT,
    ExporterProcess,
    Metrics,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    run_once,
    write_config,
)

Start = Callable[..., ExporterProcess]
WINDOW = 50
FAMILIES = (
    "huaweicloud_task_expected_duration_seconds",
    "huaweicloud_task_expected_duration_samples",
    "huaweicloud_task_fleet_expected_duration_seconds",
    "huaweicloud_task_fleet_expected_duration_samples",
)


def _windows(world: World, since: float) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """(instance ID or "" for the task center, task name) -> (task ID, duration) of the most
    recent WINDOW successful runs finished since `since`, as the simulator knows them."""
    runs: dict[tuple[str, str], list[tuple[float, str, float]]] = {}
    with world.lock:
        for t in world.tasks.values():
            if t.status != "SUCCESS" or t.updated_at < since:
                continue
            entry = (t.updated_at, t.id, t.updated_at - t.created_at)
            runs.setdefault((t.instance_id or "", t.name), []).append(entry)
            if t.service == "dcs":
                runs.setdefault(("", CENTER_NAMES.get(t.name, t.name)), []).append(entry)
    return {
        key: [(task_id, d) for _, task_id, d in sorted(entries)[-WINDOW:]]
        for key, entries in runs.items()
    }


def _fleet(world: World, since: float) -> dict[tuple[str, str], Expectation]:
    by_kind: dict[tuple[str, str], dict[str, float]] = {}
    for (instance_id, name), runs in _windows(world, since).items():
        service = world.instances[instance_id].service if instance_id else "dcs"
        by_kind.setdefault((service, name), {}).update(runs)  # each task ID once
    out = {}
    for kind, durations in by_kind.items():
        e = expectation_of(kind[1], durations.values())
        assert e is not None
        out[kind] = e
    return out


def _served(m: Metrics) -> dict[tuple[str, ...], float]:
    """Every sample of the four families, by name and labels."""
    return {
        (s.name, *sorted(s.labels.items())): float(s.value)
        for name in FAMILIES
        for s in m.find(name)
    }


def _windows_older_than(sim: Sim, seconds: float) -> list[str]:
    """Task-list requests whose window reaches further back than `seconds` ago."""
    limit = time.time() - seconds
    old = []
    for r in sim.world.requests_for():
        window = r.query.get("start_time") or r.query.get("begin_time")
        if r.path.endswith("/tasks") and window:
            at = datetime.strptime(window, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
            if at.timestamp() < limit:
                old.append(r.path)
    return old


def test_history_teaches_expectations_counts_nothing_and_survives_sigkill(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    redis = w.add_instance("dcs", "redis-prod", PROJECT)
    cache = w.add_instance("dcs", "redis-cache", PROJECT)
    kafka = w.add_instance("kafka", "events", PROJECT)
    w.add_history(redis.id, days=21, per_day=8)
    w.add_history(cache.id, days=40, per_day=4)  # some of it beyond the 30-day horizon
    # Two kinds only, so that each has more runs than the window holds.
    w.add_history(kafka.id, days=21, per_day=8, names=("kafkaConfigModify", "modifyAutoTopic"))
    instances = [instance_entry(w, i.id) for i in (redis, cache, kafka)]
    config = write_config(
        tmp_path / "c.yml",
        config_doc(sim, instances, task_center=True, state_path=tmp_path / "s.db"),
    )
    since = time.time() - 30 * 86400
    truth = _windows(w, since)
    assert max(len(r) for r in truth.values()) == WINDOW  # the window is reached

    exporter = exporters(config)

    def learned(m: Metrics) -> bool:
        """Every history read done: the first polls' own runs show before them."""
        served = {
            (s.labels["instance_id"], s.labels["task_name"]): s.value
            for s in m.find("huaweicloud_task_expected_duration_samples")
        }
        return all_up(m, 4) and served == {k: len(runs) for k, runs in truth.items()}

    m = exporter.wait_for(learned, what="the expectations of every task list and name")
    for (instance_id, name), runs in truth.items():
        labels = {"instance_id": instance_id, "task_name": name}
        expected = expectation_of(name, [d for _, d in runs])
        assert expected is not None
        assert m.one("huaweicloud_task_expected_duration_samples", **labels) == len(runs)
        for q, value in expected.values:
            served = m.one("huaweicloud_task_expected_duration_seconds", quantile=q, **labels)
            assert served == pytest.approx(value, abs=0.01), (labels, q)
    for (service, name), e in _fleet(w, since).items():
        labels = {"cloud_service": service, "task_name": name}
        assert m.one("huaweicloud_task_fleet_expected_duration_samples", **labels) == e.samples
        for q, value in e.values:
            served = m.one("huaweicloud_task_fleet_expected_duration_seconds", quantile=q, **labels)
            assert served == pytest.approx(value, abs=0.01), (labels, q)
    # Nothing of the history (nor of the baseline) is counted.
    assert m.total("huaweicloud_task_finished_total") == 0
    assert m.total("huaweicloud_task_duration_seconds_count") == 0
    assert m.find("huaweicloud_task_finished_total")  # the series are there, at 0

    # A run that finishes now is counted, and learned from.
    before = m.one(
        "huaweicloud_task_expected_duration_samples", instance_id=redis.id, task_name="modify"
    )
    now = time.time()
    w.add_task(redis.id, "modify", "SUCCESS", now - 7, now - 2)
    m = exporter.wait_for(
        lambda m: m.total("huaweicloud_task_finished_total") == 2,
        what="the new run counted by its instance and by the task center",
    )
    labels = {"instance_id": redis.id, "task_name": "modify", "status": "SUCCESS"}
    assert m.one("huaweicloud_task_finished_total", **labels) == 1
    assert m.total("huaweicloud_task_duration_seconds_count") == 2
    after = m.one(
        "huaweicloud_task_expected_duration_samples", instance_id=redis.id, task_name="modify"
    )
    assert after == before + 1
    snapshot = _served(m)

    exporter.stop(signal.SIGKILL)
    w.requests.clear()
    again = exporters(config)
    m2 = again.wait_for(lambda m: all_up(m, 4), what="all up after the restart")
    assert _served(m2) == snapshot
    assert m2.total("huaweicloud_task_finished_total") == 2
    assert _windows_older_than(sim, 4 * 86400) == []  # the history was not read again


def _newest_runs(world: World, instance_id: str, tasks: int) -> list[float]:
    """The durations of the successful runs among the newest `tasks` tasks of an instance
    (the first pages of its list, newest first)."""
    listed = world.instance_tasks(instance_id)[:tasks]
    return [t.updated_at - t.created_at for t in listed if t.status == "SUCCESS"]


def test_once_exports_the_history_read_within_max_pages(sim: Sim, tmp_path: Path) -> None:
    """`--once` waits for the history reads its polls started; a history longer than
    http.max_pages keeps its newest pages (and says so) rather than failing."""
    w = sim.world
    redis = w.add_instance("dcs", "redis-prod", PROJECT)
    w.add_history(redis.id, days=30, per_day=20)
    doc = config_doc(sim, [instance_entry(w, redis.id)], state_path=tmp_path / "s.db")
    doc["http"] = {**doc["http"], "page_size": 10, "max_pages": 5}
    run = run_once(write_config(tmp_path / "c.yml", doc), "--log.level=info")
    assert run.rc == 0, run.stderr
    m = Metrics(run.stdout)
    runs = _newest_runs(w, redis.id, 50)
    assert m.total("huaweicloud_task_expected_duration_samples") == len(runs)
    assert m.total("huaweicloud_task_finished_total") == 0
    assert 'msg="history read"' in run.stderr
    assert "truncated=True" in run.stderr
    assert "pages=5" in run.stderr


def test_a_kill_during_the_history_read_reads_it_again(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    """The history's runs and its "read" mark go in one transaction: killed half-way, the
    next start reads it all again, and the result is as if nothing had happened."""
    w = sim.world
    redis = w.add_instance("dcs", "redis-prod", PROJECT)
    w.add_history(redis.id, days=21, per_day=10)
    doc = config_doc(sim, [instance_entry(w, redis.id)], state_path=tmp_path / "s.db")
    doc["http"] = {**doc["http"], "page_size": 20, "timeout": "5s"}
    config = write_config(tmp_path / "c.yml", doc)
    slow = w.add_fault(Fault(kind="latency", latency=0.5, instance_id=redis.id))
    exporter = exporters(config)
    exporter.wait_for(lambda m: all_up(m, 1), what="the baseline poll")  # one page
    time.sleep(1.5)  # the history read (11 pages of 0.5 s) is a few pages in
    exporter.stop(signal.SIGKILL)
    peek = sqlite3.connect(str(tmp_path / "s.db"))
    assert peek.execute("SELECT count(*) FROM history_read").fetchone() == (0,)
    peek.close()
    w.faults.remove(slow)
    w.requests.clear()

    truth = {
        name: len(runs)
        for (instance_id, name), runs in _windows(w, time.time() - 30 * 86400).items()
        if instance_id == redis.id
    }
    again = exporters(config)
    m = again.wait_for(
        lambda m: (
            all_up(m, 1)
            and m.total("huaweicloud_task_expected_duration_samples") == sum(truth.values())
        ),
        what="the history read again",
    )
    assert _windows_older_than(sim, 20 * 86400)  # it was read again, back 30 days
    for name, runs in truth.items():
        labels = {"instance_id": redis.id, "task_name": name}
        assert m.one("huaweicloud_task_expected_duration_samples", **labels) == runs
    assert m.total("huaweicloud_task_finished_total") == 0
