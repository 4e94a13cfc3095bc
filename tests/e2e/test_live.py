"""Looking at a live deployment: `--once` beside a running exporter of the same state file
polls into an in-memory copy of its state and writes nothing to the file."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from exporter.simulator.world import SimTask
from tests.conftest import (
    PROJECT,
    ExporterProcess,
    Metrics,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    run_once,
    write_config,
)

FINISHED = "huaweicloud_task_finished_total"


def _digests(state: Path) -> dict[str, str]:
    """The state file and its WAL, byte for byte (the -shm is SQLite's shared memory index,
    which every reader maps, not state)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (state, Path(f"{state}-wal"))
        if p.exists()
    }


def test_once_beside_a_running_exporter_writes_nothing(
    sim: Sim, tmp_path: Path, exporters: Callable[..., ExporterProcess]
) -> None:
    w = sim.world
    now = time.time()
    inst = w.add_instance("kafka", "events", PROJECT)
    w.add_task(inst.id, "modifyAutoTopic", "SUCCESS", now - 600, now - 590)
    running: SimTask = w.add_task(inst.id, "changeRetentionPolicy", "EXECUTING", now - 60)
    state = tmp_path / "s.db"
    # One poll only, then none for an hour: the daemon itself writes nothing meanwhile.
    doc = config_doc(sim, [instance_entry(w, inst.id)], state_path=state, poll_interval="1h")
    cfg = write_config(tmp_path / "c.yml", doc)
    proc = exporters(cfg)
    proc.wait_for(lambda m: all_up(m, 1), what="the first poll")
    time.sleep(0.5)
    before = _digests(state)
    w.set_status(running.id, "SUCCESS")  # finished after the daemon's baseline

    run = run_once(cfg)
    assert run.rc == 0, run.stderr
    assert "in-memory copy" in run.stderr
    m = Metrics(run.stdout)
    # The copy continues the daemon's state: the new finish is counted (no new baseline).
    assert m.one(FINISHED, task_name="changeRetentionPolicy", status="SUCCESS") == 1
    assert m.one(FINISHED, task_name="modifyAutoTopic", status="SUCCESS") == 0
    assert _digests(state) == before
    # The daemon still counts it itself, once.
    m = proc.scrape()
    assert m.value(FINISHED, task_name="changeRetentionPolicy", status="SUCCESS") in (0, None)
    assert proc.stop() == 0
