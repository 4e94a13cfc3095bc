"""The official SDKs' models as an oracle for the task and list-instances APIs.

The SDK packages (`huaweicloudsdkdcs`, `…kafka`, `…rabbitmq`, `…rocketmq`, and `…iam` for the
project lists) are generated from
the same API definitions as the cloud: each model class declares its fields (`openapi_types`,
JSON names in `attribute_map`), and each client method's `_…_http_info` says the path and the
query parameters a request sends. This module checks an answer the simulator served, and a
request the exporter sent, against them:

- every field of the answer is declared by the SDK's model, with a compatible type (nested
  models too: a task's `details`, an instance's `tags`);
- every field the exporter reads (found in its source, so a new read is checked too) is
  declared, and the fields it cannot do without are present;
- the SDK's own deserializer gives back the values the exporter reads;
- every query parameter the exporter sent is declared by the SDK's request model, its value
  parses as the declared type, and the SDK, given the same values, would request the same
  path with the same parameter names.

Test-only: the exporter never imports an SDK (tests/test_layering.py).
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.core.change import FIELDS, Pair

ROOT = Path(__file__).resolve().parent.parent

# Documented as strings, given as numbers in the references' own examples (`"task_count": 1`;
# the task center's capacities): the exporter reads both spellings.
NUMBER_AS_STRING = frozenset({"task_count", "old_capacity", "new_capacity"})
# Fields the references' example answers show and a model leaves out (the exporter reads none
# of them): IAM's project list links to the previous and next pages, its model only to itself.
DOCUMENTED_EXTRA = frozenset({("LinksSelf", "previous"), ("LinksSelf", "next")})


def reads(module: str) -> dict[str, set[str]]:
    """The JSON fields a module of the exporter reads, by the name of the variable read from:
    every `name.get("field", …)` and `name["field"]` (`name[]` for `name[0].get("field")`)."""
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        target: ast.expr | None = None
        key: ast.expr | None = None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            target, key = node.func.value, node.args[0]
        elif isinstance(node, ast.Subscript):
            target, key = node.value, node.slice
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            continue
        if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
            found.setdefault(target.value.id + "[]", set()).add(key.value)
        elif isinstance(target, ast.Name):
            found.setdefault(target.id, set()).add(key.value)
    return found


def details_reads() -> set[str]:
    """Every `details`/`params` field the change summaries read (exporter/core/change.py)."""
    keys: set[str] = set()
    for f in FIELDS:
        keys.update((*f.old, *f.new) if isinstance(f, Pair) else (f.key,))
    return keys


@dataclass(frozen=True)
class Shape:
    """What the exporter expects at one level of an answer: the fields it reads (None: not
    checked here), those it cannot do without, those it reads that this API has by design
    none of, and the shapes of nested fields."""

    reads: frozenset[str] | None
    required: frozenset[str] = frozenset()
    absent_by_design: frozenset[str] = frozenset()
    children: Mapping[str, Shape] = field(default_factory=dict)


_TASKS = reads("exporter/core/tasks.py")
_LISTING = reads("exporter/cloud/discovery.py")
TASK_READS = frozenset(_TASKS["raw"])
PAGE_READS = frozenset(_TASKS["body"])
LISTING_READS = frozenset(_LISTING["body"])
INSTANCE_READS = frozenset(_LISTING["item"])
TAG_READS = frozenset(_LISTING["t"])
_PROJECTS = reads("exporter/cloud/projects.py")
PROJECT_LIST_READS = frozenset(_PROJECTS["body"])
PROJECT_READS = frozenset(_PROJECTS["item"] | _PROJECTS["projects[]"])

_DETAILS = Shape(None)
DCS_TASKS = Shape(
    PAGE_READS,
    frozenset({"tasks"}),
    children={
        "tasks": Shape(
            TASK_READS,
            frozenset({"id", "name", "status", "created_at"}),
            children={"details": _DETAILS},
        )
    },
)
# DMS tasks have no `details`: what they change is in `params` (JSON inside a string).
DMS_TASKS = Shape(
    PAGE_READS,
    frozenset({"tasks"}),
    children={
        "tasks": Shape(
            TASK_READS,
            frozenset({"id", "name", "status", "created_at"}),
            frozenset({"details"}),
        )
    },
)
LISTING = Shape(
    LISTING_READS,
    frozenset({"instances"}),
    children={
        "instances": Shape(
            INSTANCE_READS,
            frozenset({"instance_id"}),
            children={"tags": Shape(TAG_READS, frozenset({"key"}))},
        )
    },
)

PROJECTS = Shape(
    PROJECT_LIST_READS,
    frozenset({"projects"}),
    children={"projects": Shape(PROJECT_READS, frozenset({"id", "name"}))},
)


@dataclass(frozen=True)
class Api:
    """One API as an SDK describes it: the client, its request description and models."""

    name: str
    package: str  # imported at the first use, not at every pytest worker's collection
    client_name: str
    http_info: str
    request: str
    response: str
    shape: Shape

    @property
    def client(self) -> type[Any]:
        return getattr(importlib.import_module(self.package), self.client_name)  # type: ignore[no-any-return]

    @property
    def models(self) -> Any:
        return importlib.import_module(self.package + ".model")

    def model(self, name: str) -> type[Any]:
        return getattr(self.models, name)  # type: ignore[no-any-return]


APIS = {
    "dcs tasks": Api(
        "DCS instance tasks",
        "huaweicloudsdkdcs.v2",
        "DcsClient",
        "_list_background_task_http_info",
        "ListBackgroundTaskRequest",
        "ListBackgroundTaskResponse",
        DCS_TASKS,
    ),
    "dcs center": Api(
        "DCS task center",
        "huaweicloudsdkdcs.v2",
        "DcsClient",
        "_list_center_task_http_info",
        "ListCenterTaskRequest",
        "ListCenterTaskResponse",
        DCS_TASKS,
    ),
    "kafka tasks": Api(
        "Kafka instance tasks",
        "huaweicloudsdkkafka.v2",
        "KafkaClient",
        "_list_background_tasks_http_info",
        "ListBackgroundTasksRequest",
        "ListBackgroundTasksResponse",
        DMS_TASKS,
    ),
    "rabbitmq tasks": Api(
        "RabbitMQ instance tasks",
        "huaweicloudsdkrabbitmq.v2",
        "RabbitMQClient",
        "_list_background_tasks_http_info",
        "ListBackgroundTasksRequest",
        "ListBackgroundTasksResponse",
        DMS_TASKS,
    ),
    "rocketmq tasks": Api(
        "RocketMQ instance tasks",
        "huaweicloudsdkrocketmq.v2",
        "RocketMQClient",
        "_list_background_tasks_http_info",
        "ListBackgroundTasksRequest",
        "ListBackgroundTasksResponse",
        DMS_TASKS,
    ),
    "dcs instances": Api(
        "DCS list instances",
        "huaweicloudsdkdcs.v2",
        "DcsClient",
        "_list_instances_http_info",
        "ListInstancesRequest",
        "ListInstancesResponse",
        LISTING,
    ),
    "kafka instances": Api(
        "Kafka list instances",
        "huaweicloudsdkkafka.v2",
        "KafkaClient",
        "_list_instances_http_info",
        "ListInstancesRequest",
        "ListInstancesResponse",
        LISTING,
    ),
    "rabbitmq instances": Api(
        "RabbitMQ list instances",
        "huaweicloudsdkrabbitmq.v2",
        "RabbitMQClient",
        "_list_instances_details_http_info",
        "ListInstancesDetailsRequest",
        "ListInstancesDetailsResponse",
        LISTING,
    ),
    "rocketmq instances": Api(
        "RocketMQ list instances",
        "huaweicloudsdkrocketmq.v2",
        "RocketMQClient",
        "_list_instances_http_info",
        "ListInstancesRequest",
        "ListInstancesResponse",
        LISTING,
    ),
    "iam auth projects": Api(
        "IAM projects of the credentials",
        "huaweicloudsdkiam.v3",
        "IamClient",
        "_keystone_list_auth_projects_http_info",
        "KeystoneListAuthProjectsRequest",
        "KeystoneListAuthProjectsResponse",
        PROJECTS,
    ),
    "iam projects": Api(
        "IAM projects by name",
        "huaweicloudsdkiam.v3",
        "IamClient",
        "_keystone_list_projects_http_info",
        "KeystoneListProjectsRequest",
        "KeystoneListProjectsResponse",
        PROJECTS,
    ),
}


def declared(model: type[Any]) -> dict[str, str]:
    """JSON field name -> the SDK's type name (`str`, `int`, `list[TagEntity]`, a model)."""
    return {model.attribute_map[attr]: kind for attr, kind in model.openapi_types.items()}


def _item_type(kind: str) -> str | None:
    found = re.fullmatch(r"list\[(.+)\]", kind)
    return found.group(1) if found else None


def compatible(kind: str, value: Any, key: str) -> bool:
    """Whether a JSON value fits the SDK's declared type (null fits any)."""
    if value is None:
        return True
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str) or (key in NUMBER_AS_STRING and number)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "Decimal"):
        return number
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "object":
        return True
    if _item_type(kind) is not None:
        return isinstance(value, list)
    return isinstance(value, dict)  # dict(...) or a model


def answer_problems(api: Api, body: Any) -> list[str]:
    """Everything in a served answer that the SDK's models contradict, or that the exporter
    needs and does not find; [] when the answer keeps the contract."""
    problems: list[str] = []
    _walk(api, api.model(api.response), body, api.shape, "", problems)
    if not problems:
        problems += _deserialized(api, body)
    return [f"{api.name}: {p}" for p in problems]


def _walk(
    api: Api, model: type[Any], value: Any, shape: Shape, where: str, problems: list[str]
) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where or 'the answer'}: not an object")
        return
    fields = declared(model)
    for key, served in value.items():
        kind = fields.get(key)
        if kind is None and (model.__name__, key) in DOCUMENTED_EXTRA:
            continue
        if kind is None:
            problems.append(f"{where}{key}: served, but {model.__name__} declares no such field")
        elif not compatible(kind, served, key):
            problems.append(
                f"{where}{key}: served as {type(served).__name__}, {model.__name__} declares {kind}"
            )
        elif isinstance(served, dict | list) and served:
            inner = _item_type(kind) or kind
            if hasattr(api.models, inner):
                child = shape.children.get(key, Shape(None))
                items = served if isinstance(served, list) else [served]
                for i, item in enumerate(items):
                    at = f"{where}{key}[{i}]." if isinstance(served, list) else f"{where}{key}."
                    _walk(api, api.model(inner), item, child, at, problems)
    for key in sorted((shape.reads or frozenset()) - shape.absent_by_design):
        if key not in fields:
            problems.append(f"{where}{key}: the exporter reads it, {model.__name__} declares none")
    for key in sorted(shape.required):
        if key not in value:
            problems.append(f"{where}{key}: missing from the answer, and the exporter needs it")


def _deserialized(api: Api, body: Any) -> list[str]:
    """Through the SDK's own deserializer: the values the exporter reads come back as served."""
    client = api.client()
    result = client._deserialize(body, api.response)
    problems: list[str] = []
    list_key = next(iter(api.shape.children))
    inner = _item_type(declared(api.model(api.response))[list_key])
    assert inner is not None
    attrs = {v: k for k, v in api.model(inner).attribute_map.items()}
    reads = api.shape.children[list_key].reads or frozenset()
    for i, (raw, parsed) in enumerate(zip(body[list_key], getattr(result, list_key), strict=True)):
        for key in sorted(reads & set(raw) & set(attrs)):
            served = raw[key]
            if isinstance(served, str | bool | int) and getattr(parsed, attrs[key]) != served:
                problems.append(f"{list_key}[{i}].{key}: the SDK reads another value")
    return problems


def _parses(kind: str, text: str) -> bool:
    if kind == "int":
        return re.fullmatch(r"-?[0-9]+", text) is not None
    return kind == "str"


def request_problems(api: Api, path: str, query: Mapping[str, str]) -> list[str]:
    """What the SDK's request model says against a request the exporter sent."""
    problems: list[str] = []
    request_model = api.model(api.request)
    fields = declared(request_model)
    for name, text in sorted(query.items()):
        kind = fields.get(name)
        if kind is None:
            problems.append(f"query {name}: sent, but {api.request} declares no such parameter")
        elif not _parses(kind, text):
            problems.append(f"query {name}: sent a value that is not {kind}")
    info = getattr(api.client, api.http_info)(request_model())
    template = str(info["resource_path"])
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    matched = re.fullmatch(pattern, path.rstrip("/"))
    if matched is None:
        problems.append(f"path: the SDK requests {template}")
        return [f"{api.name}: {p}" for p in problems]
    attrs = {v: k for k, v in request_model.attribute_map.items()}
    values: dict[str, Any] = {
        attrs[name]: int(text) if fields[name] == "int" else text
        for name, text in query.items()
        if name in fields and _parses(fields[name], text)
    }
    values.update({k: v for k, v in matched.groupdict().items() if k in attrs})
    info = getattr(api.client, api.http_info)(request_model(**values))
    sent = {name for name, value in info["query_params"] if value is not None}
    if sent != {name for name in query if attrs.get(name) in values}:
        problems.append(f"query: the SDK would send {sorted(sent)} for these values")
    return [f"{api.name}: {p}" for p in problems]
