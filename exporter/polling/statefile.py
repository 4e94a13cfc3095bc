"""The state file itself: one SQLite database, locked, migrated, and watched.

A lock on the database file itself keeps a second exporter from sharing the state, which
would otherwise split or double the counts; a file deleted or replaced under a running
exporter fails every later commit loudly; older schemas are migrated in place, and a change
of histogram buckets restarts the histograms (old observations cannot be re-binned).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4

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
-- By task list first: a poll's rows sit together in the index, so a commit writes a few
-- pages, not one per task (an index on created_at alone took most of a first poll's time).
-- The prune reads it task list by task list. An older exporter's index goes.
DROP INDEX IF EXISTS tasks_created;
CREATE INDEX IF NOT EXISTS tasks_target_created ON tasks (target, created_at);
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
CREATE TABLE IF NOT EXISTS expected_samples (
    target TEXT NOT NULL,
    task_id TEXT NOT NULL,
    name TEXT NOT NULL,
    finished_at REAL NOT NULL,
    duration REAL NOT NULL,
    PRIMARY KEY (target, task_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expected_samples_recent
    ON expected_samples (target, name, finished_at);
CREATE TABLE IF NOT EXISTS history_read (
    target TEXT PRIMARY KEY,
    read_at REAL NOT NULL,
    since REAL NOT NULL,
    tasks INTEGER NOT NULL
);
"""

# The most recent runs of a task list's task name, the same cut as in memory
# (`exporter.core.expectations.bound_window`: by finish time, then task ID).
TRIM_SAMPLES = (
    "DELETE FROM expected_samples WHERE target = ? AND name = ? AND task_id NOT IN"
    " (SELECT task_id FROM expected_samples WHERE target = ? AND name = ?"
    " ORDER BY finished_at DESC, task_id DESC LIMIT ?)"
)
TRIM_ALL_SAMPLES = (
    "DELETE FROM expected_samples WHERE finished_at < ? OR (target, task_id) IN"
    " (SELECT target, task_id FROM (SELECT target, task_id, ROW_NUMBER() OVER"
    " (PARTITION BY target, name ORDER BY finished_at DESC, task_id DESC) AS n"
    " FROM expected_samples) WHERE n > ?)"
)


class StateError(Exception):
    """The state file cannot be used; the message says what to do."""


class StateInUse(StateError):
    """Another exporter process holds the state file."""


def _identity(path: Path) -> tuple[int, int] | None:
    """The (st_dev, st_ino) the path names now, None when it names nothing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def explain(path: Path, exc: Exception) -> StateError:
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
    if "disk is full" in text or "disk I/O" in text:
        return StateError(
            f"cannot write the state file {path} ({text}): free space on its disk (or raise "
            "the volume's size); nothing of the failed polls is lost, they are read again"
        )
    return StateError(f"state file {path}: {text}")


class StateFile:
    """The open, locked database: its connection, its transactions, its health."""

    def __init__(self, path: Path, buckets: Sequence[float], in_memory: bool = False) -> None:
        self.path = path
        self._db_file: int | None = None  # our own descriptor of the database, flock()ed
        self._identity: tuple[int, int] | None = None  # its (st_dev, st_ino)
        self._wal_identity: tuple[int, int] | None = None
        self.broken: str | None = None  # why the file can no longer be used, once it cannot
        self.in_memory = in_memory
        if in_memory:
            self.db = self._copy_in_memory()
            try:
                self.db.executescript(_SCHEMA)
                self._check_version()
                self._check_buckets(buckets)
            except sqlite3.Error as exc:
                self.db.close()
                raise explain(path, exc) from None
            return
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
                self.check()  # SQLite opened the file we locked, not a newer one
            except BaseException:
                self.db.close()
                raise
            self._wal_path = Path(str(path.resolve()) + "-wal")
            self._wal_identity = _identity(self._wal_path)
        except sqlite3.Error as exc:
            self._release_lock()
            raise explain(path, exc) from None
        except BaseException:
            self._release_lock()
            raise

    def _copy_in_memory(self) -> sqlite3.Connection:
        """A private copy of the state in memory, read from the file without writing to it
        and without its lock (another exporter may be running on it: `--once` beside it).

        SQLite's backup reads one consistent snapshot, the WAL's committed pages included.
        """
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if not self.path.exists():
            return memory
        try:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            source = sqlite3.connect(uri, uri=True, check_same_thread=False)
            try:
                source.execute("PRAGMA busy_timeout=5000")
                source.backup(memory)
            finally:
                source.close()
        except sqlite3.Error as exc:
            memory.close()
            raise explain(self.path, exc) from None
        return memory

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
            raise StateInUse(
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

    def check(self) -> None:
        """Fail if the database or its WAL was deleted or replaced under the running exporter.

        Commits would go on into a file no one will open again, and be lost at the next
        start; so from then on every commit fails, loudly, until the exporter is restarted.
        """
        if self.in_memory:
            return
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
        elif int(version) < SCHEMA_VERSION:
            with self.transaction():
                self._migrate_v1()
                self._migrate_v2()
                self._migrate_v3()
                self._set_meta("schema_version", str(SCHEMA_VERSION))

    def _migrate_v3(self) -> None:
        """Schema 4 learns expected durations (`expected_samples`, `history_read`, created
        by the schema): the successful runs the file already knows are its first samples."""
        self.db.execute(
            "INSERT OR IGNORE INTO expected_samples (target, task_id, name, finished_at, duration)"
            " SELECT target, id, name, updated_at, max(0.0, updated_at - created_at) FROM tasks"
            " WHERE status = 'SUCCESS' AND accounted AND created_known AND updated_at IS NOT NULL"
        )

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

    def use_buckets(self, buckets: Sequence[float]) -> bool:
        """Take another histogram layout in a running process (a reload); True if it differs
        from the stored one, whose observations are then dropped."""
        self._check_buckets(buckets)
        return self.buckets_changed

    def _check_buckets(self, buckets: Sequence[float]) -> None:
        self.bucket_count = len(buckets) + 1
        wanted = json.dumps([float(b) for b in buckets])
        stored = self._meta("duration_buckets")
        if stored != wanted:
            with self.transaction():
                if stored is not None:
                    # Other buckets: old observations cannot be re-binned, start them again.
                    self.db.execute("DELETE FROM duration_buckets")
                    self.db.execute("DELETE FROM duration_totals")
                self._set_meta("duration_buckets", wanted)
        self.buckets_changed = stored is not None and stored != wanted

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            # SQLite ends the transaction itself on some errors (SQLITE_FULL: a full disk);
            # a ROLLBACK then would fail and hide the error that says what happened.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def explain(self, exc: Exception) -> StateError:
        """An SQLite error as a StateError that says what to do."""
        return explain(self.path, exc)

    def upsert_watermarks(self, rows: Sequence[tuple[str, float, float, float]]) -> None:
        """(key, baseline_at, watermark, last_success) of task lists: the baseline is set once,
        the rest moves with every poll."""
        self.db.executemany(
            "INSERT INTO targets (key, baseline_at, watermark, last_success) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET watermark = excluded.watermark,"
            " last_success = excluded.last_success",
            rows,
        )

    def buckets_of(self, rows: Iterable[tuple[int, int]]) -> tuple[int, ...]:
        """Per-bucket counts from stored (bucket, count) rows, in this bucket layout."""
        buckets = [0] * self.bucket_count
        for bucket, count in rows:
            if 0 <= bucket < self.bucket_count:
                buckets[bucket] = int(count)
        return tuple(buckets)
