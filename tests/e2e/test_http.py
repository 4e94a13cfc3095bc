"""HTTP surfaces, metric naming rules, clean shutdown, health, and state file errors."""

from __future__ import annotations

import gc
import gzip
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from exporter.app import YOUNG_GENERATION
from exporter.cli import main
from exporter.simulator.world import Fault
from tests.conftest import (
    PROJECT,
    ExporterProcess,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    run_cli,
    run_once,
    write_config,
)

Start = Callable[..., ExporterProcess]
TARGET_LABELS = {"cloud_service", "region", "project_id", "instance_id", "instance_name"}


def _setup(sim: Sim, tmp_path: Path, **extra: object) -> tuple[Path, list[str]]:
    w = sim.world
    now = time.time()
    ids = []
    for service, name in (("dcs", "redis-a"), ("rabbitmq", "mq-b")):
        inst = w.add_instance(service, name, PROJECT)  # type: ignore[arg-type]
        w.add_task(inst.id, "bindInstancePublicIp", "SUCCESS", now - 300, now - 290)
        w.add_task(inst.id, "bindInstancePublicIp", "EXECUTING", now - 100)
        ids.append(inst.id)
    doc = config_doc(
        sim,
        [instance_entry(w, i) for i in ids],
        task_center=True,
        state_path=tmp_path / "s.db",
        **extra,
    )
    return write_config(tmp_path / "c.yml", doc), ids


def test_landing_health_and_metrics_formats(sim: Sim, tmp_path: Path, exporters: Start) -> None:
    cfg, ids = _setup(sim, tmp_path)
    proc = exporters(cfg)
    m = proc.wait_for(lambda m: all_up(m, 3), what="all up")

    status, headers, body = proc.get("/")
    page = body.decode()
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert 'href="/metrics"' in page
    for inst_id in ids:
        assert inst_id in page
    assert "(task center)" in page
    assert page.count(">ok (") == 3

    assert proc.get("/healthz")[0] == 200
    assert proc.get("/readyz")[0] == 200
    assert proc.get("/nope")[0] == 404

    status, headers, body = proc.get(
        "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(body.decode())}  # type: ignore[no-untyped-call]
    assert families["huaweicloud_task_up"].type == "gauge"
    assert families["huaweicloud_task_recent_tasks"].samples

    status, headers, body = proc.get("/metrics", {"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip"
    assert b"huaweicloud_task_up" in gzip.decompress(body)

    # Naming rules: HELP on every family, background polling said on task families, no
    # reserved label names, `_total` only on counters, target labels on per-target series.
    for family in m.families.values():
        if not family.name.startswith("huaweicloud_task_"):
            continue
        assert family.documentation, family.name
        for sample in family.samples:
            assert not {"instance", "job", "service", "pod"} & set(sample.labels), sample
        if family.type != "counter":
            assert not family.name.endswith("_total")
    task_families = [
        "recent_tasks",
        "finished",
        "duration_seconds",
        "last_duration_seconds",
        "last_finished_timestamp_seconds",
        "last_status",
        "oldest_unfinished_start_timestamp_seconds",
    ]
    for short in task_families:
        family = m.families["huaweicloud_task_" + short]
        assert "Polled in the background" in family.documentation, short
    for short in (
        "recent_tasks",
        "up",
        "last_poll_success_timestamp_seconds",
        "poll_duration_seconds",
        "last_status",
    ):
        for sample in m.families["huaweicloud_task_" + short].samples:
            assert set(sample.labels) >= TARGET_LABELS, sample
    assert m.value("huaweicloud_task_up", instance_id="", cloud_service="dcs") == 1


@pytest.mark.smoke
def test_sigterm_during_polls_stops_cleanly_with_state_intact(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    cfg, _ids = _setup(sim, tmp_path, http={"timeout": "10s"})
    proc = exporters(cfg)
    proc.wait_for(lambda m: all_up(m, 3), what="all up")
    sim.world.add_fault(Fault("latency", latency=3.0))  # every poll now hangs in flight
    time.sleep(1.5)
    started = time.monotonic()
    rc = proc.stop(signal.SIGTERM)
    assert rc == 0
    assert time.monotonic() - started < 3.0
    assert "msg=stopped" in proc.output
    assert "Traceback" not in proc.output
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM targets").fetchone()[0] == 3


def test_healthz_fails_when_the_poll_loop_stalls(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    cfg, _ = _setup(sim, tmp_path, http={"timeout": "30s"})
    proc = exporters(cfg)
    proc.wait_for(lambda m: all_up(m, 3), what="all up")
    assert proc.get("/healthz")[0] == 200
    sim.world.add_fault(Fault("latency", latency=8.0))
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline and proc.get("/healthz")[0] == 200:
        time.sleep(0.2)
    status, _, body = proc.get("/healthz")
    assert status == 503
    assert b"no poll finished" in body
    sim.world.clear_faults()


def test_corrupt_state_file_gives_a_clear_error(sim: Sim, tmp_path: Path) -> None:
    cfg, _ = _setup(sim, tmp_path)
    (tmp_path / "s.db").write_bytes(b"this is not a database, just some bytes" * 100)
    run = run_once(cfg)
    assert run.rc == 1
    assert "not a usable SQLite database" in run.stderr
    assert "Move it aside" in run.stderr
    assert "Traceback" not in run.stderr


def test_state_path_that_is_a_directory_gives_a_clear_error(sim: Sim, tmp_path: Path) -> None:
    cfg, _ = _setup(sim, tmp_path)
    (tmp_path / "s.db").mkdir()
    run = run_once(cfg)
    assert run.rc == 1
    assert "state file" in run.stderr
    assert "Traceback" not in run.stderr


def test_two_exporters_cannot_share_a_state_file(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    cfg, _ = _setup(sim, tmp_path)
    proc = exporters(cfg)
    proc.wait_for(lambda m: all_up(m, 3), what="all up")
    # A second daemon is refused (`--once` beside it polls a copy: tests/e2e/test_live.py).
    run = run_cli(f"--config.file={cfg}", "--web.listen-address=127.0.0.1:0", timeout=20)
    assert run.rc == 1
    assert "in use by another exporter process" in run.stderr


def test_once_exits_non_zero_when_a_target_fails(sim: Sim, tmp_path: Path) -> None:
    cfg, ids = _setup(sim, tmp_path)
    sim.world.add_fault(Fault("http_error", status=500, instance_id=ids[0]))
    run = run_once(cfg)
    assert run.rc == 1
    assert "huaweicloud_task_up{" in run.stdout  # metrics still printed, on stdout only
    assert not [line for line in run.stdout.splitlines() if line.startswith("ts=")]
    assert "poll failed" in run.stderr


def test_once_settles_the_collector_of_its_own_process_only(sim: Sim, tmp_path: Path) -> None:
    """`--once` from the console script freezes start-up and raises the young generation
    (its collections only walked what lives until exit); `main()` called by a program that
    imports the exporter leaves that program's collector as it was."""
    cfg, _ = _setup(sim, tmp_path)
    probe = (
        "import gc, os, sys\n"
        "from exporter import cli\n"
        "end = os._exit\n"
        "def report(code):\n"
        "    print('gc', gc.get_threshold()[0], gc.get_freeze_count() > 0, code, flush=True)\n"
        "    end(code)\n"
        "os._exit = report\n"
        f"sys.argv = ['exporter', '--config.file={cfg}', '--once']\n"
        "cli.entry()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.splitlines()[-1] == f"gc {YOUNG_GENERATION} True 0", done.stderr

    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert main([f"--config.file={cfg}", "--once", "--log.level=error"]) == 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
