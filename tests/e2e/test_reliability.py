"""What the reliability run found, one test each: a task dated 1970, a state file that
cannot be written, task lists queued behind a hanging endpoint. (Unbounded task names are
tests/core/test_names.py and tests/e2e/test_names.py; the first poll's cost is measured by
benchmarks/bench_scale.py.)

The first two poll in-process (a fresh poller per poll over one state store, as `--once`
does), the third is a process, since what it shows is the daemon's schedule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.config import load_config
from exporter.simulator.world import Fault
from tests.conftest import (
    PROJECT,
    ExporterProcess,
    Metrics,
    Sim,
    config_doc,
    instance_entry,
    write_config,
)

FINISHED = "huaweicloud_task_finished_total"


def _poll(exporter: Exporter) -> tuple[bool, Metrics]:
    ok = asyncio.run(exporter.once())
    return ok, Metrics(exporter.exposition().decode("utf-8"))


@pytest.mark.smoke
def test_a_task_dated_1970_is_counted_and_said(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    inst = w.add_instance("kafka", "events", PROJECT)
    w.options.dms_window = False  # a server that lists it whatever the window says
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(sim, [instance_entry(w, inst.id)], state_path=tmp_path / "s.db"),
    )
    exporter = Exporter(load_config(cfg))
    try:
        assert _poll(exporter)[0]  # the baseline
        w.add_task(inst.id, "modifyAutoTopic", "SUCCESS", 1.0, time.time())  # 1970-01-01
        ok, m = _poll(exporter)
        assert ok
        assert m.one(FINISHED, task_name="modifyAutoTopic", status="SUCCESS") == 1
        assert m.one("huaweicloud_task_tasks_date_ignored_total", cloud_service="kafka") == 1
        _, m = _poll(exporter)  # once only
        assert m.one(FINISHED, task_name="modifyAutoTopic", status="SUCCESS") == 1
    finally:
        exporter.close()


def test_a_state_file_that_cannot_be_written_has_its_own_signal(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    inst = w.add_instance("dcs", "redis", PROJECT)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(sim, [instance_entry(w, inst.id)], state_path=tmp_path / "s.db"),
    )
    exporter = Exporter(load_config(cfg))
    try:
        assert _poll(exporter)[0]  # the baseline
        now = time.time()
        for i in range(200):  # enough rows that the commit needs new pages
            w.add_task(inst.id, "modify", "SUCCESS", now - 20 + i * 0.01, now, user_name=f"u{i}")
        # The file may not grow: SQLite fails the commit as on a full disk (SQLITE_FULL).
        db = exporter.store.db
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages}")
        ok, m = _poll(exporter)
        assert not ok
        assert m.one("huaweicloud_task_state_commit_failures_total") == 1
        assert m.total(FINISHED) == 0
        healthy, why = exporter.poller.healthy()
        assert not healthy
        assert "cannot write the state file" in why
        assert "full" in why
        # Space again: the next poll counts every task exactly once.
        db.execute("PRAGMA max_page_count = 1073741823")
        ok, m = _poll(exporter)
        assert ok
        assert m.one(FINISHED, task_name="modify", status="SUCCESS") == 200
        assert exporter.poller.healthy()[0]
    finally:
        exporter.close()


@pytest.mark.slow
def test_task_lists_queued_behind_a_hanging_endpoint_are_reported_down(
    sim: Sim, tmp_path: Path, exporters: Callable[..., ExporterProcess]
) -> None:
    w = sim.world
    kafkas = [w.add_instance("kafka", f"k{i}", PROJECT) for i in range(4)]
    redis = w.add_instance("dcs", "redis", PROJECT)
    doc = config_doc(
        sim,
        [instance_entry(w, i.id) for i in (*kafkas, redis)],
        state_path=tmp_path / "s.db",
        poll_interval="2s",
        http={"max_concurrency": 2, "timeout": "60s", "poll_timeout": "60s", "retries": 0},
    )
    w.add_fault(Fault("latency", listener="dms", latency=50.0))  # DMS hangs from the start
    proc = exporters(write_config(tmp_path / "c.yml", doc))

    def queued_have_up(m: Metrics) -> bool:
        return len(m.find("huaweicloud_task_up")) == 4

    # One DMS poll holds the endpoint's one slot (in flight, it has no outcome yet); the
    # other three cannot start, and say so within an interval, not when the hanging one
    # gives up a minute later.
    m = proc.wait_for(queued_have_up, timeout=8, what="an up series for the queued lists")
    assert m.one("huaweicloud_task_up", instance_id=redis.id) == 1
    queued = [s for s in m.find("huaweicloud_task_up") if s.labels["cloud_service"] == "kafka"]
    assert len(queued) == 3
    assert all(s.value == 0 for s in queued)
    assert "poll could not start within the poll interval" in proc.output
    w.clear_faults()
    proc.stop(timeout=20)
