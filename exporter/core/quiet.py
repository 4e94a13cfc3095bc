"""Whether a poll's answer changes nothing: the quiet poll, told without merging it.

Most polls of a task list read a window whose tasks are all known and unchanged (or none at
all). `merge` would find that out by building a commit, a new state and its summary; here the
same outcome is decided from the answer and facts kept per task dict (`QuietFacts`, computed
once per state change, not per poll), so a quiet poll does no per-task walk over the state.
`quiet` is exact by construction: it says True only where `merge` would return a quiet commit
(nothing but the watermark moved), a state with the same tasks, counters and failures, and
the summary its memo already holds; anything else takes `merge` (tests/core/test_quiet.py
checks the two agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config import Config
from exporter.core.counting import (
    FAILURE_STATUSES,
    PollCommit,
    TaskListState,
    TaskRow,
    _note_failure,
)
from exporter.core.tasks import Task, is_finished


@dataclass(frozen=True, slots=True)
class QuietFacts:
    """What a quiet poll needs to know of a task list's remembered tasks."""

    tasks: dict[str, TaskRow]  # the very dict these facts are of (states share it)
    oldest: float  # the earliest creation among them (inf: none)
    open: tuple[tuple[str, float], ...]  # (ID, creation) of the tasks not yet accounted


def facts_of(tasks: dict[str, TaskRow]) -> QuietFacts:
    return QuietFacts(
        tasks,
        min((t.created_at for t in tasks.values()), default=math.inf),
        tuple((t.id, t.created_at) for t in tasks.values() if not t.accounted),
    )


def quiet(
    state: TaskListState,
    facts: QuietFacts,
    fetched: Sequence[Task],
    *,
    since: float,
    now: float,
    config: Config,
    zero: Sequence[str],
) -> bool:
    """True when merging `fetched` into `state` would change nothing but the watermark."""
    if state.baseline_at is None or facts.tasks is not state.tasks:
        return False
    memo = state.memo
    window = now - config.lookback
    if memo.summary is None or memo.zero is not zero or not memo.since <= window <= memo.until:
        return False  # the gauges move with time: merge computes them again
    if facts.oldest < now - config.retention:
        return False  # a task leaves the state
    tasks = state.tasks
    for t in fetched:
        old = tasks.get(t.id)
        if old is None or old.missing:
            return False
        created = t.created_at if t.created_at is not None else old.created_at
        known = True if t.created_at is not None else old.created_known
        updated = t.updated_at if t.updated_at is not None else old.updated_at
        if (
            t.name != old.name
            or t.status != old.status
            or created != old.created_at
            or known != old.created_known
            or updated != old.updated_at
            or t.user_name != old.user_name
            or t.change != old.change
        ):
            return False
        if not old.accounted and is_finished(t.status):
            return False  # counted now
        if t.status in FAILURE_STATUSES and _newer_failure(state, old, now):
            return False
    if facts.open:
        ids = {t.id for t in fetched}
        for task_id, created in facts.open:
            if task_id not in ids and created >= since + 1:
                return False  # merge would count it missing
    return True


def _newer_failure(state: TaskListState, row: TaskRow, now: float) -> bool:
    """Whether `merge` would record this failed task as its name's last failure again."""
    scratch = PollCommit("", 0.0, 0.0, 0.0)
    _note_failure(state, scratch, row, now)
    return bool(scratch.failures)
