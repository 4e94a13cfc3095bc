"""The simulator is part of the product: its churn must look like the real cloud's."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from exporter.cloud.client import CloudClient
from exporter.cloud.providers import ProviderCache
from exporter.config import load_config_text
from exporter.core.tasks import Task, parse_task
from exporter.polling.dialects import TaskReader
from exporter.polling.targets import all_task_lists, build_targets
from exporter.signing import AkSkAuth
from exporter.simulator.fleet import demo_world
from exporter.simulator.world import (
    TASK_NAMES,
    USERS,
    Churn,
    Service,
    World,
    listener_of,
    user_id_of,
)
from exporter.telemetry.selfmetrics import SelfMetrics
from tests.conftest import (
    ACCESS_KEY,
    PROJECT,
    SECRET_KEY,
    Metrics,
    Sim,
    config_doc,
    instance_entry,
)

pytestmark = pytest.mark.smoke  # run on every supported Python

FINAL = {"SUCCESS", "FAILED", "CANCELLED", "DELETED"}


def test_churn_lifecycles_only_move_forward_and_are_deterministic() -> None:
    def run(seed: int) -> dict[str, list[str]]:
        now = [1_000.0]
        world = World(seed=seed, clock=lambda: now[0])
        for service in ("dcs", "kafka", "rocketmq", "rabbitmq"):
            world.add_instance(service, service)
        world.start_churn(
            Churn(
                mean_interval=1.0,
                min_duration=0.3,
                max_duration=3.0,
                p_failed=0.3,
                p_stuck=0.1,
                p_cancelled=0.1,
            )
        )
        history: dict[str, list[str]] = {}
        for _ in range(2_000):
            now[0] += 0.01
            world.advance()
            for task in world.tasks.values():
                seen = history.setdefault(task.id, [])
                if not seen or seen[-1] != task.status:
                    seen.append(task.status)
        return history

    history = run(3)
    assert len(history) > 40
    order = {"CREATED": 0, "EXECUTING": 1}
    for statuses in history.values():
        ranks = [order.get(s, 2) for s in statuses]
        assert ranks == sorted(ranks), statuses  # never back from a final status
        assert sum(s in FINAL for s in statuses) <= 1, statuses
    assert {s[-1] for s in history.values()} >= {"SUCCESS", "FAILED", "EXECUTING"}
    assert run(3) == history  # same seed, same tasks


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_print_config_exits_and_a_simulator_started_later_accepts_it(tmp_path: Path) -> None:
    """The README's steps: print the config, start the simulator, run the exporter on it."""
    dcs, dms, iam, metadata = _free_ports(4)
    ports = [f"--dcs-port={dcs}", f"--dms-port={dms}", f"--iam-port={iam}"]
    ports.append(f"--metadata-port={metadata}")
    printed = subprocess.run(
        [sys.executable, "-m", "exporter.simulator", "--print-config", *ports],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    doc = yaml.safe_load(printed.stdout)
    assert [t["endpoints"] for t in doc["targets"]] == [
        {"dcs": f"http://127.0.0.1:{dcs}", "dms": f"http://127.0.0.1:{dms}"}
    ]
    (tmp_path / "sim.yml").write_text(printed.stdout)

    with (tmp_path / "sim.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "exporter.simulator", *ports], stderr=log, text=True
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", dms), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "sim.log").read_text()
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        polled = subprocess.run(
            [sys.executable, "-m", "exporter", "--config.file=sim.yml", "--once"],
            cwd=tmp_path,  # the printed state_path is relative
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert polled.returncode == 0, polled.stderr
    ups = Metrics(polled.stdout).find("huaweicloud_task_up")
    assert len(ups) == 6  # the demo fleet's five instances and its task center
    assert all(s.value == 1 for s in ups)
    assert (tmp_path / "sim-state.db").exists()


# -- task context: user_name, user_id, params, details ---------------------------------------


SERVICES: tuple[Service, ...] = ("dcs", "kafka", "rabbitmq", "rocketmq")


def _fetch_tasks(sim: Sim, tmp_path: Path, instance_ids: list[str]) -> dict[str, list[Task]]:
    """Every task the exporter's own client reads, per target kind and instance (real HTTP)."""
    doc = config_doc(
        sim,
        [instance_entry(sim.world, i) for i in instance_ids],
        task_center=True,
        state_path=tmp_path / "s.db",
    )
    config = load_config_text(yaml.safe_dump(doc))

    async def run() -> dict[str, list[Task]]:
        out: dict[str, list[Task]] = {}
        async with httpx.AsyncClient() as http:
            client = CloudClient(http, config.http, SelfMetrics(CollectorRegistry()))
            reader = TaskReader(client)
            sources = build_targets(config, ProviderCache(http, http), client)
            for target in all_task_lists(sources):
                result = await reader.fetch_tasks(target, time.time() - 86400)
                out[target.instance_id or target.kind] = list(result.tasks)
        return out

    return asyncio.run(run())


def _raw_tasks(sim: Sim, url: str) -> list[dict[str, Any]]:
    resp = httpx.get(url, params={"limit": 100}, auth=AkSkAuth(ACCESS_KEY, SECRET_KEY))
    assert resp.status_code == 200, resp.text
    tasks: list[dict[str, Any]] = resp.json()["tasks"]
    return tasks


def test_task_context_is_served_as_documented_in_instance_lists_and_the_task_center(
    sim: Sim,
) -> None:
    world = sim.world
    redis = world.add_instance("dcs", "redis-1", PROJECT)
    kafka = world.add_instance("kafka", "kafka-1", PROJECT)
    now = time.time()
    extend = world.add_task(redis.id, "EXTEND", "FAILED", now - 60, now - 30)
    auto_topic = world.add_task(kafka.id, "modifyAutoTopic", "SUCCESS", now - 60, now - 30)

    base = f"/v2/{PROJECT}"
    (dcs_task,) = _raw_tasks(sim, f"{sim.dcs_url}{base}/instances/{redis.id}/tasks")
    assert dcs_task["id"] == extend.id
    assert dcs_task["user_name"] == extend.user_name != ""
    assert re.fullmatch("[0-9a-f]{32}", dcs_task["user_id"])
    details = dcs_task["details"]
    assert details["old_cache_mode"] == details["new_cache_mode"]
    assert isinstance(details["old_capacity"], str)  # the instance list's example: strings
    assert details["old_capacity"] != details["new_capacity"]
    assert details["new_resource_spec_code"].startswith(f"redis.{details['new_cache_mode']}.")
    assert dcs_task["enable_show"] is True

    (center_task,) = _raw_tasks(sim, f"{sim.dcs_url}{base}/tasks")
    assert center_task["id"] == extend.id
    assert center_task["name"] == "ChangeInstanceSpec"
    assert center_task["user_name"] == dcs_task["user_name"]
    assert center_task["user_id"] == dcs_task["user_id"]
    # The task center's example gives the capacities as numbers.
    assert center_task["details"]["old_capacity"] == float(details["old_capacity"])
    assert center_task["details"]["new_resource_spec_code"] == details["new_resource_spec_code"]

    (dms_task,) = _raw_tasks(sim, f"{sim.dms_url}{base}/instances/{kafka.id}/tasks")
    assert dms_task["id"] == auto_topic.id
    assert "details" not in dms_task
    assert isinstance(dms_task["params"], str)  # JSON inside a string, as documented
    params = json.loads(dms_task["params"])
    assert set(params) == {"old_auto_status", "new_auto_status"}
    assert params["old_auto_status"] is not params["new_auto_status"]


def test_the_exporter_reads_each_task_kind_with_its_context(sim: Sim, tmp_path: Path) -> None:
    world = sim.world
    ids = [world.add_instance(service, service, PROJECT).id for service in SERVICES]
    now = time.time()
    for inst_id in ids:
        service = world.instances[inst_id].service
        for i, name in enumerate(TASK_NAMES[service]):
            world.add_task(inst_id, name, "SUCCESS", now - 600 + i, now - 500 + i)
    read = _fetch_tasks(sim, tmp_path, ids)
    changes: dict[str, str] = {}
    for inst_id in ids:
        for task in read[inst_id]:
            assert task.user_name in USERS[listener_of(world.instances[inst_id].service)]
            changes[task.name] = task.change
    assert re.fullmatch(
        r"capacity [0-9.]+ -> [0-9.]+, spec redis\.\S+ -> redis\.\S+", changes["EXTEND"]
    )
    assert re.fullmatch(r"replicas \d -> \d", changes["AddReplica"])
    assert changes["UpdatePort"] == "port 6379 -> 6380"
    assert changes["BindEip"].startswith("public access true")
    assert changes["UnBindEip"] == "public access false"
    assert changes["modifyAutoTopic"] in ("auto topic true -> false", "auto topic false -> true")
    assert changes["changeRetentionPolicy"].startswith("retention policy ")
    assert changes["bindInstancePublicIp"] == "public access true"
    assert changes["unbindInstancePublicIp"] == "public access false"
    # Free-form config names and values are never summarized.
    assert changes["kafkaConfigModify"] == ""
    assert changes["modify"] == ""
    center = {t.id: t for t in read["task_center"]}
    for task in read[ids[0]]:
        assert (center[task.id].user_name, center[task.id].change) == (task.user_name, task.change)


SECRET = "Sup3r-Secret.Passw0rd"


def test_add_task_sets_the_context_and_a_secret_in_params_never_reaches_a_task(
    sim: Sim, tmp_path: Path
) -> None:
    world = sim.world
    redis = world.add_instance("dcs", "redis-1", PROJECT)
    rabbit = world.add_instance("rabbitmq", "rabbit-1", PROJECT)
    now = time.time()
    # The existing positional signature still works, the new keywords set the context.
    world.add_task(
        redis.id,
        "modify",
        "FAILED",
        now - 60,
        now - 30,
        user_name="mallory",
        params={"password": SECRET, "new_password": SECRET, "old_capacity": 1, "new_capacity": 2},
        details={"old_port": 6379, "new_port": 7000, "account_name": SECRET},
    )
    world.add_task(
        rabbit.id,
        "bindInstancePublicIp",
        "FAILED",
        now - 50,
        now - 20,
        params={"token": SECRET, "secret_key": SECRET, "auth": SECRET, "enable_public_ip": True},
    )
    world.add_task(rabbit.id, "unbindInstancePublicIp", "SUCCESS", now - 40, params=None)
    # The simulated cloud serves the secret, as a careless API would ...
    raw = _raw_tasks(sim, f"{sim.dcs_url}/v2/{PROJECT}/instances/{redis.id}/tasks")
    assert SECRET in raw[0]["params"]
    assert json.loads(raw[0]["params"])["password"] == SECRET
    assert raw[0]["user_name"] == "mallory"
    assert raw[0]["user_id"] == user_id_of("mallory")
    rabbit_raw = _raw_tasks(sim, f"{sim.dms_url}/v2/{PROJECT}/instances/{rabbit.id}/tasks")
    assert "params" not in rabbit_raw[0]  # params=None: the field is left out
    # ... and the exporter keeps what the allow-list lets through, never the secret.
    read = _fetch_tasks(sim, tmp_path, [redis.id, rabbit.id])
    (modify,) = read[redis.id]
    assert (modify.user_name, modify.change) == ("mallory", "port 6379 -> 7000, capacity 1 -> 2")
    bind = next(t for t in read[rabbit.id] if t.name == "bindInstancePublicIp")
    assert bind.change == "public access true"
    for tasks in read.values():
        for task in tasks:
            assert SECRET not in repr(task)


def test_task_context_is_deterministic_per_seed() -> None:
    def context(seed: int) -> list[tuple[str, str, str | None, Any]]:
        world = World(seed=seed)
        for service in SERVICES:
            inst = world.add_instance(service, service)
            for name in TASK_NAMES[service]:
                world.add_task(inst.id, name, "SUCCESS", 1_000.0, 1_010.0)
        return [(t.name, t.user_name, t.params, t.details) for t in world.tasks.values()]

    assert context(5) == context(5)
    assert context(5) != context(6)


def test_admin_api_sets_the_task_context(sim: Sim) -> None:
    inst = sim.world.add_instance("kafka", "kafka-1", PROJECT)
    body = {
        "instance_id": inst.id,
        "name": "changeRetentionPolicy",
        "status": "FAILED",
        "user_name": "dave",
        "params": {
            "origin_retention_policy": "time_base",
            "new_retention_policy": "produce_reject",
        },
    }
    created = httpx.post(f"{sim.dms_url}/_sim/tasks", json=body).json()
    assert created["user_name"] == "dave"
    (task,) = _raw_tasks(sim, f"{sim.dms_url}/v2/{PROJECT}/instances/{inst.id}/tasks")
    assert task["user_name"] == "dave"
    assert json.loads(task["params"]) == body["params"]


def test_the_demo_failures_carry_who_and_what() -> None:
    # Built a minute ago: its scripted tasks have run their course by now.
    world = demo_world("secret", now=time.time() - 60)
    world.advance()
    failed = [t for t in world.tasks.values() if t.status == "FAILED"]
    assert {t.service for t in failed} == {"dcs", "kafka", "rabbitmq", "rocketmq"}
    changes: dict[tuple[str, str], str] = {}
    for sim_task in failed:
        task = parse_task(sim_task.view(), time.time())
        assert task is not None
        assert task.user_name, sim_task
        changes[task.user_name, task.name] = task.change
    # The scripted resize that fails seconds into the demo, and the config change (whose
    # free-form settings are never summarized).
    assert changes["alice", "EXTEND"].startswith("capacity ")
    assert changes["carol", "kafkaConfigModify"] == ""
    assert sum(bool(c) for c in changes.values()) >= len(changes) - 1


def test_odd_details_given_by_a_test_are_served_as_given(sim: Sim) -> None:
    inst = sim.world.add_instance("dcs", "redis-1", PROJECT)
    odd = {"old_capacity": "n/a", "new_capacity": "0.5", "note": "<b>\ud800"}
    sim.world.add_task(inst.id, "EXTEND", "FAILED", time.time() - 60, details=odd)
    (center,) = _raw_tasks(sim, f"{sim.dcs_url}/v2/{PROJECT}/tasks")
    assert center["details"]["old_capacity"] == "n/a"
    assert center["details"]["new_capacity"] == 0.5
    sim.world.add_task(inst.id, "BindEip", "SUCCESS", time.time() - 30, details=None)
    listed = _raw_tasks(sim, f"{sim.dcs_url}/v2/{PROJECT}/instances/{inst.id}/tasks")
    assert listed[0]["details"] is None
    assert listed[0]["enable_show"] is False
