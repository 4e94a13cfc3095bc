"""End to end: the exporter over the simulator, a real Prometheus with the shipped rules and a
real Alertmanager with the shipped example route and template, notifying a chat webhook this
test runs.

A switchover that usually takes a second or two hangs: the person on call reads which task,
who started it, what it changes and how long that kind usually takes. A resize that has been
running longer than the hung switchover, but is well within what resizes usually take, pages
nobody. Only the learned-threshold floor (4 minutes as shipped) is lowered in the test's copy
of the rules, and Alertmanager's group waits, to keep the run to seconds.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

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
from tests.e2e.stack import Alertmanager, Prometheus, wait

RULES = ROOT / "deploy" / "prometheus" / "rules"
ALERTMANAGER = ROOT / "deploy" / "alertmanager"
FLOOR = 3  # seconds, in the test's copy of the rules (240 as shipped)
FAST = "masterStandbySwapJob"
SLOW = "EXTEND"


class Receiver:
    """A webhook endpoint recording every notification (path and JSON body) it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer.lock:
                    outer.received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def at(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, body in self.received if p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _rules_with_floor(workdir: Path, floor: int) -> Path:
    """The shipped rules, the learned thresholds' floor lowered (nothing else changes)."""
    doc = yaml.safe_load((RULES / "huaweicloud-task.rules.yml").read_text())
    changed = 0
    for rule in doc["groups"][0]["rules"]:
        if rule.get("record") == "huaweicloud_task:stuck_after_seconds":
            rule["expr"], changed = re.subn(r"\n\s*240\n", f"\n{floor}\n", rule["expr"])
    assert changed == 1
    path = workdir / "rules.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _alertmanager_config(receiver: Receiver) -> dict[str, Any]:
    """The shipped example: its routes and template; its receivers' addresses pointed at the
    test's webhook (one path per receiver), its waits shortened."""
    doc: dict[str, Any] = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    doc["templates"] = [str(ALERTMANAGER / t) for t in doc["templates"]]
    doc["route"].update(group_wait="1s", group_interval="1s")
    for r in doc["receivers"]:
        for slack in r.get("slack_configs", []):
            slack["api_url"] = f"{receiver.url}/{r['name']}"
        for hook in r.get("webhook_configs", []):
            hook["url"] = f"{receiver.url}/{r['name']}"
    return doc


@pytest.mark.slow
def test_a_hung_fast_task_pages_with_its_context_and_a_long_normal_one_does_not(
    sim: Sim, tmp_path: Path, exporters: Any, receiver: Receiver
) -> None:
    w = sim.world
    now = time.time()
    redis = w.add_instance("dcs", "redis-prod", PROJECT)
    # Weeks of history, read by the exporter when it first polls: switchovers of 1-2 s,
    # resizes of 100-200 s.
    for i in range(20):
        start = now - 86400 * (i + 1)
        w.add_task(redis.id, FAST, "SUCCESS", start, start + 1 + i / 20)
        w.add_task(redis.id, SLOW, "SUCCESS", start + 3600, start + 3600 + 100 + 5 * i)
    resize = w.add_task(redis.id, SLOW, "EXECUTING", now - 15, user_name="alice")
    swap = w.add_task(
        redis.id,
        FAST,
        "EXECUTING",
        now - 1,
        user_name="bob",
        details={"old_capacity": 0.125, "new_capacity": 0.25},
    )
    config = write_config(
        tmp_path / "c.yml",
        config_doc(
            sim, [instance_entry(w, redis.id)], task_center=True, state_path=tmp_path / "s.db"
        ),
    )
    exporter: ExporterProcess = exporters(config)
    exporter.wait_for(
        lambda m: (
            all_up(m, 2)
            and m.value(
                "huaweicloud_task_expected_duration_samples", task_name=FAST, instance_id=redis.id
            )
            == 20
        ),
        what="the first polls and the history's expectations",
    )
    assert exporter.port is not None

    (tmp_path / "am").mkdir()
    am = Alertmanager(tmp_path / "am", _alertmanager_config(receiver))
    (tmp_path / "prom").mkdir()
    try:
        prom = Prometheus(
            tmp_path / "prom",
            exporter.port,
            [
                _rules_with_floor(tmp_path / "prom", FLOOR),
                RULES / "huaweicloud-task.stuck-thresholds.yml",
                RULES / "huaweicloud-task.stuck-overrides.yml",
            ],
            alertmanager_port=am.port,
        )
        try:
            wait(lambda: bool(receiver.at("/tasks-chat")), 60, "the stuck switchover's message")
            usual = {
                r["metric"]["quantile"]: float(r["value"][1])
                for r in prom.query(
                    f'huaweicloud_task:usual_duration_seconds{{task_name="{FAST}"}}'
                )["data"]["result"]
            }
            # The resize, older than the hung switchover, is within what resizes take.
            time.sleep(3)
            assert prom.firing("HuaweiCloudTaskStuck") == [
                {
                    "alertname": "HuaweiCloudTaskStuck",
                    "severity": "warning",
                    "cloud_service": "dcs",
                    "region": REGION,
                    "project_id": PROJECT,
                    "instance_id": redis.id,
                    "instance_name": "redis-prod",
                    "task_name": FAST,
                }
            ]
            held = [a["labels"].get("task_name") for a in am.alerts()]
            messages = receiver.at("/tasks-chat")
        finally:
            prom.stop()
    finally:
        am.stop()

    assert held == [FAST]
    assert resize.id not in json.dumps(receiver.received)
    # One message (the task center's copy of the same task is not a second one), in the
    # chat receiver the route names for a stuck task, laid out by the shipped template.
    assert len(messages) == 1, messages
    assert all(path == "/tasks-chat" for path, _ in receiver.received)
    (attachment,) = messages[0]["attachments"]
    assert attachment["title"] == f"[FIRING:1] HuaweiCloudTaskStuck {FAST} on redis-prod"
    summary, description, runbook = attachment["text"].strip().split("\n")
    m = re.fullmatch(
        rf"{FAST} stuck on redis-prod \(dcs, {REGION}\): task {swap.id}, started by bob, "
        r"capacity 0\.125 -> 0\.25; usually ([0-9.]+)s to ([0-9.]+)s \(20 runs\)",
        summary,
    )
    assert m, summary
    # The usual duration said is the one learned from the history: 1 s to 2 s.
    assert float(m.group(1)) == pytest.approx(usual["0.5"], rel=1e-3)
    assert float(m.group(2)) == pytest.approx(usual["0.95"], rel=1e-3)
    assert 1 < usual["0.5"] < usual["0.95"] < 2
    assert description.startswith(f"A {FAST} task on dcs instance redis-prod ({redis.id})")
    assert "usually takes" in description
    assert "successful runs of this task list" in description
    assert runbook == (
        "Runbook: https://github.com/REPLACE/huaweicloud-task-exporter/blob/main/"
        "docs/runbook.md#huaweicloudtaskstuck"
    )
