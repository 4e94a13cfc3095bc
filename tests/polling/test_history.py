"""The history read at first sight, in-process with a fake reader: once per task list, again
after a failure only once the retry delay passed, never for a task list gone or with
`history: 0s`; its runs teach the expectations (per task list and fleet), nothing else.

(tests/e2e/test_expectations.py reads real histories from the simulator over HTTP.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from exporter.cloud.client import ApiError
from exporter.config import Config, load_config_text
from exporter.core.tasklists import TaskList
from exporter.core.tasks import Task
from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore
from exporter.polling.dialects import FetchResult
from exporter.polling.history import Learning, successful_runs
from exporter.polling.state import StateStore
from tests.builders import task_list

pytestmark = pytest.mark.smoke


def _config(extra: str = "") -> Config:
    return load_config_text(
        "credentials: {access_key: AK, secret_key: SK}\n"
        + extra
        + "targets:\n  - {region: r1, project_id: p1, instances: [{service: dcs, id: i1}]}\n",
        env={},
    )


class _Reader:
    """Answers history reads from a script: an error, or tasks; records the windows asked."""

    def __init__(self, *answers: list[Task] | ApiError) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, float, bool]] = []

    async def fetch_tasks(
        self, target: TaskList, since: float, *, truncate: bool = False
    ) -> FetchResult:
        self.asked.append((target.key, since, truncate))
        await asyncio.sleep(0)
        answer = self.answers.pop(0)
        if isinstance(answer, ApiError):
            raise answer
        return FetchResult(tasks=answer, pages=1)


def _history(now: float) -> list[Task]:
    return [
        Task("a", "EXTEND", "SUCCESS", now - 86400 * 3, now - 86400 * 3 + 600, "", ""),
        Task("b", "EXTEND", "SUCCESS", now - 86400 * 2, now - 86400 * 2 + 900, "", ""),
        Task("c", "EXTEND", "FAILED", now - 86400, now - 86400 + 30, "", ""),
        Task("d", "EXTEND", "CANCELLED", now - 3600, now - 3000, "", ""),
        Task("e", "EXTEND", "SUCCESS", None, now - 60, "", ""),  # undated: not a run
        Task("f", "BindEip", "SUCCESS", now - 100, now - 90, "", ""),
    ]


def test_successful_runs_are_the_only_samples() -> None:
    now = time.time()
    assert [s.task_id for s in successful_runs(_history(now))] == ["a", "b", "f"]


def test_history_is_read_once_retried_after_a_failure_and_teaches_only_expectations(
    tmp_path: Path,
) -> None:
    config = _config()
    t = task_list("dcs", "i1", "redis-1")
    store = StateStore(tmp_path / "s.db", config.metrics.duration_buckets)
    snapshots = SnapshotStore(config.metrics.duration_buckets, False, TaskFamilies(60.0, False))
    snapshots.set_task_lists([t])
    now = time.time()
    reader = _Reader(ApiError("boom"), _history(now))

    async def run() -> Learning:
        learning = Learning(config, store, reader, snapshots)  # type: ignore[arg-type]
        assert learning.restore(t) == ()
        learning.polled(t)
        await learning.wait()
        learning.polled(t)  # failed just now: not again yet
        await learning.wait()
        assert len(reader.asked) == 1
        learning._retry = 0.0  # as if the retry delay had passed
        learning.polled(t)
        await learning.wait()
        learning.polled(t)  # read: never again
        await learning.wait()
        return learning

    try:
        learning = asyncio.run(run())
        assert len(reader.asked) == 2
        key, since, truncate = reader.asked[1]
        assert key == t.key
        assert truncate  # newest pages kept at max_pages
        assert since == pytest.approx(now - 30 * 86400, abs=5)
        expected = {e.name: e for e in snapshots.current.task_lists[0].expected}
        assert expected["EXTEND"].samples == 2
        assert expected["EXTEND"].p50 == pytest.approx(734.8, abs=0.1)  # geometric, 600..900
        assert snapshots.current.fleet_of("dcs", "BindEip") == expected["BindEip"]
        # Nothing of it was counted or kept as a task.
        state = store.load_task_list(t.key)
        assert state.tasks == {}
        assert state.finished == {}
        assert store.history_read(t.key)
        assert sorted(s.task_id for s in store.load_samples(t.key)) == ["a", "b", "f"]
        assert learning.book.expectations(t.key) == snapshots.current.task_lists[0].expected
    finally:
        store.close()


def test_no_history_read_when_off_or_for_a_task_list_gone(tmp_path: Path) -> None:
    t, gone = task_list("dcs", "i1"), task_list("kafka", "i2")
    store = StateStore(tmp_path / "s.db", (1.0,))
    snapshots = SnapshotStore((1.0,), False, TaskFamilies(60.0, False))
    snapshots.set_task_lists([t, gone])
    reader = _Reader(_history(time.time()))

    async def run() -> None:
        off = Learning(
            _config("metrics: {expected_durations: {history: 0s}}\n"),
            store,
            reader,  # type: ignore[arg-type]
            snapshots,
        )
        off.restore(t)
        off.polled(t)
        await off.wait()
        assert reader.asked == []
        on = Learning(_config(), store, reader, snapshots)  # type: ignore[arg-type]
        on.restore(gone)
        on.polled(gone)
        on.forget(gone.key)  # removed while its read waits: cancelled, nothing committed
        await on.wait()
        on.polled(gone)  # not polled any more: not read
        await on.wait()
        # A poll of it that was in flight when it went: its runs stay out of the fleet.
        assert on.learned(gone, successful_runs(_history(time.time())), time.time()) == ()

    try:
        asyncio.run(run())
        assert not store.history_read(gone.key)
        assert store.load_samples(gone.key) == []
        assert snapshots.current.fleet == ()
    finally:
        store.close()


def test_history_names_are_bounded_as_the_polls_are(tmp_path: Path) -> None:
    """A history of thousands of names teaches no more than `max_task_names_per_list` kinds:
    the names past the bound are learned as `_other`, as the polls count them."""
    config = _config("metrics: {max_task_names_per_list: 3}\n")
    t = task_list("dcs", "i1", "redis-1")
    store = StateStore(tmp_path / "s.db", config.metrics.duration_buckets)
    snapshots = SnapshotStore(config.metrics.duration_buckets, False, TaskFamilies(60.0, False))
    snapshots.set_task_lists([t])
    now = time.time()
    flood = [
        Task(f"t{i}", f"generated-{i:04}", "SUCCESS", now - 3600 + i, now - 3000 + i, "", "")
        for i in range(500)
    ]

    async def run() -> None:
        learning = Learning(config, store, _Reader(flood), snapshots)  # type: ignore[arg-type]
        learning.restore(t)
        learning.polled(t)
        await learning.wait()

    try:
        asyncio.run(run())
        names = {e.name for e in snapshots.current.task_lists[0].expected}
        assert names == {"generated-0000", "generated-0001", "generated-0002", "_other"}
        assert {e.name for _, e in snapshots.current.fleet} == names
    finally:
        store.close()
