"""Scrapes that share work: one body per variant while nothing changed, never older than the
scrape it answers, with the exporter's own metrics as fresh as the scrape."""

from __future__ import annotations

import gzip
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore, TaskListSnapshot
from exporter.web.metrics import MetricsApp
from exporter.web.wsgi import RECEIVED
from tests.builders import task_list

pytestmark = pytest.mark.smoke


def _setup() -> tuple[SnapshotStore, MetricsApp, Counter]:
    families = TaskFamilies(60.0, False)
    store = SnapshotStore((1.0, 10.0), False, families)
    lists = [task_list("dcs", f"i{n}") for n in range(3)]
    store.set_task_lists(lists)
    for t in lists:
        store.publish_task_list(TaskListSnapshot(t, polled=True, up=True, poll_duration=0.1))
    registry = CollectorRegistry(auto_describe=False)
    polls = Counter("huaweicloud_task_test_polls", "test", registry=registry)
    return store, MetricsApp(store.exposition, registry), polls


def _get(app: MetricsApp, arrived: float | None = None, **environ: Any) -> list[bytes]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "QUERY_STRING": "", **environ}
    if arrived is not None:
        env[RECEIVED] = arrived
    return app(env, lambda status, headers: None)


def _value(body: bytes, name: str) -> float:
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in the body")


def test_scrapes_queued_behind_a_build_share_its_body() -> None:
    _, app, _ = _setup()
    arrived = time.monotonic()
    first = _get(app, arrived)
    # Scrapes that arrived before that body was built get the very same chunks.
    assert _get(app, arrived) is first
    assert _get(app, arrived, HTTP_ACCEPT_ENCODING="gzip") is not first
    zipped = _get(app, arrived, HTTP_ACCEPT_ENCODING="gzip")
    assert _get(app, arrived, HTTP_ACCEPT_ENCODING="gzip") is zipped
    assert gzip.decompress(b"".join(zipped)) == b"".join(first)


def test_a_later_scrape_sees_what_changed_and_fresh_own_metrics() -> None:
    store, app, polls = _setup()
    before = b"".join(_get(app))
    assert _value(before, "huaweicloud_task_test_polls_total") == 0
    polls.inc()
    store.update_task_list(task_list("dcs", "i1").key, up=False)
    for accept_gzip in (False, True):
        env: dict[str, Any] = {"HTTP_ACCEPT_ENCODING": "gzip"} if accept_gzip else {}
        body = b"".join(_get(app, None, **env))
        if accept_gzip:
            body = gzip.decompress(body)
        assert _value(body, "huaweicloud_task_test_polls_total") == 1
        ups = [
            s.value
            for f in text_string_to_metric_families(body.decode())
            for s in f.samples
            if s.name == "huaweicloud_task_up"
        ]
        assert sorted(ups) == [0.0, 1.0, 1.0]
    # Own metrics move without the task lines moving: still fresh, the task part reused.
    polls.inc()
    assert _value(b"".join(_get(app)), "huaweicloud_task_test_polls_total") == 2


def test_concurrent_scrapes_build_one_body() -> None:
    store, app, _ = _setup()
    calls = 0
    render = store.exposition.render_at

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        time.sleep(0.05)  # a large exposition: the others arrive meanwhile
        return render(*args, **kwargs)

    store.exposition.render_at = counted  # type: ignore[method-assign]
    arrived = time.monotonic()
    bodies: list[list[bytes]] = []
    threads = [
        threading.Thread(target=lambda: bodies.append(_get(app, arrived))) for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert all(b is bodies[0] for b in bodies)


def test_name_filters_are_bounded_variants() -> None:
    _, app, _ = _setup()
    for n in range(100):
        body = b"".join(_get(app, QUERY_STRING=f"name[]=huaweicloud_task_up&name[]=x{n}"))
        assert b"huaweicloud_task_up{" in body
        assert b"poll_duration" not in body
    assert len(app.bodies._bodies) <= 32
