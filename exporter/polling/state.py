"""Restart-safe state in one SQLite file: seen tasks, counters, histograms, poll watermarks.

Each poll's results go in with one transaction, so a restart, even a `kill -9` in the middle
of a poll, finds the state of the last committed poll: nothing counted twice, nothing lost
(the next poll reads again from that poll's watermark). Counters and histogram buckets are
additive rows, summed by SQLite alone; a commit returns the totals it moved, and the store
keeps each task list's state in memory as the file has it, so a poll reads nothing back.
The file itself (its lock, schema, migrations and guards) is `exporter.polling.statefile`.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.core.counting import Failure, PollCommit, TaskListState, TaskRow, apply_commit
from exporter.core.expectations import DEFAULT_MAX_AGE, DEFAULT_WINDOW, Sample
from exporter.core.histograms import HistogramRow
from exporter.polling.statefile import (
    SCHEMA_VERSION,
    TRIM_ALL_SAMPLES,
    TRIM_SAMPLES,
    StateError,
    StateFile,
    StateInUse,
)
from exporter.text import shared

__all__ = [
    "FLUSH_INTERVAL",
    "SCHEMA_VERSION",
    "Committed",
    "StateError",
    "StateInUse",
    "StateStore",
]

# Quiet polls (nothing changed but the watermark) are written together at most this often:
# a watermark that is a few seconds old only makes the next read after a crash a little
# longer, it never loses or doubles a count.
FLUSH_INTERVAL = 10.0
# How often a run of quiet polls checks that the file is still the one it opened (two
# stat calls); any other commit checks first, every time.
CHECK_INTERVAL = 1.0
# How often tasks older than the retention are deleted from the file (they are dropped from
# memory at every poll).
PRUNE_INTERVAL = 60.0


# Fewer task lists joining at once than this are read one by one.
PRELOAD_AT_LEAST = 50
_TASKS_OF = (
    "SELECT id, name, status, created_at, created_known, updated_at, accounted, missing,"
    " user_name, change FROM tasks WHERE target = ?"
)
_ALL_TASKS = (
    "SELECT target, id, name, status, created_at, created_known, updated_at, accounted,"
    " missing, user_name, change FROM tasks"
)


def _task_row(r: Sequence[Any]) -> TaskRow:
    return TaskRow(
        r[0],
        shared(r[1]),
        shared(r[2]),
        r[3],
        bool(r[4]),
        r[5],
        bool(r[6]),
        r[7],
        shared(r[8]),
        shared(r[9]),
    )


@dataclass
class Committed:
    """What a committed poll changed, as the state file now holds it."""

    state: TaskListState  # the task list's whole state after the poll
    finished: dict[tuple[str, str], int]  # the new totals of the counters the poll moved
    histograms: list[HistogramRow]  # the new totals of the series the poll observed into


class StateStore:
    """The task lists' state: the file is the durable copy, memory the working one, and
    every commit updates both."""

    def __init__(
        self,
        path: Path,
        buckets: Sequence[float],
        in_memory: bool = False,
        *,
        sample_window: int = DEFAULT_WINDOW,
        sample_max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        """`in_memory`: a copy of the file's state, polled into memory and never written back
        (`--once` beside a running exporter)."""
        self.path = path
        self.file = StateFile(path, buckets, in_memory)
        self.db = self.file.db
        self.sample_window = sample_window
        self.sample_max_age = sample_max_age
        try:  # the bounds of the configuration (they may have changed), as memory has them
            with self.file.transaction():
                self.db.execute(TRIM_ALL_SAMPLES, (time.time() - sample_max_age, sample_window))
        except sqlite3.Error as exc:
            self.file.close()
            raise self.file.explain(exc) from None
        self.buckets_changed = self.file.buckets_changed
        # The state of each task list in use, loaded once.
        self._states: dict[str, TaskListState] = {}
        self._pending: dict[str, tuple[float, float, float]] = {}  # quiet polls not yet written
        self._flushed = time.monotonic()
        self._checked = float("-inf")
        self._pruned = time.monotonic()
        self._prune_before = 0.0
        # Per task list preloaded at a start: (its stored runs, whether its history was read),
        # each given once.
        self._preloaded: dict[str, tuple[list[Sample], bool]] = {}

    @property
    def broken(self) -> str | None:
        """Why the file can no longer be used, once it cannot."""
        return self.file.broken

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error, StateError):
            if self._pending and self.broken is None:
                with self.file.transaction():
                    self._write_pending()
        self.file.close()

    def use_buckets(self, buckets: Sequence[float]) -> bool:
        """Another histogram layout (a reload): True when the stored histograms restart."""
        try:
            return self.file.use_buckets(buckets)
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None

    # -- reading -------------------------------------------------------------------------

    def load_task_list(self, key: str) -> TaskListState:
        """A task list's state: read from the file once, then kept up to date by commits."""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self._read_task_list(key)
        return state

    def forget(self, key: str) -> None:
        """Drop a task list no longer polled from memory (its rows stay in the file)."""
        self._states.pop(key, None)

    def _read_task_list(self, key: str) -> TaskListState:
        try:
            row = self.db.execute(
                "SELECT baseline_at, watermark, last_success FROM targets WHERE key = ?", (key,)
            ).fetchone()
            tasks = {r[0]: _task_row(r) for r in self.db.execute(_TASKS_OF, (key,))}
            failures = {
                r[0]: Failure(r[1], r[2], r[3], r[4])
                for r in self.db.execute(
                    "SELECT name, task_id, user_name, change, finished_at FROM failures"
                    " WHERE target = ?",
                    (key,),
                )
            }
            finished = {
                (r[0], r[1]): int(r[2])
                for r in self.db.execute(
                    "SELECT name, status, count FROM finished WHERE target = ?", (key,)
                )
            }
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None
        if row is None:
            return TaskListState(None, None, None, tasks, finished, failures)
        return TaskListState(row[0], row[1], row[2], tasks, finished, failures)

    def preload(self, keys: Iterable[str]) -> None:
        """Read what many task lists joining at once (a start) will ask for: their states,
        stored runs and history marks, one pass over each table instead of six queries per
        task list. What a task list does not ask for soon is dropped at its first poll."""
        wanted = set(keys) - self._states.keys()
        if len(wanted) < PRELOAD_AT_LEAST:
            return
        db = self.db
        try:
            heads = {
                r[0]: r[1:]
                for r in db.execute("SELECT key, baseline_at, watermark, last_success FROM targets")
                if r[0] in wanted
            }
            tasks: dict[str, dict[str, TaskRow]] = {k: {} for k in wanted}
            for r in db.execute(_ALL_TASKS):
                if r[0] in wanted:
                    tasks[r[0]][r[1]] = _task_row(r[1:])
            failures: dict[str, dict[str, Failure]] = {k: {} for k in wanted}
            for r in db.execute(
                "SELECT target, name, task_id, user_name, change, finished_at FROM failures"
            ):
                if r[0] in wanted:
                    failures[r[0]][r[1]] = Failure(r[2], r[3], r[4], r[5])
            finished: dict[str, dict[tuple[str, str], int]] = {k: {} for k in wanted}
            for r in db.execute("SELECT target, name, status, count FROM finished"):
                if r[0] in wanted:
                    finished[r[0]][(r[1], r[2])] = int(r[3])
            samples: dict[str, list[Sample]] = {k: [] for k in wanted}
            for r in db.execute(
                "SELECT target, task_id, name, finished_at, duration FROM expected_samples"
            ):
                if r[0] in wanted:
                    samples[r[0]].append(Sample(r[1], r[2], r[3], r[4]))
            read = {r[0] for r in db.execute("SELECT target FROM history_read")} & wanted
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None
        for key in wanted:
            baseline_at, watermark, last_success = heads.get(key, (None, None, None))
            self._states[key] = TaskListState(
                baseline_at, watermark, last_success, tasks[key], finished[key], failures[key]
            )
        self._preloaded = {k: (samples[k], k in read) for k in wanted}

    def load_histograms(self) -> list[HistogramRow]:
        """Every stored duration series, with the current bucket layout."""
        try:
            rows: dict[str, list[tuple[int, int]]] = {}
            for series, bucket, count in self.db.execute(
                "SELECT series, bucket, count FROM duration_buckets"
            ):
                rows.setdefault(series, []).append((bucket, count))
            return [
                HistogramRow(r[0], self.file.buckets_of(rows.get(r[0], ())), r[1], int(r[2]))
                for r in self.db.execute("SELECT series, sum, count FROM duration_totals")
            ]
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None

    def load_samples(self, key: str) -> list[Sample]:
        """A task list's stored successful runs (the windows of its expectations)."""
        found = self._preloaded.pop(key, None)
        if found is not None:
            return found[0]
        try:
            return [
                Sample(r[0], r[1], r[2], r[3])
                for r in self.db.execute(
                    "SELECT task_id, name, finished_at, duration FROM expected_samples"
                    " WHERE target = ?",
                    (key,),
                )
            ]
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None

    def history_read(self, key: str) -> bool:
        """Whether the task list's history has been read (once, when first polled)."""
        found = self._preloaded.get(key)  # asked before its runs (Learning.restore)
        if found is not None:
            return found[1]
        try:
            row = self.db.execute("SELECT 1 FROM history_read WHERE target = ?", (key,))
            return row.fetchone() is not None
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None

    def commit_history(
        self, key: str, samples: Sequence[Sample], read_at: float, since: float
    ) -> None:
        """The runs of a task list's history, and that it was read, in one transaction: a kill
        before it reads the history again, never half of it."""
        self.file.check()
        try:
            with self.file.transaction():
                self._write_samples(key, samples)
                self.db.execute(
                    "INSERT INTO history_read (target, read_at, since, tasks) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (target) DO UPDATE SET read_at = excluded.read_at,"
                    " since = excluded.since, tasks = excluded.tasks",
                    (key, read_at, since, len(samples)),
                )
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None

    def _write_samples(self, key: str, samples: Iterable[Sample]) -> None:
        """New runs (a task ID once per task list), then each touched window cut to size."""
        rows = [(key, s.task_id, s.name, s.finished_at, s.duration) for s in samples]
        if not rows:
            return
        self.db.executemany(
            "INSERT OR IGNORE INTO expected_samples (target, task_id, name, finished_at, duration)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        self.db.executemany(
            TRIM_SAMPLES,
            [(key, name, key, name, self.sample_window) for name in sorted({r[2] for r in rows})],
        )

    def pending_events(self) -> list[tuple[int, dict[str, object]]]:
        """Event log lines committed but not yet written out (a kill came in between)."""
        try:
            return [
                (int(seq), json.loads(payload))
                for seq, payload in self.db.execute("SELECT seq, payload FROM events ORDER BY seq")
            ]
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None

    def events_written(self, upto: int) -> None:
        """Forget the event lines up to `upto`: they are in the log now."""
        try:
            with self.file.transaction():
                self.db.execute("DELETE FROM events WHERE seq <= ?", (upto,))
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None

    # -- writing -------------------------------------------------------------------------

    def commit(self, c: PollCommit, merged: TaskListState | None = None) -> Committed:
        """Write one poll's results atomically (all of it or none of it) and say what changed.

        A quiet poll of a task list that has its baseline changes nothing but its watermark:
        it is written with the next commit or within FLUSH_INTERVAL, whichever comes first.
        `merged` is the state the merge led to: when the file's totals agree with it, it is
        kept as it is, summary memo included, so that the next poll can be told quiet
        (otherwise every poll that changed something was followed by a second full merge).
        """
        old = self.load_task_list(c.task_list_key)
        now = time.monotonic()
        quiet = c.quiet and old.baseline_at is not None
        if not quiet or self.file.broken is not None or now - self._checked >= CHECK_INTERVAL:
            self.file.check()
            self._checked = now
        self._prune_before = max(self._prune_before, c.prune_before)
        finished: dict[tuple[str, str], int] = {}
        histograms: list[HistogramRow] = []
        try:
            if quiet:
                self._pending[c.task_list_key] = (c.baseline_at, c.watermark, c.last_success)
                if now - self._flushed >= FLUSH_INTERVAL:
                    with self.file.transaction():
                        self._write_pending()
            else:
                self._pending.pop(c.task_list_key, None)
                with self.file.transaction():
                    finished, histograms = self._write(c)
                    self._write_pending()
        except sqlite3.Error as exc:
            raise self.file.explain(exc) from None
        state = apply_commit(old, c, finished)
        if merged is not None and merged == state:
            state = merged
        self._states[c.task_list_key] = state
        return Committed(state, finished, histograms)

    def commit_quiet(
        self, key: str, watermark: float, last_success: float, prune_before: float
    ) -> TaskListState:
        """A poll `exporter.core.quiet` found quiet on a task list with its baseline: only
        its watermark moves, written as `commit` writes a quiet poll's (batched)."""
        old = self.load_task_list(key)
        now = time.monotonic()
        if self.file.broken is not None or now - self._checked >= CHECK_INTERVAL:
            self.file.check()
            self._checked = now
        self._prune_before = max(self._prune_before, prune_before)
        assert old.baseline_at is not None
        self._pending[key] = (old.baseline_at, watermark, last_success)
        if now - self._flushed >= FLUSH_INTERVAL:
            try:
                with self.file.transaction():
                    self._write_pending()
            except sqlite3.Error as exc:
                raise self.file.explain(exc) from None
        # In place: only the store and the poll in hand hold a task list's state.
        old.watermark, old.last_success = watermark, last_success
        return old

    def _write_pending(self) -> None:
        """Watermarks of quiet polls, and now and then the pruning of old tasks."""
        self.file.upsert_watermarks([(key, *values) for key, values in self._pending.items()])
        self._pending.clear()
        now = time.monotonic()
        self._flushed = now
        if self._prune_before and now - self._pruned >= PRUNE_INTERVAL:
            # Unfinished tasks go too: if one ever shows up again it is counted as new,
            # which is right, as it was never counted.
            self.db.execute(
                "DELETE FROM tasks WHERE target IN (SELECT key FROM targets) AND created_at < ?",
                (self._prune_before,),
            )
            self.db.execute(
                "DELETE FROM expected_samples WHERE finished_at < ?",
                (time.time() - self.sample_max_age,),
            )
            self._pruned = now

    def _write(self, c: PollCommit) -> tuple[dict[tuple[str, str], int], list[HistogramRow]]:
        db = self.db
        db.executemany(
            "INSERT INTO tasks (target, id, name, status, created_at, created_known, updated_at,"
            " accounted, missing, user_name, change) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (target, id) DO UPDATE SET name = excluded.name,"
            " status = excluded.status, created_at = excluded.created_at,"
            " created_known = excluded.created_known, updated_at = excluded.updated_at,"
            " accounted = excluded.accounted, missing = excluded.missing,"
            " user_name = excluded.user_name, change = excluded.change",
            [
                (
                    c.task_list_key,
                    t.id,
                    t.name,
                    t.status,
                    t.created_at,
                    int(t.created_known),
                    t.updated_at,
                    int(t.accounted),
                    t.missing,
                    t.user_name,
                    t.change,
                )
                for t in c.upserts
            ],
        )
        db.executemany(
            "INSERT INTO failures (target, name, task_id, user_name, change, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (target, name) DO UPDATE SET"
            " task_id = excluded.task_id, user_name = excluded.user_name,"
            " change = excluded.change, finished_at = excluded.finished_at",
            [
                (c.task_list_key, name, f.task_id, f.user_name, f.change, f.finished_at)
                for name, f in c.failures.items()
            ],
        )
        # The event log's lines go in with the poll that saw them and out after it.
        db.executemany(
            "INSERT INTO events (payload) VALUES (?)",
            [(json.dumps(e.fields, ensure_ascii=False),) for e in c.events],
        )
        self._write_samples(c.task_list_key, c.samples)
        db.executemany(
            "DELETE FROM tasks WHERE target = ? AND id = ?",
            [(c.task_list_key, i) for i in c.deletes],
        )
        # Counters and histograms are additive rows: the file does the sums, and says the
        # totals back, so there is one count of each thing.
        finished: dict[tuple[str, str], int] = {}
        for (name, status), n in c.finished.items():
            (total,) = db.execute(
                "INSERT INTO finished (target, name, status, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (target, name, status) DO UPDATE SET count = count + excluded.count"
                " RETURNING count",
                (c.task_list_key, name, status, n),
            ).fetchone()
            finished[(name, status)] = int(total)
        histograms: list[HistogramRow] = []
        for series, delta in c.durations.items():
            db.executemany(
                "INSERT INTO duration_buckets (series, bucket, count) VALUES (?, ?, ?)"
                " ON CONFLICT (series, bucket) DO UPDATE SET count = count + excluded.count",
                [(series, i, n) for i, n in enumerate(delta.buckets) if n],
            )
            total_sum, total_count = db.execute(
                "INSERT INTO duration_totals (series, sum, count) VALUES (?, ?, ?)"
                " ON CONFLICT (series) DO UPDATE SET sum = sum + excluded.sum,"
                " count = count + excluded.count RETURNING sum, count",
                (series, delta.sum, delta.count),
            ).fetchone()
            buckets = self.file.buckets_of(
                db.execute("SELECT bucket, count FROM duration_buckets WHERE series = ?", (series,))
            )
            histograms.append(HistogramRow(series, buckets, total_sum, int(total_count)))
        self.file.upsert_watermarks([(c.task_list_key, c.baseline_at, c.watermark, c.last_success)])
        return finished, histograms
