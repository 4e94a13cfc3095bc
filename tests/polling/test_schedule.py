"""Scheduling: task lists spread over the interval, a slow poll skipping ahead, never queueing.

The arithmetic (`spread`, `next_due`) is checked on plain numbers, as a fake clock would see
it; one in-process run of the poller's loops shows that a slow task list delays only itself.
(tests/e2e/test_pacing.py shows the per-host request rate over real HTTP.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from exporter.cloud.client import CloudClient
from exporter.config import load_config_text
from exporter.core.tasklists import TaskList
from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore
from exporter.polling.dialects import FetchResult
from exporter.polling.poller import Poller
from exporter.polling.schedule import (
    MAX_TICK,
    Ticks,
    in_turns,
    next_due,
    on_tick,
    spread,
    tick_of,
)
from exporter.polling.state import StateStore
from exporter.telemetry.selfmetrics import SelfMetrics
from tests.builders import task_list

pytestmark = pytest.mark.smoke


def test_task_lists_are_spread_over_the_interval() -> None:
    firsts = spread(100.0, 2.0, 4)
    # Four task lists over 2s: one every 0.5s, not all at once.
    assert firsts == [100.0, 100.5, 101.0, 101.5]
    assert spread(100.0, 60.0, 1) == [100.0]
    assert spread(100.0, 60.0, 0) == []


def test_each_task_list_keeps_its_own_slot() -> None:
    # A poll that ends before its next slot: the next one is an interval after the last.
    due = 100.5
    times = [due]
    for _ in range(3):
        due, missed = next_due(due, due + 0.3, 2.0)
        assert missed == 0
        times.append(due)
    assert [b - a for a, b in itertools.pairwise(times)] == [2.0, 2.0, 2.0]


def test_a_slow_poll_skips_ahead_and_never_queues() -> None:
    # Interval 1s, each poll takes 2.5s: the slots it ran over are skipped, not queued.
    assert next_due(0.0, 2.5, 1.0) == (3.0, 2)
    assert next_due(0.0, 3.0, 1.0) == (4.0, 3)  # ending exactly on a slot skips it too
    now, due, polls, skipped = 0.0, 0.0, [], 0
    while due < 7.0:  # 7 seconds on a fake clock
        now = max(now, due)
        polls.append(now)
        now += 2.5
        due, missed = next_due(due, now, 1.0)
        skipped += missed
    assert 2 <= len(polls) <= 3, polls  # one at a time: at most 3 in 7s, no backlog
    assert skipped >= 2


def test_polls_start_on_ticks_a_twentieth_of_the_interval_at_most_a_second() -> None:
    assert tick_of(10.0) == 0.5
    assert tick_of(60.0) == MAX_TICK == 1.0
    assert tick_of(1.0) == 0.05
    # A thousand task lists every 10 s: 100 polls a second, started 50 at a time, twice a
    # second, each at the first tick at or after its own slot, never before it.
    due = spread(1000.0, 10.0, 1000)
    starts = [on_tick(d, tick_of(10.0)) for d in due]
    assert all(0 <= s - d < 0.5 for s, d in zip(starts, due, strict=True))
    per_tick = Counter(starts)
    assert sorted(per_tick) == [1000.0 + 0.5 * i for i in range(21)]
    assert max(per_tick.values()) == 50  # the first, due on a tick, starts alone at once
    assert sum(per_tick.values()) == 1000
    assert on_tick(1000.5, 0.5) == 1000.5  # on a tick: at once
    assert on_tick(7.25, 0.0) == 7.25


class _Reader:
    """Answers each poll after its task list's delay, with no task."""

    def __init__(self, delays: dict[str, float]) -> None:
        self.delays = delays
        self.polls: dict[str, int] = dict.fromkeys(delays, 0)

    async def fetch_tasks(self, tl: TaskList, since: float) -> FetchResult:
        self.polls[tl.key] += 1
        await asyncio.sleep(self.delays[tl.key])
        return FetchResult(tasks=[], pages=1)


def test_a_slow_task_list_delays_only_itself(tmp_path: Path) -> None:
    config = load_config_text(
        "credentials: {access_key: AK, secret_key: SK}\n"
        "targets:\n  - {region: r1, project_id: p1, instances: [{service: dcs, id: i1}]}\n",
        env={},
    ).model_copy(update={"poll_interval": 0.2})  # below the 1s a file may set
    slow, fast = task_list("kafka", "slow"), task_list("dcs", "fast")
    registry = CollectorRegistry(auto_describe=False)
    metrics = SelfMetrics(registry)
    store = StateStore(tmp_path / "s.db", config.metrics.duration_buckets)
    snapshots = SnapshotStore(config.metrics.duration_buckets, False, TaskFamilies(0.2, False))

    async def run() -> _Reader:
        client = CloudClient(httpx.AsyncClient(), config.http, metrics)
        poller = Poller(config, store, client, snapshots, metrics)
        reader = _Reader({slow.key: 0.5, fast.key: 0.0})
        poller.reader = reader  # type: ignore[assignment]
        poller.set_task_lists([slow, fast])
        stop = asyncio.Event()
        running = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(1.3)
        stop.set()
        await running
        return reader

    try:
        reader = asyncio.run(run())
    finally:
        store.close()
    # The slow one: one poll at a time, 0.5s each, so at most 3 in 1.3s.
    assert 2 <= reader.polls[slow.key] <= 3, reader.polls
    # The other is not held up: a poll every 0.2s.
    assert reader.polls[fast.key] >= 5, reader.polls
    assert (registry.get_sample_value("huaweicloud_task_polls_skipped_total") or 0) >= 2


def test_polls_started_at_once_take_turns_between_endpoints() -> None:
    items = ["a1", "a2", "a3", "a4", "b1", "b2", "c1"]
    assert in_turns(items, lambda s: s[0]) == ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]
    assert in_turns([], lambda s: s) == []
    assert in_turns(["x", "y"], lambda s: "one") == ["x", "y"]  # one endpoint: as given


def test_loops_due_on_one_tick_share_its_timer() -> None:
    """Every loop waiting for the same tick wakes at it, on one timer; a loop cancelled
    meanwhile (a stop) leaves the others waiting."""

    async def main() -> None:
        ticks = Ticks()
        loop = asyncio.get_running_loop()
        armed = 0
        call_later = loop.call_later

        def counting(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            nonlocal armed
            armed += 1
            return call_later(*args, **kwargs)

        loop.call_later = counting  # type: ignore[method-assign,assignment]
        at = time.monotonic() + 0.05
        woken: list[float] = []

        async def waiter() -> None:
            await ticks.until(at)
            woken.append(time.monotonic())

        tasks = [asyncio.ensure_future(waiter()) for _ in range(50)]
        await asyncio.sleep(0)
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        loop.call_later = call_later  # type: ignore[method-assign]
        assert len(woken) == 49
        assert min(woken) >= at - 0.002  # not before the tick (timers' millisecond grain)
        assert armed == 1
        await ticks.until(time.monotonic() - 1)  # a tick already past: at once

    asyncio.run(main())
