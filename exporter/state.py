"""Restart-safe state in one SQLite file: seen tasks, counters, histograms, poll watermarks.

Each poll's results go in with one transaction, so a restart, even a `kill -9` in the middle
of a poll, finds the state of the last committed poll: nothing counted twice, nothing lost
(the next poll reads again from that poll's watermark). A lock on the database file itself
keeps a second exporter from sharing the state, which would otherwise split or double the
counts, and a file deleted or replaced under a running exporter fails its commits loudly.
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
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

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
    PRIMARY KEY (target, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);
CREATE TABLE IF NOT EXISTS finished (
    target TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (target, name, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS durations (
    series TEXT PRIMARY KEY,
    buckets TEXT NOT NULL,
    sum REAL NOT NULL,
    count INTEGER NOT NULL
);
"""


class StateError(Exception):
    """The state file cannot be used; the message says what to do."""


@dataclass(slots=True)
class TaskRow:
    id: str
    name: str
    status: str
    created_at: float
    created_known: bool
    updated_at: float | None
    accounted: bool
    missing: int = 0

    @property
    def duration(self) -> float | None:
        """`updated_at - created_at`, clamped at 0 (clocks disagree); None when unknown."""
        if not self.created_known or self.updated_at is None:
            return None
        return max(0.0, self.updated_at - self.created_at)


@dataclass
class TargetState:
    baseline_at: float | None
    watermark: float | None
    last_success: float | None
    tasks: dict[str, TaskRow]
    finished: dict[tuple[str, str], int]


@dataclass
class HistogramDelta:
    buckets: list[int]
    sum: float = 0.0
    count: int = 0


@dataclass
class PollCommit:
    target: str
    baseline_at: float
    watermark: float
    last_success: float
    upserts: list[TaskRow] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    finished: dict[tuple[str, str], int] = field(default_factory=dict)
    durations: dict[str, HistogramDelta] = field(default_factory=dict)
    prune_before: float = 0.0


@dataclass(frozen=True)
class HistogramRow:
    series: str
    buckets: tuple[int, ...]
    sum: float
    count: int


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
        self._acquire_lock()
        try:
            # The resolved path, so the journal files sit next to the real file however it
            # was named.
            self.db = sqlite3.connect(
                str(path.resolve()), isolation_level=None, check_same_thread=False
            )
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
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

    def _check_buckets(self, buckets: Sequence[float]) -> None:
        wanted = json.dumps([float(b) for b in buckets])
        stored = self._meta("duration_buckets")
        if stored != wanted:
            with self._transaction():
                if stored is not None:
                    # Other buckets: old observations cannot be re-binned, start them again.
                    self.db.execute("DELETE FROM durations")
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

    def load_target(self, key: str) -> TargetState:
        try:
            row = self.db.execute(
                "SELECT baseline_at, watermark, last_success FROM targets WHERE key = ?", (key,)
            ).fetchone()
            tasks = {
                r[0]: TaskRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5], bool(r[6]), r[7])
                for r in self.db.execute(
                    "SELECT id, name, status, created_at, created_known, updated_at, accounted,"
                    " missing FROM tasks WHERE target = ?",
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
            return TargetState(None, None, None, tasks, finished)
        return TargetState(row[0], row[1], row[2], tasks, finished)

    def load_histograms(self) -> list[HistogramRow]:
        try:
            return [
                HistogramRow(r[0], tuple(json.loads(r[1])), float(r[2]), int(r[3]))
                for r in self.db.execute("SELECT series, buckets, sum, count FROM durations")
            ]
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    # -- writing -------------------------------------------------------------------------

    def commit(self, c: PollCommit) -> None:
        """Write one poll's results atomically: all of it or none of it."""
        self._check_file()
        try:
            with self._transaction():
                self._write(c)
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    def _write(self, c: PollCommit) -> None:
        db = self.db
        db.executemany(
            "INSERT INTO tasks (target, id, name, status, created_at, created_known, updated_at,"
            " accounted, missing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (target, id) DO UPDATE SET name = excluded.name,"
            " status = excluded.status, created_at = excluded.created_at,"
            " created_known = excluded.created_known, updated_at = excluded.updated_at,"
            " accounted = excluded.accounted, missing = excluded.missing",
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
                )
                for t in c.upserts
            ],
        )
        db.executemany(
            "DELETE FROM tasks WHERE target = ? AND id = ?", [(c.target, i) for i in c.deletes]
        )
        db.executemany(
            "INSERT INTO finished (target, name, status, count) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (target, name, status) DO UPDATE SET count = count + excluded.count",
            [(c.target, name, status, n) for (name, status), n in c.finished.items()],
        )
        for series, delta in c.durations.items():
            row = db.execute(
                "SELECT buckets, sum, count FROM durations WHERE series = ?", (series,)
            ).fetchone()
            if row is None:
                buckets, total, count = delta.buckets, delta.sum, delta.count
            else:
                old = json.loads(row[0])
                buckets = [a + b for a, b in zip(old, delta.buckets, strict=True)]
                total, count = row[1] + delta.sum, row[2] + delta.count
            db.execute(
                "INSERT INTO durations (series, buckets, sum, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (series) DO UPDATE SET buckets = excluded.buckets,"
                " sum = excluded.sum, count = excluded.count",
                (series, json.dumps(buckets), total, count),
            )
        db.execute(
            "INSERT INTO targets (key, baseline_at, watermark, last_success) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET watermark = excluded.watermark,"
            " last_success = excluded.last_success",
            (c.target, c.baseline_at, c.watermark, c.last_success),
        )
        if c.prune_before:
            # Unfinished tasks go too: if one ever shows up again it is counted as new,
            # which is right, as it was never counted.
            db.execute("DELETE FROM tasks WHERE created_at < ?", (c.prune_before,))
