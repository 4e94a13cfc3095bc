"""The state store as the one owner of counting: additive rows, totals returned by a commit,
quiet polls written together, and the schema 1 histograms carried over."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from exporter.core.counting import HistogramDelta, PollCommit, TaskRow
from exporter.polling.state import FLUSH_INTERVAL, StateStore

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
        "3",
    )
    assert store.load_task_list("a").tasks["t1"] == TaskRow(
        "t1", "EXTEND", "SUCCESS", 1.0, True, 2.0, True, 0, "", ""
    )
    store.close()
