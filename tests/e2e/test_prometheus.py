"""End to end: a real Prometheus with the shipped rules scrapes the exporter polling the simulator.

The simulator fails a task and leaves another one stuck; Prometheus's HTTP API must show the
failed-task and stuck-task alerts firing with the right labels and, in the annotations
Prometheus itself renders, the task's context (ID, user, change) read from the exporter's info
series, and no secret of the task's params; every query of every dashboard panel must parse
and return data.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulator.world import Fault
from tests.conftest import (
    PROJECT,
    REGION,
    ROOT,
    ExporterProcess,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    write_config,
)
from tests.dashboard_queries import panel_queries, substitute

Start = Callable[..., ExporterProcess]
RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARDS = ROOT / "grafana" / "dashboards"
STUCK_THRESHOLD = 20  # seconds, for EXTEND in this test (the shipped threshold is 2h)
# Placed in a failing task's params: it must appear in no alert Prometheus renders.
SECRET = "Pa55-w0rd-e2e-7f3a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, workdir: Path, exporter_port: int, extend_threshold: int | None) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: run ./scripts/test (installs Debian's prometheus)"
        self.port = _free_port()
        # The shipped rules, and the shipped thresholds (EXTEND lowered for a short test).
        thresholds = yaml.safe_load((RULES / "huaweicloud-task.stuck-thresholds.yml").read_text())
        for rule in thresholds["groups"][0]["rules"]:
            if extend_threshold and rule.get("labels", {}).get("task_name") == "EXTEND":
                rule["expr"] = f"vector({extend_threshold})"
        (workdir / "thresholds.yml").write_text(yaml.safe_dump(thresholds))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [
                str(RULES / "huaweicloud-task.rules.yml"),
                str(workdir / "thresholds.yml"),
            ],
            "scrape_configs": [
                {
                    "job_name": "huaweicloud-task-exporter",
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(
            "Prometheus did not become ready: " + (workdir / "prometheus.log").read_text()[-2000:]
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        return body

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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(port: int, extend_threshold: int | None = STUCK_THRESHOLD) -> Prometheus:
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        prom = Prometheus(workdir, port, extend_threshold)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_alerts_fire_and_every_dashboard_query_returns_data(
    sim: Sim,
    tmp_path: Path,
    exporters: Start,
    prometheus_factory: Callable[..., Prometheus],
) -> None:
    w = sim.world
    now = time.time()
    redis = w.add_instance("dcs", "redis-prod", PROJECT)
    kafka = w.add_instance("kafka", "events", PROJECT)
    mq = w.add_instance("rabbitmq", "orders", PROJECT)
    rmq = w.add_instance("rocketmq", "payments", PROJECT)
    for inst in (redis, kafka, mq, rmq):
        for i in range(3):
            name = "modify" if inst.service == "dcs" else "bindInstancePublicIp"
            w.add_task(inst.id, name, "SUCCESS", now - 3000 + i * 60, now - 2900 + i * 60)
    # Stuck (threshold 20s in this test), and a resize that will fail, both with their context.
    stuck_task = w.add_task(
        redis.id,
        "EXTEND",
        "EXECUTING",
        now - 5,
        user_name="bob",
        details={
            "old_resource_spec_code": "redis.single.xu1.tiny.125",
            "new_resource_spec_code": "redis.single.xu1.tiny.256",
        },
    )
    resize = w.add_task(
        redis.id,
        "EXTEND",
        "EXECUTING",
        now - 3,
        user_name="alice",
        details={"old_capacity": 0.125, "new_capacity": 0.25},
    )
    failing = w.add_task(
        kafka.id,
        "kafkaConfigModify",
        "EXECUTING",
        now - 3,
        params={"password": SECRET, "new_password": SECRET},
    )
    passing = w.add_task(kafka.id, "modifyAutoTopic", "EXECUTING", now - 3)
    w.add_task(kafka.id, "changeRetentionPolicy", "EXECUTING", now - 2)  # still running
    doc = config_doc(
        sim,
        [instance_entry(w, i.id) for i in (redis, kafka, mq, rmq)],
        task_center=True,
        state_path=tmp_path / "s.db",
    )
    exporter = exporters(write_config(tmp_path / "c.yml", doc))
    exporter.wait_for(lambda m: all_up(m, 5), what="baseline polls")
    assert exporter.port is not None
    prom = prometheus_factory(exporter.port)
    _wait(
        lambda: len(prom.query("huaweicloud_task_up == 1")["data"]["result"]) == 5,
        30,
        "Prometheus scraping all five task lists",
    )
    time.sleep(3)  # a few scrapes with the tasks still running

    w.set_status(failing.id, "FAILED")
    w.set_status(resize.id, "FAILED")
    w.set_status(passing.id, "SUCCESS")
    w.add_fault(Fault("throttle", instance_id=mq.id, remaining=1, retry_after=0.2))

    _wait(lambda: len(prom.firing("HuaweiCloudTaskFailed")) == 2, 40, "the failed-task alerts")
    failed = sorted(
        prom.firing_alerts("HuaweiCloudTaskFailed"), key=lambda a: a["labels"]["cloud_service"]
    )
    assert [a["labels"] for a in failed] == [
        {
            "alertname": "HuaweiCloudTaskFailed",
            "severity": "warning",
            "cloud_service": "dcs",
            "region": REGION,
            "project_id": PROJECT,
            "instance_id": redis.id,
            "instance_name": "redis-prod",
            "task_name": "EXTEND",
            "status": "FAILED",
        },
        {
            "alertname": "HuaweiCloudTaskFailed",
            "severity": "warning",
            "cloud_service": "kafka",
            "region": REGION,
            "project_id": PROJECT,
            "instance_id": kafka.id,
            "instance_name": "events",
            "task_name": "kafkaConfigModify",
            "status": "FAILED",
        },
    ]
    # The context, rendered by Prometheus from the exporter's huaweicloud_task_last_failure_info.
    assert failed[0]["annotations"]["summary"] == (
        f"EXTEND failed on redis-prod (dcs, {REGION}): task {resize.id}, started by alice, "
        "capacity 0.125 -> 0.25"
    )
    assert failed[0]["annotations"]["description"].endswith(
        f" The latest: task {resize.id}, started by alice, capacity 0.125 -> 0.25."
    )
    assert failed[1]["annotations"]["summary"].startswith(
        f"kafkaConfigModify failed on events (kafka, {REGION}): task {failing.id}"
    )
    _wait(lambda: bool(prom.firing("HuaweiCloudTaskStuck")), 40, "the stuck-task alert")
    stuck = prom.firing("HuaweiCloudTaskStuck")
    # Once, for the instance: the task center's copy of the same task does not page again.
    assert stuck == [
        {
            "alertname": "HuaweiCloudTaskStuck",
            "severity": "warning",
            "cloud_service": "dcs",
            "region": REGION,
            "project_id": PROJECT,
            "instance_id": redis.id,
            "instance_name": "redis-prod",
            "task_name": "EXTEND",
        }
    ]
    (stuck_alert,) = prom.firing_alerts("HuaweiCloudTaskStuck")
    assert stuck_alert["annotations"]["summary"] == (
        f"EXTEND stuck on redis-prod (dcs, {REGION}): task {stuck_task.id}, started by bob, "
        "spec redis.single.xu1.tiny.125 -> redis.single.xu1.tiny.256"
    )
    # The params' password reached no rendered annotation.
    assert SECRET not in json.dumps(prom.api("alerts"))
    assert prom.firing("HuaweiCloudTaskTargetDown") == []
    assert prom.firing("HuaweiCloudTaskExporterDown") == []
    assert prom.firing("HuaweiCloudTaskExporterAbsent") == []

    values = {"region": REGION, "project": PROJECT, "service": ".*", "instance": kafka.id}
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert len(dashboards) == 2
    checked, problems = 0, []
    for path in dashboards:
        for title, expr in panel_queries(json.loads(path.read_text())):
            query = substitute(expr, values)
            # Every Grafana variable filled in (label_replace()'s $1 is none).
            assert not re.search(r"\$(?!\d)", query), (path.name, title, query)
            answer = prom.query(query)
            checked += 1
            if answer.get("status") != "success":
                problems.append(f"{path.name} / {title}: {answer.get('error')}: {query}")
            elif not answer["data"]["result"]:
                problems.append(f"{path.name} / {title}: no data: {query}")
    assert checked >= 20
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_demo_with_the_shipped_rules_fires_what_the_quickstart_promises(
    prometheus_factory: Callable[..., Prometheus],
) -> None:
    """The README's quickstart: the demo's scripted failure and its stuck EXTEND page."""
    demo = ExporterProcess(["--demo"]).start()
    try:
        assert demo.port is not None
        prom = prometheus_factory(demo.port, extend_threshold=None)  # thresholds as shipped
        _wait(lambda: bool(prom.firing("HuaweiCloudTaskFailed")), 40, "the demo's failure")
        _wait(lambda: bool(prom.firing("HuaweiCloudTaskStuck")), 20, "the demo's stuck task")
        failed = {
            (a["instance_name"], a["task_name"]) for a in prom.firing("HuaweiCloudTaskFailed")
        }
        assert ("events", "kafkaConfigModify") in failed
        stuck = {(a["instance_name"], a["task_name"]) for a in prom.firing("HuaweiCloudTaskStuck")}
        assert ("redis-prod", "EXTEND") in stuck
        assert prom.firing("HuaweiCloudTaskTargetDown") == []
    finally:
        demo.stop()
