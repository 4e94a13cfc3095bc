"""Bounding task names per task list (`exporter.core.names`, through `counting.merge`)."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.config import Config
from exporter.core.counting import MergeResult, TaskListState, merge
from exporter.core.names import OTHER_NAME, fold_names
from exporter.core.tasks import Task
from tests.builders import task_list

NOW = 1_800_000_000.0


def config(limit: int) -> Config:
    return Config.model_validate(
        {
            "credentials": {"access_key": "AK", "secret_key": "SK"},
            "metrics": {"max_task_names_per_list": limit},
            "targets": [{"region": "r1", "project_id": "p1", "task_center": True}],
        }
    )


def empty() -> TaskListState:
    return TaskListState(None, None, None, {}, {})


def task(i: int, name: str, status: str = "SUCCESS") -> Task:
    return Task(f"t{i}", name, status, NOW - 100 + i * 0.001, NOW - 50)


def poll(state: TaskListState, tasks: list[Task], limit: int, at: float = NOW) -> MergeResult:
    return merge(
        task_list(), state, tasks, since=at - 3600, now=at, poll_started=at, config=config(limit)
    )


def test_few_names_pass_untouched() -> None:
    tasks = [task(i, f"n{i % 3}") for i in range(30)]
    out, folded = fold_names(tasks, (), 200)
    assert out is tasks
    assert folded == frozenset()


@pytest.mark.smoke
def test_names_past_the_limit_are_counted_as_other_and_totals_stay_exact() -> None:
    baseline = poll(empty(), [task(0, "first")], limit=5).state
    runaway = [task(i, f"name-{i:04}", "FAILED" if i % 2 else "SUCCESS") for i in range(1, 5001)]
    merged = poll(baseline, runaway, limit=5, at=NOW + 60)
    finished = Counter({(n, s): c for n, s, c in merged.summary.finished if c})
    assert sum(finished.values()) == 5000  # every task counted, once
    names = {n for n, _ in finished}
    assert len(names - {OTHER_NAME}) == 4  # "first" took one of the five places
    assert OTHER_NAME in names
    assert merged.summary.names_folded == 4996
    assert len(merged.folded) == 4996
    # The zero series follow the bounded names too: no runaway of zero-initialised series.
    assert len(merged.summary.names) <= 6


def test_a_known_name_keeps_its_series_and_a_folded_one_stays_folded() -> None:
    state = poll(empty(), [task(i, f"n{i}") for i in range(3)], limit=3).state
    # Full: a new name goes to _other, the known ones keep their own series.
    merged = poll(state, [task(10, "n1"), task(11, "new")], limit=3, at=NOW + 60)
    finished = {(n, s): c for n, s, c in merged.summary.finished if c}
    assert finished == {("n1", "SUCCESS"): 1, (OTHER_NAME, "SUCCESS"): 1}
    assert merged.folded == frozenset({"new"})
    again = poll(merged.state, [task(12, "new")], limit=3, at=NOW + 120)
    assert {(n, s): c for n, s, c in again.summary.finished if c}[(OTHER_NAME, "SUCCESS")] == 2


def test_no_fold_no_gauge() -> None:
    merged = poll(empty(), [task(i, f"n{i}") for i in range(10)], limit=200)
    assert merged.summary.names_folded == 0
    assert merged.folded == frozenset()
