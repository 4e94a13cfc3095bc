"""`--demo`: every metric family has samples within seconds, and the exposition is clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import ExporterProcess, Metrics, exporter_cmd

CONTRACT = {
    "huaweicloud_task_recent_tasks": "gauge",
    "huaweicloud_task_finished_total": "counter",
    "huaweicloud_task_duration_seconds_count": "histogram",
    "huaweicloud_task_last_duration_seconds": "gauge",
    "huaweicloud_task_last_finished_timestamp_seconds": "gauge",
    "huaweicloud_task_last_status": "gauge",
    "huaweicloud_task_oldest_unfinished_start_timestamp_seconds": "gauge",
    # Quantiles only: a gauge may not carry a quantile label (promtool's lint, checked below).
    "huaweicloud_task_expected_duration_seconds": "summary",
    "huaweicloud_task_expected_duration_samples": "gauge",
    "huaweicloud_task_fleet_expected_duration_seconds": "summary",
    "huaweicloud_task_fleet_expected_duration_samples": "gauge",
    "huaweicloud_task_up": "gauge",
    "huaweicloud_task_last_poll_success_timestamp_seconds": "gauge",
    "huaweicloud_task_poll_duration_seconds": "gauge",
    "huaweicloud_task_api_requests_total": "counter",
    "huaweicloud_task_build_info": "gauge",
}


def _complete(m: Metrics) -> bool:
    return (
        all(m.find(name) for name in CONTRACT)
        and m.total("huaweicloud_task_finished_total", status="FAILED") > 0
        and m.total("huaweicloud_task_duration_seconds_count") > 0
    )


@pytest.fixture
def demo() -> Iterator[Callable[[], ExporterProcess]]:
    procs: list[ExporterProcess] = []

    def start() -> ExporterProcess:
        proc = ExporterProcess(["--demo"]).start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def test_demo_serves_every_family_within_seconds_and_passes_promtool(
    demo: Callable[[], ExporterProcess],
) -> None:
    started = time.monotonic()
    proc = demo()
    m = proc.wait_for(_complete, timeout=25, what="every metric family, including a failure")
    took = time.monotonic() - started
    print(f"demo: every family had samples {took:.1f}s after start")
    for family, kind in CONTRACT.items():
        assert m.families[family.removesuffix("_count").removesuffix("_total")].type == kind
    ups = m.find("huaweicloud_task_up")
    assert len(ups) == 6
    assert all(s.value == 1 for s in ups)
    services = {s.labels["cloud_service"] for s in ups}
    assert services == {"dcs", "kafka", "rabbitmq", "rocketmq"}

    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: run ./scripts/test, which installs Debian's prometheus"
    check = subprocess.run(
        [promtool, "check", "metrics"],
        input=m.text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "", check.stdout
    assert check.stderr.strip() == "", check.stderr

    rc = proc.stop()
    assert rc == 0
    assert "Traceback" not in proc.output


@pytest.mark.parametrize("nonblocking", [False, True])
def test_once_writes_every_byte_to_a_slow_reader_when_unbuffered(nonblocking: bool) -> None:
    """Under PYTHONUNBUFFERED (many container images set it) stdout is the raw file, whose
    write may take part of the bytes: 320 KiB of demo exposition into a 64 KiB pipe read
    only after a pause, non-blocking or not, still arrive whole (it once lost all but the
    first 64 KiB, with exit code 0)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, not nonblocking)
    proc = subprocess.Popen(
        exporter_cmd("--demo", "--once", "--log.level=error"),
        stdout=write_end,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    os.close(write_end)
    time.sleep(1.5)  # the exporter fills the pipe long before this
    with os.fdopen(read_end, "rb") as out:
        body = out.read()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert len(body) > 128 * 1024  # more than a pipe holds: the case this is about
    m = Metrics(body.decode())  # every line whole
    assert all(m.find(name) for name in CONTRACT)
