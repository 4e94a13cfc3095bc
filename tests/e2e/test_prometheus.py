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
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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
from tests.e2e.stack import Prometheus, wait

Start = Callable[..., ExporterProcess]
RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARDS = ROOT / "grafana" / "dashboards"
STUCK_THRESHOLD = 20  # seconds, for EXTEND in this test (the shipped threshold is 2h)
# Placed in a failing task's params: it must appear in no alert Prometheus renders.
SECRET = "Pa55-w0rd-e2e-7f3a"


def _thresholds(workdir: Path, extend_threshold: int | None) -> Path:
    """The shipped thresholds, EXTEND's lowered for a short test."""
    thresholds = yaml.safe_load((RULES / "huaweicloud-task.stuck-thresholds.yml").read_text())
    for rule in thresholds["groups"][0]["rules"]:
        if extend_threshold and rule.get("labels", {}).get("task_name") == "EXTEND":
            rule["expr"] = f"vector({extend_threshold})"
    path = workdir / "thresholds.yml"
    path.write_text(yaml.safe_dump(thresholds))
    return path


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(port: int, extend_threshold: int | None = STUCK_THRESHOLD) -> Prometheus:
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        rules = [
            RULES / "huaweicloud-task.rules.yml",
            _thresholds(workdir, extend_threshold),
            RULES / "huaweicloud-task.stuck-overrides.yml",
        ]
        prom = Prometheus(workdir, port, rules)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


_wait = wait


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
    # History of the running kinds, read at first sight: their usual duration (12 runs
    # each, so that they have one of their own) shows beside their age.
    w.add_task(redis.id, "AddWhitelist", "EXECUTING", now - 2)  # the same, on DCS
    for i in range(12):
        at = now - 86400 * (i + 1)
        w.add_task(redis.id, "AddWhitelist", "SUCCESS", at, at + 10 + i)
        w.add_task(
            kafka.id,
            "changeRetentionPolicy",
            "SUCCESS",
            now - 86400 * (i + 1),
            now - 86400 * (i + 1) + 100 + 5 * i,
        )
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

    # Every variable at "all", then region and project set and each service with tasks in
    # turn (with its instance): every query runs, and none comes back empty with everything
    # selected. With one service selected, the panels this exporter's set-ups rely on (the
    # task panels) must still answer; the API panels of a service without API trouble may
    # rightly be empty.
    settings = [
        ({"region": ".*", "project": ".*", "service": ".*", "instance": kafka.id}, True),
        ({"region": REGION, "project": PROJECT, "service": ".*", "instance": kafka.id}, True),
        ({"region": REGION, "project": PROJECT, "service": "kafka", "instance": kafka.id}, False),
        ({"region": REGION, "project": PROJECT, "service": "dcs", "instance": redis.id}, False),
    ]
    must_answer = {
        "Running now",
        "Failed (24h)",
        "Finished (24h)",
        "Failure ratio per task name (1d)",
        "Finished and failed per task name (1d)",
        "Recent failures (24h)",
        "Unfinished tasks by age, against their usual duration",
        "Oldest unfinished task against its stuck threshold",
        "Running tasks by task name",
    }
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert len(dashboards) == 2
    checked, problems = 0, []
    for values, all_have_data in settings:
        for path in dashboards:
            for title, expr in panel_queries(json.loads(path.read_text())):
                query = substitute(expr, values)
                # Every Grafana variable filled in (label_replace()'s $1 is none).
                assert not re.search(r"\$(?!\d)", query), (path.name, title, query)
                answer = prom.query(query)
                checked += 1
                where = f"{values['service']}: {path.name} / {title}"
                if answer.get("status") != "success":
                    problems.append(f"{where}: {answer.get('error')}: {query}")
                elif not answer["data"]["result"] and (all_have_data or title in must_answer):
                    problems.append(f"{where}: no data: {query}")
    assert checked >= 80
    assert not problems, "\n".join(problems)
    # A service filter that selects nothing shows nothing: the filters are applied.
    none = {"region": REGION, "project": PROJECT, "service": "rocketmq", "instance": rmq.id}
    overview = json.loads((DASHBOARDS / "huaweicloud-task-overview.json").read_text())
    for title, expr in panel_queries(overview):
        if title in {"Recent failures (24h)", "Failure ratio per task name (1d)"}:
            assert prom.query(substitute(expr, none))["data"]["result"] == [], title
        if title == "Recent failures (24h)":
            dcs_only = settings[-1][0]
            rows = prom.query(substitute(expr, dcs_only))["data"]["result"]
            assert [(r["metric"]["task_id"], r["metric"].get("user_name", "")) for r in rows] == [
                (resize.id, "alice")
            ]


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
