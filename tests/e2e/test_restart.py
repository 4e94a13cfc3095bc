"""Restart safety: SIGKILL between and during polls while tasks keep finishing.

After the last restart every counter must equal the true number of tasks finished since the
baseline, by target, task name and status: not one more, not one less.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.simulator.world import CENTER_NAMES, Churn, Fault, Service
from tests.conftest import (
    PROJECT,
    ExporterProcess,
    Metrics,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    write_config,
)

Start = Callable[..., ExporterProcess]


def _served_counts(m: Metrics) -> Counter[tuple[str, str, str]]:
    return Counter(
        {
            (s.labels["instance_id"], s.labels["task_name"], s.labels["status"]): int(s.value)
            for s in m.find("huaweicloud_task_finished_total")
        }
    )


def _true_counts(sim: Sim, baseline: set[str]) -> Counter[tuple[str, str, str]]:
    truth: Counter[tuple[str, str, str]] = Counter()
    with sim.world.lock:
        sim.world.advance()
        for t in sim.world.tasks.values():
            if t.status in ("CREATED", "WAITING", "EXECUTING") or t.id in baseline:
                continue
            truth[(t.instance_id or "", t.name, t.status)] += 1
            if t.service == "dcs":  # the task center counts it too, under its own name
                truth[("", CENTER_NAMES.get(t.name, t.name), t.status)] += 1
    return truth


@pytest.mark.slow
def test_sigkill_between_and_during_polls_loses_and_doubles_nothing(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    rng = random.Random(7)
    now = time.time()
    services: tuple[Service, ...] = ("dcs", "kafka", "rocketmq")
    instances = [w.add_instance(s, f"{s}-x", PROJECT) for s in services]
    baseline: set[str] = set()
    for inst in instances:
        for i in range(5):
            baseline.add(w.add_task(inst.id, "modify", "SUCCESS", now - 900 + i, now - 800 + i).id)
        # Unfinished at the baseline: counted when they finish later.
        w.add_task(inst.id, "EXTEND", "EXECUTING", now - 100, plan=[(now + 8, "FAILED")])
    doc = config_doc(
        sim,
        [instance_entry(w, i.id) for i in instances],
        task_center=True,
        state_path=tmp_path / "s.db",
        http={"page_size": 2, "timeout": "5s"},
        overlap="1s",  # shorter than the downtimes: the reach-back to the watermark matters
    )
    cfg = write_config(tmp_path / "c.yml", doc)

    proc = exporters(cfg)
    proc.wait_for(lambda m: all_up(m, 4), what="baseline polls")
    # Every request now takes a while, so that kills land inside polls, on any page.
    w.add_fault(Fault("latency", latency=0.06))
    w.start_churn(
        Churn(
            mean_interval=1.2,
            min_duration=0.3,
            max_duration=3.0,
            p_failed=0.3,
            p_stuck=0.0,
            p_cancelled=0.1,
        )
    )
    kills_during_polls = 0
    for _ in range(14):
        time.sleep(rng.uniform(0.3, 1.6))
        in_flight = any(now_ - r.at < 0.06 for r in list(w.requests)[-8:] for now_ in [time.time()])
        proc.stop(signal.SIGKILL)
        kills_during_polls += in_flight
        if rng.random() < 0.4:
            time.sleep(rng.uniform(0.5, 2.5))  # down for a while: tasks finish meanwhile
        proc = exporters(cfg)
    w.stop_churn()
    time.sleep(3.5)  # every planned transition has happened (durations are at most 3s)
    w.clear_faults()
    truth = _true_counts(sim, baseline)
    try:
        m = proc.wait_for(
            lambda m: _served_counts(m) == truth, timeout=15, what="counters equal to the truth"
        )
    except AssertionError:
        served = _served_counts(proc.scrape())
        diff = {
            k: (served.get(k, 0), truth.get(k, 0))
            for k in set(served) | set(truth)
            if served.get(k, 0) != truth.get(k, 0)
        }
        raise AssertionError(f"served != truth (served, true): {diff}") from None
    assert sum(truth.values()) > 40  # enough churn to mean something
    assert kills_during_polls >= 3, kills_during_polls
    # The histograms agree with the counters (each finished task observed once, per source).
    hist = m.total("huaweicloud_task_duration_seconds_count")
    assert hist == sum(truth.values())
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
