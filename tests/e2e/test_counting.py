"""Exact counting, poll by poll: each poll is a fresh exporter against the persisted state.

The first test runs each poll as `--once` in its own process (the CLI path, end to end); the
others build a fresh `Exporter` per poll in-process, which reads and commits the same SQLite
state and renders the same exposition, without a Python start-up per poll. The rules one by
one are in tests/core/test_counting.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.config import load_config
from exporter.simulator.world import MISSING, Fault, to_ms
from tests.conftest import (
    PROJECT,
    Metrics,
    Sim,
    config_doc,
    instance_entry,
    run_once,
    write_config,
)

FINISHED = "huaweicloud_task_finished_total"
LAST_SUCCESS = "huaweicloud_task_last_poll_success_timestamp_seconds"


def cli_once(config: Path) -> Metrics:
    """One poll as `--once` in a process of its own: exit 0 and the exposition on stdout."""
    run = run_once(config)
    assert run.rc == 0, run.stderr
    return Metrics(run.stdout)


def once(config: Path, *, succeeds: bool = True) -> Metrics:
    """One poll in-process, as `--once` does it: a fresh exporter, one poll, closed."""
    exporter = Exporter(load_config(config))
    try:
        assert asyncio.run(exporter.once()) is succeeds
        return Metrics(exporter.exposition().decode("utf-8"))
    finally:
        exporter.close()


@pytest.mark.smoke
def test_baseline_transition_and_between_polls(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    now = time.time()
    r1 = w.add_instance("dcs", "redis-1", PROJECT)
    k1 = w.add_instance("kafka", "events", PROJECT)
    w.add_task(r1.id, "modify", "SUCCESS", now - 900, now - 880)
    w.add_task(r1.id, "BindEip", "FAILED", now - 800, now - 700)
    extend = w.add_task(r1.id, "EXTEND", "EXECUTING", now - 500)
    w.add_task(k1.id, "modifyAutoTopic", "SUCCESS", now - 500, now - 450)
    topic = w.add_task(k1.id, "modifyAutoTopic", "EXECUTING", now - 400)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(
            sim, [instance_entry(w, r1.id), instance_entry(w, k1.id)], state_path=tmp_path / "s.db"
        ),
    )

    # Poll 1: the baseline. Finished tasks show in the gauges but are not counted.
    m = cli_once(cfg)
    # Counters exist from the start, at 0, for every task name seen and each final status,
    # so that the first failure of a name is an increase Prometheus can see.
    assert m.total(FINISHED) == 0
    assert m.value(FINISHED, instance_id=r1.id, task_name="EXTEND", status="FAILED") == 0
    assert m.value(FINISHED, instance_id=r1.id, task_name="EXTEND", status="SUCCESS") == 0
    assert m.find(FINISHED, instance_id=r1.id, task_name="EXTEND", status="DELETED") == []
    assert (
        m.value(FINISHED, instance_id=k1.id, task_name="modifyAutoTopic", status="CANCELLED") == 0
    )  # DMS also starts DELETED and CANCELLED at 0
    assert m.total("huaweicloud_task_duration_seconds_count") == 0
    assert (
        m.value(
            "huaweicloud_task_duration_seconds_count",
            cloud_service="dcs",
            task_name="EXTEND",
            status="FAILED",
            source="instance",
        )
        == 0
    )
    assert (
        m.value(
            "huaweicloud_task_recent_tasks", instance_id=r1.id, task_name="BindEip", status="FAILED"
        )
        == 1
    )
    assert (
        m.value(
            "huaweicloud_task_oldest_unfinished_start_timestamp_seconds",
            instance_id=r1.id,
            task_name="EXTEND",
        )
        == extend.created_at
    )
    assert (
        m.value(
            "huaweicloud_task_last_status",
            instance_id=r1.id,
            task_name="EXTEND",
            status="EXECUTING",
        )
        == 1
    )
    assert m.value("huaweicloud_task_up", instance_id=r1.id) == 1

    # EXECUTING -> FAILED between two polls: counted exactly once, last-task gauges set.
    failed_at = time.time()
    w.set_status(extend.id, "FAILED", at=failed_at)
    m = cli_once(cfg)
    assert m.value(FINISHED, instance_id=r1.id, task_name="EXTEND", status="FAILED") == 1
    assert m.total(FINISHED) == 1
    duration = to_ms(failed_at) - extend.created_at
    last = m.one("huaweicloud_task_last_duration_seconds", instance_id=r1.id, task_name="EXTEND")
    assert abs(last - duration) < 0.002
    assert m.value(
        "huaweicloud_task_last_finished_timestamp_seconds", instance_id=r1.id, task_name="EXTEND"
    ) == to_ms(failed_at)
    assert [
        s.labels["status"]
        for s in m.find("huaweicloud_task_last_status", instance_id=r1.id, task_name="EXTEND")
    ] == ["FAILED"]
    assert (
        m.find("huaweicloud_task_oldest_unfinished_start_timestamp_seconds", instance_id=r1.id)
        == []
    )
    hist = {"cloud_service": "dcs", "task_name": "EXTEND", "status": "FAILED", "source": "instance"}
    assert m.value("huaweicloud_task_duration_seconds_count", **hist) == 1
    assert abs(m.one("huaweicloud_task_duration_seconds_sum", **hist) - duration) < 0.002
    assert m.value("huaweicloud_task_duration_seconds_bucket", le="600.0", **hist) == 1
    assert m.value("huaweicloud_task_duration_seconds_bucket", le="300.0", **hist) == 0

    # Created and finished between two polls: counted once, as is a DMS task finishing.
    w.add_task(r1.id, "modify", "SUCCESS", time.time() - 0.5, time.time())
    w.set_status(topic.id, "SUCCESS")
    m = cli_once(cfg)
    assert m.value(FINISHED, instance_id=r1.id, task_name="modify", status="SUCCESS") == 1
    assert m.value(FINISHED, instance_id=r1.id, task_name="EXTEND", status="FAILED") == 1
    assert m.value(FINISHED, instance_id=k1.id, task_name="modifyAutoTopic", status="SUCCESS") == 1
    assert m.total(FINISHED) == 3

    # Nothing new: nothing moves.
    m = cli_once(cfg)
    assert m.total(FINISHED) == 3
    assert m.total("huaweicloud_task_duration_seconds_count") == 3


def test_task_center_and_instance_each_count_once(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    r1 = w.add_instance("dcs", "redis-1", PROJECT)
    r2 = w.add_instance("dcs", "redis-2", PROJECT)
    a = w.add_task(r1.id, "EXTEND", "EXECUTING", time.time() - 60)
    b = w.add_task(r2.id, "EXTEND", "EXECUTING", time.time() - 50)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(
            sim,
            [instance_entry(w, r1.id), instance_entry(w, r2.id)],
            task_center=True,
            state_path=tmp_path / "s.db",
        ),
    )
    once(cfg)
    w.set_status(a.id, "SUCCESS")
    w.set_status(b.id, "SUCCESS")
    m = once(cfg)
    m = once(cfg)
    # Each instance list counts its task once; the task center (instance_id="") counts both,
    # under the name it uses for them.
    assert m.value(FINISHED, instance_id=r1.id, task_name="EXTEND", status="SUCCESS") == 1
    assert m.value(FINISHED, instance_id=r2.id, task_name="EXTEND", status="SUCCESS") == 1
    assert m.value(FINISHED, instance_id="", task_name="ChangeInstanceSpec", status="SUCCESS") == 2
    # The histogram keeps the two sources apart: 2 observations each, never 4 in one series.
    assert (
        m.value(
            "huaweicloud_task_duration_seconds_count",
            source="instance",
            task_name="EXTEND",
            status="SUCCESS",
        )
        == 2
    )
    assert (
        m.value(
            "huaweicloud_task_duration_seconds_count",
            source="task_center",
            task_name="ChangeInstanceSpec",
            status="SUCCESS",
        )
        == 2
    )
    for s in m.find("huaweicloud_task_duration_seconds_count"):
        assert "instance_id" not in s.labels


def test_duration_by_instance_option_adds_instance_labels(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    r1 = w.add_instance("dcs", "redis-1", PROJECT)
    t = w.add_task(r1.id, "modify", "EXECUTING", time.time() - 30)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(
            sim,
            [instance_entry(w, r1.id)],
            state_path=tmp_path / "s.db",
            metrics={"duration_by_instance": True},
        ),
    )
    once(cfg)
    w.set_status(t.id, "SUCCESS")
    m = once(cfg)
    assert (
        m.value(
            "huaweicloud_task_duration_seconds_count",
            instance_id=r1.id,
            instance_name="redis-1",
            task_name="modify",
            status="SUCCESS",
        )
        == 1
    )


def test_unknown_and_missing_statuses(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    r1 = w.add_instance("kafka", "k", PROJECT)
    odd = w.add_task(r1.id, "kafkaConfigModify", "EXECUTING", time.time() - 30)
    blank = w.add_task(r1.id, "modifyAutoTopic", "EXECUTING", time.time() - 20)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(sim, [instance_entry(w, r1.id)], state_path=tmp_path / "s.db"),
    )
    once(cfg)
    w.set_status(odd.id, "rolled_back")
    blank.raw["status"] = MISSING
    m = once(cfg)
    # An unknown final status is exported upper-cased and counted; a missing one is not.
    assert m.value(FINISHED, task_name="kafkaConfigModify", status="ROLLED_BACK") == 1
    assert m.total(FINISHED, task_name="modifyAutoTopic") == 0
    assert (
        m.value("huaweicloud_task_recent_tasks", task_name="modifyAutoTopic", status="UNKNOWN") == 1
    )
    # ... and a task whose status comes back later is counted then.
    del blank.raw["status"]
    w.set_status(blank.id, "SUCCESS")
    m = once(cfg)
    assert m.value(FINISHED, task_name="modifyAutoTopic", status="SUCCESS") == 1


def test_window_filtered_by_the_exporter_and_state_pruned(sim: Sim, tmp_path: Path) -> None:
    """A server that ignores the window returns old tasks: they are neither shown nor kept."""
    w = sim.world
    w.options.dcs_window_param = "none"
    r1 = w.add_instance("dcs", "r", PROJECT)
    now = time.time()
    for i in range(5):
        w.add_task(r1.id, "old", "SUCCESS", now - 7200 - i, now - 7100 - i)
    w.add_task(r1.id, "new", "SUCCESS", now - 60, now - 50)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(
            sim,
            [instance_entry(w, r1.id)],
            state_path=tmp_path / "s.db",
            lookback="1h",
            catchup_max="1h",
        ),
    )
    m = once(cfg)
    assert m.find("huaweicloud_task_recent_tasks", task_name="old") == []
    assert m.value("huaweicloud_task_recent_tasks", task_name="new", status="SUCCESS") == 1
    with sqlite3.connect(tmp_path / "s.db") as db:
        names = [r[0] for r in db.execute("SELECT name FROM tasks")]
    assert names == ["new"]


def _window_sent(query: dict[str, str]) -> float:
    text = query.get("start_time") or query["begin_time"]
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc).timestamp()


def test_steady_state_poll_is_one_request_and_reaches_back_to_unfinished(
    sim: Sim, tmp_path: Path
) -> None:
    w = sim.world
    quiet = w.add_instance("dcs", "quiet", PROJECT)
    busy = w.add_instance("rocketmq", "stuck", PROJECT)
    for i in range(30):  # history: three pages of 10 on the first poll
        w.add_task(quiet.id, "modify", "SUCCESS", time.time() - 3000 + i, time.time() - 2900 + i)
    stuck = w.add_task(busy.id, "bindInstancePublicIp", "EXECUTING", time.time() - 7200)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(
            sim,
            [instance_entry(w, quiet.id), instance_entry(w, busy.id)],
            state_path=tmp_path / "s.db",
            overlap="2m",
            http={"page_size": 10},
            # The polls' own requests only (a history read would ask for 30 days once).
            metrics={"expected_durations": {"history": "0s"}},
        ),
    )
    once(cfg)
    assert len(w.requests_for(quiet.id)) == 3  # task_count says 30: no empty 4th page
    w.requests.clear()
    before = time.time()
    once(cfg)
    sent_quiet = w.requests_for(quiet.id)
    sent_busy = w.requests_for(busy.id)
    assert len(sent_quiet) == 1
    assert len(sent_busy) == 1
    # The quiet instance is asked only for what changed since the last poll, with the overlap.
    assert before - 130 - 5 < _window_sent(sent_quiet[0].query) <= before - 120 + 1
    # The other is asked back to its oldest unfinished task.
    assert _window_sent(sent_busy[0].query) <= stuck.created_at


def _set_watermark(state: Path, seconds_ago: float) -> None:
    with sqlite3.connect(state) as db:
        db.execute("UPDATE targets SET watermark = ?", (time.time() - seconds_ago,))


def test_downtime_catch_up_reaches_back_to_last_poll_within_the_bound(
    sim: Sim, tmp_path: Path
) -> None:
    w = sim.world
    r1 = w.add_instance("dcs", "r", PROJECT)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(sim, [instance_entry(w, r1.id)], state_path=tmp_path / "s.db", catchup_max="1h"),
    )
    once(cfg)
    # The last successful poll was two hours ago (the exporter was down since). Tasks ran
    # and finished meanwhile; those within catchup_max are still counted.
    _set_watermark(tmp_path / "s.db", 7200)
    now = time.time()
    w.add_task(r1.id, "within", "SUCCESS", now - 1800, now - 1700)
    w.add_task(r1.id, "beyond", "SUCCESS", now - 5400, now - 5300)
    m = once(cfg)
    assert m.value(FINISHED, task_name="within", status="SUCCESS") == 1
    assert m.find(FINISHED, task_name="beyond") == []
    sent = w.requests_for(r1.id)[-1].query
    assert abs(_window_sent(sent) - (now - 3600)) < 10


def test_vanished_unfinished_task_is_forgotten_after_three_polls(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    r1 = w.add_instance("dcs", "r", PROJECT)
    ghost = w.add_task(r1.id, "EXTEND", "EXECUTING", time.time() - 30)
    cfg = write_config(
        tmp_path / "c.yml",
        config_doc(sim, [instance_entry(w, r1.id)], state_path=tmp_path / "s.db"),
    )
    m = once(cfg)
    assert m.find("huaweicloud_task_oldest_unfinished_start_timestamp_seconds")
    w.remove_task(ghost.id)
    for _ in range(2):
        m = once(cfg)
        assert m.find("huaweicloud_task_oldest_unfinished_start_timestamp_seconds")
    m = once(cfg)
    assert m.find("huaweicloud_task_oldest_unfinished_start_timestamp_seconds") == []
    assert m.total(FINISHED) == 0


def test_removed_target_series_disappear(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    r1 = w.add_instance("dcs", "keep", PROJECT)
    r2 = w.add_instance("dcs", "drop", PROJECT)
    t = w.add_task(r2.id, "modify", "EXECUTING", time.time() - 30)
    w.add_task(r1.id, "modify", "SUCCESS", time.time() - 30, time.time() - 20)
    both = [instance_entry(w, r1.id), instance_entry(w, r2.id)]
    cfg = write_config(tmp_path / "c.yml", config_doc(sim, both, state_path=tmp_path / "s.db"))
    once(cfg)
    w.set_status(t.id, "SUCCESS")
    m = once(cfg)
    assert m.value(FINISHED, instance_id=r2.id, task_name="modify", status="SUCCESS") == 1
    cfg = write_config(tmp_path / "c.yml", config_doc(sim, both[:1], state_path=tmp_path / "s.db"))
    m = once(cfg)
    assert not [s for s in m.samples if s.labels.get("instance_id") == r2.id]
    assert m.find("huaweicloud_task_up", instance_id=r1.id)


def test_a_failed_once_still_shows_what_the_state_file_knows(sim: Sim, tmp_path: Path) -> None:
    """`--once` serves a task list's stored state only when its poll fails (a poll that
    works publishes its own): the failed one keeps its counters and last success, up 0."""
    w = sim.world
    now = time.time()
    ok = w.add_instance("dcs", "fine", PROJECT)
    bad = w.add_instance("dcs", "failing", PROJECT)
    w.add_task(ok.id, "modify", "SUCCESS", now - 90, now - 80)
    t = w.add_task(bad.id, "modify", "EXECUTING", now - 60)
    both = [instance_entry(w, ok.id), instance_entry(w, bad.id)]
    cfg = write_config(tmp_path / "c.yml", config_doc(sim, both, state_path=tmp_path / "s.db"))
    once(cfg)
    w.set_status(t.id, "SUCCESS")
    counted = once(cfg)
    assert counted.value(FINISHED, instance_id=bad.id, task_name="modify", status="SUCCESS") == 1
    last_success = counted.value(LAST_SUCCESS, instance_id=bad.id)
    assert last_success is not None

    w.add_fault(Fault("http_error", status=503, instance_id=bad.id))
    m = once(cfg, succeeds=False)  # one task list failed
    assert m.value("huaweicloud_task_up", instance_id=bad.id) == 0
    assert m.value("huaweicloud_task_up", instance_id=ok.id) == 1
    assert m.value(FINISHED, instance_id=bad.id, task_name="modify", status="SUCCESS") == 1
    assert m.value(LAST_SUCCESS, instance_id=bad.id) == last_success
    assert m.value("huaweicloud_task_recent_tasks", instance_id=bad.id, status="SUCCESS") == 1
    # The one that worked shows the same series as when everything works.
    assert m.value(FINISHED, instance_id=ok.id, task_name="modify", status="FAILED") == 0
    assert m.value(LAST_SUCCESS, instance_id=ok.id) > last_success  # type: ignore[operator]
