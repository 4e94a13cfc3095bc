"""The request rate per host is capped, over real HTTP, whatever the number of task lists.

The scheduling arithmetic (spreading, skipping ahead) is unit-tested in
tests/polling/test_schedule.py; the token bucket on a fake clock in tests/cloud/test_ratelimit.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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


@pytest.mark.slow
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
