"""Expected durations at run time: learned from every poll, and from each task list's history
read once when it is first polled.

A task list seen for the first time (a fresh start, an instance found by discovery, a state
file from before schema 4) has its history read back `metrics.expected_durations.history`,
in the background, through the same `TaskReader` and `CloudClient` as every poll (so paced
by the same token buckets, and within `http.max_pages`: a longer history keeps its newest
pages). Those tasks only teach the expectation: nothing of them reaches the tasks, counters
or histograms of the state, so the baseline rule stands (tasks finished before a task
list's first poll are never counted). The runs and the fact that the history was read are
committed together; a kill before that reads it again at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from exporter.aio import spawn
from exporter.cloud.client import ApiError
from exporter.config import Config
from exporter.core.counting import known_names
from exporter.core.expectations import Expectation, ExpectationBook, FleetKey, Sample
from exporter.core.names import fold_names
from exporter.core.tasklists import TaskList
from exporter.core.tasks import Task
from exporter.exposition.snapshot import SnapshotStore
from exporter.polling.dialects import TaskReader
from exporter.polling.state import StateError, StateStore

log = logging.getLogger(__name__)

# A history read that failed is tried again with a later poll, at most this often.
HISTORY_RETRY = 900.0


def successful_runs(tasks: Iterable[Task]) -> list[Sample]:
    """The samples among read tasks: SUCCESS with both timestamps (failed, cancelled and
    undated runs say nothing about how long a healthy run takes)."""
    return [
        Sample(t.id, t.name, t.updated_at, max(0.0, t.updated_at - t.created_at))
        for t in tasks
        if t.status == "SUCCESS" and t.created_at is not None and t.updated_at is not None
    ]


class Learning:
    """The book of expectations of the task lists polled, fed by polls and history reads,
    published into the snapshot (per task list, and per service and task name)."""

    def __init__(
        self, config: Config, store: StateStore, reader: TaskReader, snapshots: SnapshotStore
    ) -> None:
        settings = config.metrics.expected_durations
        self.book = ExpectationBook(settings.window, settings.max_age)
        self.horizon = min(settings.history, settings.max_age)
        self.max_names = config.metrics.max_task_names_per_list
        self.store = store
        self.reader = reader
        self.snapshots = snapshots
        # History reads get slots of their own: a long one never holds a poll's slot.
        self._slots = asyncio.Semaphore(max(1, config.http.max_concurrency // 4))
        self._retry = max(HISTORY_RETRY, config.poll_interval)
        self._live: dict[str, TaskList] = {}
        self._done: set[str] = set()
        self._failed: dict[str, float] = {}  # monotonic time of the last failed read
        self._reads: dict[str, asyncio.Task[None]] = {}
        self._unpublished: set[FleetKey] = set()

    def reconfigure(self, config: Config, reader: TaskReader, snapshots: SnapshotStore) -> None:
        """A reload: the new client's reader and settings; every expectation published into
        `snapshots` (a rebuilt store starts without the fleet's). The window and age bounds
        of what is kept change at the next start."""
        settings = config.metrics.expected_durations
        self.horizon = min(settings.history, settings.max_age)
        self.max_names = config.metrics.max_task_names_per_list
        self.reader = reader
        self._retry = max(HISTORY_RETRY, config.poll_interval)
        if snapshots is not self.snapshots:
            self.snapshots = snapshots
            snapshots.publish_fleet(self.book.fleet())

    def restore(self, task_list: TaskList) -> tuple[Expectation, ...]:
        """A task list joins (at start, or found again): its stored runs into the book."""
        key = task_list.key
        self._live[key] = task_list
        if self.store.history_read(key):
            self._done.add(key)
        now = time.time()
        self._unpublished |= self.book.add(
            key, task_list.service, self.store.load_samples(key), now
        )
        return self.book.expectations(key)

    def publish_restored(self) -> None:
        """The fleet kinds the task lists restored since the last call changed (once for a
        whole start, not once per task list)."""
        self._publish_fleet(self._unpublished)
        self._unpublished = set()

    def forget(self, key: str) -> None:
        """A task list no longer polled: its runs leave the fleet, its history read stops."""
        self._live.pop(key, None)
        read = self._reads.pop(key, None)
        if read is not None:
            read.cancel()
        self._publish_fleet(self.book.drop(key))

    def learned(
        self, task_list: TaskList, samples: Iterable[Sample], now: float
    ) -> tuple[Expectation, ...]:
        """A poll's new successful runs (committed with it) and the passing of time, folded
        in; the task list's expectations as of now."""
        if task_list.key not in self._live:
            return ()  # removed while it was polled: its runs are in the file, not the fleet
        self._publish_fleet(self.book.add(task_list.key, task_list.service, samples, now))
        return self.book.expectations(task_list.key)

    def polled(self, task_list: TaskList) -> None:
        """After a successful poll: read the task list's history if it never was."""
        key = task_list.key
        if self.horizon <= 0 or key in self._done or key in self._reads or key not in self._live:
            return
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed < self._retry:
            return
        self._reads[key] = spawn(self._read(task_list), f"history {key}")

    async def wait(self) -> None:
        """Until every history read started so far has ended (`--once`)."""
        while self._reads:
            await asyncio.gather(*list(self._reads.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the history reads in flight (at shutdown: nothing of them is committed)."""
        reads = list(self._reads.values())
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)

    async def _read(self, task_list: TaskList) -> None:
        key = task_list.key
        try:
            async with self._slots:
                started = time.time()
                since = started - self.horizon
                fetched = await self.reader.fetch_tasks(task_list, since, truncate=True)
                # The history's names are bounded as the polls' are: past the bound, `_other`.
                had = known_names(self.store.load_task_list(key))
                tasks, _ = fold_names(fetched.tasks, had, self.max_names)
                samples = successful_runs(tasks)
                if key not in self._live:
                    return
                self.store.commit_history(key, samples, time.time(), since)
            self._done.add(key)
            self._failed.pop(key, None)
            self._publish_fleet(self.book.add(key, task_list.service, samples, time.time()))
            self.snapshots.publish_expected(key, self.book.expectations(key))
            log.info(
                "history read",
                extra={
                    "fields": {
                        "target": key,
                        "tasks": len(fetched.tasks),
                        "successful_runs": len(samples),
                        "pages": fetched.pages,
                        "truncated": fetched.truncated,
                    }
                },
            )
        except (ApiError, StateError) as exc:
            self._failed[key] = time.monotonic()
            log.warning(
                "history read failed; trying again later",
                extra={"fields": {"target": key, "error": str(exc)}},
            )
        except Exception as exc:  # a bug must not stop polling
            self._failed[key] = time.monotonic()
            log.exception(
                "unexpected error while reading history",
                extra={"fields": {"target": key, "error": type(exc).__name__}},
            )
        finally:
            with contextlib.suppress(KeyError):
                if self._reads.get(key) is asyncio.current_task():
                    del self._reads[key]

    def _publish_fleet(self, touched: set[FleetKey]) -> None:
        if touched:
            self.snapshots.publish_fleet(self.book.fleet(touched))
