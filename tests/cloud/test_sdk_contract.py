"""Contract tests: what the simulator serves and what the exporter asks, against the SDKs.

The exporter runs once (`--once`: the project by name through IAM, discovery of all four
services, the task center, and an account-wide target's project list) against
the simulator; every request it made is read back from the simulator's log and fetched again,
signed, over real HTTP. Each answer is then checked against the official SDK's response
models and each request against its request model (tests/sdk_contract.py), for the DCS
instance tasks, the DCS task center, the Kafka, RabbitMQ and RocketMQ instance tasks, and the
four list-instances APIs and IAM's two project lists. A field renamed in the simulator's
answers is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from exporter.signing import AkSkAuth
from exporter.simulator import Simulator, World
from exporter.simulator.world import (
    CENTER_ONLY_NAMES,
    MISSING,
    TASK_NAMES,
    RequestRecord,
    format_ts,
)
from tests.conftest import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    Metrics,
    run_once,
    write_config,
)
from tests.sdk_contract import (
    APIS,
    INSTANCE_READS,
    LISTING_READS,
    PAGE_READS,
    PROJECT_LIST_READS,
    PROJECT_READS,
    TAG_READS,
    TASK_READS,
    answer_problems,
    declared,
    details_reads,
    request_problems,
)

_ENGINES = {"kafka": "kafka", "rabbitmq": "rabbitmq", "reliability": "rocketmq"}


@dataclass
class Served:
    world: World
    sim: Simulator
    requests: list[tuple[str, RequestRecord]]  # (API key, the request the exporter made)

    def fetch(self, rec: RequestRecord) -> Any:
        """The simulator's answer to that request now, fetched again over HTTP, signed."""
        with httpx.Client(auth=AkSkAuth(ACCESS_KEY, SECRET_KEY), timeout=5) as http:
            response = http.get(self.sim.url(rec.listener) + rec.path, params=rec.query)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return response.json()

    def of(self, api: str) -> list[RequestRecord]:
        return [rec for key, rec in self.requests if key == api]


def api_of(world: World, rec: RequestRecord) -> str:
    if rec.listener == "iam":
        return "iam auth projects" if rec.path.startswith("/v3/auth/") else "iam projects"
    tasks = re.fullmatch(r"/v2/[^/]+/instances/([^/]+)/tasks/?", rec.path)
    if tasks:
        return f"{world.instances[tasks.group(1)].service} tasks"
    if re.fullmatch(r"/v2/[^/]+/tasks/?", rec.path):
        return "dcs center"
    assert re.fullmatch(r"/v2/[^/]+/instances/?", rec.path), rec.path
    if rec.listener == "dcs":
        return "dcs instances"
    return f"{_ENGINES[rec.query['engine']]} instances"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    world = World(seed=11, region=REGION)
    world.add_credentials(ACCESS_KEY, SECRET_KEY)
    for service, names in TASK_NAMES.items():
        inst = world.add_instance(service, f"{service}-one", tags={"env": "prod"})  # type: ignore[arg-type]
        for i, name in enumerate(names):
            world.add_task(inst.id, name, ("SUCCESS", "FAILED", "EXECUTING")[i % 3])
    for name in CENTER_ONLY_NAMES:
        world.add_task(None, name, "SUCCESS")
    sim = Simulator(world).start()
    try:
        tmp = tmp_path_factory.mktemp("contract")
        endpoints = {"dcs": sim.dcs_url, "dms": sim.dms_url, "iam": sim.iam_url}
        doc = {
            "poll_interval": "1s",
            "state_path": str(tmp / "state.db"),
            "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
            "http": {"requests_per_second": 500, "burst": 500, "page_size": 4},
            "targets": [
                {  # the project by name through IAM, every service discovered, task center
                    "region": REGION,
                    "endpoints": endpoints,
                    "task_center": True,
                    "discover": {},
                },
                # account-wide, only for its project list: no region matches
                {"endpoints": endpoints, "regions": ["xx-*"]},
            ],
        }
        run = run_once(write_config(tmp / "config.yml", doc))
        assert run.rc == 0, run.stderr[-3000:]
        assert len(Metrics(run.stdout).find("huaweicloud_task_up")) == 5
        made = [
            (api_of(world, rec), rec)
            for rec in world.requests_for()
            if rec.listener in ("dcs", "dms", "iam") and rec.status == 200
        ]
        yield Served(world, sim, made)
    finally:
        sim.stop()


def test_the_exporter_s_reads_are_found_in_its_source() -> None:
    # Guards the checks against an AST reader that finds nothing.
    assert {"id", "name", "status", "created_at", "updated_at", "details", "params"} <= TASK_READS
    assert {"tasks", "task_count"} <= PAGE_READS
    assert {"instances", "instance_num"} <= LISTING_READS
    assert {"instance_id", "name", "engine", "status", "tags"} <= INSTANCE_READS
    assert {"key", "value"} <= TAG_READS
    assert {"projects"} <= PROJECT_LIST_READS
    assert {"id", "name", "enabled"} <= PROJECT_READS


def test_every_api_was_exercised(served: Served) -> None:
    assert {key for key, _ in served.requests} == set(APIS)


@pytest.mark.parametrize("api", sorted(APIS))
def test_answers_keep_the_sdk_contract(served: Served, api: str) -> None:
    listed = 0
    for rec in served.of(api):
        body = served.fetch(rec)
        assert answer_problems(APIS[api], body) == [], rec.path
        listed += len(body.get("tasks") or body.get("instances") or body.get("projects") or [])
    assert listed > 0  # the answers held tasks or instances to check


@pytest.mark.parametrize("api", sorted(APIS))
def test_requests_keep_the_sdk_contract(served: Served, api: str) -> None:
    found = served.of(api)
    assert found
    for rec in found:
        assert request_problems(APIS[api], rec.path, rec.query) == [], (rec.path, rec.query)


@pytest.mark.smoke
def test_the_details_fields_read_are_the_sdk_s_with_compatible_types() -> None:
    """DCS `details` is a DetailsBody: every field the change summaries read from it is
    declared there with a fitting type; the others are DMS `params` fields (JSON in a string,
    no model) or spellings read in case the API adds them."""
    body = declared(APIS["dcs tasks"].model("DetailsBody"))
    kinds = {"number": {"int", "str"}, "code": {"str"}, "bool": {"bool"}}
    from exporter.core.change import FIELDS, Pair  # noqa: PLC0415 - one test's need

    for f in FIELDS:
        for key in (*f.old, *f.new) if isinstance(f, Pair) else (f.key,):
            if key in body:
                assert body[key] in kinds[f.kind], (key, body[key], f.kind)
    assert details_reads() - set(body) == {
        # DMS params (changeRetentionPolicy, modifyAutoTopic, change-specification requests)
        "origin_retention_policy",
        "new_retention_policy",
        "old_retention_policy",
        "old_auto_status",
        "new_auto_status",
        "old_product_id",
        "new_product_id",
        "old_specification",
        "new_specification",
        "old_storage_space",
        "new_storage_space",
        "old_broker_num",
        "new_broker_num",
        "old_partition_num",
        "new_partition_num",
        "oper_type",
        # read in case the API adds them
        "old_spec_code",
        "new_spec_code",
        "old_flavor_id",
        "new_flavor_id",
        "old_shard_num",
        "new_shard_num",
    }


def _instance(world: World, service: str) -> str:
    return next(i.id for i in world.instances.values() if i.service == service)


def test_a_task_field_renamed_by_the_simulator_is_reported(served: Served) -> None:
    world = served.world
    kafka = _instance(world, "kafka")
    (rec, *_) = served.of("kafka tasks")
    renamed = world.add_task(
        kafka,
        "modifyAutoTopic",
        "SUCCESS",
        raw={"created_at": MISSING, "create_time": format_ts(world.clock())},
    )
    try:
        problems = answer_problems(APIS["kafka tasks"], served.fetch(rec))
    finally:
        world.remove_task(renamed.id)
    assert (
        "Kafka instance tasks: tasks[0].create_time: served, but ListBackgroundTasksRespTasks "
        "declares no such field"
    ) in problems
    assert (
        "Kafka instance tasks: tasks[0].created_at: missing from the answer, and the exporter "
        "needs it"
    ) in problems
    assert answer_problems(APIS["kafka tasks"], served.fetch(rec)) == []


def test_an_instance_field_renamed_by_the_simulator_is_reported(served: Served) -> None:
    world = served.world
    dcs = world.instances[_instance(world, "dcs")]
    (rec, *_) = served.of("dcs instances")
    dcs.raw = {"instance_id": MISSING, "id": dcs.id}
    try:
        problems = answer_problems(APIS["dcs instances"], served.fetch(rec))
    finally:
        dcs.raw = {}
    assert problems == [
        "DCS list instances: instances[0].id: served, but InstanceListInfo declares no such field",
        "DCS list instances: instances[0].instance_id: missing from the answer, and the "
        "exporter needs it",
    ]


def test_a_field_of_another_type_is_reported(served: Served) -> None:
    world = served.world
    (rec, *_) = served.of("dcs center")
    odd = world.add_task(None, "dcsExportJob", "SUCCESS", raw={"enable_show": "yes"})
    try:
        problems = answer_problems(APIS["dcs center"], served.fetch(rec))
    finally:
        world.remove_task(odd.id)
    assert problems == [
        "DCS task center: tasks[0].enable_show: served as str, ListCenterTasksResp declares bool"
    ]


def test_task_count_as_a_number_is_the_documented_variant(served: Served) -> None:
    world = served.world
    (rec, *_) = served.of("rocketmq tasks")
    world.options.task_count = "int"
    try:
        body = served.fetch(rec)
    finally:
        world.options.task_count = "string"
    assert isinstance(body["task_count"], int)
    assert answer_problems(APIS["rocketmq tasks"], body) == []


def test_a_query_parameter_the_sdk_does_not_declare_is_reported(served: Served) -> None:
    (rec, *_) = served.of("dcs tasks")
    query = {**rec.query, "begin_time": rec.query["start_time"]}
    assert request_problems(APIS["dcs tasks"], rec.path, query) == [
        "DCS instance tasks: query begin_time: sent, but ListBackgroundTaskRequest declares no "
        "such parameter"
    ]
    assert request_problems(APIS["kafka tasks"], rec.path, {"start": "x"}) == [
        "Kafka instance tasks: query start: sent a value that is not int"
    ]
    assert request_problems(APIS["dcs center"], rec.path, {}) == [
        "DCS task center: path: the SDK requests /v2/{project_id}/tasks"
    ]
