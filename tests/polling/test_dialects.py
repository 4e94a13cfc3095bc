"""The task-list paging dialects, in-process.

`TaskReader.fetch_tasks` is driven against a fake `request_json` (a list served under each
reading of the references: DCS `offset`, DMS `start` from 0, from 1, or from 1 refusing 0),
so every stop rule is checked by the requests it makes. test_dialects_simulated.py runs the
same readings end to end against the simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialProvider, StaticKeys
from exporter.config import HttpSettings
from exporter.core.tasklists import TaskList
from exporter.polling.dialects import TaskReader
from exporter.telemetry.selfmetrics import SelfMetrics
from tests.builders import task_list

pytestmark = pytest.mark.smoke

NOW = datetime.now(timezone.utc).timestamp() // 60 * 60
SINCE = NOW - 86400


def _target(service: str) -> TaskList:
    return task_list(service, base_url="http://cloud.test:8080")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _tasks(n: int, start: float = NOW - 60, step: float = 60) -> list[dict[str, Any]]:
    """`n` tasks, newest first, one every `step` seconds."""
    return [
        {"id": f"t{i}", "name": "EXTEND", "status": "SUCCESS", "created_at": _iso(start - i * step)}
        for i in range(n)
    ]


Handler = Callable[[dict[str, str]], Any]


def listing(
    tasks: list[dict[str, Any]],
    param: str,
    first: int = 0,
    refuse_zero: bool = False,
    count: str = "string",
) -> Handler:
    """A server paging `tasks` by `param`, whose first entry is at index `first`."""

    def handle(params: dict[str, str]) -> Any:
        index = int(params[param])
        if refuse_zero and index == 0:
            raise ApiError("HTTP 400 DMS.00400002: invalid start", status=400)
        size = int(params["limit"])
        begin = max(0, index - first)
        page = tasks[begin : begin + size]
        total: Any = len(tasks) if count == "int" else str(len(tasks))
        body: dict[str, Any] = {"tasks": page}
        if count != "none":
            body["task_count"] = total
        return body

    return handle


class Fake(CloudClient):
    """A client whose requests are answered by a function and recorded."""

    def __init__(self, handler: Handler, **settings: Any) -> None:
        super().__init__(
            httpx.AsyncClient(),
            HttpSettings(**settings),
            SelfMetrics(CollectorRegistry(auto_describe=False)),
        )
        self.register_credentials(StaticKeys("AK", "SK", None))  # "credentials/0"
        self.handler = handler
        self.sent: list[dict[str, str]] = []
        self.reader = TaskReader(self)

    async def request_json(
        self,
        url_text: str,
        params: dict[str, str],
        credentials: CredentialProvider,
        service: str,
        region: str,
    ) -> Any:
        self.sent.append(dict(params))
        return self.handler(params)

    def fetch(self, service: str = "dcs", since: float = SINCE) -> list[str]:
        return [t.id for t in asyncio.run(self.reader.fetch_tasks(_target(service), since)).tasks]

    def indexes(self, param: str) -> list[int]:
        return [int(p[param]) for p in self.sent]


IDS7 = [f"t{i}" for i in range(7)]


@pytest.mark.parametrize("count", ["string", "int", "none"])
def test_dcs_pages_by_offset_with_the_window(count: str) -> None:
    client = Fake(listing(_tasks(7), "offset", count=count), page_size=3)
    assert client.fetch("dcs") == IDS7
    assert client.indexes("offset") == [0, 3, 6]
    window = datetime.fromtimestamp(SINCE, timezone.utc).strftime("%Y%m%d%H%M%S")
    assert all(p["start_time"] == window and p["limit"] == "3" for p in client.sent)
    assert all("start" not in p and "begin_time" not in p for p in client.sent)


def test_dcs_full_last_page_stops_on_the_count_or_an_empty_page() -> None:
    with_count = Fake(listing(_tasks(6), "offset"), page_size=3)
    assert with_count.fetch() == IDS7[:6]
    assert with_count.indexes("offset") == [0, 3]  # task_count says all are read
    without = Fake(listing(_tasks(6), "offset", count="none"), page_size=3)
    assert without.fetch() == IDS7[:6]
    assert without.indexes("offset") == [0, 3, 6]  # only an empty page says so


@pytest.mark.parametrize("first", [0, 1])
def test_dms_start_read_from_0_or_1_gives_every_task_once(first: int) -> None:
    client = Fake(listing(_tasks(7), "start", first=first), page_size=3)
    assert client.fetch("kafka") == IDS7
    # From 0, pages advance by what was received; a 1-based server repeats one task per
    # page, which deduplication absorbs.
    assert client.indexes("start") == [0, 3, 6]
    assert all("begin_time" in p and "offset" not in p for p in client.sent)


def test_dms_refusing_start_0_is_asked_again_from_1_and_remembered() -> None:
    client = Fake(listing(_tasks(5), "start", first=1, refuse_zero=True), page_size=3)
    assert client.fetch("kafka") == IDS7[:5]
    assert client.indexes("start") == [0, 1, 4]
    assert client.reader.dms_first_index == {"cloud.test:8080": 1}
    client.sent.clear()
    assert client.fetch("rabbitmq") == IDS7[:5]  # the same host: from 1 at once
    assert client.indexes("start") == [1, 4]


def test_a_400_after_the_first_page_or_on_dcs_is_an_error() -> None:
    def later(params: dict[str, str]) -> Any:
        if params["start"] != "0":
            raise ApiError("HTTP 400", status=400)
        return listing(_tasks(7), "start")(params)

    with pytest.raises(ApiError, match="HTTP 400"):
        Fake(later, page_size=3).fetch("kafka")
    dcs = Fake(listing(_tasks(3), "offset", refuse_zero=True), page_size=3)
    with pytest.raises(ApiError, match="HTTP 400"):
        dcs.fetch("dcs")
    assert dcs.indexes("offset") == [0]


def test_server_ignoring_the_paging_parameter_is_an_error_not_a_loop() -> None:
    tasks = _tasks(3)
    client = Fake(lambda params: {"tasks": tasks, "task_count": "10"}, page_size=3)
    with pytest.raises(ApiError, match=r"same page twice.*'offset'"):
        client.fetch()
    assert client.indexes("offset") == [0, 3, 6]  # one repeat is allowed (1-based), not two


def test_more_pages_than_max_pages_is_an_error() -> None:
    client = Fake(listing(_tasks(10, step=1), "offset"), page_size=2, max_pages=3)
    with pytest.raises(ApiError, match="more than 3 pages"):
        client.fetch()
    assert len(client.sent) == 3
    enough = Fake(listing(_tasks(6, step=1), "offset"), page_size=2, max_pages=3)
    assert len(enough.fetch()) == 6


def test_paging_stops_once_the_list_reaches_past_the_window() -> None:
    # Newest first: the third page's tasks are all older than the window.
    tasks = _tasks(4, start=SINCE + 200, step=100) + _tasks(6, start=SINCE - 1000)
    client = Fake(listing(tasks, "offset", count="none"), page_size=2)
    assert client.fetch() == ["t0", "t1", "t2"]  # filtered to the window here
    assert client.indexes("offset") == [0, 2, 4]  # t4.. is never asked for beyond that


def test_a_lone_old_date_or_an_out_of_order_page_never_stops_paging() -> None:
    tasks = _tasks(6, start=SINCE + 600, step=60)
    tasks[1]["created_at"] = _iso(SINCE - 9999)  # a bogus date
    tasks[3]["created_at"] = _iso(SINCE - 9999)
    client = Fake(listing(tasks, "offset", count="none"), page_size=2)
    assert client.fetch() == ["t0", "t2", "t4", "t5"]
    assert client.indexes("offset") == [0, 2, 4, 6]


def test_undated_tasks_are_kept_and_the_freshest_copy_wins() -> None:
    pages = {
        "0": {"tasks": [{"id": "a", "status": "EXECUTING", "created_at": _iso(NOW - 9)}]},
        "1": {
            "tasks": [
                {
                    "id": "a",
                    "status": "SUCCESS",
                    "created_at": _iso(NOW - 9),
                    "updated_at": _iso(NOW - 1),
                },
                {"id": "b", "status": "EXECUTING"},
            ]
        },
    }
    client = Fake(lambda p: pages.get(p["offset"], {"tasks": []}), page_size=1)
    result = asyncio.run(client.reader.fetch_tasks(_target("dcs"), SINCE))
    assert [(t.id, t.status) for t in result.tasks] == [("a", "SUCCESS"), ("b", "EXECUTING")]
    assert result.pages == 3


def test_unexpected_body_is_an_error() -> None:
    with pytest.raises(ApiError, match="unexpected answer: 'tasks' is not a list"):
        Fake(lambda p: {"tasks": {}}).fetch()
