"""A real Prometheus (and Alertmanager) on loopback, for the end-to-end tests of the shipped
rules: Debian's binaries, installed by scripts/install-prometheus, each in its own directory.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class _Process:
    """A server started from its binary, logging to a file in its directory."""

    def __init__(self, workdir: Path, argv: list[str], ready_path: str, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.log_path = workdir / "server.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}{ready_path}", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"{argv[0]} did not become ready: {self.log_path.read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get_json(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:
            return json.load(err)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class Prometheus(_Process):
    """Scrapes the exporter every second and evaluates the given rule files every second."""

    def __init__(
        self,
        workdir: Path,
        exporter_port: int,
        rule_files: Sequence[Path],
        alertmanager_port: int | None = None,
    ) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: run ./scripts/test (installs Debian's prometheus)"
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {
                    "job_name": "huaweicloud-task-exporter",
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                }
            ],
        }
        if alertmanager_port is not None:
            config["alerting"] = {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
                ]
            }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        super().__init__(
            workdir,
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            "/-/ready",
            port,
        )

    def api(self, path: str, **params: str) -> Any:
        return self.get_json(f"/api/v1/{path}", **params)

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)  # type: ignore[no-any-return]

    def firing(self, alertname: str) -> list[dict[str, str]]:
        return [a["labels"] for a in self.firing_alerts(alertname)]

    def firing_alerts(self, alertname: str) -> list[dict[str, Any]]:
        """The firing alerts of that name, labels and annotations as Prometheus renders them."""
        alerts = self.api("alerts")["data"]["alerts"]
        return [
            a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        ]


class Alertmanager(_Process):
    """Debian's Alertmanager with the given configuration, without clustering."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        assert binary, (
            "prometheus-alertmanager not found: run ./scripts/test (installs Debian's "
            "prometheus-alertmanager)"
        )
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        super().__init__(
            workdir,
            [
                binary,
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            "/-/ready",
            port,
        )

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (API v2), with their labels and annotations."""
        return self.get_json("/api/v2/alerts")  # type: ignore[no-any-return]
