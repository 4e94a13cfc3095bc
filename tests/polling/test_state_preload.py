"""Preloading many task lists at a start reads exactly what one query per task list reads:
their states, stored runs and history marks, for task lists with and without any."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from exporter.core.counting import Failure, PollCommit, TaskRow
from exporter.core.expectations import Sample
from exporter.polling.state import PRELOAD_AT_LEAST, StateStore

pytestmark = pytest.mark.smoke

BOUNDS = (1.0, 10.0, 60.0)


def _fill(path: Path, keys: list[str]) -> None:
    store = StateStore(path, BOUNDS)
    now = time.time()
    for n, key in enumerate(keys):
        if n % 3 == 2:
            continue  # never polled: no row anywhere
        rows = [
            TaskRow(
                f"{key}-t{i}",
                "EXTEND",
                "SUCCESS" if i else "EXECUTING",
                150.0 + i,
                True,
                None if not i else 160.0 + i,
                bool(i),
                0,
                "u",
                "c",
            )
            for i in range(n % 4)
        ]
        store.commit(
            PollCommit(
                key,
                baseline_at=100.0,
                watermark=200.0 + n,
                last_success=200.0 + n,
                upserts=rows,
                finished={("EXTEND", "SUCCESS"): n} if n % 2 else {},
                failures={"EXTEND": Failure(f"{key}-f", "u", "", 170.0)} if n % 5 == 0 else {},
                samples=[Sample(f"{key}-s", "EXTEND", now - 60, 5.0)] if n % 2 else [],
            )
        )
        if n % 4 == 1:
            store.commit_history(key, [], now, now - 86400)
    store.close()


def test_preloaded_states_runs_and_history_marks_are_those_read_one_by_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    keys = [f"dcs/r/p/i{n}" for n in range(PRELOAD_AT_LEAST + 10)]
    _fill(path, keys)
    one_by_one = StateStore(path, BOUNDS)
    expected = {
        k: (one_by_one.load_task_list(k), one_by_one.history_read(k), one_by_one.load_samples(k))
        for k in keys
    }
    one_by_one.close()

    store = StateStore(path, BOUNDS)
    store.preload(keys)
    queries = 0

    def count(_: str) -> None:
        nonlocal queries
        queries += 1

    store.db.set_trace_callback(count)
    for key in keys:
        state = store.load_task_list(key)
        want = expected[key][0]
        assert (state.baseline_at, state.watermark, state.last_success) == (
            want.baseline_at,
            want.watermark,
            want.last_success,
        )
        assert (state.tasks, state.finished, state.failures) == (
            want.tasks,
            want.finished,
            want.failures,
        )
        assert store.history_read(key) == expected[key][1]
        assert store.load_samples(key) == expected[key][2]
    assert queries == 0  # all of it from the preload
    assert any(expected[k][1] for k in keys)
    assert any(expected[k][2] for k in keys)
    assert any(expected[k][0].tasks for k in keys)
    # Given once: asked again later (a task list found again), the file is read.
    assert store.load_samples(keys[1]) == expected[keys[1]][2]
    assert queries == 1
    store.close()
