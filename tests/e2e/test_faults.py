"""Faults: the process keeps running, only the affected target goes down, last good task
metrics stay served, and it recovers by itself when the fault ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator.world import Fault
from tests.conftest import (
    ACCESS_KEY,
    PROJECT,
    ExporterProcess,
    Metrics,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    write_config,
)

Start = Callable[..., ExporterProcess]


def _fleet(sim: Sim) -> dict[str, str]:
    w = sim.world
    now = time.time()
    ids = {}
    for service, name in (
        ("dcs", "victim-dcs"),
        ("kafka", "victim-kafka"),
        ("rocketmq", "healthy"),
    ):
        inst = w.add_instance(service, name, PROJECT)  # type: ignore[arg-type]
        w.add_task(inst.id, "bindInstancePublicIp", "SUCCESS", now - 300, now - 290)
        w.add_task(inst.id, "bindInstancePublicIp", "EXECUTING", now - 200)
        ids[name] = inst.id
    return ids


def _config(sim: Sim, tmp_path: Path, ids: dict[str, str], **extra: Any) -> Path:
    doc = config_doc(
        sim,
        [instance_entry(sim.world, i) for i in ids.values()],
        state_path=tmp_path / "s.db",
        http={"timeout": "500ms", "retries": 1, "backoff_initial": "50ms", "backoff_max": "100ms"},
        **extra,
    )
    return write_config(tmp_path / "c.yml", doc)


def _up(m: Metrics, instance_id: str) -> float | None:
    return m.value("huaweicloud_task_up", instance_id=instance_id)


FAULTS = [
    ("5xx", Fault("http_error", status=503), "victim-dcs", "503"),
    ("timeout", Fault("latency", latency=1.5), "victim-dcs", "error"),
    ("connection reset", Fault("reset"), "victim-dcs", "error"),
    ("429 throttling", Fault("throttle", retry_after=0.1), "victim-dcs", "429"),
    ("DMS flow control", Fault("flow_control"), "victim-kafka", "404"),
    ("instance gone", Fault("not_found"), "victim-dcs", "404"),
]


@pytest.mark.parametrize(("name", "fault", "victim", "code"), FAULTS, ids=[f[0] for f in FAULTS])
def test_persistent_fault_downs_only_its_target_and_recovers(
    sim: Sim, tmp_path: Path, exporters: Start, name: str, fault: Fault, victim: str, code: str
) -> None:
    ids = _fleet(sim)
    proc = exporters(_config(sim, tmp_path, ids))
    before = proc.wait_for(lambda m: all_up(m, 3), what="all targets up")
    recent_before = before.find("huaweicloud_task_recent_tasks", instance_id=ids[victim])
    assert recent_before

    fault.instance_id = ids[victim]
    sim.world.add_fault(fault)
    down = proc.wait_for(lambda m: _up(m, ids[victim]) == 0, what=f"{victim} down")
    assert _up(down, ids["healthy"]) == 1
    # The last good task metrics are still served while the target is down.
    assert down.find("huaweicloud_task_recent_tasks", instance_id=ids[victim]) == recent_before
    assert down.total("huaweicloud_task_api_requests_total", code=code) > 0
    if fault.kind in ("throttle", "flow_control"):
        assert down.total("huaweicloud_task_api_throttled_requests_total") > 0

    sim.world.clear_faults()
    proc.wait_for(lambda m: all_up(m, 3), what="recovery")
    assert proc.proc is not None
    assert proc.proc.poll() is None
    assert "Traceback" not in proc.output


def test_retry_after_is_honoured_and_a_transient_throttle_costs_no_poll(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    ids = _fleet(sim)
    proc = exporters(_config(sim, tmp_path, ids))
    proc.wait_for(lambda m: all_up(m, 3), what="all targets up")
    sim.world.add_fault(
        Fault("throttle", instance_id=ids["victim-dcs"], remaining=1, retry_after=1.2)
    )
    sim.world.add_fault(Fault("flow_control", instance_id=ids["victim-kafka"], remaining=1))
    time.sleep(3.5)
    m = proc.scrape()
    assert all_up(m, 3)  # the retry succeeded within the same poll
    reqs = sim.world.requests_for(ids["victim-dcs"])
    i = next(i for i, r in enumerate(reqs) if r.status == 429)
    assert reqs[i + 1].at - reqs[i].at >= 1.2 - 0.05  # waited as the gateway asked
    kreqs = sim.world.requests_for(ids["victim-kafka"])
    j = next(j for j, r in enumerate(kreqs) if r.status == 404)
    assert kreqs[j + 1].status == 200


def test_wrong_credentials_down_only_their_target_and_recover(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    ids = _fleet(sim)
    doc = config_doc(sim, [instance_entry(sim.world, ids["healthy"])], state_path=tmp_path / "s.db")
    other = dict(doc["targets"][0])
    other["instances"] = [instance_entry(sim.world, ids["victim-dcs"])]
    other["project_id"] = PROJECT
    other["credentials"] = {"access_key": "OTHERAK", "secret_key": "rotated-secret-value"}
    # Same project in two targets is fine as long as no instance is listed twice.
    doc["targets"].append(other)
    proc = exporters(write_config(tmp_path / "c.yml", doc))
    m = proc.wait_for(
        lambda m: _up(m, ids["victim-dcs"]) == 0 and _up(m, ids["healthy"]) == 1,
        what="only the target with wrong credentials down",
    )
    assert m.total("huaweicloud_task_api_requests_total", code="401") > 0
    assert "APIG.0301" in proc.output
    # The key becomes valid (say, an IAM admin fixed it): the target recovers by itself.
    sim.world.add_credentials("OTHERAK", "rotated-secret-value")
    proc.wait_for(lambda m: all_up(m, 2), what="recovery after the key is fixed")
    assert "rotated-secret-value" not in proc.output
    assert ACCESS_KEY  # the default credentials kept working for the other target
