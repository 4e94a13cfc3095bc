"""The simulator's history: weeks of finished tasks with realistic durations per kind."""

from __future__ import annotations

import statistics

import pytest

from exporter.simulator.world import TYPICAL_DURATIONS, World

pytestmark = pytest.mark.smoke

NOW = 1_800_000_000.0


def _world() -> World:
    world = World(seed=5, clock=lambda: NOW)
    world.add_instance("dcs", "redis", instance_id="i-dcs")
    world.add_instance("kafka", "events", instance_id="i-kafka")
    return world


def test_history_spans_the_weeks_asked_for_all_finished_and_deterministic() -> None:
    world = _world()
    added = world.add_history("i-dcs", days=21, per_day=40)
    assert 700 < len(added) < 1000  # about 21 x 40
    assert all(t.status in ("SUCCESS", "FAILED") for t in added)
    assert min(t.created_at for t in added) >= NOW - 21 * 86400
    assert max(t.updated_at for t in added) <= NOW - 60
    assert 0.05 < sum(t.status == "FAILED" for t in added) / len(added) < 0.15
    again = _world().add_history("i-dcs", days=21, per_day=40)
    assert [(t.id, t.created_at, t.updated_at) for t in again] == [
        (t.id, t.created_at, t.updated_at) for t in added
    ]


def test_each_kind_lasts_about_its_typical_duration() -> None:
    world = _world()
    added = world.add_history("i-kafka", days=60, per_day=50)
    names = {t.name for t in added}
    assert names == {
        "modifyAutoTopic",
        "changeRetentionPolicy",
        "bindInstancePublicIp",
        "kafkaConfigModify",
        "kafkaResetConsumerOffset",
    }
    for name in names:
        durations = [t.updated_at - t.created_at for t in added if t.name == name]
        median = TYPICAL_DURATIONS[name][0]
        assert 0.8 * median < statistics.median(durations) < 1.25 * median, name
