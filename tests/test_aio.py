"""The serving loops keep going, interval after interval, on every supported Python.

On 3.10 `asyncio.wait_for` raises `asyncio.TimeoutError`, not yet the builtin `TimeoutError`:
a loop that waited for the stop event that way died on its first wait, after one poll.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.aio import SharedDeadlines, spawn, wait_stopped
from tests.conftest import (
    PROJECT,
    REGION,
    ExporterProcess,
    Metrics,
    Sim,
    config_doc,
    instance_entry,
    write_config,
)

Start = Callable[..., ExporterProcess]
LAST_SUCCESS = "huaweicloud_task_last_poll_success_timestamp_seconds"


@pytest.mark.smoke
def test_polls_and_discovery_repeat_every_interval(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    redis = w.add_instance("dcs", "redis-1", PROJECT)
    w.add_instance("kafka", "events", PROJECT)
    doc = config_doc(sim, [instance_entry(w, redis.id)], state_path=tmp_path / "s.db")
    doc["targets"].append(
        {
            "region": REGION,
            "project_id": PROJECT,
            "endpoints": {"dcs": sim.dcs_url, "dms": sim.dms_url},
            "discover": {"services": ["kafka"], "interval": "1s"},
        }
    )
    proc = exporters(write_config(tmp_path / "c.yml", doc))

    def last_success(m: Metrics) -> float:
        return m.value(LAST_SUCCESS, instance_id=redis.id) or 0.0

    first = last_success(proc.wait_for(lambda m: last_success(m) > 0, what="a first poll"))
    # poll_interval is 1s: three more polls within 15s, or the poll loop has stopped.
    proc.wait_for(
        lambda m: last_success(m) >= first + 2.5, timeout=15, what="later polls of redis-1"
    )

    # The discovery loop keeps listing too: an instance created now is found and polled.
    late = w.add_instance("kafka", "late", PROJECT)
    proc.wait_for(
        lambda m: m.value("huaweicloud_task_up", instance_id=late.id) == 1,
        timeout=15,
        what="discovery of an instance created after the start",
    )
    assert proc.stop() == 0
    assert "Traceback" not in proc.output


@pytest.mark.smoke
def test_wait_stopped_times_out_or_sees_the_stop() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        stop = asyncio.Event()
        timed_out = await wait_stopped(stop, 0.01)
        asyncio.get_running_loop().call_later(0.01, stop.set)
        seen = await wait_stopped(stop, 30)
        again = await wait_stopped(stop, 0)
        return timed_out, seen, again

    assert asyncio.run(scenario()) == (False, True, True)


@pytest.mark.smoke
def test_a_crashed_loop_is_logged_not_silent(caplog: pytest.LogCaptureFixture) -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        task = spawn(crash(), "poll redis-1")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    [record] = [r for r in caplog.records if r.name == "exporter.aio"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert getattr(record, "fields", {}) == {"loop": "poll redis-1"}


@pytest.mark.smoke
def test_shared_deadlines_time_out_only_what_passed_its_deadline() -> None:
    """Many tasks under one sweeping timer: the slow one gets TimeoutError within a grain,
    the quick ones their result, and a cancel from outside stays a cancel."""
    deadlines = SharedDeadlines(grain=0.01)

    async def main() -> None:
        async def slow() -> str:
            await asyncio.sleep(5)
            return "late"

        async def quick(n: int) -> int:
            await asyncio.sleep(0.01)
            return n

        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await deadlines.within(slow(), 0.05)
        assert time.monotonic() - started < 1
        results = await asyncio.gather(*(deadlines.within(quick(n), 1) for n in range(20)))
        assert results == list(range(20))

        outer = asyncio.ensure_future(deadlines.within(slow(), 10))
        await asyncio.sleep(0.02)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        # A task whose deadline passed can go on to await other things undisturbed.
        with pytest.raises(asyncio.TimeoutError):
            await deadlines.within(slow(), 0.02)
        await asyncio.sleep(0.03)
        current = asyncio.current_task()
        assert current is not None
        if sys.version_info >= (3, 11):
            assert current.cancelling() == 0

    asyncio.run(main())
    asyncio.run(main())  # a second loop: the deadlines start afresh
