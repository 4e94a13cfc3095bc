"""The simulator is part of the product: its churn must look like the real cloud's."""

from __future__ import annotations

import pytest

from exporter.simulator.world import Churn, World

pytestmark = pytest.mark.smoke  # run on every supported Python

FINAL = {"SUCCESS", "FAILED", "CANCELLED", "DELETED"}


def test_churn_lifecycles_only_move_forward_and_are_deterministic() -> None:
    def run(seed: int) -> dict[str, list[str]]:
        now = [1_000.0]
        world = World(seed=seed, clock=lambda: now[0])
        for service in ("dcs", "kafka", "rocketmq", "rabbitmq"):
            world.add_instance(service, service)
        world.start_churn(
            Churn(
                mean_interval=1.0,
                min_duration=0.3,
                max_duration=3.0,
                p_failed=0.3,
                p_stuck=0.1,
                p_cancelled=0.1,
            )
        )
        history: dict[str, list[str]] = {}
        for _ in range(2_000):
            now[0] += 0.01
            world.advance()
            for task in world.tasks.values():
                seen = history.setdefault(task.id, [])
                if not seen or seen[-1] != task.status:
                    seen.append(task.status)
        return history

    history = run(3)
    assert len(history) > 40
    order = {"CREATED": 0, "EXECUTING": 1}
    for statuses in history.values():
        ranks = [order.get(s, 2) for s in statuses]
        assert ranks == sorted(ranks), statuses  # never back from a final status
        assert sum(s in FINAL for s in statuses) <= 1, statuses
    assert {s[-1] for s in history.values()} >= {"SUCCESS", "FAILED", "EXECUTING"}
    assert run(3) == history  # same seed, same tasks
