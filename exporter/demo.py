"""`--demo`: the exporter against a simulated cloud started in-process, no account needed."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import yaml

from exporter.simulator import Simulator, World
from exporter.simulator.fleet import DEMO_ACCESS_KEY, DEMO_PROJECT, DEMO_REGION, demo_world


def demo_config_text(
    world: World,
    dcs_url: str,
    dms_url: str,
    access_key: str,
    secret_key: str,
    poll_interval: str,
    state_path: str,
) -> str:
    """An exporter configuration for every instance of `world`, plus its task center."""
    projects: dict[str, list[dict[str, str]]] = {}
    with world.lock:
        for inst in world.instances.values():
            projects.setdefault(inst.project_id, []).append(
                {"service": inst.service, "id": inst.id, "name": inst.name}
            )
    doc = {
        "poll_interval": poll_interval,
        "lookback": "24h",
        "overlap": "1m",
        "state_path": state_path,
        "credentials": {"access_key": access_key, "secret_key": secret_key},
        "http": {"requests_per_second": 50, "burst": 50},
        "targets": [
            {
                "region": world.region,
                "project_id": project,
                "endpoints": {"dcs": dcs_url, "dms": dms_url},
                "task_center": True,
                "instances": instances,
            }
            for project, instances in sorted(projects.items())
        ],
    }
    return "# generated for the simulator\n" + yaml.safe_dump(doc, sort_keys=False)


class Demo:
    """The simulator with the demo fleet, and the configuration text that polls it."""

    def __init__(self, poll_interval: str = "3s") -> None:
        self.secret_key = secrets.token_hex(20)
        self.world = demo_world(self.secret_key)
        self.simulator = Simulator(self.world).start()
        self.tmp = tempfile.TemporaryDirectory(prefix="huaweicloud-task-exporter-demo-")
        self.config_text = demo_config_text(
            self.world,
            self.simulator.dcs_url,
            self.simulator.dms_url,
            DEMO_ACCESS_KEY,
            self.secret_key,
            poll_interval,
            str(Path(self.tmp.name) / "state.db"),
        )

    def close(self) -> None:
        self.simulator.stop()
        self.tmp.cleanup()


__all__ = ["DEMO_PROJECT", "DEMO_REGION", "Demo", "demo_config_text"]
