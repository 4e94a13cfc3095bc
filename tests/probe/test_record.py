"""Pseudonyms and recordings, in-process: shapes kept, the same ID the same pseudonym,
what says what changed kept, anything that could identify an account replaced."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from exporter.probe.checks import Exchange
from exporter.probe.record import Pseudonyms, Recorder, Scrubber, load_recording

pytestmark = pytest.mark.smoke

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
PROJECT = "0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b"
INSTANCE = "5560df16-cebf-4473-95c4-d1b573c16e79"
TASK = "8abf6e1e72c12e7c0172c15b508500aa"


def test_identifiers_keep_their_shape_and_map_the_same_within_a_recording() -> None:
    p = Pseudonyms()
    assert UUID.fullmatch(p.identifier(INSTANCE))
    hexed = p.identifier(TASK)
    assert re.fullmatch(r"[0-9a-f]{32}", hexed)
    assert hexed != TASK
    assert re.fullmatch(r"[0-9A-F]{32}", p.identifier(TASK.upper()))
    assert re.fullmatch(r"[0-9]{9}", p.identifier("123456789"))
    assert p.identifier(TASK) == hexed  # stable
    assert Pseudonyms().identifier(TASK) != hexed  # another recording: not linkable


def test_addresses_keep_their_family() -> None:
    p = Pseudonyms()
    v4 = p.address("192.168.0.7")
    assert re.fullmatch(r"198\.1[89]\.\d+\.\d+", v4)
    assert p.address("2001:0:1::5").startswith("2001:db8::")
    assert p.free("https://dcs.eu-de.otc.t-systems.com/v2/x").startswith("https://host-")
    assert re.fullmatch(r"host-[0-9a-f]{8}\.invalid", p.free("redis-1.dcs.example.com"))


def test_a_task_answer_keeps_what_and_when_and_loses_who_and_where() -> None:
    s = Scrubber()
    body: dict[str, Any] = {
        "task_count": "2",
        "tasks": [
            {
                "id": TASK,
                "name": "EXTEND",
                "user_name": "alice",
                "user_id": "d53977d1adfb49c5b025ba7d33a13fd7",
                "status": "SUCCESS",
                "created_at": "2020-06-17T08:18:06.597Z",
                "updated_at": "2020-06-17T08:18:10.106Z",
                "enable_show": False,
                "details": {
                    "old_capacity": "0.125",
                    "new_resource_spec_code": "redis.single.xu1.tiny.256",
                    "old_port": 6379,
                    "replica_ip": "192.192.0.1",
                    "group_name": "group1",
                    "node_name": "node1",
                    "account_name": "account1",
                    "rename_commands": ["FLUSHALL"],
                },
                "params": json.dumps(
                    {"public_ip_id": INSTANCE, "public_ip_address": "49.1.2.3", "note": "by Bob"}
                ),
            }
        ],
    }
    out = s.body(body)
    task = out["tasks"][0]
    assert out["task_count"] == "2"
    kept = ("name", "status", "created_at", "updated_at", "enable_show")
    assert {k: task[k] for k in kept} == {k: body["tasks"][0][k] for k in kept}
    assert task["id"] == s.p.identifier(TASK)
    assert task["user_name"].startswith("user-")
    assert task["user_id"] != body["tasks"][0]["user_id"]
    details = task["details"]
    assert details["old_capacity"] == "0.125"
    assert details["new_resource_spec_code"] == "redis.single.xu1.tiny.256"
    assert details["old_port"] == 6379
    assert details["replica_ip"].startswith("198.1")
    for key in ("group_name", "node_name", "account_name"):
        assert details[key] != body["tasks"][0]["details"][key]
    assert details["rename_commands"][0].startswith("text-")
    params = json.loads(task["params"])
    assert params["public_ip_id"] == s.p.identifier(INSTANCE)
    assert params["public_ip_address"].startswith("198.1")
    assert params["note"].startswith("text-")
    text = json.dumps(out)
    for secret in ("alice", "Bob", "192.192.0.1", "49.1.2.3", "group1", INSTANCE, TASK):
        assert secret not in text


def test_paths_params_and_listings_share_the_mapping() -> None:
    s = Scrubber()
    path = s.path(f"/v2/{PROJECT}/instances/{INSTANCE}/tasks")
    assert path == f"/v2/{s.p.identifier(PROJECT)}/instances/{s.p.identifier(INSTANCE)}/tasks"
    assert s.path("/v3/projects") == "/v3/projects"
    # A project or instance ID of no known shape is still one by its place in the path.
    assert s.path("/v2/p1/instances/i-1/tasks") == (
        f"/v2/{s.p.identifier('p1')}/instances/{s.p.identifier('i-1')}/tasks"
    )
    assert s.path("/v2/p1/tasks") == f"/v2/{s.p.identifier('p1')}/tasks"
    params = {"start": "0", "limit": "100", "begin_time": "20261130222336", "engine": "kafka"}
    assert s.params(params) == params
    assert s.params({"name": "eu-de"}) == {"name": "eu-de"}
    sub = s.params({"name": "eu-de_payments"})["name"]
    assert sub.startswith("eu-de_project-")
    listing = s.body(
        {
            "instance_num": 1,
            "instances": [
                {
                    "instance_id": INSTANCE,
                    "name": "redis-payments",
                    "engine": "Redis",
                    "status": "RUNNING",
                    "tags": [{"key": "owner", "value": "team-payments"}],
                }
            ],
        }
    )
    inst = listing["instances"][0]
    assert inst["instance_id"] == s.p.identifier(INSTANCE)
    assert inst["name"].startswith("name-")
    assert (inst["engine"], inst["status"]) == ("Redis", "RUNNING")
    assert "payments" not in json.dumps(listing)
    iam = s.body({"projects": [{"id": PROJECT, "name": "eu-de_payments", "domain_id": "d1"}]})
    assert iam["projects"][0]["id"] == s.p.identifier(PROJECT)
    assert iam["projects"][0]["name"] == sub


def test_a_recording_is_written_and_read_back(tmp_path: Path) -> None:
    stale = tmp_path / "rec"
    stale.mkdir()
    (stale / "0099.json").write_text("{}")
    recorder = Recorder(stale)
    ok = Exchange(
        1,
        "read",
        "dcs",
        "eu-de",
        f"/v2/{PROJECT}/tasks",
        {"offset": "0", "limit": "10"},
        body={"task_count": 0, "tasks": []},
    )
    refused = Exchange(
        2,
        "read",
        "kafka",
        "eu-de",
        f"/v2/{PROJECT}/instances/{INSTANCE}/tasks",
        {"start": "0"},
        error=f"HTTP 400 DMS.00400000: bad start for {INSTANCE}",
        status=400,
        code="DMS.00400000",
    )
    recorder.write(ok)
    recorder.write(refused)
    recorder.finish({"since": 1.0, "task_lists": []})
    manifest, exchanges = load_recording(stale)
    assert manifest["files"] == ["0001.json", "0002.json"]
    assert not (stale / "0099.json").exists()
    assert exchanges[0]["body"] == {"task_count": 0, "tasks": []}
    assert exchanges[1]["status"] == 400
    assert exchanges[1]["error"]["code"] == "DMS.00400000"
    assert INSTANCE not in json.dumps(exchanges)
    assert PROJECT not in json.dumps(exchanges)
