"""Polling: when each task list is read, and one poll walked through the layers once.

A poll reads (the dialect fetches and parses the task list), merges (the pure counting rule,
which also yields the task list's new gauges), commits (the state store writes it and says
which histogram totals moved) and publishes (one call into the snapshot store, which
re-renders what that touched). When polls fall is `exporter.polling.schedule`'s arithmetic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from exporter.aio import spawn
from exporter.cloud.client import ApiError, CloudClient
from exporter.config import Config
from exporter.core.counting import TaskListState, TaskSummary, merge, summary_of, window_start
from exporter.core.expectations import Sample
from exporter.core.histograms import HistogramRow
from exporter.core.quiet import QuietFacts, facts_of, quiet
from exporter.core.tasklists import TaskList
from exporter.core.tasks import ZERO_INITIALIZED_STATUSES, Task
from exporter.exposition.snapshot import SnapshotStore, TaskListSnapshot
from exporter.polling.dialects import TaskReader
from exporter.polling.history import Learning
from exporter.polling.schedule import Ticks, in_turns, next_due, on_tick, spread, tick_of
from exporter.polling.slots import PollSlots
from exporter.polling.state import StateError, StateStore
from exporter.telemetry.logs import EVENTS_LOGGER
from exporter.telemetry.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")
events_log = logging.getLogger(EVENTS_LOGGER)


class Poller:
    def __init__(
        self,
        config: Config,
        store: StateStore,
        client: CloudClient,
        snapshots: SnapshotStore,
        metrics: SelfMetrics,
    ) -> None:
        self.config = config
        self.task_lists: dict[str, TaskList] = {}
        self.store = store
        self.client = client
        self.reader = TaskReader(client)
        self.learning = Learning(config, store, self.reader, snapshots)
        self.snapshots = snapshots
        self.metrics = metrics
        # Per endpoint (host:port), half the slots, more while no other endpoint waits.
        self.slots = PollSlots(config.http.max_concurrency)
        self.started_monotonic = time.monotonic()
        self._last_activity: float | None = None  # monotonic: a poll or a source refresh
        self._sources_ready = True  # False from expect_sources() to sources_arrived()
        self._attempted: set[str] = set()
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._stop: asyncio.Event | None = None
        self._paused = False  # from pause() to resume(): a reload is swapping the settings
        self.commit_failure: str | None = None  # why the last commit failed, until one works
        self._facts: dict[str, QuietFacts] = {}  # per task list, for telling quiet polls
        self._ticks = Ticks()  # a new one for each run (its timers are on its loop)
        # `--once` (`defer_stored_state`): the stored state of a task list is only served
        # if its poll fails, so a start does not render every task list twice.
        self.defer_stored_state = False
        self._deferred: set[str] = set()  # joined, not polled yet
        self._unserved: set[str] = set()  # polled, nothing published for it yet

    # -- health inputs from the app -----------------------------------------------------

    def note_activity(self) -> None:
        """A source refresh finished: for health, the exporter is alive (as after a poll)."""
        self._last_activity = time.monotonic()

    def expect_sources(self) -> None:
        """Not ready until `sources_arrived()`: task lists are still being discovered."""
        self._sources_ready = False

    def sources_arrived(self) -> None:
        """The first refresh of every source is over (or given up on): readiness may follow."""
        self._sources_ready = True

    # -- start-up -----------------------------------------------------------------------

    def restore_histograms_and_events(self) -> None:
        """Load the stored histograms (each task list's state is loaded as it arrives), and
        write out the event lines a previous run committed but was killed before writing."""
        self.snapshots.update_histograms(self.store.load_histograms())
        self.write_events()

    def write_events(self) -> None:
        """The task event log: lines committed with their poll, written after it, then
        forgotten. A kill in between writes them again at the next start (same event IDs)."""
        pending = self.store.pending_events()
        for _, fields in pending:
            events_log.info("task event", extra={"fields": fields})
        if pending:
            self.store.events_written(pending[-1][0])

    def _serve_stored_state(self, task_list: TaskList, restore: bool = True) -> None:
        """Serve what the state file knows of a task list until its first poll finishes.

        Counters must not drop to zero at a restart; `up` stays absent until a poll says.
        """
        state = self.store.load_task_list(task_list.key)
        if restore:
            expected = self.learning.restore(task_list)
        else:
            expected = self.learning.book.expectations(task_list.key)
        if state.watermark is None:
            return
        self.snapshots.publish_task_list(
            TaskListSnapshot(
                task_list,
                last_success=state.last_success,
                summary=summary_of(task_list, state, time.time(), self.config),
                expected=expected,
            )
        )

    def _join_deferred(self, task_list: TaskList, state: TaskListState) -> None:
        """A deferred task list's first poll: what serving its stored state would have
        prepared (its stored runs, its summary for telling a quiet poll), nothing published.
        """
        key = task_list.key
        self._deferred.discard(key)
        self._unserved.add(key)
        self.learning.restore(task_list)
        if state.watermark is not None:
            summary_of(task_list, state, time.time(), self.config)

    def _serve_if_unserved(self, task_list: TaskList) -> None:
        """A failed or unstarted poll of a deferred task list: its stored state after all."""
        key = task_list.key
        if key in self._deferred:
            self._deferred.discard(key)
            self._serve_stored_state(task_list)
        elif key in self._unserved:
            self._unserved.discard(key)
            self._serve_stored_state(task_list, restore=False)

    def set_task_lists(self, task_lists: Sequence[TaskList]) -> None:
        """Make these the task lists to poll: start the new ones, stop the gone ones.

        New task lists (all of them at start, or those a discovery found) are spread evenly
        over one interval from now; a stopped task list's poll in flight is cancelled, which
        commits nothing, and its series disappear.
        """
        wanted = {t.key: t for t in task_lists}
        added = [t for k, t in wanted.items() if k not in self.task_lists]
        removed = [k for k in self.task_lists if k not in wanted]
        self.task_lists = wanted
        self.snapshots.set_task_lists(task_lists)
        for key in removed:
            self.store.forget(key)
            self._facts.pop(key, None)
            self.learning.forget(key)
            self._deferred.discard(key)
            self._unserved.discard(key)
        self.store.preload(t.key for t in added)
        if self.defer_stored_state:
            self._deferred.update(t.key for t in added)
        else:
            for task_list in added:
                self._serve_stored_state(task_list)
        self.learning.publish_restored()
        if added or removed:
            log.info(
                "task lists changed",
                extra={
                    "fields": {"added": len(added), "removed": len(removed), "total": len(wanted)}
                },
            )
        if self._stop is None or self._paused:
            return
        for key in removed:
            loop = self._loops.pop(key, None)
            if loop is not None:
                loop.cancel()
        self._start_loops(added)

    def _start_loops(self, task_lists: Sequence[TaskList]) -> None:
        assert self._stop is not None
        interval = self.config.poll_interval
        due = spread(time.monotonic(), interval, len(task_lists))
        for task_list, first in zip(task_lists, due, strict=True):
            self._loops[task_list.key] = spawn(
                self._loop(task_list.key, first, interval, self._stop), f"poll {task_list.key}"
            )

    # -- reload -------------------------------------------------------------------------

    async def pause(self) -> None:
        """Stop every poll loop, and wait until they are gone.

        A poll in flight is cancelled at the await it is in, which is always before its
        commit (the commit and the publish run without an await), so it commits nothing and
        the next poll reads the same window again: no task is lost or counted twice.
        """
        self._paused = True
        loops = list(self._loops.values())
        self._loops.clear()
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    def reconfigure(self, config: Config, client: CloudClient, snapshots: SnapshotStore) -> None:
        """New settings, cloud client and snapshot store, taken while paused."""
        assert self._paused
        self.config = config
        self.client = client
        self.reader = TaskReader(client)
        self.snapshots = snapshots
        self.slots = PollSlots(config.http.max_concurrency)
        self.learning.reconfigure(config, self.reader, snapshots)

    def resume(self) -> None:
        """Poll again, every task list spread over one interval from now (as at start)."""
        self._paused = False
        if self._stop is not None:
            self._start_loops(list(self.task_lists.values()))

    # -- one poll -----------------------------------------------------------------------

    async def poll(self, task_list: TaskList) -> bool:
        """Read, merge, commit, publish; True when the poll succeeded."""
        started = time.time()
        mono = time.monotonic()
        error: str | None = None
        try:
            state = self.store.load_task_list(task_list.key)
            if self._deferred and task_list.key in self._deferred:
                self._join_deferred(task_list, state)
            since = window_start(state, started, self.config)
            fetched = await self.reader.fetch_tasks(task_list, since)
            now = time.time()
            if self._commit_quiet(task_list, state, fetched.tasks, since, started, now, mono):
                return True
            merged = merge(
                task_list,
                state,
                fetched.tasks,
                since=since,
                now=now,
                poll_started=started,
                config=self.config,
            )
            committed = self._committed(lambda: self.store.commit(merged.commit, merged.state))
            if merged.commit.events:
                self.write_events()
            self._publish_up(
                task_list, merged.summary, merged.commit.samples, now, mono, committed.histograms
            )
            if log.isEnabledFor(logging.DEBUG):  # not even the fields, on the hot path
                log.debug(
                    "poll done",
                    extra={
                        "fields": {
                            "target": task_list.key,
                            "requests": fetched.pages,
                            "tasks": len(fetched.tasks),
                            "counted": merged.counted,
                            "baseline": state.baseline_at is None,
                        }
                    },
                )
            if merged.folding_started:  # said once per task list, not at every poll
                log.warning(
                    "too many distinct task names; counting the others as _other",
                    extra={
                        "fields": {
                            "target": task_list.key,
                            "limit": self.config.metrics.max_task_names_per_list,
                            "folded": len(merged.folded),
                        }
                    },
                )
            if merged.absurd_dates:
                self.metrics.tasks_date_ignored.labels(task_list.service, task_list.region).inc(
                    len(merged.absurd_dates)
                )
                log.warning(
                    "tasks with an absurd creation date; taken as unknown and counted",
                    extra={
                        "fields": {
                            "target": task_list.key,
                            "tasks": len(merged.absurd_dates),
                            "task_id": merged.absurd_dates[0],
                        }
                    },
                )
            for task_id in merged.forgotten:
                log.info(
                    "forgetting an unfinished task the cloud no longer lists",
                    extra={"fields": {"target": task_list.key, "task_id": task_id}},
                )
            return True
        except ApiError as exc:
            error = str(exc)
        except StateError as exc:
            error = f"state: {exc}"
        except Exception as exc:  # a bug must not stop the other task lists
            log.exception(
                "unexpected error while polling", extra={"fields": {"target": task_list.key}}
            )
            error = f"internal error: {type(exc).__name__}"
        finally:
            self._last_activity = time.monotonic()
            self._attempted.add(task_list.key)
        log.warning("poll failed", extra={"fields": {"target": task_list.key, "error": error}})
        self._serve_if_unserved(task_list)
        self.snapshots.update_task_list(
            task_list.key,
            polled=True,
            up=False,
            last_attempt=time.time(),
            poll_duration=time.monotonic() - mono,
            last_error=error,
        )
        return False

    def _commit_quiet(
        self,
        task_list: TaskList,
        state: TaskListState,
        tasks: list[Task],
        since: float,
        started: float,
        now: float,
        mono: float,
    ) -> bool:
        """A poll whose answer changes nothing (`exporter.core.quiet`), committed without a
        merge: the watermark (batched), the status lines and the expectations' aging. False:
        the poll is not quiet, merge it."""
        facts = self._facts.get(task_list.key)
        if facts is None or facts.tasks is not state.tasks:
            facts = self._facts[task_list.key] = facts_of(state.tasks)
        zero = ZERO_INITIALIZED_STATUSES[task_list.dialect]
        config = self.config
        if not quiet(state, facts, tasks, since=since, now=now, config=config, zero=zero):
            return False
        self._committed(
            lambda: self.store.commit_quiet(task_list.key, started, now, now - config.retention)
        )
        assert state.memo.summary is not None  # quiet() says so
        self._publish_up(task_list, state.memo.summary, (), now, mono)
        return True

    def _committed(self, commit: Callable[[], T]) -> T:
        """A commit to the state file, timed, its failure kept for health. A failure is its
        own signal (a full disk is not a cloud outage): nothing of the poll is kept, so the
        next poll that can write counts its tasks exactly once."""
        t0 = time.monotonic()
        try:
            done = commit()
        except StateError as exc:
            self.metrics.state_commit_failures.inc()
            self.commit_failure = str(exc)
            raise
        self.commit_failure = None
        self.metrics.state_commit_duration.observe(time.monotonic() - t0)
        return done

    def _publish_up(
        self,
        task_list: TaskList,
        summary: TaskSummary,
        samples: Sequence[Sample],
        now: float,
        mono: float,
        histograms: Iterable[HistogramRow] = (),
    ) -> None:
        """A successful poll's snapshot, and its expectations' aging."""
        self._unserved.discard(task_list.key)
        self.snapshots.publish_task_list(
            TaskListSnapshot(
                task_list,
                polled=True,
                up=True,
                last_success=now,
                last_attempt=now,
                poll_duration=time.monotonic() - mono,
                summary=summary,
                expected=self.learning.learned(task_list, samples, now),
            ),
            histograms,
        )
        self.learning.polled(task_list)

    async def _poll_limited(self, task_list: TaskList) -> bool:
        """A poll once it has its endpoint's slot and a global one; a poll that cannot even
        start within one interval (queued behind a hanging endpoint) is reported down, so
        its alert can fire, instead of having no `up` at all."""
        endpoint = self.client.parsed(task_list.base_url)[1]  # parsed once, not every poll
        slots = self.slots
        if not slots.try_acquire(endpoint):
            try:
                # On the reader's shared deadlines: at 10,000 task lists most polls of a
                # tick wait here, and a timer each was 3 % of a quiet poll.
                await self.reader.deadlines.within(
                    slots.acquire(endpoint), self.config.poll_interval
                )
            except asyncio.TimeoutError:
                self._not_started(task_list, endpoint)
                return False
        try:
            return await self.poll(task_list)
        finally:
            slots.release(endpoint)

    def _not_started(self, task_list: TaskList, endpoint: str) -> None:
        error = (
            f"the poll could not start within the poll interval: every slot for {endpoint} "
            "(or every http.max_concurrency slot) is taken by polls in flight"
        )
        log.warning("poll not started", extra={"fields": {"target": task_list.key, "error": error}})
        self._attempted.add(task_list.key)
        self._serve_if_unserved(task_list)
        self.snapshots.update_task_list(
            task_list.key, polled=True, up=False, last_attempt=time.time(), last_error=error
        )

    async def poll_all_once(self) -> bool:
        # All started at once, they take the slots in this order: every endpoint gets its
        # share from the first poll, and they all end together.
        endpoint = self.client.parsed
        lists = in_turns(self.task_lists.values(), lambda t: endpoint(t.base_url)[1])
        results = await asyncio.gather(*(self._poll_limited(t) for t in lists))
        self.learning.publish_restored()  # the fleet kinds of deferred task lists' runs
        await self.learning.wait()  # the history reads the first polls started
        return all(results)

    # -- scheduling ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every task list once per interval, spread evenly over the interval.

        A task list is polled by one loop of its own, so a slow poll can only delay its own
        next poll: missed slots are skipped, never queued.
        """
        self.started_monotonic = time.monotonic()
        self._stop = stop
        self._ticks = Ticks()
        self._start_loops(list(self.task_lists.values()))
        try:
            await stop.wait()
        finally:
            loops = list(self._loops.values())
            self._loops.clear()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.learning.stop()

    async def _loop(self, key: str, due: float, interval: float, stop: asyncio.Event) -> None:
        tick = tick_of(interval)
        while not stop.is_set():
            at = on_tick(due, tick)
            if at > time.monotonic():
                # With every loop due on that tick (one timer): at stop, `run` cancels them.
                await self._ticks.until(at)
                if stop.is_set():
                    return
            task_list = self.task_lists.get(key)
            if task_list is None:
                return
            await self._poll_limited(task_list)
            due, missed = next_due(due, time.monotonic(), interval)
            if missed:
                self.metrics.polls_skipped.inc(missed)
                log.warning(
                    "poll ran past its next slot; skipping ahead",
                    extra={"fields": {"target": key, "skipped": missed}},
                )

    # -- health -------------------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        """Alive when some poll finished within three intervals (or we just started), and
        the last commit to the state file worked."""
        if self.commit_failure is not None:
            return False, f"cannot write the state file: {self.commit_failure}"
        limit = 3 * self.config.poll_interval
        ref = max(self._last_activity or 0.0, self.started_monotonic)
        age = time.monotonic() - ref
        if age > limit:
            return False, f"no poll finished for {age:.0f}s (limit {limit:.0f}s)"
        return True, "ok"

    def ready(self) -> bool:
        """Ready once the sources were read and every task list has been polled once."""
        return self._sources_ready and set(self.task_lists) <= self._attempted
