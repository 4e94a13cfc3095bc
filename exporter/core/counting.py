"""The counting rules, pure: which window a poll reads, how its tasks change a task list's
state, and the gauges that state shows.

Rules (the heart of the exporter):
- a task list's first successful poll is its baseline: tasks already finished are remembered
  as accounted for, not counted;
- after that, a task is counted the first time it is seen finished, once per task ID,
  whether or not it was ever seen unfinished;
- a poll's results (tasks, counts, histogram, watermark) are committed in one transaction,
  so a poll that fails or is killed half-way counts nothing, and the next one reads the same
  window again.

Windows: the first poll reads `lookback`; later ones read from the last successful poll's
start minus `overlap`, reaching back to the oldest task still unfinished, and after a
downtime to at most `catchup_max` ago.

Nothing here does I/O, so every rule is tested directly (tests/core/test_counting.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from exporter.config import Config
from exporter.core.expectations import Sample
from exporter.core.histograms import (
    HistogramDelta,
    bucket_index,
    histogram_series_key,
)
from exporter.core.names import OTHER_NAME, fold_names
from exporter.core.tasklists import TaskList
from exporter.core.tasks import ZERO_INITIALIZED_STATUSES, Task, is_finished, is_unfinished

# Statuses whose task is a task name's "last failure" (its context is exported as info).
FAILURE_STATUSES = frozenset({"FAILED"})

# An unfinished task that a complete read of its window no longer returns is forgotten after
# this many polls in a row (the cloud dropped it); until then it still counts as unfinished.
MISSING_POLLS_BEFORE_FORGET = 3


@dataclass(slots=True)
class TaskRow:
    """A task as the state remembers it."""

    id: str
    name: str
    status: str
    created_at: float
    created_known: bool
    updated_at: float | None
    accounted: bool
    missing: int = 0
    user_name: str = ""
    change: str = ""

    @property
    def duration(self) -> float | None:
        """`updated_at - created_at`, clamped at 0 (clocks disagree); None when unknown."""
        if not self.created_known or self.updated_at is None:
            return None
        return max(0.0, self.updated_at - self.created_at)


@dataclass(frozen=True, slots=True)
class Failure:
    """The most recent failed task of a name on a task list (its context, for the page,
    the alert and the `last_failure_info` series)."""

    task_id: str
    user_name: str
    change: str
    finished_at: float


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """A line of the task event log, recorded in the poll's own commit; `event_id` (task ID
    and transition) lets a log pipeline drop the repeat of a poll cut short by a kill."""

    event_id: str
    fields: dict[str, object]


class SummaryMemo:
    """The last summary of a set of tasks, counters and failures, and the window starts it
    holds for: from where it was computed up to the creation of the next task to leave the
    window. Shared by the states a quiet commit leads to (nothing in them changed)."""

    __slots__ = ("since", "summary", "until", "zero")

    def __init__(self) -> None:
        self.summary: TaskSummary | None = None
        self.since = 0.0
        self.until = 0.0
        self.zero: Sequence[str] = ()


@dataclass
class TaskListState:
    """What the state knows of one task list: its watermark, tasks, finished counters and
    the last failure of each task name."""

    baseline_at: float | None
    watermark: float | None
    last_success: float | None
    tasks: dict[str, TaskRow]
    finished: dict[tuple[str, str], int]
    failures: dict[str, Failure] = field(default_factory=dict)
    memo: SummaryMemo = field(default_factory=SummaryMemo, compare=False, repr=False)


@dataclass
class PollCommit:
    """Everything one poll changes, committed at once."""

    task_list_key: str
    baseline_at: float
    watermark: float
    last_success: float
    upserts: list[TaskRow] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # increments
    durations: dict[str, HistogramDelta] = field(default_factory=dict)  # increments
    failures: dict[str, Failure] = field(default_factory=dict)  # newer last failures
    events: list[TaskEvent] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)  # successful runs, for expectations
    prune_before: float = 0.0

    @property
    def quiet(self) -> bool:
        """Nothing but the watermark moved: no task, counter, histogram or failure changed."""
        return not (
            self.upserts
            or self.deletes
            or self.finished
            or self.durations
            or self.failures
            or self.events
            or self.samples
        )


@dataclass
class MergeResult:
    """A poll merged into its task list: what to commit, the state and gauges it leads to."""

    commit: PollCommit
    state: TaskListState
    summary: TaskSummary
    counted: int = 0
    forgotten: list[str] = field(default_factory=list)
    # Tasks first seen with an absurd creation date (taken as unknown), to be said once.
    absurd_dates: list[str] = field(default_factory=list)
    # Task names past metrics.max_task_names_per_list, counted as `_other` in this poll,
    # and whether this is the first poll that folds any (to be said once).
    folded: frozenset[str] = frozenset()
    folding_started: bool = False


def window_start(state: TaskListState, now: float, config: Config) -> float:
    """Where this poll's read of the task list starts (epoch seconds)."""
    if state.watermark is None:
        return now - config.lookback
    since = max(state.watermark - config.overlap, now - config.catchup_max)
    unfinished = [t.created_at for t in state.tasks.values() if is_unfinished(t.status)]
    if unfinished:
        since = min(since, min(unfinished) - config.overlap)
    return max(since, now - config.retention)


def _note_failure(state: TaskListState, commit: PollCommit, row: TaskRow, now: float) -> None:
    """Keep `row` as its name's last failure if it is newer than the one known."""
    at = row.updated_at if row.updated_at is not None else row.created_at
    failure = Failure(row.id, row.user_name, row.change, min(at, now))
    known = commit.failures.get(row.name) or state.failures.get(row.name)
    if known is None or (failure.finished_at, failure.task_id) > (known.finished_at, known.task_id):
        commit.failures[row.name] = failure
    elif known.task_id == failure.task_id and known != failure:
        commit.failures[row.name] = failure  # the same task, its context completed


def task_event(task_list: TaskList, row: TaskRow, transition: str) -> TaskEvent:
    """The event log line of a task's transition (`finished` or `seen_unfinished`).

    The event ID names the kind of list too: a DCS task shows in its instance's list and in
    the task center, and each list logs it once.
    """
    event_id = f"{task_list.kind}:{row.id}:{transition}"
    return TaskEvent(
        event_id,
        {
            "event_id": event_id,
            "task_id": row.id,
            "task_name": row.name,
            "status": row.status,
            "cloud_service": task_list.service,
            "region": task_list.region,
            "project_id": task_list.project_id,
            "instance_id": task_list.instance_id,
            "instance_name": task_list.instance_name,
            "user_name": row.user_name,
            "change": row.change,
            "created_at": _iso(row.created_at) if row.created_known else "",
            "updated_at": _iso(row.updated_at) if row.updated_at is not None else "",
            "duration_seconds": "" if row.duration is None else round(row.duration, 3),
        },
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def merge(
    task_list: TaskList,
    state: TaskListState,
    fetched: Sequence[Task],
    *,
    since: float,
    now: float,
    poll_started: float,
    config: Config,
) -> MergeResult:
    """Apply one poll's tasks to the task list's stored state."""
    had = known_names(state)
    fetched, folded = fold_names(fetched, had, config.metrics.max_task_names_per_list)
    baseline = state.baseline_at is None
    bounds = config.metrics.duration_buckets
    commit = PollCommit(
        task_list_key=task_list.key,
        baseline_at=state.baseline_at if state.baseline_at is not None else now,
        watermark=poll_started,
        last_success=now,
        prune_before=now - config.retention,
    )
    tasks = dict(state.tasks)
    counted = 0
    forgotten: list[str] = []
    absurd: list[str] = []
    fetched_ids = set()
    for t in fetched:
        fetched_ids.add(t.id)
        old = tasks.get(t.id)
        if old is None and t.date_absurd:
            absurd.append(t.id)
        if t.created_at is not None:
            created, known = t.created_at, True
        elif old is not None:
            created, known = old.created_at, old.created_known
        else:
            created, known = now, False  # first seen now: the best bound we have
        updated = t.updated_at if t.updated_at is not None else (old.updated_at if old else None)
        accounted = old.accounted if old is not None else False
        row = TaskRow(
            t.id, t.name, t.status, created, known, updated, accounted, 0, t.user_name, t.change
        )
        if t.status in FAILURE_STATUSES:
            _note_failure(state, commit, row, now)
        if old is None and is_unfinished(t.status) and config.log_task_events:
            commit.events.append(task_event(task_list, row, "seen_unfinished"))
        if not accounted and is_finished(t.status):
            row.accounted = True
            if t.status == "SUCCESS" and row.duration is not None and row.updated_at is not None:
                # The baseline's runs too: an expectation is not a count.
                commit.samples.append(Sample(t.id, t.name, row.updated_at, row.duration))
            if not baseline:
                key = (t.name, t.status)
                commit.finished[key] = commit.finished.get(key, 0) + 1
                counted += 1
                if config.log_task_events:
                    commit.events.append(task_event(task_list, row, "finished"))
                duration = row.duration
                if duration is not None:
                    series = histogram_series_key(
                        task_list, config.metrics.duration_by_instance, t.name, t.status
                    )
                    delta = commit.durations.get(series)
                    if delta is None:
                        delta = commit.durations[series] = HistogramDelta([0] * (len(bounds) + 1))
                    delta.buckets[bucket_index(bounds, duration)] += 1
                    delta.sum += duration
                    delta.count += 1
        if row != old:
            commit.upserts.append(row)
            tasks[t.id] = row
    for task_id, old in list(tasks.items()):
        if task_id in fetched_ids or old.accounted or old.created_at < since + 1:
            continue
        missing = old.missing + 1
        if missing >= MISSING_POLLS_BEFORE_FORGET:
            commit.deletes.append(task_id)
            forgotten.append(task_id)
            del tasks[task_id]
        else:
            row = replace(old, missing=missing)
            commit.upserts.append(row)
            tasks[task_id] = row
    after = apply_commit(state, commit)
    summary = summary_of(task_list, after, now, config)
    if folded:
        summary = replace(summary, names_folded=len(folded))
    started = bool(folded) and OTHER_NAME not in had  # the first poll that folds any
    return MergeResult(commit, after, summary, counted, forgotten, absurd, folded, started)


def known_names(state: TaskListState) -> set[str]:
    """The task names a task list has series of: its counters', remembered tasks' and last
    failures' (they keep their series whatever the bound on names)."""
    had = {name for name, _ in state.finished}
    had.update(t.name for t in state.tasks.values())
    had.update(state.failures)
    return had


def apply_commit(
    state: TaskListState,
    commit: PollCommit,
    finished: Mapping[tuple[str, str], int] | None = None,
) -> TaskListState:
    """The task list's state once `commit` is applied: its tasks updated, deleted and pruned,
    its counters moved (to `finished`, the totals the state file returned, when given), its
    last failures replaced by newer ones."""
    prune_before = commit.prune_before
    if (
        commit.quiet
        and not finished
        and all(t.created_at >= prune_before for t in state.tasks.values())
    ):
        # Only the watermark moved: the same tasks, counters and failures (and so summary).
        return replace(
            state,
            baseline_at=commit.baseline_at,
            watermark=commit.watermark,
            last_success=commit.last_success,
        )
    tasks = dict(state.tasks)
    for row in commit.upserts:
        tasks[row.id] = row
    for task_id in commit.deletes:
        tasks.pop(task_id, None)
    for task_id in [i for i, t in tasks.items() if t.created_at < commit.prune_before]:
        del tasks[task_id]
    if finished is None:
        finished = {k: state.finished.get(k, 0) + n for k, n in commit.finished.items()}
    return replace(
        state,
        baseline_at=commit.baseline_at,
        watermark=commit.watermark,
        last_success=commit.last_success,
        tasks=tasks,
        finished={**state.finished, **finished} if finished else state.finished,
        failures={**state.failures, **commit.failures} if commit.failures else state.failures,
        memo=SummaryMemo(),
    )


def summary_of(
    task_list: TaskList, state: TaskListState, now: float, config: Config
) -> TaskSummary:
    """A task list's gauges as of `now`: over the lookback window, its counters completed
    with zeros in the statuses its dialect starts at 0.

    Remembered with the state: a quiet poll, whose window start passed no task's creation,
    gets the same summary without computing it again."""
    since = now - config.lookback
    zero = ZERO_INITIALIZED_STATUSES[task_list.dialect]
    memo = state.memo
    if memo.summary is not None and memo.zero is zero and memo.since <= since <= memo.until:
        return memo.summary
    summary = summarize(state.tasks.values(), state.finished, since, zero, state.failures)
    memo.summary, memo.since, memo.zero = summary, since, zero
    memo.until = min(
        (t.created_at for t in state.tasks.values() if t.created_at >= since), default=math.inf
    )
    return summary


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """The task gauges of one task list, computed from its stored tasks."""

    recent: tuple[tuple[str, str, int], ...] = ()
    finished: tuple[tuple[str, str, int], ...] = ()
    last_status: tuple[tuple[str, str], ...] = ()
    last_finished: tuple[tuple[str, float | None, float], ...] = ()
    oldest_unfinished: tuple[tuple[str, float], ...] = ()
    # (name, task ID, user, change, finished at) of each name's last failure
    last_failure: tuple[tuple[str, str, str, str, float], ...] = ()
    # (name, task ID, user, change) of the task behind oldest_unfinished
    oldest_unfinished_info: tuple[tuple[str, str, str, str], ...] = ()
    names: tuple[str, ...] = ()  # task names seen within the window
    zero_statuses: tuple[str, ...] = ()  # statuses whose series start at 0 for those names
    names_folded: int = 0  # distinct names of the last poll counted as `_other`


def summarize(
    tasks: Iterable[TaskRow],
    finished: Mapping[tuple[str, str], int],
    since: float,
    zero_statuses: Sequence[str] = (),
    failures: Mapping[str, Failure] | None = None,
) -> TaskSummary:
    """Gauges over the tasks created at or after `since` (the lookback window).

    Counters are completed with zeros: every name seen in the window, in every status of
    `zero_statuses`, so that the first finish of its kind is an increase from 0.
    """
    recent: Counter[tuple[str, str]] = Counter()
    newest: dict[str, TaskRow] = {}
    last_done: dict[str, TaskRow] = {}
    oldest: dict[str, TaskRow] = {}
    for t in tasks:
        if t.created_at < since:
            continue
        recent[(t.name, t.status)] += 1
        cur = newest.get(t.name)
        if cur is None or (t.created_at, t.id) > (cur.created_at, cur.id):
            newest[t.name] = t
        if is_finished(t.status) and t.updated_at is not None:
            done = last_done.get(t.name)
            if done is None or (t.updated_at, t.id) > (done.updated_at or 0.0, done.id):
                last_done[t.name] = t
        if is_unfinished(t.status):
            first = oldest.get(t.name)
            if first is None or (t.created_at, t.id) < (first.created_at, first.id):
                oldest[t.name] = t
    counts = dict(finished)
    for name in newest:
        for status in zero_statuses:
            counts.setdefault((name, status), 0)
    return TaskSummary(
        recent=tuple(sorted((n, s, c) for (n, s), c in recent.items())),
        finished=tuple(sorted((n, s, c) for (n, s), c in counts.items())),
        last_status=tuple(sorted((n, t.status) for n, t in newest.items())),
        last_finished=tuple(
            sorted(
                (n, t.duration, t.updated_at)
                for n, t in last_done.items()
                if t.updated_at is not None
            )
        ),
        oldest_unfinished=tuple(sorted((n, t.created_at) for n, t in oldest.items())),
        last_failure=tuple(
            sorted(
                (n, f.task_id, f.user_name, f.change, f.finished_at)
                for n, f in (failures or {}).items()
            )
        ),
        oldest_unfinished_info=tuple(
            sorted((n, t.id, t.user_name, t.change) for n, t in oldest.items())
        ),
        names=tuple(sorted(newest)),
        zero_statuses=tuple(zero_statuses),
    )
