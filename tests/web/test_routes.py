"""`/-/reload` through the router, in-process: which methods, which answers (the reload
itself, over a real process and the simulator, is tests/e2e/test_reload.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore
from exporter.web.metrics import MetricsApp
from exporter.web.routes import Router

Reload = Callable[[], tuple[bool, list[str]]]


def _call(reload: Reload | None, method: str, path: str = "/-/reload") -> tuple[str, str]:
    store = SnapshotStore((1.0,), False, TaskFamilies(60.0, False))
    app = Router(
        MetricsApp(store.exposition, CollectorRegistry()),
        store,
        lambda: (True, "ok"),
        bool,
        reload=reload,
    )
    started: list[Any] = []
    body = b"".join(
        app(
            {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": ""},
            lambda status, headers: started.append(status),
        )
    )
    return started[0], body.decode("utf-8")


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_post_or_put_reloads(method: str) -> None:
    calls: list[int] = []

    def reload() -> tuple[bool, list[str]]:
        calls.append(1)
        return True, []

    assert _call(reload, method) == ("200 OK", "configuration reloaded\n")
    assert calls == [1]


@pytest.mark.smoke
def test_a_refused_reload_is_a_500_with_every_problem() -> None:
    problems = ["c.yml:3: poll_interval: must be at least 1s", "c.yml:9: nope: unknown key"]
    status, body = _call(lambda: (False, problems), "POST")
    assert status == "500 Internal Server Error"
    assert body.splitlines()[1:] == problems


def test_get_does_not_reload_and_other_paths_take_no_post() -> None:
    def reload() -> tuple[bool, list[str]]:
        raise AssertionError("a GET must not reload")

    assert _call(reload, "GET")[0] == "405 Method Not Allowed"
    assert _call(reload, "POST", "/metrics")[0] == "405 Method Not Allowed"
    assert _call(None, "POST")[0] == "404 Not Found"  # an exporter without a file to read
