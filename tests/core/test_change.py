"""The `change` summary of a task's `details`/`params`: allow-listed, bounded, never secret.

The inputs come from the documented examples (the seeds of the API references) and from a
hostile cloud: secrets in `params`, secret-looking values in the fields that are read, and
shapes no parser should choke on.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from exporter.core.change import MAX_CHANGE_CHARS, summarize_change
from exporter.core.tasks import parse_task

# The DCS "Listing Background Tasks" example, as documented.
SEED_DCS_DETAILS: dict[str, Any] = {
    "old_cache_mode": "single",
    "new_cache_mode": "single",
    "old_capacity": "0.125",
    "new_capacity": "0.25",
    "old_resource_spec_code": "redis.single.xu1.tiny.125",
    "new_resource_spec_code": "redis.single.xu1.tiny.256",
    "old_replica_num": 1,
    "new_replica_num": 1,
    "old_cache_type": "single",
    "new_cache_type": "single",
    "replica_ip": "192.192.0.1",
    "replica_az": "az01",
    "group_name": "group1",
    "old_port": 6379,
    "new_port": 6379,
    "is_only_adjust_charging": False,
    "account_name": "account1",
    "source_ip": "192.192.0.0",
    "target_ip": "192.192.0.1",
    "node_name": "node1",
    "rename_commands": [],
    "updated_config_length": 0,
}
SEED_SPEC_CHANGE = (
    "capacity 0.125 -> 0.25, spec redis.single.xu1.tiny.125 -> redis.single.xu1.tiny.256"
)
# Only what a summary may be made of: labels, allowed values, separators, the cut mark.
SAFE = re.compile(r"[A-Za-z0-9._ ,>-]*…?")


@pytest.mark.parametrize(
    ("name", "details", "params", "expected"),
    [
        ("EXTEND", SEED_DCS_DETAILS, None, SEED_SPEC_CHANGE),
        # The task center's example: capacities as numbers, cache mode unchanged.
        (
            "ChangeInstanceSpec",
            {
                "old_cache_mode": "single",
                "new_cache_mode": "single",
                "old_capacity": 0.125,
                "new_capacity": 0.25,
            },
            None,
            "capacity 0.125 -> 0.25",
        ),
        ("dcsExportJob", None, None, ""),
        # The DMS examples: `params` is JSON inside a string.
        (
            "modifyAutoTopic",
            None,
            '{"old_auto_status":true,"new_auto_status":false}',
            "auto topic true -> false",
        ),
        (
            "changeRetentionPolicy",
            None,
            '{"new_retention_policy":"produce_reject","origin_retention_policy":"time_base"}',
            "retention policy time_base -> produce_reject",
        ),
        (
            "bindInstancePublicIp",
            None,
            '{"public_ip_id":"06a13350-4305-4338-9f0e-6b322bb1413d",'
            '"public_ip_address":"xx.xx.xx.xx","enable_public_ip":true}',
            "public access true",
        ),
        ("unbindInstancePublicIp", None, {"enable_public_ip": False}, "public access false"),
        ("UpdatePort", {"old_port": 6379, "new_port": 6380}, None, "port 6379 -> 6380"),
        (
            "AddReplica",
            {"old_replica_num": 1, "new_replica_num": 2, "replica_az": "az01"},
            None,
            "replicas 1 -> 2",
        ),
        (
            "EXTEND",
            {
                "old_cache_mode": "ha",
                "new_cache_mode": "cluster",
                "old_shard_num": 3,
                "new_shard_num": 6,
            },
            None,
            "cache mode ha -> cluster, shards 3 -> 6",
        ),
        ("EXTEND", {"is_only_adjust_charging": True}, None, "billing mode only"),
        (
            "BindEip",
            {"enable_public_ip": True, "enable_ssl": True},
            None,
            "public access true, ssl true",
        ),
        # Only the new side known: said as the target.
        (
            "kafkaExtend",
            None,
            '{"oper_type":"horizontal","new_broker_num":6,"new_storage_space":"600"}',
            "storage -> 600, brokers -> 6, operation horizontal",
        ),
        # Only the old side known: nothing changes that can be said.
        ("EXTEND", {"old_capacity": "1"}, None, ""),
        # Both say the capacity: once, from `details`.
        (
            "EXTEND",
            {"old_capacity": 1, "new_capacity": 2},
            '{"old_capacity":1,"new_capacity":4}',
            "capacity 1 -> 2",
        ),
        # A number field holds a number: a boolean is not one (True would show as 1).
        ("EXTEND", {"old_capacity": True, "new_capacity": False}, None, ""),
        ("EXTEND", {"old_capacity": 1.0, "new_capacity": 2.5}, None, "capacity 1 -> 2.5"),
        # Numbers compare as numbers, however spelt.
        ("EXTEND", {"old_capacity": "0.50", "new_capacity": 0.5}, None, ""),
        ("EXTEND", {"old_port": "06379", "new_port": "6380"}, None, "port 6379 -> 6380"),
        # Flags are booleans only, and a set-only flag is quiet when false.
        ("BindEip", {"enable_public_ip": "yes", "is_only_adjust_charging": False}, None, ""),
    ],
)
def test_documented_and_derived_changes(
    name: str, details: Any, params: Any, expected: str
) -> None:
    assert summarize_change(name, details, params) == expected


def test_params_as_a_string_or_an_object_read_the_same() -> None:
    doc = {"origin_retention_policy": "time_base", "new_retention_policy": "produce_reject"}
    as_text = summarize_change("changeRetentionPolicy", None, json.dumps(doc))
    assert as_text == summarize_change("changeRetentionPolicy", None, doc) != ""


SECRETS = {
    "password": "Pa55word-plain",
    "new_password": "N3w.Passw0rd",
    "old_password": "0ld.Passw0rd",
    "token": "MIIEhgYJKoZIhvcNAQcCoIIEdzCCBHMCAQExDTALBglghkgBZQME",
    "secret_key": "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd",
    "auth": "Basic dXNlcjpwYXNz",
    "access_key": "AKIDEXAMPLE0000000001",
    "security_token": "gQpjbi1ub3J0aC00secret",
}


@pytest.mark.parametrize("as_json", [True, False])
@pytest.mark.parametrize("where", ["params", "details"])
def test_secrets_in_unread_fields_never_appear(as_json: bool, where: str) -> None:
    doc: dict[str, Any] = {**SECRETS, "old_capacity": "1", "new_capacity": "2"}
    value: Any = json.dumps(doc) if as_json else doc
    details, params = (value, None) if where == "details" else (None, value)
    change = summarize_change("modify", details, params)
    assert change == "capacity 1 -> 2"
    for secret in SECRETS.values():
        assert secret not in change


def test_secrets_alone_give_nothing() -> None:
    assert summarize_change("modify", SECRETS, json.dumps(SECRETS)) == ""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("new_resource_spec_code", "p@ssw0rd!Secret"),
        ("new_resource_spec_code", "sk/AbCdEf+GhIj=="),
        ("new_resource_spec_code", "a" * 65),  # longer than any code
        ("new_resource_spec_code", "redis.single\nxu1"),
        ("new_resource_spec_code", "redis single"),
        ("new_resource_spec_code", "-starts-with-a-dash"),
        ("new_resource_spec_code", "redis.\ud800.tiny"),
        ("new_resource_spec_code", "\uff52\uff45\uff44\uff49\uff53.single"),  # ASCII only
        ("new_capacity", "\uff11\uff12"),  # fullwidth digits
        ("new_capacity", "hunter2"),  # a number field takes numbers only
        ("new_capacity", "1e9"),
        ("new_capacity", "0x10"),
        ("new_port", "6379;password=x"),
        ("new_replica_num", "2 "),
        ("enable_ssl", "true-ish"),
    ],
)
def test_secret_looking_values_in_read_fields_are_left_out(field: str, value: str) -> None:
    doc = {"old_port": 1, "new_port": 2, field: value}
    change = summarize_change("EXTEND", doc, json.dumps({field: value}))
    expected = "port 1 -> 2" if field != "new_port" else ""
    assert change == expected
    assert value not in change


def test_the_whole_summary_is_capped() -> None:
    code_a, code_b = "a" * 64, "b" * 64
    doc = {
        "old_resource_spec_code": code_a,
        "new_resource_spec_code": code_b,
        "old_cache_mode": code_b,
        "new_cache_mode": code_a,
        "old_capacity": 1,
        "new_capacity": 2,
    }
    change = summarize_change("EXTEND", doc, None)
    assert len(change) == MAX_CHANGE_CHARS
    assert change.startswith("capacity 1 -> 2, spec aaaa")
    assert change.endswith("…")


def deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize(
    ("details", "params"),
    [
        ([SEED_DCS_DETAILS], None),
        (None, [SEED_DCS_DETAILS]),
        (42, 3.5),
        (True, False),
        (float("nan"), float("inf")),
        ("", ""),
        ("not json", "{not json"),
        (json.dumps(SEED_DCS_DETAILS)[:-1], "{"),
        ("[1, 2]", '"a string"'),
        (b'{"old_capacity": 1, "new_capacity": 2}', bytearray(b"{}")),
        (None, '{"a": ' + deep(100_000) + "}"),  # nests far too deep for the parser
        (None, "{" + '"new_capacity": "1",' * 200_000 + '"x": 1}'),  # megabytes of params
        (None, '{"new_capacity": ' + "9" * 5_000 + "}"),  # beyond int's conversion limit
        (None, '{"old_capacity": NaN, "new_capacity": Infinity}'),
        ({"new_capacity": 10**5_000, "new_port": -(10**5_000)}, None),
        ({"new_capacity": float("nan"), "old_capacity": float("-inf")}, None),
        ({"new_capacity": {"nested": [1, 2]}, "new_resource_spec_code": ["a", "b"]}, None),
        ({"new_capacity": None, "new_resource_spec_code": None}, None),
        ({"\ud800": "\udfff", "new_cache_mode": "\ud83d"}, '{"new_cache_mode": "\\ud800"}'),
        ({1: "x", (2, 3): "y", None: "z"}, None),
    ],
)
def test_hostile_shapes_give_a_safe_summary(details: Any, params: Any) -> None:
    change = summarize_change("EXTEND", details, params)
    assert change == ""


def test_a_huge_object_is_read_only_for_its_known_fields() -> None:
    doc: dict[str, Any] = {f"key{i}": "x" * 10 for i in range(200_000)}
    doc.update(old_capacity=1, new_capacity=2)
    assert summarize_change("EXTEND", doc, None) == "capacity 1 -> 2"


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return {random_key(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    if depth < 3 and roll < 0.25:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    choices: list[Any] = [
        None,
        True,
        False,
        rng.randint(-(10**20), 10**20),
        rng.uniform(-1e6, 1e6),
        float("nan"),
        "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 20))),
        "".join(rng.choice("ab.-_09 \n\t<>\"'&=/+") for _ in range(rng.randint(0, 80))),
        f"{rng.randint(0, 999)}.{rng.randint(0, 999)}",
    ]
    return rng.choice(choices)


KNOWN_KEYS = [
    "old_capacity",
    "new_capacity",
    "old_resource_spec_code",
    "new_resource_spec_code",
    "old_cache_mode",
    "new_cache_mode",
    "old_replica_num",
    "new_replica_num",
    "new_port",
    "enable_ssl",
    "new_retention_policy",
    "new_broker_num",
    "oper_type",
    "password",
]


def random_key(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(KNOWN_KEYS)
    return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 10)))


@pytest.mark.parametrize("seed", range(8))
def test_random_documents_never_raise_and_stay_safe(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        details = {random_key(rng): random_value(rng) for _ in range(rng.randint(0, 12))}
        params = {random_key(rng): random_value(rng) for _ in range(rng.randint(0, 12))}
        for d, p in (
            (details, params),
            (json.dumps(details), json.dumps(params)),
            (params, details),
        ):
            change = summarize_change("EXTEND", d, p)
            assert len(change) <= MAX_CHANGE_CHARS
            assert SAFE.fullmatch(change), change


# -- parse_task ---------------------------------------------------------------------------


def test_parse_task_keeps_user_name_and_change() -> None:
    raw = {
        "id": "8abf6e1e72c12e7c0172c15b508500aa",
        "name": "EXTEND",
        "user_name": "dcs_000_02",
        "user_id": "d53977d1adfb49c5b025ba7d33a13fd7",
        "details": SEED_DCS_DETAILS,
        "enable_show": False,
        "status": "SUCCESS",
        "created_at": "2020-06-17T08:18:06.597Z",
        "updated_at": "2020-06-17T08:18:10.106Z",
    }
    task = parse_task(raw, now=2e9)
    assert task is not None
    assert task.user_name == "dcs_000_02"
    assert task.change == SEED_SPEC_CHANGE


def test_parse_task_reads_dms_params_json() -> None:
    raw = {
        "id": "8abfa7b372160bfd0172165864064079",
        "name": "modifyAutoTopic",
        "user_name": "paas_dms",
        "params": '{"old_auto_status":true,"new_auto_status":false}',
        "status": "EXECUTING",
    }
    task = parse_task(raw, now=2e9)
    assert task is not None
    assert (task.user_name, task.change) == ("paas_dms", "auto topic true -> false")


@pytest.mark.parametrize(
    ("user_name", "expected"),
    [
        (None, ""),
        (12345, ""),
        (["alice"], ""),
        ("", ""),
        ("  alice  ", "alice"),
        ("ali\nce\x00\x7f", "ali ce"),
        ("bob\ud800", "bob\ufffd"),
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),  # escaping is the page's job
        ("u" * 200, "u" * 63 + "…"),
    ],
)
def test_parse_task_cleans_and_caps_the_user_name(user_name: Any, expected: str) -> None:
    raw: dict[str, Any] = {"id": "t1", "name": "EXTEND", "status": "FAILED"}
    if user_name is not None:
        raw["user_name"] = user_name
    task = parse_task(raw, now=2e9)
    assert task is not None
    assert task.user_name == expected
    assert len(task.user_name) <= 64


def test_parse_task_without_context_and_with_secrets() -> None:
    raw = {
        "id": "t2",
        "name": "modify",
        "status": "FAILED",
        "details": "not an object",
        "params": json.dumps({"password": SECRETS["password"], "token": SECRETS["token"]}),
    }
    task = parse_task(raw, now=2e9)
    assert task is not None
    assert (task.user_name, task.change) == ("", "")
    assert SECRETS["password"] not in repr(task)
    assert SECRETS["token"] not in repr(task)
