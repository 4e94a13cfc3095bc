"""`--demo`: the exporter against a simulated cloud started in-process, no account needed."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from exporter.simulator import Simulator
from exporter.simulator.fleet import DEMO_ACCESS_KEY, demo_config_text, demo_world


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
