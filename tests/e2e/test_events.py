"""The task event log: one line per task when first seen unfinished and when counted, in
the poll's own commit, so that SIGKILLs in the middle of a run lose no finish event and
repeat one only around a kill."""

from __future__ import annotations

import random
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.simulator.world import Churn, Fault, Service
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
EVENT = re.compile(r'msg="task event" event_id=(\S+) task_id=(\S+) task_name=\S+ status=(\S+)')


def _events(lines: list[str]) -> list[tuple[str, str, str, bool]]:
    """The event lines of one run: event ID, task ID, status, and whether it came before
    the run said `listening` (written out at start for the run before)."""
    listening = next((i for i, line in enumerate(lines) if "msg=listening" in line), len(lines))
    found = []
    for i, line in enumerate(lines):
        m = EVENT.search(line)
        if m:
            found.append((m.group(1), m.group(2), m.group(3), i < listening))
    return found


@pytest.mark.slow
def test_every_finish_is_logged_once_and_repeats_only_around_a_kill(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    rng = random.Random(11)
    now = time.time()
    services: tuple[Service, ...] = ("dcs", "kafka")
    instances = [w.add_instance(s, f"{s}-ev", PROJECT) for s in services]
    baseline = {w.add_task(i.id, "modify", "SUCCESS", now - 900, now - 800).id for i in instances}
    doc = config_doc(
        sim,
        [instance_entry(w, i.id) for i in instances],
        state_path=tmp_path / "s.db",
        http={"timeout": "5s"},
        overlap="1s",
    )
    cfg = write_config(tmp_path / "c.yml", doc)
    runs: list[ExporterProcess] = [exporters(cfg, "--log.task-events")]
    runs[0].wait_for(lambda m: all_up(m, 2), what="baseline polls")
    w.add_fault(Fault("latency", latency=0.05))
    w.start_churn(Churn(mean_interval=0.8, min_duration=0.3, max_duration=2.0, p_failed=0.3))
    for _ in range(8):
        time.sleep(rng.uniform(0.3, 1.5))
        runs[-1].stop(signal.SIGKILL)
        runs.append(exporters(cfg, "--log.task-events"))
    w.stop_churn()
    time.sleep(2.5)
    w.clear_faults()
    with w.lock:
        w.advance()
        finished = {
            t.id
            for t in w.tasks.values()
            if t.status not in ("CREATED", "WAITING", "EXECUTING") and t.id not in baseline
        }
    runs[-1].wait_for(
        lambda m: m.total("huaweicloud_task_finished_total") == len(finished),
        what="every finished task counted",
    )
    time.sleep(0.5)
    runs[-1].stop()

    seen: dict[str, list[tuple[int, bool]]] = {}
    logged_finished: set[str] = set()
    for n, run in enumerate(runs):
        for event_id, task_id, status, replayed in _events(run.lines):
            seen.setdefault(event_id, []).append((n, replayed))
            if event_id.endswith(":finished"):
                logged_finished.add(task_id)
                assert status not in ("CREATED", "WAITING", "EXECUTING")
    assert len(finished) > 15  # enough churn to mean something
    assert logged_finished == finished  # each finish at least once, none invented
    for event_id, where in seen.items():
        # At most one repeat: the next run writing out, before it listens, what the killed
        # one had committed but not yet written.
        assert len(where) <= 2, (event_id, where)
        if len(where) == 2:
            (first, _), (again, replayed) = where
            assert again == first + 1, (event_id, where)
            assert replayed, (event_id, where)
