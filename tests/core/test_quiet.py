"""`quiet` against `merge`: a poll is told quiet exactly when merging it would change nothing
but the watermark (same tasks, counters, failures and summary), on chosen and random answers."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from exporter.config import Config, load_config_text
from exporter.core.counting import TaskListState, merge, window_start
from exporter.core.quiet import facts_of, quiet
from exporter.core.tasks import ZERO_INITIALIZED_STATUSES, Task
from tests.builders import task_list

pytestmark = pytest.mark.smoke

NOW = 1_800_000_000.0
CONFIG: Config = load_config_text(
    "lookback: 24h\noverlap: 1m\ncatchup_max: 2h\npoll_interval: 30s\n"
    "credentials: {access_key: AK, secret_key: SK}\n"
    "targets:\n  - {region: r1, project_id: p1, instances: [{service: dcs, id: i1}]}\n",
    env={},
)
TARGET = task_list("dcs", "i1", "redis-1", project_id="p1")
ZERO = ZERO_INITIALIZED_STATUSES[TARGET.dialect]

TASKS = [
    Task("t1", "EXTEND", "SUCCESS", NOW - 600, NOW - 500, "alice", "c1"),
    Task("t2", "RESTART", "FAILED", NOW - 400, NOW - 390, "bob", ""),
    Task("t3", "EXTEND", "EXECUTING", NOW - 30, None),
    Task("t4", "MODIFY", "SUCCESS", NOW - 20, NOW - 10),
]


def _settled(tasks: Sequence[Task]) -> TaskListState:
    """The state after a baseline and one poll that saw `tasks`, with its summary memo."""
    empty = TaskListState(None, None, None, {}, {})
    state = merge(
        TARGET, empty, [], since=NOW - 86400, now=NOW - 60, poll_started=NOW - 61, config=CONFIG
    ).state
    since = window_start(state, NOW, CONFIG)
    return merge(
        TARGET, state, tasks, since=since, now=NOW, poll_started=NOW - 1, config=CONFIG
    ).state


def _both(state: TaskListState, fetched: Sequence[Task], now: float) -> tuple[bool, bool]:
    """(quiet says so, merge changes nothing but the watermark)."""
    since = window_start(state, now, CONFIG)
    told = quiet(
        state, facts_of(state.tasks), fetched, since=since, now=now, config=CONFIG, zero=ZERO
    )
    merged = merge(TARGET, state, fetched, since=since, now=now, poll_started=now, config=CONFIG)
    after = merged.state
    unchanged = (
        merged.commit.quiet
        and after.baseline_at == state.baseline_at
        and after.tasks == state.tasks
        and after.finished == state.finished
        and after.failures == state.failures
        and merged.summary == state.memo.summary
        and not merged.folded
    )
    return told, unchanged


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([TASKS[2]], True),  # only the running task again
        (TASKS, True),  # every task again, unchanged
        (TASKS[:3], True),  # t4 not read again: it is finished, nothing waits for it
        ([TASKS[2], replace(TASKS[0], created_at=None)], True),  # a date lost: the known one
        ([replace(TASKS[2], status="SUCCESS", updated_at=NOW + 5)], False),  # finished: counted
        ([*TASKS, Task("t5", "EXTEND", "SUCCESS", NOW, NOW + 1)], False),  # a new task
        ([replace(TASKS[0], updated_at=NOW - 400)], False),
        ([replace(TASKS[1], user_name="carol")], False),
        ([replace(TASKS[0], name="OTHER")], False),
        ([TASKS[0], TASKS[1], TASKS[3]], False),  # the running t3 missing from its window
        ([], False),  # ... or an empty page
    ],
)
def test_quiet_exactly_when_merge_changes_nothing(answer: list[Task], expected: bool) -> None:
    state = _settled(TASKS)
    assert _both(state, answer, NOW + 30) == (expected, expected)


def test_not_quiet_before_the_baseline_or_once_the_summary_must_move() -> None:
    empty = TaskListState(None, None, None, {}, {})
    assert _both(empty, [], NOW) == (False, False)
    state = _settled([TASKS[0]])
    assert _both(state, [], NOW + 30) == (True, True)
    # A day later t1 leaves the lookback window: the gauges change, merge computes them.
    told, _ = _both(state, [], NOW + 86400 - 590)
    assert not told


def test_random_answers_agree_with_merge() -> None:
    rng = random.Random(18)
    statuses = ["SUCCESS", "FAILED", "EXECUTING", "CREATED", "UNKNOWN", "DELETED"]
    seen_quiet = seen_loud = 0
    for _ in range(400):
        pool = [
            Task(
                f"t{i}",
                rng.choice(["A", "B"]),
                rng.choice(statuses),
                NOW - rng.choice([5000, 600, 30, 10]),
                rng.choice([None, NOW - 5]),
                rng.choice(["", "u"]),
            )
            for i in range(rng.randint(0, 5))
        ]
        state = _settled(pool)
        answer = [t for t in pool if rng.random() < 0.8]
        if answer and rng.random() < 0.4:
            i = rng.randrange(len(answer))
            answer[i] = replace(answer[i], status=rng.choice(statuses))
        told, unchanged = _both(state, answer, NOW + rng.choice([1, 30, 300]))
        assert not told or unchanged, (pool, answer)
        seen_quiet += told
        seen_loud += not unchanged
    assert seen_quiet > 100
    assert seen_loud > 50
