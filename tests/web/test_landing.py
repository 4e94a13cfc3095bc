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
from exporter.core.tasklists import TaskList
from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore, TaskListSnapshot
from exporter.web.landing import LANDING_CSP, LANDING_MAX_ROWS, render_landing
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


def test_failures_and_running_tasks_listed_newest_first_with_context(
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
    assert running[0][0] == "started"
    assert [row[1:] for row in running[1:]] == [
        [
            "kafka kafka-prod | eu-de · i-kafka",
            "modifyAutoTopic",
            "t-topic",
            "erin",
            "",
        ],
        [
            "dcs redis-prod | eu-de · i-redis",
            "AddReplica",
            "t-replica",
            "carol",
            "replicas 1 -> 2",
        ],
    ]
    assert running[1][0].endswith(" | 30s ago")
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
    running = [row[3] for row in tables["running"][1:]]
    assert len(failures) == len(running) == LANDING_MAX_ROWS
    expected = sorted(
        ((n * 10 + k, f"f-{n}-{k}") for n in range(30) for k in range(3)),
    )
    assert failures == [task_id for _, task_id in expected[:LANDING_MAX_ROWS]]
    assert running[:3] == ["r-0-0", "r-0-1", "r-1-0"]
    assert f"Showing the newest {LANDING_MAX_ROWS} of 90." in page
    assert f"Showing the newest {LANDING_MAX_ROWS} of 60." in page


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
    assert parsed.tables["running"][1][2:] == [HOSTILE_USER, "<i>", HOSTILE_NAME, HOSTILE_CHANGE]
    assert parsed.tables["targets"][1][4] == HOSTILE_NAME
    assert parsed.tables["failures"][1][1].startswith(f"dcs {HOSTILE_NAME} | ")
    assert "&quot;&#x27;&gt;&lt;img src=x onerror=window.__pwned=2&gt;" in page
