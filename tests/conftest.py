"""Shared harness: an in-process simulator over real HTTP, and the exporter as a real process
(or, for the modes that only read and print, its `main(argv)`: see `run_cli`).

Tests talk to the exporter only through its real surfaces: the CLI, HTTP `/metrics` parsed
with `prometheus_client.parser`, and the simulator's HTTP APIs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import Simulator, World
from tests.sdk_verifier import sdk_check

ACCESS_KEY = "TESTACCESSKEY0000001"
SECRET_KEY = "test-secret-key-3f9a8b7c6d5e4f3a2b1c"
PROJECT = "0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b"
REGION = "ap-southeast-1"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sim:
    world: World
    server: Simulator

    @property
    def dcs_url(self) -> str:
        return self.server.dcs_url

    @property
    def dms_url(self) -> str:
        return self.server.dms_url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long runs first (marked slow), then the other end-to-end tests, then the in-process
    ones: with xdist's work stealing (noxfile.py) the workers then finish together, instead
    of one worker starting a 30-second run while the others have nothing left to do."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        return 1 if "e2e" in item.path.parts else 2

    items.sort(key=rank)  # stable: the order within each rank is the collection's


@pytest.fixture(autouse=True, scope="session")
def sdk_signature_check() -> Iterator[None]:
    """Every simulator a test starts checks signatures with the official SDK's signer, not with
    the exporter's own code (which would accept a bug both share)."""
    shipped = Simulator.default_signature_check
    Simulator.default_signature_check = sdk_check
    yield
    Simulator.default_signature_check = shipped


@pytest.fixture
def sim() -> Iterator[Sim]:
    world = World(seed=42, region=REGION)
    world.add_credentials(ACCESS_KEY, SECRET_KEY)
    server = Simulator(world).start()
    try:
        yield Sim(world, server)
    finally:
        server.stop()


def config_doc(
    sim: Sim,
    instances: list[dict[str, str]],
    *,
    task_center: bool = False,
    state_path: Path,
    **top: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "poll_interval": "1s",
        "lookback": "24h",
        "overlap": "1m",
        "state_path": str(state_path),
        "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
        "http": {
            "timeout": "2s",
            "retries": 2,
            "backoff_initial": "50ms",
            "backoff_max": "200ms",
            "requests_per_second": 200,
            "burst": 200,
        },
        "targets": [
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": {"dcs": sim.dcs_url, "dms": sim.dms_url},
                "task_center": task_center,
                "instances": instances,
            }
        ],
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def instance_entry(world: World, instance_id: str) -> dict[str, str]:
    inst = world.instances[instance_id]
    return {"service": inst.service, "id": inst.id, "name": inst.name}


# -- running the exporter ------------------------------------------------------------------


def exporter_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "exporter", *args]


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str


# The modes that read, print and exit: run by `main(argv)` in the test's own process unless a
# test asks for a process (the console script runs the same `main`; a process costs a third of
# a second of start-up, some 70 times in the suite). Polling modes and the daemon always get a
# process of their own: signals, the state file's lock and exit codes are the point there.
IN_PROCESS_MODES = frozenset({"--check-config", "--print-config", "--probe"})


def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None, process: bool = False
) -> Run:
    if not process and IN_PROCESS_MODES & set(args):
        return _run_in_process(list(args), env or {})
    proc = subprocess.run(
        exporter_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def _run_in_process(argv: list[str], env: dict[str, str]) -> Run:
    """`exporter.cli.main(argv)` with stdout and stderr captured, the environment and the
    logging set-up it changes put back afterwards."""
    from exporter.cli import main  # noqa: PLC0415 - the harness imports the exporter lazily

    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in env}
    loggers = [
        logging.getLogger(name) for name in ("", "httpx", "httpcore", "exporter", "exporter.events")
    ]
    saved_logging = [(lg, lg.handlers[:], lg.level) for lg in loggers]
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse's errors, --version
                rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for lg, handlers, level in saved_logging:
            lg.handlers[:] = handlers
            lg.setLevel(level)
    return Run(rc, out.getvalue(), err.getvalue())


def run_once(config: Path, *extra: str) -> Run:
    return run_cli(f"--config.file={config}", "--once", *extra)


class Metrics:
    """A parsed exposition: samples looked up by name and a subset of labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def find(self, name: str, **labels: str) -> list[Any]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The one sample's value, None when there is none (more than one is an error)."""
        found = self.find(name, **labels)
        if not found:
            return None
        assert len(found) == 1, f"{name} {labels} matches {len(found)} samples"
        return float(found[0].value)

    def one(self, name: str, **labels: str) -> float:
        value = self.value(name, **labels)
        assert value is not None, f"no sample {name} {labels}"
        return value

    def total(self, name: str, **labels: str) -> float:
        return sum(float(s.value) for s in self.find(name, **labels))


@dataclass
class ExporterProcess:
    """The exporter running as a daemon on a free loopback port."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    port: int | None = None
    lines: list[str] = field(default_factory=list)

    def start(self, timeout: float = 20) -> ExporterProcess:
        self.port = None
        self.proc = subprocess.Popen(
            exporter_cmd(*self.args, "--web.listen-address=127.0.0.1:0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env={**os.environ, **self.env},
        )
        ready = threading.Event()
        ports: list[int] = []

        def pump(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"msg=listening .*port=(\d+)", line)
                if m:
                    ports.append(int(m.group(1)))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, args=(self.proc,), daemon=True).start()
        ready.wait(timeout)
        self.port = ports[0] if ports else None
        if self.port is None:
            self.stop()
            raise AssertionError("exporter did not start:\n" + "\n".join(self.lines[-30:]))
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 10
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def scrape(self) -> Metrics:
        status, _, body = self.get("/metrics")
        assert status == 200
        return Metrics(body.decode("utf-8"))

    def wait_for(
        self, predicate: Callable[[Metrics], bool], timeout: float = 20, what: str = "condition"
    ) -> Metrics:
        deadline = time.monotonic() + timeout
        last: Metrics | None = None
        while time.monotonic() < deadline:
            last = self.scrape()
            if predicate(last):
                return last
            time.sleep(0.2)
        tail = "\n".join(self.lines[-20:])
        raise AssertionError(f"timed out waiting for {what}; last log lines:\n{tail}")

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("exporter did not stop in time") from None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def exporters() -> Iterator[Callable[..., ExporterProcess]]:
    started: list[ExporterProcess] = []

    def start(config: Path, *extra: str, env: dict[str, str] | None = None) -> ExporterProcess:
        proc = ExporterProcess([f"--config.file={config}", *extra], env=env or {}).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


def all_up(m: Metrics, n: int) -> bool:
    ups = m.find("huaweicloud_task_up")
    return len(ups) == n and all(s.value == 1 for s in ups)
