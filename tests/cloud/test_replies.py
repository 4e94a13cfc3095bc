"""Hostile replies (issue 10): each test drives the real reader over real HTTP against a small
hostile server (tests/hostile.py) and checks the poll fails cleanly, or counts exactly."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialError, IamPassword, StaticKeys
from exporter.cloud.transport import LeanTransport
from exporter.config import HttpSettings
from exporter.core.tasklists import TaskList
from exporter.core.tasks import parse_page
from exporter.polling.dialects import FetchResult, TaskReader
from exporter.telemetry.selfmetrics import SelfMetrics
from tests import hostile
from tests.builders import task_list
from tests.conftest import (
    ACCESS_KEY,
    PROJECT,
    REGION,
    SECRET_KEY,
    ExporterProcess,
    Metrics,
    Sim,
    config_doc,
    instance_entry,
    run_once,
    write_config,
)

# Bounds every test: a reader that hangs fails here instead of hanging the suite.
GUARD = 20.0


def _target(base_url: str, credentials_id: str, service: str = "dcs") -> TaskList:
    return task_list(
        service,
        "inst-1",
        region="r",
        project_id=PROJECT,
        base_url=base_url,
        credentials_id=credentials_id,
    )


def _fetch(base_url: str, since: float, service: str = "dcs", **http: Any) -> FetchResult:
    """The same read through httpx and through the prepared requests on the wire (what the
    exporter uses): both must come to the same tasks, or fail with the same message."""
    settings = HttpSettings.model_validate(
        {"timeout": "1s", "retries": 0, "backoff_initial": "10ms", "backoff_max": "10ms", **http}
    )

    async def go(lean: bool) -> FetchResult:
        transport = LeanTransport(None, max_body=settings.max_response_bytes) if lean else None
        async with httpx.AsyncClient(transport=transport) as client:
            cloud = CloudClient(
                client, settings, SelfMetrics(CollectorRegistry()), direct=transport
            )
            assert (cloud.hot is not None) == lean
            keys = cloud.register_credentials(StaticKeys(ACCESS_KEY, SECRET_KEY, None))
            target = _target(base_url, keys, service)
            return await asyncio.wait_for(TaskReader(cloud).fetch_tasks(target, since), GUARD)

    outcomes: list[FetchResult | ApiError] = []
    for lean in (False, True):
        try:
            outcomes.append(asyncio.run(go(lean)))
        except ApiError as exc:
            outcomes.append(exc)
    through_httpx, on_the_wire = outcomes
    if isinstance(through_httpx, ApiError):
        assert isinstance(on_the_wire, ApiError), on_the_wire
        assert str(on_the_wire) == str(through_httpx)
        raise on_the_wire
    assert isinstance(on_the_wire, FetchResult), on_the_wire
    assert sorted(t.id for t in on_the_wire.tasks) == sorted(t.id for t in through_httpx.tasks)
    return on_the_wire


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _paged(tasks: list[dict[str, Any]]) -> hostile.Behaviour:
    """A DCS task list of these tasks in this order, paged by offset and limit."""

    def answer(q: dict[str, str]) -> Any:
        offset, limit = int(q.get("offset", "0")), int(q.get("limit", "10"))
        return {"task_count": len(tasks), "tasks": tasks[offset : offset + limit]}

    return hostile.pages(answer)


# -- time -------------------------------------------------------------------------------------


def test_a_trickling_reply_fails_within_the_request_deadline() -> None:
    """One byte every 0.2 s never trips a 1 s read timeout; the total deadline does."""
    with (
        hostile.running(hostile.trickle(0.2)) as (server,),
        pytest.raises(ApiError, match=r"no complete answer within 1s"),
    ):
        _fetch(server.url, time.time() - 3600)


def test_a_poll_has_a_total_deadline() -> None:
    """Pages that each come in time but never end: the poll fails at http.poll_timeout."""
    counter = iter(range(10**9))

    def endless(q: dict[str, str]) -> Any:
        now = _iso(time.time())
        tasks = [{"id": f"t{next(counter)}", "status": "SUCCESS", "created_at": now}]
        return {"tasks": tasks}

    with hostile.running(hostile.pages(endless, delay=0.2)) as (server,):
        with pytest.raises(ApiError, match=r"did not finish within 1.5s \(http.poll_timeout\)"):
            _fetch(server.url, time.time() - 3600, page_size=1, poll_timeout="1500ms")
        assert len(server.requests) >= 3  # it was paging, not stuck on one request


# -- size and depth ---------------------------------------------------------------------------


def test_a_decompression_bomb_is_refused_at_the_size_cap() -> None:
    """200 KiB of gzip that expands to 20 MiB of valid JSON, against a 1 MiB cap."""
    doc = b'{"tasks": [], "pad": "' + b"0" * (20 * 2**20) + b'"}'
    bomb = gzip.compress(doc, compresslevel=9)
    assert len(bomb) < 200 * 1024
    behaviour = hostile.reply(200, bomb, {"Content-Encoding": "gzip"})
    with hostile.running(behaviour) as (server,):
        oversized = r"larger than 1 MiB once decoded \(http.max_response_bytes\)"
        with pytest.raises(ApiError, match=oversized):
            _fetch(server.url, time.time() - 3600, max_response_bytes=2**20)
        # Under the cap the same kind of reply is read as usual.
        small = gzip.compress(json.dumps({"task_count": 0, "tasks": []}).encode())
        server.behaviour = hostile.reply(200, small, {"Content-Encoding": "gzip"})
        assert _fetch(server.url, time.time() - 3600).tasks == []


def test_deeply_nested_json_is_refused() -> None:
    body = b'{"tasks": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with (
        hostile.running(hostile.reply(200, body)) as (server,),
        pytest.raises(ApiError, match=r"nests deeper than 32 levels"),
    ):
        _fetch(server.url, time.time() - 3600)


# -- paging -----------------------------------------------------------------------------------


def test_one_bogus_old_date_does_not_stop_paging() -> None:
    """150 tasks in the window, newest first, the third one dated 1970: all are read, the
    1970 one as undated (an absurd date is no date, as one far in the future)."""
    now = time.time()
    tasks = [
        {"id": f"t{i}", "name": "modify", "status": "SUCCESS", "created_at": _iso(now - 10 * i)}
        for i in range(150)
    ]
    tasks[2]["created_at"] = "1970-01-01T00:00:00Z"
    with hostile.running(_paged(tasks)) as (server,):
        got = _fetch(server.url, now - 3600, page_size=100)
    assert {t.id for t in got.tasks} == {f"t{i}" for i in range(150)}
    assert [t.created_at for t in got.tasks if t.id == "t2"] == [None]
    assert got.pages == 2


def test_paging_still_stops_once_the_list_is_past_the_window() -> None:
    """A server ignoring the window: reading stops on the page that reaches past it."""
    now = time.time()
    tasks = [
        {"id": f"t{i}", "status": "SUCCESS", "created_at": _iso(now - 60 * i)} for i in range(1000)
    ]
    with hostile.running(_paged(tasks)) as (server,):
        got = _fetch(server.url, now - 60 * 25 - 30, page_size=10)
    assert {t.id for t in got.tasks} == {f"t{i}" for i in range(26)}
    assert got.pages == 3


# -- strings ----------------------------------------------------------------------------------


def test_cloud_strings_are_cleaned_and_capped_where_they_are_parsed() -> None:
    now = time.time()
    body = {
        "tasks": [
            {"id": "a", "name": "bad\ud800", "status": "SUCCESS", "created_at": _iso(now)},
            {"id": "b", "name": "ok", "status": "fail\ud800ed\x00", "created_at": _iso(now)},
            {"id": "c\ud800", "name": "x" * 1_000_000, "status": "SUCCESS"},
            {"id": "c\udfff", "name": "tab\tand\nnewline", "status": "SUCCESS"},
        ]
    }
    tasks, _, _ = parse_page(json.loads(json.dumps(body)), now)
    for task in tasks:
        for text in (task.id, task.name, task.status):
            text.encode("utf-8")  # no lone surrogate left
            assert not any(ord(c) < 32 for c in text)
    a, b, c, d = tasks
    assert a.name == "bad\ufffd"
    assert b.status == "FAIL\ufffdED"
    assert len(c.name) == 128
    assert c.name.endswith("…")
    assert c.id != d.id  # distinct IDs stay distinct
    assert d.name == "tab and newline"


def test_timestamps_far_in_the_future_are_not_believed() -> None:
    now = time.time()
    body = {
        "tasks": [
            {
                "id": "future",
                "status": "SUCCESS",
                "created_at": "2999-01-01T00:00:00Z",
                "updated_at": "2999-01-01T00:01:00Z",
            },
            {
                "id": "skewed",
                "status": "SUCCESS",
                "created_at": _iso(now + 60),
                "updated_at": _iso(now + 120),
            },
        ]
    }
    future, skewed = parse_page(body, now)[0]
    assert future.created_at is None
    assert future.updated_at is None
    assert skewed.created_at is not None  # a minute of clock skew is believed
    assert skewed.updated_at is not None


def test_error_texts_are_cleaned_and_never_echo_the_credentials() -> None:
    """A gateway that echoes the request's Authorization header, with a lone surrogate."""

    def echo(h: hostile.Handler) -> None:
        body = {
            "error_code": "SYS.5000",
            "error_msg": f"bad\ud800 request; Authorization: {h.headers['Authorization']}",
        }
        h.send_raw(500, json.dumps(body).encode())

    with hostile.running(echo) as (server,), pytest.raises(ApiError) as err:
        _fetch(server.url, time.time() - 3600)
    text = str(err.value)
    text.encode("utf-8")
    assert "bad\ufffd request" in text
    assert ACCESS_KEY not in text
    assert "Signature=" not in text
    assert "<redacted>" in text


# -- the exporter, for real -------------------------------------------------------------------


def test_ten_trickling_endpoints_cannot_starve_a_healthy_one(
    sim: Sim, tmp_path: Path, exporters: Callable[..., ExporterProcess]
) -> None:
    """More trickling endpoints than poll slots (8) beside a healthy task list on the simulator:
    the healthy one keeps being polled and counts exactly; the others are down, and say why."""
    w = sim.world
    inst = w.add_instance("dcs", "healthy", PROJECT)
    now = time.time()
    w.add_task(inst.id, "modify", "SUCCESS", now - 300, now - 290)  # before the baseline
    with hostile.running(*(hostile.trickle(0.3) for _ in range(10))) as servers:
        doc = config_doc(
            sim,
            [],
            state_path=tmp_path / "s.db",
            http={"timeout": "1s", "retries": 1, "poll_timeout": "5s"},
        )
        healthy = doc["targets"][0]
        healthy["instances"] = [instance_entry(w, inst.id)]
        doc["targets"] = [
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": {"dcs": s.url, "dms": s.url},
                "instances": [{"service": "dcs", "id": f"trickle-{i}"}],
            }
            for i, s in enumerate(servers)
        ] + [healthy]
        proc = exporters(write_config(tmp_path / "c.yml", doc))

        def downs(m: Metrics) -> int:
            return sum(1 for s in m.find("huaweicloud_task_up") if s.value == 0)

        proc.wait_for(
            lambda m: downs(m) == 10 and m.value("huaweicloud_task_up", instance_id=inst.id) == 1,
            timeout=20,
            what="the trickling targets down and the healthy one up",
        )
        expected = 0
        for batch in (4, 3):  # counted exactly, poll after poll
            t = time.time()
            for _ in range(batch):
                w.add_task(inst.id, "modify", "SUCCESS", t - 5, t - 1)
            expected += batch

            def counted(m: Metrics, n: int = expected) -> bool:
                return finished(m, inst.id) == n

            proc.wait_for(counted, timeout=20, what=f"{expected} tasks counted")
        assert finished(proc.scrape(), inst.id) == 7
        assert proc.get("/healthz")[0] == 200
        assert proc.get("/readyz")[0] == 200
        page = proc.get("/")[2].decode()
        # Each down for its own reason: its answer trickled, or (more trickling endpoints
        # than slots) its poll could not even start within the interval.
        reasons = ("no complete answer within 1s", "could not start within the poll interval")
        assert sum(page.count(r) for r in reasons) == 10
        assert page.count(reasons[0]) >= 1
        failed = [line for line in proc.lines if "poll failed" in line and "trickle-" in line]
        assert all("no complete answer within 1s" in line for line in failed)
        assert {re.search(r"trickle-\d+", line).group() for line in failed} == {  # type: ignore[union-attr]
            f"trickle-{i}" for i in range(10)
        }
        assert "Traceback" not in proc.output


def finished(m: Metrics, instance_id: str) -> float:
    return m.total("huaweicloud_task_finished_total", instance_id=instance_id)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_iam_and_metadata_requests_are_counted_and_short_passwords_do_not_mangle_messages(
    sim: Sim, tmp_path: Path
) -> None:
    """`api_requests_total` counts IAM token requests (right password, wrong one, IAM down)
    and metadata requests; IAM's message about the password `wrong` is shown as it came."""
    w = sim.world
    w.add_iam_user("acme", "exporter", "correct-horse-battery")
    insts = [w.add_instance("kafka", f"k{i}", PROJECT) for i in range(4)]
    iam_down = f"http://127.0.0.1:{_closed_port()}"
    user = {"source": "password", "user": "exporter", "domain": "acme"}
    setups = [
        ("ap-southeast-1", sim.server.iam_url, {**user, "password": "correct-horse-battery"}),
        ("eu-west-101", sim.server.iam_url, {**user, "password": "wrong"}),
        ("eu-de", iam_down, {**user, "password": "correct-horse-battery"}),
        ("eu-nl", sim.server.iam_url, {"source": "metadata", "url": sim.server.metadata_url}),
    ]
    doc = config_doc(sim, [], state_path=tmp_path / "s.db")
    doc["targets"] = [
        {
            "region": region,
            "project_id": PROJECT,
            "endpoints": {"dcs": sim.dcs_url, "dms": sim.dms_url, "iam": iam},
            "credentials": creds,
            "instances": [{"service": "kafka", "id": inst.id}],
        }
        for (region, iam, creds), inst in zip(setups, insts, strict=True)
    ]
    run = run_once(write_config(tmp_path / "c.yml", doc))
    assert run.rc == 1
    m = Metrics(run.stdout)
    iam = "huaweicloud_task_api_requests_total"
    assert m.total(iam, cloud_service="iam", region="ap-southeast-1", code="201") >= 1
    assert m.total(iam, cloud_service="iam", region="eu-west-101", code="401") >= 1
    assert m.total(iam, cloud_service="iam", region="eu-de", code="error") >= 1
    assert m.total(iam, cloud_service="metadata", code="200") >= 2  # session token, then keys
    assert m.value("huaweicloud_task_up", instance_id=insts[0].id) == 1
    assert m.value("huaweicloud_task_up", instance_id=insts[3].id) == 1
    assert "The username or password is wrong." in run.stderr
    assert "<redacted>" not in run.stderr
    assert "correct-horse-battery" not in run.stderr + run.stdout


def test_hostile_strings_and_dates_neither_poison_a_task_list_nor_the_pages(
    sim: Sim, tmp_path: Path, exporters: Callable[..., ExporterProcess]
) -> None:
    """19 tasks finish after the baseline: one named with a lone surrogate, one with such a
    status, one with a 1 MB name, one dated 2999. All 19 are counted, labels stay short, the
    latest finish is not in the future, and `/` still answers while another target's 500
    carries a lone surrogate in its message."""
    w = sim.world
    inst = w.add_instance("kafka", "victim", PROJECT)
    now = time.time()
    w.add_task(inst.id, "modify", "SUCCESS", now - 300, now - 290)
    bad_reply = hostile.reply(500, {"error_code": "SYS.5000", "error_msg": "bad\ud800 gateway"})
    with hostile.running(bad_reply) as (server,):
        doc = config_doc(sim, [instance_entry(w, inst.id)], state_path=tmp_path / "s.db")
        doc["targets"].append(
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": {"dcs": server.url, "dms": server.url},
                "instances": [{"service": "dcs", "id": "broken-gateway"}],
            }
        )
        proc = exporters(write_config(tmp_path / "c.yml", doc))
        proc.wait_for(
            lambda m: m.value("huaweicloud_task_up", instance_id=inst.id) == 1,
            what="the baseline",
        )
        t = time.time()
        w.add_task(inst.id, "bad\ud800", "SUCCESS", t - 20, t - 10)
        w.add_task(inst.id, "modify", "bad\ud800", t - 20, t - 10)
        w.add_task(inst.id, "x" * 1_000_000, "SUCCESS", t - 20, t - 10)
        w.add_task(inst.id, "modify", "SUCCESS", t - 20, datetime(2999, 1, 1).timestamp())
        for i in range(15):
            w.add_task(inst.id, "modify", "FAILED" if i % 3 else "SUCCESS", t - 30 + i, t - 5)
        m = proc.wait_for(lambda m: finished(m, inst.id) >= 19, timeout=15, what="19 tasks counted")
        time.sleep(2)  # a few more polls: nothing is counted twice
        m = proc.scrape()
        assert finished(m, inst.id) == 19
        names = {s.labels["task_name"] for s in m.find("huaweicloud_task_finished_total")}
        assert "bad\ufffd" in names
        assert max(len(n) for n in names) == 128
        assert len(m.text) < 200_000
        statuses = {s.labels["status"] for s in m.find("huaweicloud_task_finished_total")}
        assert "BAD\ufffd" in statuses
        latest = max(s.value for s in m.find("huaweicloud_task_last_finished_timestamp_seconds"))
        assert latest <= time.time() + 5
        status, _, body = proc.get("/")
        assert status == 200
        assert "bad\ufffd gateway" in body.decode("utf-8")
        assert m.value("huaweicloud_task_up", instance_id="broken-gateway") == 0
        assert "Traceback" not in proc.output


def test_one_endpoint_cannot_take_every_poll_slot(
    sim: Sim, tmp_path: Path, exporters: Callable[..., ExporterProcess]
) -> None:
    """Four task lists on one trickling endpoint, two poll slots, generous deadlines: the
    endpoint holds at most one slot, so the healthy list is polled meanwhile."""
    w = sim.world
    inst = w.add_instance("dcs", "healthy", PROJECT)
    with hostile.running(hostile.trickle(0.3)) as (server,):
        doc = config_doc(
            sim,
            [instance_entry(w, inst.id)],
            state_path=tmp_path / "s.db",
            http={"timeout": "60s", "poll_timeout": "60s", "max_concurrency": 2},
        )
        doc["targets"].insert(
            0,
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": {"dcs": server.url, "dms": server.url},
                "instances": [{"service": "dcs", "id": f"trickle-{i}"} for i in range(4)],
            },
        )
        proc = exporters(write_config(tmp_path / "c.yml", doc))
        proc.wait_for(
            lambda m: m.value("huaweicloud_task_up", instance_id=inst.id) == 1,
            timeout=10,
            what="the healthy task list polled",
        )
        assert len(server.requests) == 1  # the trickling endpoint had one slot, not two


def test_a_trickling_iam_fails_the_token_request_within_the_deadline() -> None:
    """IAM is reached through the same bounded reader as the task lists."""

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            provider = IamPassword(
                http, server.url, "u", "d", "long-enough-password", "r", PROJECT, timeout=1.0
            )
            await asyncio.wait_for(provider.auth(), GUARD)

    with (
        hostile.running(hostile.trickle(0.2)) as (server,),
        pytest.raises(CredentialError, match=r"no complete answer within 1s"),
    ):
        asyncio.run(go())
