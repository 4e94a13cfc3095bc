"""The simulator is part of the product: its churn must look like the real cloud's."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from exporter.simulator.world import Churn, World
from tests.conftest import Metrics

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


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_print_config_exits_and_a_simulator_started_later_accepts_it(tmp_path: Path) -> None:
    """The README's steps: print the config, start the simulator, run the exporter on it."""
    dcs, dms, iam, metadata = _free_ports(4)
    ports = [f"--dcs-port={dcs}", f"--dms-port={dms}", f"--iam-port={iam}"]
    ports.append(f"--metadata-port={metadata}")
    printed = subprocess.run(
        [sys.executable, "-m", "exporter.simulator", "--print-config", *ports],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    doc = yaml.safe_load(printed.stdout)
    assert [t["endpoints"] for t in doc["targets"]] == [
        {"dcs": f"http://127.0.0.1:{dcs}", "dms": f"http://127.0.0.1:{dms}"}
    ]
    (tmp_path / "sim.yml").write_text(printed.stdout)

    with (tmp_path / "sim.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "exporter.simulator", *ports], stderr=log, text=True
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", dms), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "sim.log").read_text()
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        polled = subprocess.run(
            [sys.executable, "-m", "exporter", "--config.file=sim.yml", "--once"],
            cwd=tmp_path,  # the printed state_path is relative
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert polled.returncode == 0, polled.stderr
    ups = Metrics(polled.stdout).find("huaweicloud_task_up")
    assert len(ups) == 6  # the demo fleet's five instances and its task center
    assert all(s.value == 1 for s in ups)
    assert (tmp_path / "sim-state.db").exists()
