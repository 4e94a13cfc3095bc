"""The landing page in a real browser: headless Chromium (Debian's package) driven by Playwright.

The exporter runs as a process against the simulator; a failure carrying a user and a change,
a running task, and tasks and an instance whose names and users are hostile markup come from
the simulated cloud. The browser must show all of it as text, run nothing, and the screenshot
is kept as a test artifact (tests/artifacts/, or $TEST_ARTIFACTS) for a person to look at.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from exporter.simulator import SimInstance
from tests.conftest import (
    ROOT,
    ExporterProcess,
    Metrics,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    write_config,
)

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_INSTANCE = "redis-'\"><svg onload=window.__pwned=3>"
HOSTILE_NAME = "<script>window.__pwned=1</script>"
HOSTILE_USER = "\"'><img src=x onerror=window.__pwned=2>"
SECRET = "pw-9f8e7d6c5b4a-never-shown"

Start = Callable[..., ExporterProcess]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A fresh Chromium profile with a page open; Playwright never downloads a browser."""
    assert CHROMIUM.exists(), "chromium not found: run ./scripts/test (scripts/install-chromium)"
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - not at every collection

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
            timeout=60_000,
        )
        try:
            context.set_default_timeout(15_000)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _redis_and_hostile(
    sim: Sim, tmp_path: Path, exporters: Start
) -> tuple[SimInstance, SimInstance, ExporterProcess]:
    """Two DCS instances, one named to attack the page, and an exporter polling both."""
    w = sim.world
    redis = w.add_instance("dcs", "redis-prod")
    hostile = w.add_instance("dcs", HOSTILE_INSTANCE)
    doc = config_doc(
        sim,
        [instance_entry(w, redis.id), instance_entry(w, hostile.id)],
        state_path=tmp_path / "s.db",
    )
    return redis, hostile, exporters(write_config(tmp_path / "c.yml", doc))


def test_landing_page_in_chromium_renders_a_hostile_instance_name_as_text(
    sim: Sim, tmp_path: Path, exporters: Start, page: Page
) -> None:
    redis, hostile, proc = _redis_and_hostile(sim, tmp_path, exporters)
    proc.wait_for(lambda m: all_up(m, 2), what="both task lists polled")

    errors = _open(page, proc.url + "/")
    targets = {row[3]: row for row in _rows(page, "#targets")[1:]}
    assert set(targets) == {redis.id, hostile.id}
    assert targets[redis.id][4] == "redis-prod"
    assert targets[hostile.id][4] == HOSTILE_INSTANCE
    assert targets[hostile.id][5].startswith("ok (")
    _assert_inert(page, errors)
    _screenshot(page, "landing-page-targets.png")


def test_landing_page_in_chromium_lists_failures_and_running_tasks_with_context(
    sim: Sim, tmp_path: Path, exporters: Start, page: Page
) -> None:
    w = sim.world
    redis, hostile, proc = _redis_and_hostile(sim, tmp_path, exporters)
    proc.wait_for(lambda m: all_up(m, 2), what="both task lists polled (the baseline)")

    now = time.time()
    extend = w.add_task(
        redis.id,
        "EXTEND",
        "FAILED",
        now - 60,
        now - 20,
        user_name="alice",
        details={
            "old_capacity": "0.125",
            "new_capacity": "0.25",
            "password": SECRET,  # not a field a change may show: never on the page
        },
    )
    running = w.add_task(
        redis.id,
        "AddReplica",
        "EXECUTING",
        now - 30,
        user_name="carol",
        details={"old_replica_num": 1, "new_replica_num": 2},
    )
    evil = w.add_task(
        hostile.id, HOSTILE_NAME, "FAILED", now - 50, now - 10, user_name=HOSTILE_USER
    )
    w.add_task(hostile.id, "BindEip", "EXECUTING", now - 40, user_name=HOSTILE_NAME)

    def seen(m: Metrics) -> bool:
        failed = m.total("huaweicloud_task_finished_total", status="FAILED")
        unfinished = m.find("huaweicloud_task_oldest_unfinished_start_timestamp_seconds")
        return failed == 2 and len(unfinished) == 2

    proc.wait_for(seen, what="the failures counted and the running tasks seen")

    errors = _open(page, proc.url + "/")
    failures = _rows(page, "#failures")
    assert failures[0] == ["failed", "task list", "task", "task ID", "user", "change"]
    assert [row[2] for row in failures[1:]] == [HOSTILE_NAME, "EXTEND"]  # newest first
    by_task = {row[2]: row for row in failures[1:]}
    assert by_task["EXTEND"][1].startswith("dcs redis-prod\n")
    assert by_task["EXTEND"][3:5] == [extend.id, "alice"]
    assert "capacity 0.125 -> 0.25" in by_task["EXTEND"][5]
    assert by_task[HOSTILE_NAME][1].startswith(f"dcs {HOSTILE_INSTANCE}\n")
    assert by_task[HOSTILE_NAME][3:5] == [evil.id, HOSTILE_USER]

    running_rows = _rows(page, "#running")
    assert [row[4] for row in running_rows[1:]] == ["BindEip", "AddReplica"]  # oldest first
    assert running_rows[2][5:7] == [running.id, "carol"]
    assert "replicas 1 -> 2" in running_rows[2][7]
    assert running_rows[1][6] == HOSTILE_NAME

    _assert_inert(page, errors)
    assert SECRET not in page.content()
    _screenshot(page, "landing-page.png")


def _open(page: Page, url: str) -> list[str]:
    """Load the landing page; the list fills with the errors the browser reports from now on."""
    errors: list[str] = []
    page.on("console", lambda msg: _keep_errors(msg, errors))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = page.goto(url)
    assert response is not None
    assert response.status == 200
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'")
    assert "script-src" not in policy
    assert page.title() == "Huawei Cloud task exporter"
    assert page.locator("h1").inner_text() == "Huawei Cloud task exporter"
    return errors


def _assert_inert(page: Page, errors: list[str]) -> None:
    """Nothing from the cloud became markup, and nothing ran."""
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("script, img, svg").count() == 0
    assert errors == []  # not even a script or image the page's policy had to block


def _screenshot(page: Page, name: str) -> None:
    shot = artifacts_dir() / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def _keep_errors(msg: ConsoleMessage, errors: list[str]) -> None:
    if msg.type == "error":
        errors.append(msg.text)


def _rows(page: Page, table: str) -> list[list[str]]:
    """A table's rows as the browser renders their cells' text."""
    return [
        [cell.inner_text() for cell in row.locator("th, td").all()]
        for row in page.locator(f"{table} tr").all()
    ]


def test_landing_page_in_chromium_shows_each_task_once_oldest_first_with_usual_durations(
    sim: Sim, tmp_path: Path, exporters: Start, page: Page
) -> None:
    """Weeks of history teach the exporter how long each kind takes; the page shows each
    running task once (the task center lists the DCS ones too), oldest first, with its age
    and usual duration, the one far past its kind's usual duration highlighted."""
    w = sim.world
    redis = w.add_instance("dcs", "redis-prod")
    cache = w.add_instance("dcs", "redis-cache")
    events = w.add_instance("kafka", "events")
    w.add_history(redis.id, days=21, per_day=6, names=("EXTEND", "BindEip"))
    w.add_history(cache.id, days=21, per_day=4)
    w.add_history(events.id, days=21, per_day=4)
    now = time.time()
    # A resize running for 40 minutes (usually about 15): long, but within its threshold.
    resize = w.add_task(redis.id, "EXTEND", "EXECUTING", now - 2400, user_name="alice")
    # An EIP binding that usually takes 15 seconds, hanging for 20 minutes: stuck.
    hung = w.add_task(cache.id, "BindEip", "EXECUTING", now - 1200, user_name="bob")
    fresh = w.add_task(events.id, "kafkaConfigModify", "EXECUTING", now - 30, user_name="carol")
    doc = config_doc(
        sim,
        [instance_entry(w, i.id) for i in (redis, cache, events)],
        task_center=True,
        state_path=tmp_path / "s.db",
    )
    proc = exporters(write_config(tmp_path / "c.yml", doc))
    proc.wait_for(
        lambda m: (
            all_up(m, 4)
            and m.value(
                "huaweicloud_task_expected_duration_samples",
                instance_id=redis.id,
                task_name="EXTEND",
            )
            is not None
            and bool(
                m.find("huaweicloud_task_fleet_expected_duration_samples", cloud_service="kafka")
            )
        ),
        what="the history read",
    )

    errors = _open(page, proc.url + "/")
    rows = _rows(page, "#running")[1:]
    assert [row[5] for row in rows] == [resize.id, hung.id, fresh.id]  # each once, oldest first
    assert rows[0][1] == "40m 00s" or rows[0][1].startswith(("39m", "40m"))
    assert rows[0][2].startswith("usually ")
    assert "of this task list" not in rows[0][2]
    assert "runs, this task list" in rows[0][2]
    assert "stuck after" in rows[0][2]
    assert "stuck: over 4m 00s" in rows[1][2]  # 15-second kind: the floor
    assert rows[1][3].startswith("dcs redis-cache")  # the instance's row, not the center's
    classes = [row.get_attribute("class") for row in page.locator("#running tr").all()[1:]]
    assert classes == ["", "stuck", ""]
    _assert_inert(page, errors)
    _screenshot(page, "landing-page-usual-durations.png")
