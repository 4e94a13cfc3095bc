"""The scheduling arithmetic, pure: where each task list's polls fall, and skipping ahead.

New task lists are spread evenly over one interval from when they arrive, so that a fleet
never polls in bursts; a poll that runs past its next slot skips the slots it missed instead
of queueing them, so a slow endpoint delays only its own task lists and never piles up.
"""

from __future__ import annotations

import math


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
