"""The pre-rendered exposition against prometheus_client's own rendering of the same state.

The store renders lines when a task list, a duration group or the discovery results change;
prometheus_client renders the same snapshot through `TaskCollector` (the reference). Both
formats are parsed and must hold the same families, samples, labels and values, through
additions, renames and removals. `?name[]=` is checked on a running exporter.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.counting import Failure, TaskRow, summarize
from exporter.core.expectations import Expectation
from exporter.core.histograms import HistogramRow
from exporter.core.instances import DiscoveryHealth, InstanceInfo
from exporter.core.tasklists import TaskList
from exporter.exposition.families import TaskFamilies
from exporter.exposition.reference import TaskCollector
from exporter.exposition.snapshot import SnapshotStore, TaskListSnapshot
from exporter.web.metrics import MetricsApp
from tests.builders import task_list
from tests.conftest import (
    PROJECT,
    ExporterProcess,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    write_config,
)

BOUNDS = (1.0, 10.0, 60.0, 1e6)
OM = "application/openmetrics-text; version=1.0.0"
HOSTILE = 'we"ird\\name\nwith ünïcode'


def _target(service: str, instance_id: str, name: str, kind: str = "instance") -> TaskList:
    assert (kind == "task_center") == (not instance_id)
    return task_list(service, instance_id, name, region="eu-de", project_id=PROJECT)


def _series(t: TaskList, by_instance: bool, name: str, status: str) -> str:
    mode = "instance" if by_instance else "aggregate"
    instance = t.instance_id if by_instance else ""
    return json.dumps([mode, t.service, t.region, t.project_id, t.kind, instance, name, status])


def _summary(  # type: ignore[no-untyped-def]
    t: TaskList,
    now: float,
    rows: list[TaskRow],
    finished: dict[tuple[str, str], int],
    failures: dict[str, Failure] | None = None,
):
    zero = ("SUCCESS", "FAILED") if t.service == "dcs" else ("SUCCESS", "FAILED", "DELETED")
    return summarize(rows, finished, now - 86400, zero, failures)


def _populate(store: SnapshotStore, by_instance: bool, now: float | None = None) -> list[TaskList]:
    """Every kind of series, hostile label values included; `now` fixed: a golden input."""
    now = time.time() if now is None else now
    a = _target("dcs", "i-a", "redis-a")
    b = _target("kafka", "i-b", HOSTILE)
    c = _target("dcs", "", "", kind="task_center")
    d = _target("dcs", "i-d", "never-polled")
    targets = [a, b, c, d]
    store.set_task_lists(targets)
    rows_a = [
        TaskRow("1", "EXTEND", "SUCCESS", now - 600, True, now - 500, True),
        TaskRow("2", "EXTEND", "FAILED", now - 300, True, now - 250, True),
        TaskRow("3", "RESTART", "EXECUTING", now - 100, True, None, False, 0, HOSTILE, "x -> y"),
        TaskRow("4", HOSTILE, "SUCCESS", now - 90, False, now - 80, True),
    ]
    rows_b = [TaskRow("9", "bindInstancePublicIp", "CANCELLED", now - 50, True, now - 40, True)]
    store.publish_task_list(
        TaskListSnapshot(
            a,
            polled=True,
            up=True,
            last_success=now,
            last_attempt=now,
            poll_duration=0.125,
            summary=_summary(
                a,
                now,
                rows_a,
                {("EXTEND", "SUCCESS"): 7, ("EXTEND", "FAILED"): 1},
                {"EXTEND": Failure("2", "alice", "capacity 0.125 -> 0.25", now - 250)},
            ),
            expected=(Expectation("EXTEND", 480.5, 1500.0, 12), Expectation(HOSTILE, 9.0, 9.0, 1)),
        )
    )
    store.publish_task_list(
        TaskListSnapshot(
            b,
            polled=True,
            up=True,
            last_success=now - 30,
            poll_duration=2.5,
            summary=replace(  # a task list with more names than its limit
                _summary(b, now, rows_b, {("bindInstancePublicIp", "CANCELLED"): 3}),
                names_folded=3,
            ),
        )
    )
    store.publish_task_list(TaskListSnapshot(c, last_success=now - 3600))  # restored, not polled
    store.publish_expected(c.key, (Expectation("ChangeInstanceSpec", 300.0, 900.25, 3),))
    store.publish_fleet(
        {
            ("dcs", "EXTEND"): Expectation("EXTEND", 420.0, 1700.0, 40),
            ("kafka", HOSTILE): Expectation(HOSTILE, 9.0, 9.0, 1),
            ("dcs", "gone"): Expectation("gone", 1.0, 2.0, 1),
        }
    )
    store.publish_fleet({("dcs", "gone"): None, ("dcs", "never-seen"): None})
    store.update_task_list(c.key, polled=True, up=False, poll_duration=10.0, last_error="boom")
    store.update_histograms(
        [
            HistogramRow(_series(a, by_instance, "EXTEND", "SUCCESS"), (1, 2, 3, 0, 1), 1234.5, 7),
            HistogramRow(
                _series(b, by_instance, "bindInstancePublicIp", "CANCELLED"),
                (0, 3, 0, 0, 0),
                15.0,
                3,
            ),
            HistogramRow(
                _series(c, by_instance, "gone-target-task", "SUCCESS"), (1, 0, 0, 0, 0), 0.5, 1
            ),
            # Another mode's rows and a removed target's rows are never shown.
            HistogramRow(
                _series(a, not by_instance, "EXTEND", "SUCCESS"), (9, 9, 9, 9, 9), 9.0, 45
            ),
            HistogramRow(
                _series(_target("dcs", "i-x", "x"), True, "EXTEND", "SUCCESS"),
                (9, 0, 0, 0, 0),
                1.0,
                9,
            ),
        ]
    )
    store.update_histograms(
        [HistogramRow(_series(a, by_instance, "EXTEND", "SUCCESS"), (1, 2, 4, 0, 1), 1244.5, 8)]
    )
    store.publish_discovery(
        [InstanceInfo("dcs", "eu-de", PROJECT, "i-a", "redis-a", "Redis", "6.0", "RUNNING")],
        [
            DiscoveryHealth("dcs", "eu-de", PROJECT, True),
            DiscoveryHealth("kafka", "eu-de", "", False),
        ],
    )
    return targets


def _scrape(
    app: MetricsApp, accept: str = "", query: str = "", gzip_ok: bool = False
) -> tuple[dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status
        seen["headers"] = dict(headers)

    environ = {"HTTP_ACCEPT": accept, "QUERY_STRING": query, "REQUEST_METHOD": "GET"}
    if gzip_ok:
        environ["HTTP_ACCEPT_ENCODING"] = "gzip"
    body = b"".join(app(environ, start_response))
    assert seen["status"] == "200 OK"
    assert int(seen["headers"]["Content-Length"]) == len(body)
    return seen["headers"], body


def _normalized(
    families: Any,
) -> dict[str, tuple[str, str, list[tuple[str, tuple[tuple[str, str], ...], float]]]]:
    out = {}
    for f in families:
        samples = sorted(
            (s.name, tuple(sorted(s.labels.items())), float(s.value)) for s in f.samples
        )
        out[f.name] = (f.type, f.documentation, samples)
    return out


def _both(store: SnapshotStore, families: TaskFamilies) -> None:
    """The stored lines and prometheus_client's rendering parse to the same thing."""
    served = MetricsApp(store.exposition, CollectorRegistry(auto_describe=False))
    reference = CollectorRegistry(auto_describe=False)
    reference.register(TaskCollector(store, families))

    _, text = _scrape(served)
    expected = _normalized(text_string_to_metric_families(generate_latest(reference).decode()))
    got = _normalized(text_string_to_metric_families(text.decode()))
    assert got == expected
    assert sum(len(v[2]) for v in got.values()) > (40 if store.current.task_lists else 0)

    headers, om_text = _scrape(served, accept=OM)
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert om_text.endswith(b"# EOF\n")
    assert om_text.count(b"# EOF") == 1
    expected_om = _normalized(
        openmetrics_families(om_exposition.generate_latest(reference).decode())  # type: ignore[no-untyped-call]
    )
    got_om = _normalized(openmetrics_families(om_text.decode()))  # type: ignore[no-untyped-call]
    assert got_om == expected_om
    assert b"_created" not in om_text
    # OpenMetrics names the counter family without `_total`, its samples with it.
    counter_samples = got_om["huaweicloud_task_finished"][2]
    assert {s[0] for s in counter_samples} == (
        {"huaweicloud_task_finished_total"} if store.current.task_lists else set()
    )

    headers, compressed = _scrape(served, gzip_ok=True)
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(compressed) == text


@pytest.mark.smoke
@pytest.mark.parametrize("by_instance", [False, True])
def test_prerendered_lines_equal_prometheus_client_rendering(by_instance: bool) -> None:
    families = TaskFamilies(60.0, by_instance)
    store = SnapshotStore(BOUNDS, by_instance, families)
    _a, _b, c, d = _populate(store, by_instance)
    _both(store, families)
    text = _scrape(MetricsApp(store.exposition, CollectorRegistry()))[1].decode()
    assert "gone-target-task" in text  # the task center's stored series is shown
    assert 'task_id="2",user_name="alice",change="capacity 0.125 -> 0.25"} 1.0' in text
    assert text.count("huaweicloud_task_oldest_unfinished_info{") == 1
    assert "i-x" not in text  # an unconfigured instance's series is not
    assert (
        'huaweicloud_task_expected_duration_seconds{cloud_service="dcs",region="eu-de",'
        f'project_id="{PROJECT}",instance_id="i-a",instance_name="redis-a",'
        'task_name="EXTEND",quantile="0.95"} 1500.0' in text
    )
    assert 'huaweicloud_task_fleet_expected_duration_samples{cloud_service="dcs",' in text
    assert 'task_name="gone"' not in text  # a fleet kind without runs goes

    # A rename moves every line to the new labels; a removal takes them all away.
    renamed = _target("dcs", "i-a", "redis-a-renamed")
    store.set_task_lists([renamed, c, d])
    store.publish_fleet({("kafka", HOSTILE): None})  # as the poller does: the list's runs left
    _both(store, families)
    tasks = _task_lines(store)
    assert 'instance_name="redis-a-renamed"' in tasks
    assert 'instance_name="redis-a"' not in tasks
    assert 'cloud_service="kafka"' not in tasks  # the kafka task list's lines left with it

    store.set_task_lists([])
    store.publish_fleet({("dcs", "EXTEND"): None})
    _both(store, families)
    assert "cloud_service=" not in _task_lines(store)


def _task_lines(store: SnapshotStore) -> str:
    """The exposition up to the discovery families (which discovery, not targets, drives)."""
    text = _scrape(MetricsApp(store.exposition, CollectorRegistry()))[1].decode()
    return text.split("# HELP huaweicloud_task_instance_info")[0]


@pytest.mark.smoke
def test_describe_yields_every_family_without_samples() -> None:
    families = TaskFamilies(60.0, False)
    store = SnapshotStore(BOUNDS, False, families)
    _populate(store, False)
    described = list(TaskCollector(store, families).describe())
    assert [m.name for m in described] == [f.name for f in families.all]
    assert all(m.samples == [] for m in described)
    # A registry that relies on describe() restricts to a task family correctly.
    registry = CollectorRegistry()
    registry.register(TaskCollector(store, families))
    restricted = generate_latest(registry.restricted_registry(["huaweicloud_task_up"])).decode()
    assert restricted.count("huaweicloud_task_up{") == 3


Start = Callable[..., ExporterProcess]


def test_name_filter_on_task_and_self_families(sim: Sim, tmp_path: Path, exporters: Start) -> None:
    w = sim.world
    now = time.time()
    ids = []
    for service, name in (("dcs", "redis-a"), ("kafka", "kafka-b")):
        inst = w.add_instance(service, name, PROJECT)  # type: ignore[arg-type]
        w.add_task(inst.id, "restart", "SUCCESS", now - 300, now - 290)
        ids.append(inst.id)
    doc = config_doc(sim, [instance_entry(w, i) for i in ids], state_path=tmp_path / "s.db")
    proc = exporters(write_config(tmp_path / "c.yml", doc))
    proc.wait_for(lambda m: all_up(m, 2), what="all up")
    inst = w.instances[ids[0]]
    w.add_task(inst.id, "restart", "FAILED", time.time() - 5, time.time() - 1)
    proc.wait_for(
        lambda m: m.total("huaweicloud_task_finished_total", status="FAILED") == 1,
        what="the failure counted",
    )

    def get(query: str, accept: str = "") -> list[Any]:
        status, _, body = proc.get(
            "/metrics?" + query, headers={"Accept": accept} if accept else None
        )
        assert status == 200
        text = body.decode()
        parse = openmetrics_families if accept else text_string_to_metric_families
        return list(parse(text))

    up = get("name[]=huaweicloud_task_up")
    assert [f.name for f in up] == ["huaweicloud_task_up"]
    assert sorted(s.labels["instance_id"] for s in up[0].samples) == sorted(ids)

    mixed = get(
        "name[]=huaweicloud_task_finished_total&name[]=huaweicloud_task_api_requests_total"
        "&name[]=huaweicloud_task_duration_seconds_count"
    )
    by_name = {f.name: f for f in mixed}
    assert set(by_name) == {
        "huaweicloud_task_finished",
        "huaweicloud_task_api_requests",
        "huaweicloud_task_duration_seconds",
    }
    assert {s.name for s in by_name["huaweicloud_task_duration_seconds"].samples} == {
        "huaweicloud_task_duration_seconds_count"
    }
    assert any(
        s.value == 1 and s.labels["status"] == "FAILED"
        for s in by_name["huaweicloud_task_finished"].samples
    )
    assert all(s.value >= 1 for s in by_name["huaweicloud_task_api_requests"].samples)

    om = get("name[]=huaweicloud_task_up&name[]=huaweicloud_task_build_info", accept=OM)
    assert {f.name for f in om} == {"huaweicloud_task_up", "huaweicloud_task_build_info"}
    assert get("name[]=no_such_metric") == []


@pytest.mark.smoke
def test_duration_groups_follow_the_names_their_members_have() -> None:
    """A group's histograms are rendered again only when its set of names changes; through
    joins that change it and joins that do not, the lines stay what the reference renders."""
    families = TaskFamilies(60.0, False)
    store = SnapshotStore(BOUNDS, False, families)
    now = time.time()
    a, b = _target("dcs", "i-a", "redis-a"), _target("dcs", "i-b", "redis-b")
    store.set_task_lists([a, b])

    def publish(t: TaskList, *names: str) -> None:
        rows = [
            TaskRow(str(i), name, "SUCCESS", now - 60 - i, True, now - 50 - i, True)
            for i, name in enumerate(names)
        ]
        summary = _summary(t, now, rows, {(n, "SUCCESS"): 1 for n in names})
        store.publish_task_list(TaskListSnapshot(t, polled=True, up=True, summary=summary))

    def same_as_reference() -> None:
        reference = CollectorRegistry(auto_describe=False)
        reference.register(TaskCollector(store, families))
        expected = generate_latest(reference).decode()
        text = _task_lines(store)
        assert _normalized(text_string_to_metric_families(text)) == _normalized(
            text_string_to_metric_families(
                expected.split("# HELP huaweicloud_task_instance_info")[0]
            )
        )

    def histogram_names() -> set[str]:
        text = _task_lines(store)
        return {
            s.labels["task_name"]
            for f in text_string_to_metric_families(text)
            if f.name == families.durations.name
            for s in f.samples
        }

    publish(a, "EXTEND")
    assert histogram_names() == {"EXTEND"}
    publish(b, "EXTEND")  # the same names: not rendered again, still right
    same_as_reference()
    publish(b, "EXTEND", "RESTART")
    assert histogram_names() == {"EXTEND", "RESTART"}
    same_as_reference()
    publish(a)  # a leaves EXTEND, which b still has
    assert histogram_names() == {"EXTEND", "RESTART"}
    publish(b, "RESTART")
    assert histogram_names() == {"RESTART"}
    same_as_reference()
