"""`--probe` through the real CLI, against the simulator in each documented dialect and with
assumptions broken; `--probe.record`'s recording replayed and grepped.

Each run is the exporter as a subprocess, its JSON report parsed: the probe must report the
variant each endpoint speaks, exit 0 when every assumption holds, and exit 1 naming each
one that does not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulator.world import Fault, Service
from tests.conftest import (
    ACCESS_KEY,
    PROJECT,
    SECRET_KEY,
    Metrics,
    Run,
    Sim,
    config_doc,
    run_cli,
    run_once,
    write_config,
)
from tests.probe.replay import replay

SERVICES: tuple[Service, ...] = ("dcs", "kafka", "rabbitmq", "rocketmq")
# Per service: (name, status) of the tasks each instance has, newest last.
TASKS: dict[str, list[tuple[str, str]]] = {
    "dcs": [
        ("EXTEND", "SUCCESS"),
        ("BindEip", "FAILED"),
        ("EXTEND", "EXECUTING"),
        ("AddReplica", "SUCCESS"),
    ],
    "kafka": [
        ("kafkaConfigModify", "SUCCESS"),
        ("modifyAutoTopic", "FAILED"),
        ("bindInstancePublicIp", "CANCELLED"),
        ("changeRetentionPolicy", "EXECUTING"),
        ("kafkaResetConsumerOffset", "SUCCESS"),
    ],
    "rabbitmq": [("bindInstancePublicIp", "SUCCESS"), ("unbindInstancePublicIp", "DELETED")],
    "rocketmq": [("bindInstancePublicIp", "SUCCESS"), ("unbindInstancePublicIp", "CREATED")],
}


@dataclass
class Fleet:
    sim: Sim
    instances: dict[str, str]  # service -> instance ID
    config: Path


@pytest.fixture
def fleet(sim: Sim, tmp_path: Path) -> Fleet:
    """One instance of each service with a few tasks each; the DCS instance configured, the
    DMS ones discovered, the task center on, the project resolved through IAM."""
    now = time.time()
    ids: dict[str, str] = {}
    for service in SERVICES:
        inst = sim.world.add_instance(service, f"{service}-prod-7")
        ids[service] = inst.id
        for i, (name, status) in enumerate(TASKS[service]):
            created = now - 3600 + 300 * i
            sim.world.add_task(inst.id, name, status, created, created + 40 + i)
    doc = config_doc(
        sim,
        [{"service": "dcs", "id": ids["dcs"], "name": "redis-prod"}],
        task_center=True,
        state_path=tmp_path / "state.db",
    )
    target = doc["targets"][0]
    del target["project_id"]
    target["endpoints"]["iam"] = sim.server.iam_url
    target["discover"] = {"services": ["kafka", "rabbitmq", "rocketmq"]}
    return Fleet(sim, ids, write_config(tmp_path / "config.yml", doc))


def _probe(fleet: Fleet, *extra: str) -> tuple[Run, dict[str, Any]]:
    run = run_cli(f"--config.file={fleet.config}", "--probe", "--probe.format=json", *extra)
    assert run.stdout, run.stderr
    return run, json.loads(run.stdout)


def _found(report: dict[str, Any], subject: str, name: str) -> list[dict[str, Any]]:
    """The `found` of the checks named `name` whose subject contains `subject`."""
    return [x["found"] for x in report["checks"] if subject in x["subject"] and x["name"] == name]


def _verdicts(report: dict[str, Any], subject: str, name: str) -> set[str]:
    return {x["verdict"] for x in report["checks"] if subject in x["subject"] and x["name"] == name}


DMS = ("kafka", "rabbitmq", "rocketmq")


@pytest.mark.smoke
def test_the_default_dialects_hold_every_assumption(fleet: Fleet) -> None:
    run, report = _probe(fleet)
    assert run.rc == 0, report["failed"]
    assert report["ok"] is True
    assert report["failed"] == []
    # One task list of each kind: the four services' instances and the task center.
    subjects = {x["subject"] for x in report["checks"] if x["name"] == "read"}
    assert len(subjects) == 5
    assert any("dcs task center" in s for s in subjects)
    for service in DMS:
        assert _found(report, f"{service} instance", "paging") == [{"start": "0"}]
        assert _found(report, f"{service} instance", "window")[0]["honoured"] == ["begin_time"]
    assert _found(report, "dcs instance", "paging") == [{"offset": "0-based"}]
    assert _found(report, "dcs task center", "window")[0]["honoured"] == ["start_time"]
    assert _found(report, "dcs instance", "answer.task_count") == [{"task_count": "string"}]
    statuses = _found(report, "kafka instance", "statuses")[0]["statuses"]
    assert statuses == {"SUCCESS": 2, "FAILED": 1, "CANCELLED": 1, "EXECUTING": 1}
    assert _found(report, "discovery kafka", "listing") == [{"instances": 1}]
    assert report["requests"] < 50  # a few per task list


@pytest.mark.parametrize(
    ("options", "start", "count", "offset"),
    [
        ({"dms_start": "1", "task_count": "int"}, "1", "number", "ignored"),
        ({"dms_start": "1-strict", "dms_offset": True}, "1-strict", "string", "ignored"),
        ({"dms_start": "0", "dms_offset": True, "task_count": "mixed"}, "0", None, "honoured"),
    ],
)
def test_each_documented_paging_dialect_is_reported(
    fleet: Fleet, options: dict[str, Any], start: str, count: str | None, offset: str
) -> None:
    for key, value in options.items():
        setattr(fleet.sim.world.options, key, value)
    run, report = _probe(fleet)
    assert run.rc == 0, report["failed"]
    for service in DMS:
        assert _found(report, f"{service} instance", "paging") == [{"start": start}]
        if options.get("dms_offset") and start == "0":
            assert _found(report, f"{service} instance", "paging.offset") == [{"offset": offset}]
    if count is not None:
        assert _found(report, "kafka instance", "answer.task_count") == [{"task_count": count}]
    if options.get("dms_start") == "1-strict":
        # The refused start=0 and the reader's retry from 1 are in the report as a success.
        assert _verdicts(report, "kafka instance", "read") == {"ok"}


@pytest.mark.parametrize(
    ("options", "dcs", "dms"),
    [
        ({"dcs_window_param": "begin_time"}, ["begin_time"], ["begin_time"]),
        ({"dms_window_param": "start_time"}, ["start_time"], ["start_time"]),
        ({"dcs_window_param": "none", "dms_window": False}, [], []),
    ],
    ids=["dcs-begin_time", "dms-start_time", "ignored"],
)
def test_the_window_is_reported_under_the_name_it_is_honoured(
    fleet: Fleet, options: dict[str, Any], dcs: list[str], dms: list[str]
) -> None:
    """The exporter sends `start_time` to DCS and `begin_time` to DMS: a server honouring
    only the other name, or none, breaks that assumption (the exporter still filters the
    window itself, but every poll reads more than it needs)."""
    for key, value in options.items():
        setattr(fleet.sim.world.options, key, value)
    run, report = _probe(fleet)
    assert _found(report, "dcs instance", "window")[0]["honoured"] == dcs
    assert _found(report, "dcs task center", "window")[0]["honoured"] == dcs
    for service in DMS:
        assert _found(report, f"{service} instance", "window")[0]["honoured"] == dms
    broken = {
        name.split(": ")[0].split(" ")[1] for name in report["failed"] if name.endswith(": window")
    }
    expected = set()
    if "start_time" not in dcs:
        expected.add("dcs")
    if "begin_time" not in dms:
        expected.update(DMS)
    assert broken == expected
    assert run.rc == 1
    assert all(name.endswith(": window") for name in report["failed"])


def test_a_renamed_field_fails_and_is_named(fleet: Fleet) -> None:
    fleet.sim.world.options.rename_task_fields = {"created_at": "create_time"}
    run, report = _probe(fleet)
    assert run.rc == 1
    assert (
        f"targets[0] kafka instance {fleet.instances['kafka']}: task.created_at"
        in (report["failed"])
    )
    assert _found(report, "kafka instance", "task.unknown_fields") == [{"fields": ["create_time"]}]
    assert {n.split(": ")[1] for n in report["failed"]} == {"task.created_at"}


def test_an_answer_without_tasks_fails_and_is_named(fleet: Fleet) -> None:
    fleet.sim.world.options.rename_answer_fields = {"tasks": ""}
    run, report = _probe(fleet)
    assert run.rc == 1
    assert {n.split(": ")[1] for n in report["failed"]} == {"answer.tasks"}
    assert len(report["failed"]) == 5  # every task list read


def test_a_status_never_seen_before_fails_and_is_named(fleet: Fleet) -> None:
    fleet.sim.world.add_task(fleet.instances["rocketmq"], "bindInstancePublicIp", "ROLLING_BACK")
    run, report = _probe(fleet)
    assert run.rc == 1
    assert report["failed"] == [
        f"targets[0] rocketmq instance {fleet.instances['rocketmq']}: statuses"
    ]
    assert _found(report, "rocketmq instance", "statuses")[0]["unknown"] == ["ROLLING_BACK"]


def test_an_ignored_offset_fails_and_is_named(fleet: Fleet) -> None:
    fleet.sim.world.options.dcs_offset = False
    run, report = _probe(fleet)
    assert run.rc == 1
    assert {n.split(": ")[1] for n in report["failed"]} == {"paging"}
    assert _found(report, "dcs instance", "paging") == [{"offset": "ignored"}]


def test_throttling_is_reported_and_a_failed_listing_named(fleet: Fleet) -> None:
    world = fleet.sim.world
    world.add_fault(Fault("throttle", listener="dms", listing=False, remaining=2, retry_after=0.05))
    world.add_fault(Fault("http_error", listener="dms", listing=True, status=403, remaining=1))
    run, report = _probe(fleet)
    assert run.rc == 1
    assert report["failed"] == ["targets[0] discovery kafka: listing"]
    throttling = [x for x in report["checks"] if x["name"] == "throttling"]
    assert [(x["verdict"], x["found"]) for x in throttling] == [("warn", {"throttled": 2.0})]
    # Retried after the gateway's Retry-After: every list was still read.
    assert _verdicts(report, "instance", "read") == {"ok"}


def test_the_text_report_names_what_does_not_hold(fleet: Fleet) -> None:
    fleet.sim.world.options.dms_window = False
    run = run_cli(f"--config.file={fleet.config}", "--probe", process=True)
    assert run.rc == 1
    lines = run.stdout.splitlines()
    assert "3 check(s) failed:" in lines
    assert f"  targets[0] kafka instance {fleet.instances['kafka']}: window" in lines
    assert any(line.startswith("  FAIL  window") for line in lines)
    assert any(line.startswith("  ok    paging ") for line in lines)


# -- recordings ------------------------------------------------------------------------------


def _series(m: Metrics, name: str) -> dict[tuple[str, ...], float]:
    """A family's samples by service, kind of list and the task labels (not the IDs)."""
    out: dict[tuple[str, ...], float] = {}
    for s in m.find(name):
        key = (
            s.labels["cloud_service"],
            "center" if s.labels["instance_id"] == "" else "instance",
            s.labels.get("task_name", ""),
            s.labels.get("status", ""),
        )
        out[key] = s.value
    return out


COUNTED = (
    "huaweicloud_task_recent_tasks",
    "huaweicloud_task_finished_total",
    "huaweicloud_task_last_status",
    "huaweicloud_task_last_duration_seconds",
    "huaweicloud_task_last_finished_timestamp_seconds",
    "huaweicloud_task_oldest_unfinished_start_timestamp_seconds",
)


@pytest.mark.parametrize(
    "options",
    [{}, {"dms_start": "1", "task_count": "int"}, {"dms_start": "1-strict"}],
    ids=["default", "dms-1-based-small-pages", "dms-refusing-0-small-pages"],
)
def test_a_recording_replays_and_counts_as_the_exporter_does(
    fleet: Fleet, tmp_path: Path, options: dict[str, Any]
) -> None:
    for key, value in options.items():
        setattr(fleet.sim.world.options, key, value)
    if options:  # pages of 2: the reader pages, and a 1-based server repeats a task per page
        text = fleet.config.read_text().replace("burst: 200", "burst: 200\n  page_size: 2")
        fleet.config.write_text(text)
    record = tmp_path / "recording"
    run, _ = _probe(fleet, f"--probe.record={record}")
    assert run.rc == 0, run.stdout
    once = run_once(fleet.config)
    assert once.rc == 0, once.stderr
    live, replayed = Metrics(once.stdout), Metrics(replay(record))
    for family in COUNTED:
        assert _series(replayed, family) == _series(live, family), family
    assert (
        _series(live, "huaweicloud_task_recent_tasks")[
            ("kafka", "instance", "modifyAutoTopic", "FAILED")
        ]
        == 1
    )
    if options:
        manifest = json.loads((record / "manifest.json").read_text())
        kafka = next(t for t in manifest["task_lists"] if t["service"] == "kafka")
        assert len(kafka["requests"]) >= 3  # several pages were recorded and replayed


def test_a_recording_holds_no_identifier_name_address_or_secret(
    fleet: Fleet, tmp_path: Path
) -> None:
    world = fleet.sim.world
    # Context with addresses and IDs inside `details` and `params`, and a password in params.
    world.add_task(fleet.instances["dcs"], "BindEip", "SUCCESS", time.time() - 60)
    world.add_task(
        fleet.instances["kafka"],
        "kafkaConfigModify",
        "SUCCESS",
        time.time() - 30,
        params={"sasl_password": "Hunter2-very-secret", "broker": "kafka-1.internal.example.com"},
    )
    record = tmp_path / "recording"
    run, report = _probe(fleet, f"--probe.record={record}")
    assert run.rc == 0, report["failed"]
    text = "\n".join(p.read_text() for p in sorted(record.iterdir())).lower()
    assert '"tasks"' in text
    assert "bindeip" in text
    secrets = {ACCESS_KEY, SECRET_KEY, PROJECT, world.domain_id, "Hunter2-very-secret"}
    secrets |= {"kafka-1.internal.example.com", "127.0.0.1", fleet.sim.dcs_url, fleet.sim.dms_url}
    for inst in world.instances.values():
        secrets |= {inst.id, inst.name}
    for task in world.tasks.values():
        secrets |= {task.id, task.job_id, task.user_id, task.user_name}
        secrets |= set(_strings(task.details)) | set(_strings(task.params))
    secrets -= {""}
    assert len(secrets) > 40
    assert sum(1 for s in secrets if s.count(".") == 3) >= 2  # IP addresses among them
    leaked = sorted(s for s in secrets if s.lower() in text)
    assert not leaked
    # Nor in the report and the log.
    for s in (ACCESS_KEY, SECRET_KEY, "Hunter2-very-secret"):
        assert s not in run.stdout
        assert s not in run.stderr


def _strings(value: Any) -> Iterator[str]:
    """The identifying strings inside a task's `details` or `params`: IDs and addresses."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and key.endswith(("_id", "_ip", "_address", "broker")):
                yield item
            elif isinstance(item, dict | list):
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_probe_flags_are_checked(fleet: Fleet, tmp_path: Path) -> None:
    alone = run_cli(f"--config.file={fleet.config}", f"--probe.record={tmp_path / 'r'}")
    assert alone.rc == 2
    assert "--probe.record goes with --probe" in alone.stderr
    both = run_cli(f"--config.file={fleet.config}", "--probe", "--once")
    assert both.rc == 2
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    run = run_cli(f"--config.file={fleet.config}", "--probe", f"--probe.record={blocked}")
    assert run.rc == 1
    assert "cannot write the recording" in run.stderr
    assert not (tmp_path / "r").exists()


def test_with_an_iam_password_nothing_secret_is_reported_or_recorded(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Password credentials: the token request is the one POST (authentication, never
    recorded); neither the password nor the token shows in the report, the log or the
    recording."""
    world = fleet.sim.world
    world.add_iam_user("acme-domain", "probe-user", "correct-horse-battery-staple")
    doc = yaml.safe_load(fleet.config.read_text())
    doc["targets"][0]["credentials"] = {
        "source": "password",
        "user": "probe-user",
        "domain": "acme-domain",
        "password": "correct-horse-battery-staple",
    }
    write_config(fleet.config, doc)
    record = tmp_path / "recording"
    run, report = _probe(fleet, f"--probe.record={record}")
    assert run.rc == 0, report["failed"]
    assert world.tokens_issued >= 1
    assert _found(report, "kafka instance", "paging") == [{"start": "0"}]
    recorded = "\n".join(p.read_text() for p in sorted(record.iterdir()))
    secrets = ["correct-horse-battery-staple", "probe-user", "acme-domain", *world.tokens]
    for secret in secrets:
        assert secret not in run.stdout
        assert secret not in run.stderr
        assert secret not in recorded
    methods = {r.method for r in world.requests if r.listener in ("dcs", "dms")}
    assert methods == {"GET"}


def test_the_demo_can_be_probed() -> None:
    """`--demo --probe`, as the README suggests to see a report: every assumption holds."""
    run = run_cli("--demo", "--probe", "--probe.format=json")
    assert run.rc == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] is True
    assert len({x["subject"] for x in report["checks"] if x["name"] == "read"}) == 5
