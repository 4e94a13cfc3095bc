"""The state store as the one owner of counting: additive rows, totals returned by a commit,
quiet polls written together, and the schema 1 histograms carried over."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from exporter.config import load_config_text
from exporter.core.counting import PollCommit, TaskRow, merge, window_start
from exporter.core.expectations import Sample
from exporter.core.histograms import HistogramDelta
from exporter.core.quiet import facts_of, quiet
from exporter.core.tasks import ZERO_INITIALIZED_STATUSES, Task
from exporter.polling.state import FLUSH_INTERVAL, StateStore
from tests.builders import task_list

pytestmark = pytest.mark.smoke  # in-process: run on every supported Python

BOUNDS = (1.0, 10.0, 60.0)
SERIES = json.dumps(["aggregate", "dcs", "r", "p", "instance", "", "EXTEND", "SUCCESS"])


def _commit(key: str, at: float, **changes: Any) -> PollCommit:
    return PollCommit(key, baseline_at=100.0, watermark=at, last_success=at, **changes)


def test_commit_returns_the_totals_the_file_holds(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db", BOUNDS)
    row = TaskRow("t1", "EXTEND", "SUCCESS", 150.0, True, 160.0, True)
    first = store.commit(
        _commit(
            "a",
            200.0,
            upserts=[row],
            finished={("EXTEND", "SUCCESS"): 2},
            durations={SERIES: HistogramDelta([0, 2, 0, 0], 20.0, 2)},
        )
    )
    assert first.finished == {("EXTEND", "SUCCESS"): 2}
    assert [(h.buckets, h.sum, h.count) for h in first.histograms] == [((0, 2, 0, 0), 20.0, 2)]
    second = store.commit(
        _commit(
            "a",
            300.0,
            finished={("EXTEND", "SUCCESS"): 1},
            durations={SERIES: HistogramDelta([1, 0, 0, 0], 0.5, 1)},
        )
    )
    assert second.finished == {("EXTEND", "SUCCESS"): 3}
    assert [(h.buckets, h.sum, h.count) for h in second.histograms] == [((1, 2, 0, 0), 20.5, 3)]
    assert second.state.tasks == {"t1": row}
    assert second.state.finished == {("EXTEND", "SUCCESS"): 3}
    store.close()

    # A new process reads the same, and the buckets are additive rows in the file.
    again = StateStore(tmp_path / "s.db", BOUNDS)
    assert again.load_task_list("a").finished == {("EXTEND", "SUCCESS"): 3}
    assert [(h.buckets, h.sum, h.count) for h in again.load_histograms()] == [
        ((1, 2, 0, 0), 20.5, 3)
    ]
    rows = again.db.execute("SELECT bucket, count FROM duration_buckets ORDER BY bucket").fetchall()
    assert rows == [(0, 1), (1, 2)]
    again.close()


def test_quiet_polls_are_written_together_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path, BOUNDS)
    store.commit(_commit("a", 200.0, upserts=[TaskRow("t", "X", "SUCCESS", 150, True, 160, True)]))
    store.commit(_commit("a", 260.0))  # quiet: in memory at once, in the file later
    assert store.load_task_list("a").watermark == 260.0
    peek = sqlite3.connect(str(path))
    assert peek.execute("SELECT watermark FROM targets").fetchone() == (200.0,)
    store._flushed -= FLUSH_INTERVAL  # as if FLUSH_INTERVAL had passed
    store.commit(_commit("a", 320.0))
    assert peek.execute("SELECT watermark FROM targets").fetchone() == (320.0,)
    store.commit(_commit("a", 380.0))
    store.close()
    assert peek.execute("SELECT watermark FROM targets").fetchone() == (380.0,)


def test_a_first_poll_is_never_deferred(tmp_path: Path) -> None:
    """The baseline must reach the file at once: without it a restart would baseline again
    and miss what finished in between."""
    path = tmp_path / "s.db"
    store = StateStore(path, BOUNDS)
    store.commit(_commit("empty", 200.0))  # no tasks at all, but a baseline
    peek = sqlite3.connect(str(path))
    assert peek.execute("SELECT key, baseline_at FROM targets").fetchall() == [("empty", 100.0)]
    store.close()


def test_schema_1_histograms_are_carried_over(tmp_path: Path) -> None:
    """And its tasks table gains the columns of schema 3 (user and change)."""
    path = tmp_path / "s.db"
    db = sqlite3.connect(str(path))
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE durations (series TEXT PRIMARY KEY, buckets TEXT NOT NULL,
                                sum REAL NOT NULL, count INTEGER NOT NULL);
        CREATE TABLE tasks (target TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
            status TEXT NOT NULL, created_at REAL NOT NULL, created_known INTEGER NOT NULL,
            updated_at REAL, accounted INTEGER NOT NULL, missing INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (target, id)) WITHOUT ROWID;
        INSERT INTO tasks VALUES ('a', 't1', 'EXTEND', 'SUCCESS', 1.0, 1, 2.0, 1, 0);
        """
    )
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO meta VALUES ('duration_buckets', ?)", (json.dumps(list(BOUNDS)),))
    db.execute("INSERT INTO durations VALUES (?, ?, ?, ?)", (SERIES, "[3, 0, 1, 2]", 400.5, 6))
    db.commit()
    db.close()
    store = StateStore(path, BOUNDS)
    assert [(h.series, h.buckets, h.sum, h.count) for h in store.load_histograms()] == [
        (SERIES, (3, 0, 1, 2), 400.5, 6)
    ]
    assert store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        "4",
    )
    assert store.load_task_list("a").tasks["t1"] == TaskRow(
        "t1", "EXTEND", "SUCCESS", 1.0, True, 2.0, True, 0, "", ""
    )
    store.close()


def _runs(name: str, first: int, n: int, at: float, step: float = 60.0) -> list[Sample]:
    return [Sample(f"{name}-{i}", name, at + i * step, 10.0 + i) for i in range(first, first + n)]


def test_successful_runs_are_kept_bounded_per_task_list_and_name(tmp_path: Path) -> None:
    """Each window is cut to the most recent runs in the file as in memory; a run seen again
    (the history overlapping a poll) is one run; too old runs go at the next start."""
    now = time.time()
    path = tmp_path / "s.db"
    store = StateStore(path, BOUNDS, sample_window=5, sample_max_age=86400.0)
    store.commit(_commit("a", 200.0, samples=_runs("EXTEND", 0, 4, now - 3600)))
    store.commit(_commit("a", 300.0, samples=_runs("EXTEND", 3, 4, now - 3600)))  # 3 again
    store.commit(_commit("b", 300.0, samples=_runs("EXTEND", 0, 2, now - 3600)))
    store.commit_history("a", _runs("modify", 0, 3, now - 7200), now, now - 86400.0)
    kept = sorted(s.task_id for s in store.load_samples("a") if s.name == "EXTEND")
    assert kept == [f"EXTEND-{i}" for i in range(2, 7)]  # the newest 5 of 7 distinct runs
    assert len(store.load_samples("b")) == 2
    assert store.history_read("a")
    assert not store.history_read("b")
    store.db.execute(
        "UPDATE expected_samples SET finished_at = ? WHERE task_id = 'modify-0'", (now - 90000,)
    )
    store.close()
    again = StateStore(path, BOUNDS, sample_window=3, sample_max_age=86400.0)  # smaller window
    assert sorted(s.task_id for s in again.load_samples("a")) == [
        "EXTEND-4",
        "EXTEND-5",
        "EXTEND-6",
        "modify-1",
        "modify-2",
    ]
    assert again.history_read("a")
    again.close()


def test_schema_3_learns_from_the_successful_tasks_it_knows(tmp_path: Path) -> None:
    """The migration to schema 4 takes the accounted SUCCESS tasks with both timestamps as
    the first runs; failed, unfinished and undated ones are not runs."""
    now = float(int(time.time()))  # whole seconds: the duration below is exact
    path = tmp_path / "s.db"
    store = StateStore(path, BOUNDS)
    store.commit(
        _commit(
            "a",
            200.0,
            upserts=[
                TaskRow("ok", "EXTEND", "SUCCESS", now - 700, True, now - 100, True),
                TaskRow("fail", "EXTEND", "FAILED", now - 700, True, now - 100, True),
                TaskRow("run", "EXTEND", "EXECUTING", now - 700, True, None, False),
                TaskRow("undated", "EXTEND", "SUCCESS", now - 700, False, now - 100, True),
            ],
        )
    )
    store.db.execute("DELETE FROM expected_samples")
    store.db.execute("DROP TABLE history_read")
    store.db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    store.close()
    again = StateStore(path, BOUNDS)
    assert again.load_samples("a") == [Sample("ok", "EXTEND", now - 100, 600.0)]
    assert not again.history_read("a")  # so it is read once, after the upgrade too
    again.close()


def test_the_state_a_merge_led_to_is_kept_so_the_next_poll_can_be_quiet(tmp_path: Path) -> None:
    """The store keeps the merge's own state (its summary memo with it) when the file agrees,
    so the poll after one that changed something is told quiet instead of merged again."""
    config = load_config_text(
        "lookback: 24h\npoll_interval: 30s\ncredentials: {access_key: AK, secret_key: SK}\n"
        "targets:\n  - {region: r1, project_id: p1, instances: [{service: dcs, id: i1}]}\n",
        env={},
    )
    target = task_list("dcs", "i1", "redis-1", project_id="p1")
    zero = ZERO_INITIALIZED_STATUSES[target.dialect]
    now = time.time()
    tasks = [Task("t1", "EXTEND", "SUCCESS", now - 600, now - 500)]
    store = StateStore(tmp_path / "s.db", BOUNDS)
    for at in (now - 60, now):  # a baseline, then a poll that records the task
        state = store.load_task_list(target.key)
        since = window_start(state, at, config)
        merged = merge(
            target, state, tasks, since=since, now=at, poll_started=at - 1, config=config
        )
        kept = store.commit(merged.commit, merged.state).state
        assert kept is merged.state
        assert kept.memo.summary is not None
    state = store.load_task_list(target.key)
    since = window_start(state, now + 30, config)
    facts = facts_of(state.tasks)
    assert quiet(state, facts, tasks, since=since, now=now + 30, config=config, zero=zero)

    # A state that is not what the file now holds is not kept.
    stale = merge(target, state, [], since=since, now=now + 30, poll_started=now, config=config)
    other = replace(stale.state, finished={("EXTEND", "SUCCESS"): 99})
    assert store.commit(stale.commit, other).state is not other
    store.close()
