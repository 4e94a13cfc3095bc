"""The landing page, rendered from a SnapshotStore built by hand: no sockets.

`render_landing(snapshot, now)` is a pure function; the route (`Router`, called as the WSGI
app it is) adds the headers.

The page lists the targets, the recent failures and the running tasks with their context;
every value comes from the cloud, so every value must come out as text, never as markup.
(tests/e2e/test_browser.py checks the same page in a real browser, fed by the simulator.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.core.counting import TaskSummary
from exporter.core.expectations import Expectation
from exporter.core.tasklists import TaskList
from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore, TaskListSnapshot
from exporter.web.landing import LANDING_CSP, LANDING_MAX_ROWS, LANDING_REFRESH, render_landing
from exporter.web.metrics import MetricsApp
from exporter.web.routes import Router
from tests.builders import task_list
from tests.conftest import PROJECT

HOSTILE_NAME = "<script>window.__pwned=1</script>"
HOSTILE_USER = "\"'><img src=x onerror=window.__pwned=2>"
HOSTILE_CHANGE = "capacity 1 -> 2 </td></tr></table><b>bold</b>"


class _Page(HTMLParser):
    """The page's tables as rows of cell texts, and every start tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _target(service: str, instance_id: str, name: str) -> TaskList:
    return task_list(service, instance_id, name, region="eu-de", project_id=PROJECT)


@pytest.fixture
def store() -> SnapshotStore:
    return SnapshotStore((1.0, 10.0), False, TaskFamilies(60.0, False))


Get = Callable[[], tuple[dict[str, str], str]]


@pytest.fixture
def served(store: SnapshotStore) -> Get:
    """`GET /` through the router, in-process: its headers and the page."""
    app = Router(
        MetricsApp(store.exposition, CollectorRegistry()), store, lambda: (True, "ok"), bool
    )

    def get() -> tuple[dict[str, str], str]:
        started: list[Any] = []
        body = b"".join(
            app(
                {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": ""},
                lambda status, headers: started.append((status, headers)),
            )
        )
        assert started[0][0] == "200 OK"
        return dict(started[0][1]), body.decode("utf-8")

    return get


def _parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def test_failures_newest_first_running_tasks_oldest_first_with_context(
    store: SnapshotStore, served: Get
) -> None:
    now = time.time()
    redis = _target("dcs", "i-redis", "redis-prod")
    kafka = _target("kafka", "i-kafka", "kafka-prod")
    center = _target("dcs", "", "")
    store.set_task_lists([redis, kafka, center])
    store.publish_task_list(
        TaskListSnapshot(
            redis,
            polled=True,
            up=True,
            last_success=now,
            summary=TaskSummary(
                last_failure=(
                    ("EXTEND", "t-extend", "alice", "capacity 0.125 -> 0.25", now - 600),
                    ("BindEip", "t-eip", "bob", "", now - 60),
                ),
                oldest_unfinished=(("AddReplica", now - 120),),
                oldest_unfinished_info=(("AddReplica", "t-replica", "carol", "replicas 1 -> 2"),),
            ),
        )
    )
    store.publish_task_list(
        TaskListSnapshot(
            kafka,
            polled=True,
            up=True,
            last_success=now,
            summary=TaskSummary(
                last_failure=(("kafkaConfigModify", "t-kafka", "dave", "", now - 300),),
                oldest_unfinished=(("modifyAutoTopic", now - 30),),
                oldest_unfinished_info=(("modifyAutoTopic", "t-topic", "erin", ""),),
            ),
        )
    )
    store.publish_task_list(
        TaskListSnapshot(
            center,
            polled=True,
            up=True,
            last_success=now,
            summary=TaskSummary(
                last_failure=(("dcsExportJob", "t-export", "frank", "", now - 7200),),
            ),
        )
    )
    headers, page = served()
    assert headers["Content-Security-Policy"] == LANDING_CSP
    assert "script-src" not in LANDING_CSP  # default-src 'none' forbids every script
    tables = _parse(page).tables

    failures = tables["failures"]
    assert failures[0] == ["failed", "task list", "task", "task ID", "user", "change"]
    assert [row[2:] for row in failures[1:]] == [
        ["BindEip", "t-eip", "bob", ""],
        ["kafkaConfigModify", "t-kafka", "dave", ""],
        ["EXTEND", "t-extend", "alice", "capacity 0.125 -> 0.25"],
        ["dcsExportJob", "t-export", "frank", ""],
    ]
    assert failures[1][1] == "dcs redis-prod | eu-de · i-redis"
    assert failures[4][1] == f"dcs (task center) | eu-de · project {PROJECT}"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now - 60))
    assert failures[1][0] == f"{stamp} | 1m ago"
    assert failures[4][0].endswith(" | 2h ago")

    running = tables["running"]
    assert running[0] == [
        "started",
        "age",
        "usual duration",
        "task list",
        "task",
        "task ID",
        "user",
        "change",
    ]
    assert [row[3:] for row in running[1:]] == [
        [
            "dcs redis-prod | eu-de · i-redis",
            "AddReplica",
            "t-replica",
            "carol",
            "replicas 1 -> 2",
        ],
        [
            "kafka kafka-prod | eu-de · i-kafka",
            "modifyAutoTopic",
            "t-topic",
            "erin",
            "",
        ],
    ]
    assert running[1][0].endswith(" | 2m ago")
    assert running[1][1] in ("2m 00s", "2m 01s")
    # No history at all: the static default.
    assert running[1][2] == "no history of 10+ runs | stuck after 30m 00s"
    assert len(tables["targets"]) == 4  # header and the three task lists, as before


def test_nothing_to_show_says_so(store: SnapshotStore) -> None:
    store.set_task_lists([_target("dcs", "i-redis", "redis-prod")])
    page = render_landing(store.current, time.time())
    tables = _parse(page).tables
    assert "failures" not in tables
    assert "running" not in tables
    assert "<p id='failures'>None.</p>" in page
    assert "<p id='running'>None.</p>" in page


def test_rows_are_capped_newest_kept(store: SnapshotStore, served: Get) -> None:
    now = time.time()
    targets = [_target("dcs", f"i-{n}", f"redis-{n}") for n in range(30)]
    store.set_task_lists(targets)
    for n, t in enumerate(targets):
        store.publish_task_list(
            TaskListSnapshot(
                t,
                polled=True,
                up=True,
                summary=TaskSummary(
                    last_failure=tuple(
                        (f"task{k}", f"f-{n}-{k}", "u", "", now - n * 10 - k) for k in range(3)
                    ),
                    oldest_unfinished=tuple((f"task{k}", now - n * 10 - k) for k in range(2)),
                    oldest_unfinished_info=tuple(
                        (f"task{k}", f"r-{n}-{k}", "u", "") for k in range(2)
                    ),
                ),
            )
        )
    page = served()[1]
    tables = _parse(page).tables
    failures = [row[3] for row in tables["failures"][1:]]
    running = [row[5] for row in tables["running"][1:]]
    assert len(failures) == len(running) == LANDING_MAX_ROWS
    expected = sorted(
        ((n * 10 + k, f"f-{n}-{k}") for n in range(30) for k in range(3)),
    )
    assert failures == [task_id for _, task_id in expected[:LANDING_MAX_ROWS]]
    assert running[:3] == ["r-29-1", "r-29-0", "r-28-1"]  # the oldest kept
    assert f"Showing the newest {LANDING_MAX_ROWS} of 90." in page
    assert f"Showing the oldest {LANDING_MAX_ROWS} of 60." in page


def test_hostile_values_are_text_never_markup(store: SnapshotStore, served: Get) -> None:
    now = time.time()
    t = _target("dcs", '"><script>x</script>', HOSTILE_NAME)
    store.set_task_lists([t])
    store.publish_task_list(
        TaskListSnapshot(
            t,
            polled=True,
            up=False,
            last_error=HOSTILE_USER,
            summary=TaskSummary(
                last_failure=((HOSTILE_NAME, "'id", HOSTILE_USER, HOSTILE_CHANGE, now),),
                oldest_unfinished=((HOSTILE_USER, now),),
                oldest_unfinished_info=((HOSTILE_USER, "<i>", HOSTILE_NAME, HOSTILE_CHANGE),),
            ),
        )
    )
    page = served()[1]
    parsed = _parse(page)
    assert "script" not in parsed.tags
    assert "img" not in parsed.tags
    assert "b" not in parsed.tags
    assert "i" not in parsed.tags
    assert parsed.tables["failures"][1][2:] == [HOSTILE_NAME, "'id", HOSTILE_USER, HOSTILE_CHANGE]
    assert parsed.tables["running"][1][4:] == [HOSTILE_USER, "<i>", HOSTILE_NAME, HOSTILE_CHANGE]
    assert parsed.tables["targets"][1][4] == HOSTILE_NAME
    assert parsed.tables["failures"][1][1].startswith(f"dcs {HOSTILE_NAME} | ")
    assert "&quot;&#x27;&gt;&lt;img src=x onerror=window.__pwned=2&gt;" in page


def _running_on(
    store: SnapshotStore,
    t: TaskList,
    tasks: list[tuple[str, str, float]],
    expected: tuple[Expectation, ...] = (),
    up: bool = True,
) -> None:
    """`t` polled, with these (name, task ID, started) running and these expectations."""
    store.publish_task_list(
        TaskListSnapshot(
            t,
            polled=True,
            up=up,
            summary=TaskSummary(
                oldest_unfinished=tuple((n, at) for n, _, at in tasks),
                oldest_unfinished_info=tuple((n, i, "u", "") for n, i, _ in tasks),
            ),
            expected=expected,
        )
    )


def test_running_tasks_against_their_usual_duration_own_then_fleet_then_default(
    store: SnapshotStore,
) -> None:
    """The threshold follows the rules' order: own runs (10 or more), else the fleet's,
    else 30 minutes; 3 x p95, at least 4 minutes. Past it, the row is highlighted."""
    now = 1_800_000_000.0
    a = _target("dcs", "i-a", "redis-a")
    b = _target("dcs", "i-b", "redis-b")
    store.set_task_lists([a, b])
    _running_on(
        store,
        a,
        [
            ("EXTEND", "t-slow-ok", now - 3 * 3600),  # usual 1h-1h30m here: not stuck at 3h
            ("BindEip", "t-eip", now - 300),  # usually 15-25 s: stuck after the 4m floor
            ("modify", "t-modify", now - 1000),  # 3 runs here; the fleet's 40 say 5-20 s
        ],
        (
            Expectation("EXTEND", 3600.0, 5400.0, 12),
            Expectation("BindEip", 15.0, 25.0, 30),
            Expectation("modify", 500.0, 900.0, 3),
        ),
    )
    _running_on(store, b, [("AddReplica", "t-replica", now - 600)])  # no history: 30m
    store.publish_fleet(
        {
            ("dcs", "modify"): Expectation("modify", 5.0, 20.0, 40),
            ("dcs", "AddReplica"): Expectation("AddReplica", 60.0, 90.0, 9),  # too few
        }
    )
    rows = _parse(render_landing(store.current, now)).tables["running"][1:]
    by_id = {row[5]: row for row in rows}
    assert [row[5] for row in rows] == ["t-slow-ok", "t-modify", "t-replica", "t-eip"]
    assert by_id["t-slow-ok"][1:3] == [
        "3h 00m",
        "usually 1h 00m\u20131h 30m | p50\u2013p95 of 12 runs, this task list | stuck after 4h 30m",
    ]
    assert by_id["t-eip"][2] == (
        "usually 15s\u201325s | p50\u2013p95 of 30 runs, this task list | stuck: over 4m 00s"
    )
    assert by_id["t-modify"][2] == (
        "usually 5s\u201320s | p50\u2013p95 of 40 runs, all task lists | stuck: over 4m 00s"
    )
    assert by_id["t-replica"][2] == "no history of 10+ runs | stuck after 30m 00s"
    page = render_landing(store.current, now)
    assert page.count("<tr class='stuck'>") == 2
    assert "<tr class='stuck'><td class='when'>" in page


def test_each_task_once_failing_targets_first_and_the_page_refreshes(
    store: SnapshotStore,
) -> None:
    """A DCS task listed by its instance and by the task center (under another name) shows
    once, on its instance's row; a failing task list heads the targets."""
    now = 1_800_000_000.0
    ok = _target("dcs", "i-ok", "redis-ok")
    redis = _target("dcs", "i-redis", "redis-prod")
    center = _target("dcs", "", "")
    store.set_task_lists([ok, redis, center])
    _running_on(store, ok, [])
    _running_on(store, center, [("ChangeInstanceSpec", "t-1", now - 60), ("x", "t-2", now)])
    store.publish_task_list(
        TaskListSnapshot(
            redis,
            polled=True,
            up=False,
            last_error="boom",
            summary=TaskSummary(
                oldest_unfinished=(("EXTEND", now - 60),),
                oldest_unfinished_info=(("EXTEND", "t-1", "alice", ""),),
                last_failure=(("BindEip", "t-3", "bob", "", now - 5),),
            ),
        )
    )
    store.publish_task_list(
        TaskListSnapshot(
            center,
            polled=True,
            up=True,
            summary=TaskSummary(
                oldest_unfinished=(("ChangeInstanceSpec", now - 60), ("x", now)),
                oldest_unfinished_info=(
                    ("ChangeInstanceSpec", "t-1", "alice", ""),
                    ("x", "t-2", "", ""),
                ),
                last_failure=(("BindEip", "t-3", "bob", "", now - 5),),
            ),
        )
    )
    page = render_landing(store.current, now)
    tables = _parse(page).tables
    assert [(row[4], row[5]) for row in tables["running"][1:]] == [("EXTEND", "t-1"), ("x", "t-2")]
    assert [row[3] for row in tables["failures"][1:]] == ["t-3"]
    assert tables["failures"][1][1].startswith("dcs redis-prod")
    assert [row[3] for row in tables["targets"][1:]] == ["i-redis", "i-ok", "(task center)"]
    assert f'<meta http-equiv="refresh" content="{LANDING_REFRESH}">' in page
