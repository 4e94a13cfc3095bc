"""Targets are spread over the poll interval, and a slow poll skips ahead instead of queueing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

from exporter.simulator.world import Fault
from tests.conftest import (
    PROJECT,
    ExporterProcess,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    write_config,
)

Start = Callable[..., ExporterProcess]


def test_targets_are_spread_over_the_interval(sim: Sim, tmp_path: Path, exporters: Start) -> None:
    ids = [sim.world.add_instance("dcs", f"r{i}", PROJECT).id for i in range(4)]
    doc = config_doc(
        sim,
        [instance_entry(sim.world, i) for i in ids],
        state_path=tmp_path / "s.db",
        poll_interval="2s",
    )
    proc = exporters(write_config(tmp_path / "c.yml", doc))
    proc.wait_for(lambda m: all_up(m, 4), what="all up")
    time.sleep(2.5)
    firsts = sorted(sim.world.requests_for(i)[0].at for i in ids)
    gaps = [b - a for a, b in itertools.pairwise(firsts)]
    # Four targets over 2s: one every 0.5s, not all at once.
    assert all(0.3 < g < 0.7 for g in gaps), gaps
    # ... and each keeps its own slot: polls of one target are an interval apart.
    times = [r.at for r in sim.world.requests_for(ids[0])]
    assert all(1.8 < b - a < 2.2 for a, b in itertools.pairwise(times)), times


def test_slow_poll_skips_ahead_and_never_queues(sim: Sim, tmp_path: Path, exporters: Start) -> None:
    slow = sim.world.add_instance("kafka", "slow", PROJECT)
    fast = sim.world.add_instance("dcs", "fast", PROJECT)
    doc = config_doc(
        sim,
        [instance_entry(sim.world, slow.id), instance_entry(sim.world, fast.id)],
        state_path=tmp_path / "s.db",
        http={"timeout": "10s"},
    )
    proc = exporters(write_config(tmp_path / "c.yml", doc))
    proc.wait_for(lambda m: all_up(m, 2), what="all up")
    sim.world.add_fault(Fault("latency", latency=2.5, instance_id=slow.id))
    start = time.time()
    time.sleep(7)
    slow_reqs = [r for r in sim.world.requests_for(slow.id) if r.at >= start]
    fast_reqs = [r for r in sim.world.requests_for(fast.id) if r.at >= start]
    # One poll of the slow target at a time, each 2.5s: at most 3 in 7s, no backlog.
    assert 2 <= len(slow_reqs) <= 3, [r.at - start for r in slow_reqs]
    # The other target is not held up.
    assert len(fast_reqs) >= 6
    m = proc.scrape()
    assert m.one("huaweicloud_task_polls_skipped_total") >= 2
    sim.world.clear_faults()


def test_request_rate_per_host_is_capped(sim: Sim, tmp_path: Path, exporters: Start) -> None:
    ids = [sim.world.add_instance("kafka", f"k{i}", PROJECT).id for i in range(6)]
    dcs = sim.world.add_instance("dcs", "r", PROJECT).id
    doc = config_doc(
        sim,
        [instance_entry(sim.world, i) for i in [*ids, dcs]],
        state_path=tmp_path / "s.db",
        http={"requests_per_second": 2, "burst": 1},
    )
    proc = exporters(write_config(tmp_path / "c.yml", doc))
    proc.wait_for(lambda m: all_up(m, 7), timeout=30, what="all up")
    start = time.time()
    time.sleep(4)
    dms = sorted(r.at for r in sim.world.requests if r.listener == "dms" and r.at >= start)
    # Six DMS targets want 6 requests a second; the DMS host gets 2 a second, evenly.
    assert 6 <= len(dms) <= 9, len(dms)
    assert all(b - a > 0.4 for a, b in itertools.pairwise(dms))
    # The DCS host has a bucket of its own and keeps its pace.
    dcs_reqs = [r for r in sim.world.requests if r.listener == "dcs" and r.at >= start]
    assert len(dcs_reqs) >= 3
