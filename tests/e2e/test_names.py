"""A task list answering with thousands of distinct task names: the series stay bounded,
the totals exact, a warning is logged once and a gauge says how many names were folded."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.config import load_config
from exporter.exposition.families import TaskFamilies
from tests.conftest import PROJECT, Metrics, Sim, config_doc, instance_entry, write_config

FINISHED = "huaweicloud_task_finished_total"
TASK_FAMILIES = [f.name for f in TaskFamilies(60, False).all]


def test_thousands_of_task_names_are_folded_into_other(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = sim.world
    inst = w.add_instance("kafka", "noisy", PROJECT)
    doc = config_doc(
        sim,
        [instance_entry(w, inst.id)],
        state_path=tmp_path / "s.db",
        metrics={"max_task_names_per_list": 50},
    )
    cfg = write_config(tmp_path / "c.yml", doc)
    exporter = Exporter(load_config(cfg))
    try:
        assert asyncio.run(exporter.once())  # the baseline, before the flood
        now = time.time()
        for i in range(2000):
            w.add_task(inst.id, f"generated-{i:05}", "SUCCESS", now - 30 + i * 0.001, now)
        with caplog.at_level(logging.WARNING):
            assert asyncio.run(exporter.once())
            assert asyncio.run(exporter.once())
        m = Metrics(exporter.exposition().decode("utf-8"))
    finally:
        exporter.close()
    assert m.total(FINISHED) == 2000  # every task counted once
    names = {s.labels["task_name"] for s in m.find(FINISHED)}
    assert len(names) == 51  # fifty of their own, and _other
    assert m.one(FINISHED, task_name="_other", status="SUCCESS") == 1950
    assert m.one("huaweicloud_task_task_names_folded", instance_id=inst.id) == 1950
    # Every family is bounded by the names, the histogram's zero series too: 51 names in
    # four statuses (histogram: 14 lines, counter: 1), four gauges per name, and the expected
    # durations (two quantiles and a count, per task list and across the fleet: 6 per name);
    # not 34 series per name of the flood (68,000).
    task_samples = [s for s in m.samples if s.name.startswith(tuple(TASK_FAMILIES))]
    assert len(task_samples) <= 51 * 4 * (14 + 1) + 51 * 4 + 51 * 6 + 10
    warnings = [r for r in caplog.records if "too many distinct task names" in r.getMessage()]
    assert len(warnings) == 1
