"""The serving loops keep going, interval after interval, on every supported Python.

On 3.10 `asyncio.wait_for` raises `asyncio.TimeoutError`, not yet the builtin `TimeoutError`:
a loop that waited for the stop event that way died on its first wait, after one poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.aio import spawn, wait_stopped
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
