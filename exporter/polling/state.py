"""Restart-safe state in one SQLite file: seen tasks, counters, histograms, poll watermarks.

Each poll's results go in with one transaction, so a restart, even a `kill -9` in the middle
of a poll, finds the state of the last committed poll: nothing counted twice, nothing lost
(the next poll reads again from that poll's watermark). Counters and histogram buckets are
additive rows, summed by SQLite alone; a commit returns the totals it moved, and the store
keeps each task list's state in memory as the file has it, so a poll reads nothing back.
A lock on the database file itself keeps a second exporter from sharing the state, which
would otherwise split or double the counts, and a file deleted or replaced under a running
exporter fails its commits loudly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from exporter.core.counting import Failure, HistogramRow, PollCommit, TaskListState, TaskRow

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

# Quiet polls (nothing changed but the watermark) are written together at most this often:
# a watermark that is a few seconds old only makes the next read after a crash a little
# longer, it never loses or doubles a count.
FLUSH_INTERVAL = 10.0
# How often tasks older than the retention are deleted from the file (they are dropped from
# memory at every poll).
PRUNE_INTERVAL = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    key TEXT PRIMARY KEY,
    baseline_at REAL NOT NULL,
    watermark REAL NOT NULL,
    last_success REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    target TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_known INTEGER NOT NULL,
    updated_at REAL,
    accounted INTEGER NOT NULL,
    missing INTEGER NOT NULL DEFAULT 0,
    user_name TEXT NOT NULL DEFAULT '',
    change TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (target, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    target TEXT NOT NULL,
    name TEXT NOT NULL,
    task_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    change TEXT NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (target, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);
CREATE TABLE IF NOT EXISTS finished (
    target TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (target, name, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS duration_buckets (
    series TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (series, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS duration_totals (
    series TEXT PRIMARY KEY,
    sum REAL NOT NULL,
    count INTEGER NOT NULL
);
"""


class StateError(Exception):
    """The state file cannot be used; the message says what to do."""


@dataclass
class Committed:
    """What a committed poll changed, as the state file now holds it."""

    state: TaskListState  # the task list's whole state after the poll
    finished: dict[tuple[str, str], int]  # the new totals of the counters the poll moved
    histograms: list[HistogramRow]  # the new totals of the series the poll observed into


def _identity(path: Path) -> tuple[int, int] | None:
    """The (st_dev, st_ino) the path names now, None when it names nothing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _explain(path: Path, exc: Exception) -> StateError:
    text = str(exc)
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StateError(
            f"the state file {path} is not a usable SQLite database ({text}). "
            "Move it aside (or delete it) and start again: the exporter will take a new "
            "baseline, so counters restart from 0."
        )
    if "readonly" in text or "unable to open" in text or "permission" in text.lower():
        return StateError(
            f"cannot open the state file {path} for writing ({text}). Check that the "
            "directory exists and that this user may write both the file and its directory "
            "(SQLite writes a journal next to it), or set state_path elsewhere."
        )
    return StateError(f"state file {path}: {text}")


class StateStore:
    def __init__(self, path: Path, buckets: Sequence[float]) -> None:
        self.path = path
        self._db_file: int | None = None  # our own descriptor of the database, flock()ed
        self._identity: tuple[int, int] | None = None  # its (st_dev, st_ino)
        self._wal_identity: tuple[int, int] | None = None
        self.broken: str | None = None  # why the file can no longer be used, once it cannot
        # The state of each task list in use, loaded once: the file is the durable copy,
        # this the working one, and every commit updates both.
        self._states: dict[str, TaskListState] = {}
        self._pending: dict[str, tuple[float, float, float]] = {}  # quiet polls not yet written
        self._flushed = time.monotonic()
        self._pruned = time.monotonic()
        self._prune_before = 0.0
        self._acquire_lock()
        try:
            # The resolved path, so the journal files sit next to the real file however it
            # was named.
            self.db = sqlite3.connect(
                str(path.resolve()), isolation_level=None, check_same_thread=False
            )
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                # NORMAL: in WAL mode a commit survives any process crash (kill -9 included)
                # without an fsync each; only a power loss can undo the last commits, and as a
                # poll's counts and its tasks' "accounted" marks go in one transaction, the
                # next poll then counts those tasks again, exactly once.
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA busy_timeout=5000")
                self.db.executescript(_SCHEMA)
                self._check_version()
                self._check_buckets(buckets)
                self._check_file()  # SQLite opened the file we locked, not a newer one
            except BaseException:
                self.db.close()
                raise
            self._wal_path = Path(str(path.resolve()) + "-wal")
            self._wal_identity = _identity(self._wal_path)
        except sqlite3.Error as exc:
            self._release_lock()
            raise _explain(path, exc) from None
        except BaseException:
            self._release_lock()
            raise

    # -- file handling -------------------------------------------------------------------

    def _acquire_lock(self) -> None:
        """Lock the database file itself, so the lock follows the file, not a name.

        flock() on the file's inode: a second exporter reaching the same file through a
        symlink, a hard link or another mount is refused. (SQLite's own locks are POSIX
        byte-range locks, which flock() does not interact with on Linux.)
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
                raise StateError(
                    f"cannot read and write the state file {self.path}: check its owner and "
                    "mode, or set state_path elsewhere"
                )
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot create or open the state file {self.path}: "
                f"{exc.strerror or exc}; set state_path to a writable place"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(
                f"the state file {self.path} is in use by another exporter process "
                "(perhaps under another name: a symlink or hard link to the same file); "
                "each exporter needs its own state file"
            ) from None
        st = os.fstat(fd)
        self._db_file = fd
        self._identity = (st.st_dev, st.st_ino)

    def _release_lock(self) -> None:
        # Only once SQLite has closed the file: closing any descriptor of a file drops the
        # process's POSIX locks on it, SQLite's included.
        if self._db_file is not None:
            with contextlib.suppress(OSError):
                os.close(self._db_file)
            self._db_file = None

    def _check_file(self) -> None:
        """Fail if the database or its WAL was deleted or replaced under the running exporter.

        Commits would go on into a file no one will open again, and be lost at the next
        start; so from then on every commit fails, loudly, until the exporter is restarted.
        """
        if self.broken is None:
            problem = None
            if _identity(self.path) != self._identity:
                problem = "was deleted or replaced by another file"
            elif self._wal_identity is not None and _identity(self._wal_path) != self._wal_identity:
                problem = "lost its -wal file (deleted or replaced)"
            if problem is not None:
                self.broken = (
                    f"the state file {self.path} {problem} while the exporter was running; "
                    "nothing more is saved: restart the exporter (it takes a new baseline if "
                    "the file is gone) and keep other processes away from the state files"
                )
                log.error("state file unusable", extra={"fields": {"error": self.broken}})
        if self.broken is not None:
            raise StateError(self.broken)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error, StateError):
            if self._pending and self.broken is None:
                with self._transaction():
                    self._write_pending()
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        self._release_lock()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _check_version(self) -> None:
        version = self._meta("schema_version")
        if version is None:
            self._set_meta("schema_version", str(SCHEMA_VERSION))
            self._set_meta("created_at", str(time.time()))
        elif int(version) > SCHEMA_VERSION:
            raise StateError(
                f"the state file {self.path} was written by a newer exporter (schema {version}); "
                "run that version, or move the file aside to start a new baseline"
            )
        elif int(version) < SCHEMA_VERSION:
            with self._transaction():
                self._migrate_v1()
                self._migrate_v2()
                self._set_meta("schema_version", str(SCHEMA_VERSION))

    def _migrate_v2(self) -> None:
        """Schema 3 keeps who started a task and what it changes."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(tasks)")}
        for column in ("user_name", "change"):
            if column not in columns:
                self.db.execute(f"ALTER TABLE tasks ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")

    def _migrate_v1(self) -> None:
        """Schema 1 kept a histogram series as one JSON row; schema 2 as additive rows."""
        old = self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'durations'"
        ).fetchone()
        if old is None:
            return
        for series, buckets, total, count in self.db.execute(
            "SELECT series, buckets, sum, count FROM durations"
        ).fetchall():
            self.db.executemany(
                "INSERT INTO duration_buckets (series, bucket, count) VALUES (?, ?, ?)",
                [(series, i, n) for i, n in enumerate(json.loads(buckets)) if n],
            )
            self.db.execute(
                "INSERT INTO duration_totals (series, sum, count) VALUES (?, ?, ?)",
                (series, total, count),
            )
        self.db.execute("DROP TABLE durations")

    def _check_buckets(self, buckets: Sequence[float]) -> None:
        self._bucket_count = len(buckets) + 1
        wanted = json.dumps([float(b) for b in buckets])
        stored = self._meta("duration_buckets")
        if stored != wanted:
            with self._transaction():
                if stored is not None:
                    # Other buckets: old observations cannot be re-binned, start them again.
                    self.db.execute("DELETE FROM duration_buckets")
                    self.db.execute("DELETE FROM duration_totals")
                self._set_meta("duration_buckets", wanted)
        self.buckets_changed = stored is not None and stored != wanted

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- reading -------------------------------------------------------------------------

    def load_target(self, key: str) -> TaskListState:
        """A task list's state: read from the file once, then kept up to date by commits."""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self._read_target(key)
        return state

    def forget(self, key: str) -> None:
        """Drop a task list no longer polled from memory (its rows stay in the file)."""
        self._states.pop(key, None)

    def _read_target(self, key: str) -> TaskListState:
        try:
            row = self.db.execute(
                "SELECT baseline_at, watermark, last_success FROM targets WHERE key = ?", (key,)
            ).fetchone()
            tasks = {
                r[0]: TaskRow(
                    r[0], r[1], r[2], r[3], bool(r[4]), r[5], bool(r[6]), r[7], r[8], r[9]
                )
                for r in self.db.execute(
                    "SELECT id, name, status, created_at, created_known, updated_at, accounted,"
                    " missing, user_name, change FROM tasks WHERE target = ?",
                    (key,),
                )
            }
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
            raise _explain(self.path, exc) from None
        if row is None:
            return TaskListState(None, None, None, tasks, finished, failures)
        return TaskListState(row[0], row[1], row[2], tasks, finished, failures)

    def load_histograms(self) -> list[HistogramRow]:
        """Every stored duration series, with the current bucket layout."""
        try:
            buckets: dict[str, list[int]] = {}
            for series, bucket, count in self.db.execute(
                "SELECT series, bucket, count FROM duration_buckets"
            ):
                if 0 <= bucket < self._bucket_count:
                    buckets.setdefault(series, [0] * self._bucket_count)[bucket] = int(count)
            return [
                HistogramRow(
                    r[0], tuple(buckets.get(r[0], [0] * self._bucket_count)), r[1], int(r[2])
                )
                for r in self.db.execute("SELECT series, sum, count FROM duration_totals")
            ]
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    def pending_events(self) -> list[tuple[int, dict[str, object]]]:
        """Event log lines committed but not yet written out (a kill came in between)."""
        try:
            return [
                (int(seq), json.loads(payload))
                for seq, payload in self.db.execute("SELECT seq, payload FROM events ORDER BY seq")
            ]
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    def events_written(self, upto: int) -> None:
        """Forget the event lines up to `upto`: they are in the log now."""
        try:
            with self._transaction():
                self.db.execute("DELETE FROM events WHERE seq <= ?", (upto,))
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    # -- writing -------------------------------------------------------------------------

    def commit(self, c: PollCommit) -> Committed:
        """Write one poll's results atomically (all of it or none of it) and say what changed.

        A quiet poll of a task list that has its baseline changes nothing but its watermark:
        it is written with the next commit or within FLUSH_INTERVAL, whichever comes first.
        """
        self._check_file()
        old = self.load_target(c.target)
        now = time.monotonic()
        self._prune_before = max(self._prune_before, c.prune_before)
        finished: dict[tuple[str, str], int] = {}
        histograms: list[HistogramRow] = []
        try:
            if c.quiet and old.baseline_at is not None:
                self._pending[c.target] = (c.baseline_at, c.watermark, c.last_success)
                if now - self._flushed >= FLUSH_INTERVAL:
                    with self._transaction():
                        self._write_pending()
            else:
                self._pending.pop(c.target, None)
                with self._transaction():
                    finished, histograms = self._write(c)
                    self._write_pending()
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None
        tasks = dict(old.tasks)
        for row in c.upserts:
            tasks[row.id] = row
        for task_id in c.deletes:
            tasks.pop(task_id, None)
        for task_id in [i for i, t in tasks.items() if t.created_at < c.prune_before]:
            del tasks[task_id]
        state = replace(
            old,
            baseline_at=c.baseline_at,
            watermark=c.watermark,
            last_success=c.last_success,
            tasks=tasks,
            finished={**old.finished, **finished} if finished else old.finished,
            failures={**old.failures, **c.failures} if c.failures else old.failures,
        )
        self._states[c.target] = state
        return Committed(state, finished, histograms)

    def _write_pending(self) -> None:
        """Watermarks of quiet polls, and now and then the pruning of old tasks."""
        self.db.executemany(
            "INSERT INTO targets (key, baseline_at, watermark, last_success) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET watermark = excluded.watermark,"
            " last_success = excluded.last_success",
            [(key, *values) for key, values in self._pending.items()],
        )
        self._pending.clear()
        now = time.monotonic()
        self._flushed = now
        if self._prune_before and now - self._pruned >= PRUNE_INTERVAL:
            # Unfinished tasks go too: if one ever shows up again it is counted as new,
            # which is right, as it was never counted.
            self.db.execute("DELETE FROM tasks WHERE created_at < ?", (self._prune_before,))
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
                    c.target,
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
                (c.target, name, f.task_id, f.user_name, f.change, f.finished_at)
                for name, f in c.failures.items()
            ],
        )
        # The event log's lines go in with the poll that saw them and out after it.
        db.executemany(
            "INSERT INTO events (payload) VALUES (?)",
            [(json.dumps(e.fields, ensure_ascii=False),) for e in c.events],
        )
        db.executemany(
            "DELETE FROM tasks WHERE target = ? AND id = ?", [(c.target, i) for i in c.deletes]
        )
        # Counters and histograms are additive rows: the file does the sums, and says the
        # totals back, so there is one count of each thing.
        finished: dict[tuple[str, str], int] = {}
        for (name, status), n in c.finished.items():
            (total,) = db.execute(
                "INSERT INTO finished (target, name, status, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (target, name, status) DO UPDATE SET count = count + excluded.count"
                " RETURNING count",
                (c.target, name, status, n),
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
            buckets = [0] * self._bucket_count
            for bucket, count in db.execute(
                "SELECT bucket, count FROM duration_buckets WHERE series = ?", (series,)
            ):
                if 0 <= bucket < self._bucket_count:
                    buckets[bucket] = int(count)
            histograms.append(HistogramRow(series, tuple(buckets), total_sum, int(total_count)))
        db.execute(
            "INSERT INTO targets (key, baseline_at, watermark, last_success) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET watermark = excluded.watermark,"
            " last_success = excluded.last_success",
            (c.target, c.baseline_at, c.watermark, c.last_success),
        )
        return finished, histograms
