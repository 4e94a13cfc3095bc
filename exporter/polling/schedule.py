"""The scheduling arithmetic, pure: where each task list's polls fall, and skipping ahead.

New task lists are spread evenly over one interval from when they arrive, so that a fleet
never polls in bursts; a poll that runs past its next slot skips the slots it missed instead
of queueing them, so a slow endpoint delays only its own task lists and never piles up.

Polls start on ticks: a poll due between two ticks waits for the next one (at most a
twentieth of the interval, and never more than a second), with every other poll due by then.
Each wake-up of an idle process costs more than the poll it serves (on the 2-CPU machine
0.67 ms of CPU for one TLS request woken alone, 0.17 ms each for 25 woken together:
benchmarks/bench_hotpath.py), and the answers of polls started together arrive together too.
The spread stays even at the tick's grain; the pacing per host (cloud/ratelimit.py) still
caps what a tick may send.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def spread(start: float, interval: float, count: int) -> list[float]:
    """The first due time of each of `count` new task lists: evenly over one interval."""
    n = max(1, count)
    return [start + interval * i / n for i in range(count)]


def next_due(due: float, now: float, interval: float) -> tuple[float, int]:
    """After the poll due at `due` ended at `now`: the next due time, and how many slots were
    missed (a poll that ran past its next slot skips ahead, never queues)."""
    due += interval
    if due > now:
        return due, 0
    missed = math.floor((now - due) / interval) + 1
    return due + missed * interval, missed


MAX_TICK = 1.0  # seconds
TICKS_PER_INTERVAL = 20


def tick_of(interval: float) -> float:
    """The grain polls start on, for task lists polled every `interval` seconds."""
    return min(MAX_TICK, interval / TICKS_PER_INTERVAL)


def on_tick(due: float, tick: float) -> float:
    """When a poll due at `due` starts: the first tick at or after it (ticks are the
    multiples of `tick` on the clock, so every task list's loop wakes at the same instants)."""
    if tick <= 0:
        return due
    return math.ceil(due / tick) * tick


def in_turns(items: Iterable[T], key: Callable[[T], str]) -> list[T]:
    """`items`, one of each `key` (endpoint) in turn, each key's in their order.

    For polls started all at once (`--once`): in the order given, the first endpoint's
    polls would borrow the slots the others have not asked for yet, each one a connection
    of its own to open, and leave the other endpoints the tail (at 1,000 task lists on two
    endpoints: 112 TLS handshakes instead of 64, and the last 150 ms at half the slots).
    """
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    turns = itertools.zip_longest(*groups.values())
    return [item for turn in turns for item in turn if item is not None]


class Ticks:
    """Sleeping until a tick, shared by every loop that wakes then: one timer per tick.

    At 10,000 task lists every 60 s, 167 loops wake on each tick; with a timer each, arming
    and firing them was 3 % of a quiet poll's CPU. Made for one event loop (a poller's run).
    """

    def __init__(self) -> None:
        self._waiting: dict[float, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def until(self, instant: float) -> None:
        """Return at `instant` (`time.monotonic()`, a tick as `on_tick` gives it)."""
        loop = self._loop
        if loop is None:  # asked once: on 3.11 each ask is a getpid() system call
            loop = self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        waiting = self._waiting.get(instant)
        if waiting is None:
            waiting = self._waiting[instant] = []
            loop.call_later(max(0.0, instant - time.monotonic()), self._wake, instant)
        waiting.append(waiter)
        await waiter  # cancelled (a stop): only this waiter is

    def _wake(self, instant: float) -> None:
        for waiter in self._waiting.pop(instant, ()):
            if not waiter.done():
                waiter.set_result(None)
