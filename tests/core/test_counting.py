"""The counting rules in-process: `window_start`, `merge` and `summarize` on plain values.

The end-to-end tests in tests/e2e/test_counting.py show the same rules through real polls; these
pin each rule down on its own, in milliseconds, on every supported Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from exporter.config import Config, load_config_text
from exporter.core.counting import (
    MISSING_POLLS_BEFORE_FORGET,
    Failure,
    MergeResult,
    TaskListState,
    TaskRow,
    apply_commit,
    merge,
    summarize,
    window_start,
)
from exporter.core.histograms import histogram_series_key
from exporter.core.tasklists import TaskList
from exporter.core.tasks import Task
from tests.builders import task_list

pytestmark = pytest.mark.smoke

NOW = 1_800_000_000.0
PROJECT = "p1"


def _config(extra: str = "") -> Config:
    return load_config_text(
        "lookback: 24h\noverlap: 1m\ncatchup_max: 2h\npoll_interval: 30s\n"
        "credentials: {access_key: AK, secret_key: SK}\n"
        + extra
        + "targets:\n  - {region: r1, project_id: p1, instances: [{service: dcs, id: i1}]}\n",
        env={},
    )


CONFIG = _config()
# 1s, 10s, 60s and +Inf buckets, and the event log on.
EVENTS = _config("log_task_events: true\nmetrics: {duration_buckets: [1, 10, 60]}\n")


def _target(service: str = "dcs", kind: str = "instance") -> TaskList:
    if kind == "task_center":
        return task_list(service, "", project_id=PROJECT)
    return task_list(service, "i1", "redis-1", project_id=PROJECT)


def _state(rows: Sequence[TaskRow] = (), *, baseline: bool = False) -> TaskListState:
    """A task list's state: before its first poll (`baseline`), or after one at NOW - 60."""
    if baseline:
        return TaskListState(None, None, None, {}, {})
    return TaskListState(NOW - 3600, NOW - 60, NOW - 60, {r.id: r for r in rows}, {})


def _apply(state: TaskListState, result: MergeResult) -> TaskListState:
    """The state after the commit (what the state store does with it)."""
    c = result.commit
    tasks = dict(state.tasks)
    for row in c.upserts:
        tasks[row.id] = row
    for task_id in c.deletes:
        tasks.pop(task_id, None)
    tasks = {i: t for i, t in tasks.items() if t.created_at >= c.prune_before}
    finished = dict(state.finished)
    for key, n in c.finished.items():
        finished[key] = finished.get(key, 0) + n
    return TaskListState(
        c.baseline_at,
        c.watermark,
        c.last_success,
        tasks,
        finished,
        {**state.failures, **c.failures},
    )


def _poll(
    state: TaskListState,
    tasks: Sequence[Task],
    config: Config = CONFIG,
    target: TaskList | None = None,
    now: float = NOW,
) -> MergeResult:
    since = window_start(state, now, config)
    return merge(
        target or _target(),
        state,
        tasks,
        since=since,
        now=now,
        poll_started=now - 1,
        config=config,
    )


def task(
    task_id: str,
    status: str,
    created: float | None = NOW - 100,
    updated: float | None = None,
    name: str = "EXTEND",
    user: str = "",
    change: str = "",
) -> Task:
    return Task(task_id, name, status, created, updated, user, change)


# -- window ----------------------------------------------------------------------------------


def test_first_window_is_the_lookback() -> None:
    assert window_start(_state(baseline=True), NOW, CONFIG) == NOW - 86400


def test_later_windows_start_at_the_watermark_minus_overlap() -> None:
    state = _state()
    assert window_start(state, NOW, CONFIG) == NOW - 60 - 60


def test_window_reaches_back_to_the_oldest_unfinished_task() -> None:
    rows = [
        TaskRow("a", "EXTEND", "EXECUTING", NOW - 5000, True, None, False),
        TaskRow("b", "EXTEND", "EXECUTING", NOW - 3000, True, None, False),
        # a finished task, however old, pulls nothing back
        TaskRow("c", "EXTEND", "SUCCESS", NOW - 9000, True, NOW - 8000, True),
    ]
    assert window_start(_state(rows), NOW, CONFIG) == NOW - 5000 - 60


def test_window_after_downtime_is_bounded_by_catchup_max_then_retention() -> None:
    state = TaskListState(NOW - 86400, NOW - 86400, NOW - 86400, {}, {})
    assert window_start(state, NOW, CONFIG) == NOW - 7200  # catchup_max
    old = TaskRow("a", "EXTEND", "EXECUTING", NOW - 30 * 86400, True, None, False)
    state.tasks["a"] = old
    assert window_start(state, NOW, CONFIG) == NOW - CONFIG.retention  # never before retention
    assert CONFIG.retention == 86400  # max(lookback, catchup_max)


# -- merge -----------------------------------------------------------------------------------


def test_baseline_remembers_finished_tasks_without_counting_them() -> None:
    result = _poll(
        _state(baseline=True),
        [task("1", "SUCCESS", NOW - 900, NOW - 880), task("2", "EXECUTING", NOW - 500)],
        EVENTS,
    )
    c = result.commit
    assert result.counted == 0
    assert c.finished == {}
    assert c.durations == {}
    assert c.baseline_at == NOW
    assert c.watermark == NOW - 1  # the poll's start
    assert c.last_success == NOW
    rows = {r.id: r for r in c.upserts}
    assert rows["1"].accounted is True
    assert rows["2"].accounted is False
    # Only the unfinished task is an event: the finished one was never counted.
    assert [e.event_id for e in c.events] == ["instance:2:seen_unfinished"]


def test_a_task_is_counted_once_when_first_seen_finished() -> None:
    state = _state()
    first = _poll(state, [task("1", "SUCCESS", NOW - 100, NOW - 95)], EVENTS)
    assert first.counted == 1
    assert first.commit.finished == {("EXTEND", "SUCCESS"): 1}
    assert [e.event_id for e in first.commit.events] == ["instance:1:finished"]
    fields = first.commit.events[0].fields
    assert fields["duration_seconds"] == 5.0
    assert fields["created_at"] == "2027-01-15T07:58:20.000Z"
    # Seen again, finished again: counted never more.
    again = _poll(_apply(state, first), [task("1", "SUCCESS", NOW - 100, NOW - 95)], EVENTS)
    assert again.counted == 0
    assert again.commit.finished == {}
    assert again.commit.events == []
    assert again.commit.quiet  # nothing but the watermark moved


def test_unfinished_then_finished_counts_at_the_finish() -> None:
    state = _state()
    seen = _poll(state, [task("1", "EXECUTING")], EVENTS)
    assert seen.counted == 0
    assert [e.event_id for e in seen.commit.events] == ["instance:1:seen_unfinished"]
    state = _apply(state, seen)
    done = _poll(state, [task("1", "FAILED", updated=NOW - 10)], EVENTS)
    assert done.counted == 1
    assert done.commit.finished == {("EXTEND", "FAILED"): 1}
    assert [e.event_id for e in done.commit.events] == ["instance:1:finished"]
    # Two finishes of the same name and status in one poll add up.
    two = _poll(state, [task("1", "FAILED"), task("2", "FAILED"), task("3", "SUCCESS")])
    assert two.commit.finished == {("EXTEND", "FAILED"): 2, ("EXTEND", "SUCCESS"): 1}
    assert two.counted == 3


def test_events_name_the_kind_of_list() -> None:
    center = _target(kind="task_center")
    result = _poll(_state(), [task("1", "SUCCESS")], EVENTS, target=center)
    assert [e.event_id for e in result.commit.events] == ["task_center:1:finished"]
    assert _poll(_state(), [task("1", "SUCCESS")]).commit.events == []  # log off: none


def test_missing_status_is_neither_counted_nor_unfinished() -> None:
    result = _poll(_state(), [task("1", "UNKNOWN"), task("2", "ODD_NEW_STATUS")])
    # An unknown status that is not unfinished is final; a missing one (UNKNOWN) is neither.
    assert result.commit.finished == {("EXTEND", "ODD_NEW_STATUS"): 1}
    rows = {r.id: r for r in result.commit.upserts}
    assert rows["1"].accounted is False


def test_histogram_delta_per_series_and_bucket() -> None:
    target = _target()
    result = _poll(
        _state(),
        [
            task("1", "SUCCESS", NOW - 100, NOW - 99.5),  # 0.5s: first bucket
            task("2", "SUCCESS", NOW - 100, NOW - 90),  # 10s: `le` is inclusive
            task("3", "SUCCESS", NOW - 100, NOW + 0 - 0),  # 100s: +Inf
            task("4", "SUCCESS", None, NOW - 1),  # created unknown: counted, not observed
            task("5", "SUCCESS", NOW - 100, NOW - 200),  # clocks disagree: clamped to 0
        ],
        EVENTS,
        target,
    )
    assert result.counted == 5
    key = histogram_series_key(target, False, "EXTEND", "SUCCESS")
    delta = result.commit.durations[key]
    assert delta.buckets == [2, 1, 0, 1]
    assert delta.count == 4
    assert delta.sum == pytest.approx(0.5 + 10 + 100 + 0)
    assert list(result.commit.durations) == [key]
    # By instance, the series key carries the instance; the task center keeps its own.
    assert histogram_series_key(target, True, "EXTEND", "SUCCESS") != key
    center = _target(kind="task_center")
    assert histogram_series_key(center, False, "EXTEND", "SUCCESS") != key


def test_task_without_created_keeps_the_known_one_or_takes_now() -> None:
    state = _state([TaskRow("1", "EXTEND", "EXECUTING", NOW - 300, True, None, False)])
    result = _poll(state, [task("1", "EXECUTING", None), task("2", "EXECUTING", None)])
    rows = {r.id: r for r in result.commit.upserts}
    assert "1" not in rows  # unchanged: not rewritten
    assert (rows["2"].created_at, rows["2"].created_known) == (NOW, False)
    assert rows["2"].duration is None


def test_last_failure_is_the_newest_and_completed_in_place() -> None:
    state = _state()
    result = _poll(
        state,
        [
            task("1", "FAILED", updated=NOW - 50, user="alice"),
            task("2", "FAILED", updated=NOW - 40, user="bob", change="a -> b"),
            task("3", "SUCCESS", updated=NOW - 30),
        ],
    )
    assert result.commit.failures == {"EXTEND": Failure("2", "bob", "a -> b", NOW - 40)}
    state = _apply(state, result)
    # An older failure seen later does not replace it; the same task with more context does.
    older = _poll(state, [task("0", "FAILED", updated=NOW - 70)])
    assert older.commit.failures == {}
    completed = _poll(state, [task("2", "FAILED", updated=NOW - 40, user="bob", change="a -> c")])
    assert completed.commit.failures == {"EXTEND": Failure("2", "bob", "a -> c", NOW - 40)}
    # A failure dated ahead of the clock is kept at now.
    ahead = _poll(state, [task("9", "FAILED", updated=NOW + 600)])
    assert ahead.commit.failures["EXTEND"].finished_at == NOW


def test_vanished_unfinished_task_is_forgotten_after_three_polls() -> None:
    state = _state([TaskRow("1", "EXTEND", "EXECUTING", NOW - 100, True, None, False)])
    for poll in range(1, MISSING_POLLS_BEFORE_FORGET):
        result = _poll(state, [])
        assert result.forgotten == []
        assert [r.missing for r in result.commit.upserts] == [poll]
        state = _apply(state, result)
    assert MISSING_POLLS_BEFORE_FORGET == 3
    result = _poll(state, [])
    assert result.forgotten == ["1"]
    assert result.commit.deletes == ["1"]
    # Seen again before the third miss resets the count.
    state = _state([TaskRow("1", "EXTEND", "EXECUTING", NOW - 100, True, None, False, 2)])
    assert [r.missing for r in _poll(state, [task("1", "EXECUTING")]).commit.upserts] == [0]


def test_only_unfinished_tasks_inside_the_window_go_missing() -> None:
    rows = [
        TaskRow("done", "EXTEND", "SUCCESS", NOW - 100, True, NOW - 90, True),
        # created before the window start (+1s of slack): the read did not cover it
        TaskRow("early", "EXTEND", "EXECUTING", NOW - 121, True, None, False),
    ]
    state = TaskListState(NOW - 3600, NOW - 60, NOW - 60, {r.id: r for r in rows}, {})
    result = merge(
        _target(), state, [], since=NOW - 120, now=NOW, poll_started=NOW - 1, config=CONFIG
    )
    assert result.commit.upserts == []
    assert result.commit.deletes == []


def test_prune_before_is_the_retention() -> None:
    result = _poll(_state(), [task("old", "EXECUTING", NOW - 2 * 86400)])
    assert result.commit.prune_before == NOW - CONFIG.retention


# -- summary ---------------------------------------------------------------------------------


def test_summary_gauges_over_the_window_with_zero_completed_counters() -> None:
    rows = [
        TaskRow("1", "EXTEND", "SUCCESS", NOW - 600, True, NOW - 500, True),
        TaskRow("2", "EXTEND", "FAILED", NOW - 300, True, NOW - 250, True, 0, "alice", "x"),
        TaskRow("3", "RESTART", "EXECUTING", NOW - 100, True, None, False, 0, "bob", "y"),
        TaskRow("4", "RESTART", "EXECUTING", NOW - 200, True, None, False, 0, "carol", "z"),
        TaskRow("5", "OLD", "SUCCESS", NOW - 90000, True, NOW - 89000, True),  # before since
    ]
    failures = {"EXTEND": Failure("2", "alice", "x", NOW - 250)}
    s = summarize(rows, {("EXTEND", "SUCCESS"): 7}, NOW - 86400, ("SUCCESS", "FAILED"), failures)
    assert s.recent == (
        ("EXTEND", "FAILED", 1),
        ("EXTEND", "SUCCESS", 1),
        ("RESTART", "EXECUTING", 2),
    )
    assert s.finished == (
        ("EXTEND", "FAILED", 0),
        ("EXTEND", "SUCCESS", 7),
        ("RESTART", "FAILED", 0),
        ("RESTART", "SUCCESS", 0),
    )
    assert s.last_status == (("EXTEND", "FAILED"), ("RESTART", "EXECUTING"))
    assert s.last_finished == (("EXTEND", 50.0, NOW - 250),)
    assert s.oldest_unfinished == (("RESTART", NOW - 200),)
    assert s.oldest_unfinished_info == (("RESTART", "4", "carol", "z"),)
    assert s.last_failure == (("EXTEND", "2", "alice", "x", NOW - 250),)
    assert s.names == ("EXTEND", "RESTART")
    assert s.zero_statuses == ("SUCCESS", "FAILED")


def test_summary_of_nothing_is_empty_but_keeps_counters() -> None:
    s = summarize([], {("GONE", "SUCCESS"): 2}, NOW, ("SUCCESS",))
    assert s.finished == (("GONE", "SUCCESS", 2),)
    assert (s.recent, s.last_status, s.names) == ((), (), ())


def test_a_quiet_poll_reuses_the_summary_until_a_task_leaves_the_window() -> None:
    """No summary work when nothing changed; the window start passing a task changes it."""
    day = CONFIG.lookback
    rows = [
        TaskRow("old", "EXTEND", "SUCCESS", NOW - day + 30, True, NOW - day + 40, True),
        TaskRow("new", "EXTEND", "SUCCESS", NOW - 100, True, NOW - 90, True),
    ]
    stored = _state(rows)
    first = _poll(stored, [])
    assert first.commit.quiet
    assert first.summary.recent == (("EXTEND", "SUCCESS", 2),)
    # The state store's state after the commit (the same rule the store applies).
    state = apply_commit(stored, first.commit)
    again = _poll(state, [], now=NOW + 20)
    assert again.summary is first.summary  # reused, not recomputed
    # 40 s later the old task was created before the lookback window: it drops out.
    later = _poll(apply_commit(state, again.commit), [], now=NOW + 40)
    assert later.summary.recent == (("EXTEND", "SUCCESS", 1),)
    # A poll that changes something computes it again.
    changed = _poll(state, [task("t3", "EXECUTING", created=NOW + 10)], now=NOW + 20)
    assert ("EXTEND", "EXECUTING", 1) in changed.summary.recent
