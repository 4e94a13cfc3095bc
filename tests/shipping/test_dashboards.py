"""The Grafana dashboards: generated, well formed, and reading only metrics that exist.

Grafana accepts almost any JSON and shows an empty panel for a misspelt metric, so these
checks catch at review time what would otherwise be found during an incident.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.dashboard_queries import panel_queries, substitute


def _load_generator() -> ModuleType:
    """grafana/generate.py is a script, not a package: load it from its path."""
    spec = importlib.util.spec_from_file_location(
        "grafana_generate", ROOT / "grafana" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _load_generator()


DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
CORE_PANEL_TYPES = {
    "timeseries",
    "stat",
    "table",
    "bargauge",
    "gauge",
    "row",
    "text",
    "state-timeline",
    "heatmap",
}
VARIABLES = {"region", "project", "service", "instance"}
BUILTINS = {"__rate_interval", "__interval", "__range"}
KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
# Values for every variable, to make each query plain PromQL.
SAMPLE_VALUES = {
    "region": "ap-southeast-1",
    "project": ".*",
    "service": "dcs|kafka",
    "instance": "5560df16-cebf-4473-95c4-d1b573c16e79",
}
REQUIRED_TITLES = {
    "huaweicloud-task-overview.json": {
        "Fleet",
        "Running and stuck",
        "Durations",
        "Exporter health",
        "Finished (24h)",
        "Failed (24h)",
        "Running now",
        "Stuck now",
        "Targets up",
        "Finished tasks per hour by status",
        "Failed tasks per hour by service and task name",
        "Failure ratio per task name (1d)",
        "Recent failures (24h)",
        "Unfinished tasks by age, against their usual duration",
        "Oldest unfinished task against its stuck threshold",
        "Running tasks by task name",
        "Slowest task types (1d)",
        "Task duration p95 (1h window)",
        "Targets up / down",
        "Poll duration per target",
        "Seconds since last successful poll",
        "API requests by code",
        "Throttled API requests",
    },
    "huaweicloud-task-instance.json": {
        "Up",
        "Running now",
        "Failed (24h)",
        "Tasks by name and status (lookback window)",
        "Last status per task name",
        "Last failure and oldest running task per task name",
        "Last duration and finish time per task name",
        "Failed tasks per hour by task name",
        "Finished tasks per hour by status",
        "Unfinished task age by task name",
        "Poll duration",
    },
}


# -- helpers ---------------------------------------------------------------------------------


def committed() -> dict[str, dict[str, Any]]:
    """The dashboards as committed, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and the panels inside (collapsed) rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, the PromQL inside its label_values() or query_result())."""
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        inner = re.fullmatch(r"label_values\((.*),\s*\w+\)|query_result\((.*)\)", query, re.DOTALL)
        if inner:
            found.append((variable["name"], inner.group(1) or inner.group(2)))
        else:
            pytest.fail(f"variable {variable['name']}: unexpected query {query}")
    return found


def every_query() -> list[tuple[str, str, str]]:
    """(file, where, PromQL) of every panel, annotation and variable of every dashboard."""
    return [
        (name, where, expr)
        for name, board in committed().items()
        for where, expr in panel_queries(board)
        + [(f"variable: {v}", q) for v, q in variable_queries(board)]
    ]


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'" r"|`[^`]*`")
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_TOKENS = re.compile(r"(?P<number>\.?\d[\w.]*)|(?P<name>[A-Za-z_:][\w:]*)")


def metric_names(expr: str) -> set[str]:
    """Metric names read by a PromQL expression, by a tokenizer rather than a parser.

    Strings, label matchers, ranges and grouping label lists go first; what remains is a
    metric name unless a call follows it, it is a keyword, or it is a number or duration.
    """
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for token in _TOKENS.finditer(text):
        name = token.group("name")
        if name is None or name.lower() in KEYWORDS:
            continue
        if text[token.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(name)
    return names


@functools.cache
def exposed_samples() -> tuple[set[str], dict[str, set[str]]]:
    """Every family and sample name the real exporter exposes, with the labels of each."""
    run = subprocess.run(
        [sys.executable, "-m", "exporter", "--demo", "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(run.stdout):
        names.add(family.name)
        labels.setdefault(family.name, set())
        if family.type == "counter":
            # The parser drops _total from counter families; a counter without samples yet
            # (no request throttled) is still declared by its TYPE line.
            names.add(family.name + "_total")
        for sample in family.samples:
            names.add(sample.name)
            labels.setdefault(sample.name, set()).update(sample.labels)
            labels[family.name].update(sample.labels)
    return names, labels


def recorded_names() -> set[str]:
    """Series recorded by the shipped rule files."""
    names = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


# -- 1. generated ----------------------------------------------------------------------------


def test_committed_dashboards_are_generated() -> None:
    generated: dict[str, dict[str, Any]] = GENERATE.dashboards()
    assert set(generated) == set(committed()), "run python grafana/generate.py"
    for name, board in generated.items():
        text = (DASHBOARD_DIR / name).read_text()
        assert text == GENERATE.render(board), f"{name} is stale: run python grafana/generate.py"


def test_generate_check_reports_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = subprocess.run(
        [sys.executable, "grafana/generate.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    generated: dict[str, dict[str, Any]] = GENERATE.dashboards()
    for name, board in generated.items():
        (tmp_path / name).write_text(GENERATE.render(board))
    monkeypatch.setattr(GENERATE, "DASHBOARD_DIR", tmp_path)
    assert GENERATE.main(["--check"]) == 0
    stale = sorted(generated)[0]
    (tmp_path / stale).write_text("{}\n")
    assert GENERATE.main(["--check"]) == 1
    assert stale in capsys.readouterr().err


# -- 2. structure ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REQUIRED_TITLES))
def test_structure(name: str) -> None:
    board = committed()[name]
    panels = all_panels(board)
    assert board["schemaVersion"] >= 39
    assert board["uid"] == name.removesuffix(".json")
    assert board["title"]
    assert board["tags"] == ["huaweicloud", "tasks"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["type"] in CORE_PANEL_TYPES, panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["title"]
        if panel["type"] != "row":
            assert panel.get("description"), panel["title"]
            assert panel["targets"], panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == DATASOURCE, panel["title"]
    for a, b in itertools.combinations(panels, 2):
        assert not overlaps(a["gridPos"], b["gridPos"]), (a["title"], b["title"])
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["h"] > 0, panel["title"]
    # Panels of a collapsed row sit below it, where expanding it shows them.
    for row in board["panels"]:
        for child in row.get("panels", []):
            assert child["gridPos"]["y"] > row["gridPos"]["y"], child["title"]


@pytest.mark.parametrize("name", sorted(REQUIRED_TITLES))
def test_variables_and_annotations(name: str) -> None:
    board = committed()[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    required = ["region", "project", "service"] + (["instance"] if "instance" in name else [])
    for var in required:
        assert variables[var]["type"] == "query", var
    for var in ("region", "project", "service"):
        assert variables[var]["multi"], var
        assert variables[var]["includeAll"], var
        assert variables[var]["allValue"] == ".*", var
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
            assert "huaweicloud_task_up" in variable["query"]["query"]
    if "instance" in variables:
        instance = variables["instance"]
        assert not instance["multi"]
        assert "(?<value>" in instance["regex"]
        assert "(?<text>" in instance["regex"]
        # Grafana renders a query_result() line as {label="value",...} with sorted labels.
        line = '{instance_id="5560df16",instance_name="redis-prod"} 1 1700000000000'
        pattern = instance["regex"].strip("/").replace("(?<", "(?P<")
        match = re.search(pattern, line)
        assert match
        assert match.group("value", "text") == ("5560df16", "redis-prod")

    annotations = board["annotations"]["list"]
    assert any(a.get("builtIn") == 1 for a in annotations)
    failed = [a for a in annotations if a["name"] == "Failed tasks"]
    assert len(failed) == 1
    for annotation in annotations:
        if not annotation.get("builtIn"):
            assert annotation["datasource"] == DATASOURCE, annotation["name"]
    assert "{{task_name}}" in failed[0]["titleFormat"]
    assert "{{status}}" in failed[0]["titleFormat"]
    assert "{{instance_name}}" in failed[0]["textFormat"]
    assert "{{instance_id}}" in failed[0]["textFormat"]
    assert "{{context}}" in failed[0]["textFormat"]  # which task, who, what (always set)

    other = ({"huaweicloud-task-overview", "huaweicloud-task-instance"} - {board["uid"]}).pop()
    assert any(link.get("url", "").endswith(f"/d/{other}") for link in board["links"])


def test_queries_use_only_known_variables() -> None:
    allowed = VARIABLES | BUILTINS
    for name, where, expr in every_query():
        used = {a or b for a, b in re.findall(r"\$\{(\w+)[^}]*\}|\$(\w+)", expr)}
        # label_replace() replacements ($1) are not Grafana variables.
        used = {v for v in used if not v.isdigit()}
        assert used <= allowed, (name, where, used - allowed)
        if where.startswith("variable"):
            continue
        assert not re.search(r"\$(?!\d)", substitute(expr, SAMPLE_VALUES)), (name, where)
        if "$__rate_interval" in expr:
            assert "huaweicloud_task_api_" in expr, (name, where, "tasks are rare events")


@pytest.mark.parametrize("name", sorted(REQUIRED_TITLES))
def test_selectors_filter_by_the_variables(name: str) -> None:
    """Each selector filters on every variable whose label its series carry."""
    labels = {name: set(found) for name, found in exposed_samples()[1].items()}
    target_labels = {"cloud_service", "region", "project_id", "instance_id", "instance_name"}
    for record in recorded_names():
        labels.setdefault(
            record, target_labels if record.startswith("huaweicloud_task:") else set()
        )
    labels["cloud_service_task_name:huaweicloud_task_failure:ratio1d"] = {"cloud_service"}
    labels["cloud_service_task_name:huaweicloud_task_finished:increase1d"] = {"cloud_service"}
    labels["cloud_service_task_name:huaweicloud_task_failed:increase1d"] = {"cloud_service"}
    labels["ALERTS"] = target_labels
    filters = {
        "region": 'region=~"$region"',
        "project_id": 'project_id=~"$project"',
        "cloud_service": 'cloud_service=~"$service"',
    }
    if "instance" in name:
        filters["instance_id"] = 'instance_id="$instance"'
    for where, expr in panel_queries(committed()[name]):
        for metric, matchers in re.findall(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", expr):
            for label, matcher in filters.items():
                if label in labels.get(metric, set()):
                    assert matcher in matchers, (where, metric, matcher)
            raw_task_family = metric.startswith("huaweicloud_task_") and "task_name" in labels.get(
                metric, set()
            )
            # Info series are only joined onto deduplicated recorded series, on instance_id:
            # the task center's context goes with the task center's failures, never counted.
            joined_info = metric.endswith("_info") and (
                "group_left (context)" in expr or "group_left (task_id, user_name, change)" in expr
            )
            if "overview" in name and raw_task_family and not joined_info:
                # The DCS task center repeats DCS instance tasks: read one view only.
                assert 'instance_id!=""' in matchers or 'source="instance"' in matchers, (
                    where,
                    metric,
                )


# -- 3. known metrics, valid PromQL ----------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (le, cloud_service) (rate(foo_bucket{a="b", c=~"x|y"}[1d]))',
            {"foo_bucket"},
        ),
        ("a / on (x) group_left (y) b > 0 or vector(0)", {"a", "b"}),
        ("time() - max by (x) (c) offset 10m", {"c"}),
        ('count(ALERTS{alertname="X", alertstate="firing"}) or vector(0)', {"ALERTS"}),
        ("histogram_quantile(0.95, sum without (instance) (rate(d[5m]))) >= 0", {"d"}),
        ('x{label="(by) {brace} [1m] y"} * 1e3 unless ignoring(z) y', {"x", "y"}),
        (
            "huaweicloud_task:finished:increase1h * 1000 > bool 1.5",
            {"huaweicloud_task:finished:increase1h"},
        ),
        ('label_replace(m, "dst", "$1", "src", "(.+)") and on () Inf > NaN', {"m"}),
        ("sum(rate(r[$__rate_interval])) by (code) + max_over_time(s[1h:5m])", {"r", "s"}),
    ],
)
def test_metric_name_tokenizer(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_queries_read_only_known_metrics() -> None:
    exposed, _ = exposed_samples()
    assert "huaweicloud_task_duration_seconds_bucket" in exposed
    assert "huaweicloud_task_api_throttled_requests_total" in exposed
    known = exposed | recorded_names() | {"ALERTS"}
    queries = every_query()
    assert len(queries) >= 20
    for name, where, expr in queries:
        unknown = metric_names(expr) - known
        assert not unknown, (name, where, unknown)


def test_recording_rules_are_used() -> None:
    used = set().union(*(metric_names(expr) for _, _, expr in every_query()))
    for record in (
        "huaweicloud_task:finished:increase10m",
        "huaweicloud_task:finished:increase1h",
        "huaweicloud_task:finished:increase1d",
        "huaweicloud_task:unfinished_age_seconds",
        "huaweicloud_task:recent_tasks:dedup",
        "huaweicloud_task:stuck_after_seconds",
        "huaweicloud_task:usual_duration_seconds",
    ):
        assert record in used, record
        assert record in recorded_names(), record


def test_queries_parse(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not on PATH: run ./scripts/test, which installs it"
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr, SAMPLE_VALUES)}
        for i, (_, _, expr) in enumerate(every_query())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules)} rules found" in run.stdout


def test_panel_queries_reads_rows_and_annotations() -> None:
    board = {
        "annotations": {
            "list": [
                {"builtIn": 1, "datasource": {"type": "grafana"}, "name": "Annotations & Alerts"},
                {"datasource": DATASOURCE, "name": "Failed tasks", "expr": "a > 0"},
            ]
        },
        "panels": [
            {"type": "stat", "title": "S", "targets": [{"expr": "b"}, {"expr": "c"}]},
            {
                "type": "row",
                "title": "R",
                "collapsed": True,
                "panels": [{"type": "table", "title": "T", "targets": [{"expr": "d"}]}],
            },
            {"type": "text", "title": "X"},
        ],
    }
    assert panel_queries(board) == [
        ("annotation: Failed tasks", "a > 0"),
        ("S", "b"),
        ("S", "c"),
        ("T", "d"),
    ]
    # The overview hides its exporter-health panels in a collapsed row.
    titles = {title for title, _ in panel_queries(committed()["huaweicloud-task-overview.json"])}
    assert "Throttled API requests" in titles


def test_substitute() -> None:
    expr = (
        'rate(m{region=~"$region", project_id=~"${project}", cloud_service=~"$service", '
        'instance_id="$instance"}[$__rate_interval]) + increase(n[$__interval]) '
        "+ increase(o[${__range}]) + $regionx"
    )
    assert substitute(expr, {"region": "r", "project": "p", "service": ".*", "instance": "i"}) == (
        'rate(m{region=~"r", project_id=~"p", cloud_service=~".*", '
        'instance_id="i"}[1m]) + increase(n[15s]) + increase(o[1h]) + $regionx'
    )


# -- 4. the panels people look for -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REQUIRED_TITLES))
def test_required_panels(name: str) -> None:
    titles = {p["title"] for p in all_panels(committed()[name])}
    missing = REQUIRED_TITLES[name] - titles
    assert not missing, missing


# -- 5. the failure context, evaluated -------------------------------------------------------

_SCRAPE = 'instance="{replica}:10418",job="huaweicloud-task-exporter"'
_TARGET = 'cloud_service="{svc}",region="ap-southeast-1",project_id="p1",instance_id="{iid}"'


def _series(metric: str, labels: str, values: str, replica: str = "a") -> dict[str, str]:
    return {"series": f"{metric}{{{labels},{_SCRAPE.format(replica=replica)}}}", "values": values}


def _promtool_expr_test(tmp_path: Path, series: list[dict[str, str]], tests: list[Any]) -> None:
    """Evaluate dashboard queries over input series with the shipped rules (promtool)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not on PATH: run ./scripts/test, which installs it"
    doc = {
        "rule_files": [str(p) for p in sorted(RULES_DIR.glob("*.yml"))],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    path = tmp_path / "dashboard.test.yml"
    path.write_text(yaml.safe_dump(doc))
    run = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _board_query(board: str, where: str, values: dict[str, str]) -> list[str]:
    found = [e for w, e in panel_queries(committed()[board]) if w == where]
    assert found, (board, where)
    return [substitute(e, values) for e in found]


def test_failed_annotation_says_which_task(tmp_path: Path) -> None:
    """Each failure marker carries a `context`: from the info series where there is one (two
    replicas disagreeing for a moment still give one marker), and a plain "no task details"
    where there is none (an older exporter) or the failure is DELETED (never in that series)."""

    def target(svc: str, iid: str, name: str) -> str:
        return _TARGET.format(svc=svc, iid=iid) + f',instance_name="n-{iid}",task_name="{name}"'

    finished = "huaweicloud_task_finished_total"
    info = "huaweicloud_task_last_failure_info"
    series = [
        _series(finished, target("dcs", "r1", "EXTEND") + ',status="FAILED"', "1x20 2x20"),
        _series(
            info,
            target("dcs", "r1", "EXTEND")
            + ',task_id="t-1",user_name="alice",change="capacity 0.125 -> 0.25"',
            "1x40",
        ),
        # A second replica still exposing the older failure: one marker all the same.
        _series(finished, target("dcs", "r1", "EXTEND") + ',status="FAILED"', "1x20 2x20", "b"),
        _series(info, target("dcs", "r1", "EXTEND") + ',task_id="t-0",user_name=""', "1x40", "b"),
        _series(finished, target("kafka", "k1", "modify") + ',status="FAILED"', "1x20 2x20"),
        _series(finished, target("rocketmq", "m1", "unbind") + ',status="DELETED"', "1x20 2x20"),
        _series(info, target("rocketmq", "m1", "unbind") + ',task_id="old",user_name="x"', "1x40"),
        _series(finished, target("dcs", "r2", "AddReplica") + ',status="FAILED"', "1x20 2x20"),
        _series(info, target("dcs", "r2", "AddReplica") + ',task_id="t-2",user_name="bob"', "1x40"),
        # Context without a failure in the window: no marker.
        _series(info, target("kafka", "k2", "modify") + ',task_id="t-9",user_name="c"', "1x40"),
    ]

    def marker(svc: str, iid: str, name: str, status: str, context: str) -> dict[str, Any]:
        labels = target(svc, iid, name) + f',status="{status}",context="{context}"'
        return {"labels": f"{{{labels}}}", "value": 1}

    values = {"region": ".*", "project": ".*", "service": ".*"}
    (overview,) = _board_query("huaweicloud-task-overview.json", "annotation: Failed tasks", values)
    (instance,) = _board_query(
        "huaweicloud-task-instance.json", "annotation: Failed tasks", {**values, "instance": "r1"}
    )
    either = " or ".join(
        f'label_replace(vector(1), "context", "{c}", "", "")'
        for c in ("task t-1, started by alice, capacity 0.125 -> 0.25", "task t-0")
    )
    _promtool_expr_test(
        tmp_path,
        series,
        [
            {
                "expr": f"count(({overview}) > bool 0)",
                "eval_time": "25m",
                "exp_samples": [{"labels": "{}", "value": 4}],
            },
            {
                "expr": f'({overview}) > bool 0 unless on (task_name) {{task_name="EXTEND"}}',
                "eval_time": "25m",
                "exp_samples": [
                    marker("dcs", "r2", "AddReplica", "FAILED", "task t-2, started by bob"),
                    marker("kafka", "k1", "modify", "FAILED", "no task details"),
                    marker("rocketmq", "m1", "unbind", "DELETED", "no task details"),
                ],
            },
            # Two replicas disagreeing: one marker, with one of their contexts.
            {
                "expr": f"count({instance})",
                "eval_time": "25m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            },
            {
                "expr": f"({instance}) unless on (context) ({either})",
                "eval_time": "25m",
                "exp_samples": [],
            },
            {"expr": f"{overview}", "eval_time": "35m", "exp_samples": []},
        ],
    )


def test_recent_tasks_table_shows_who_changed_what_and_when(tmp_path: Path) -> None:
    """The instance's last failure and oldest running task per name, with their times."""
    labels = _TARGET.format(svc="dcs", iid="r1") + ',instance_name="redis-prod"'
    series = [
        _series(
            "huaweicloud_task_last_failure_info",
            labels + ',task_name="EXTEND",task_id="t-1",user_name="alice",change="capacity 1 -> 2"',
            "1x10",
        ),
        _series(
            "huaweicloud_task_last_finished_timestamp_seconds",
            labels + ',task_name="EXTEND"',
            "120x10",
        ),
        _series(
            "huaweicloud_task_oldest_unfinished_info",
            labels + ',task_name="AddReplica",task_id="t-2",user_name="bob",change=""',
            "1x10",
        ),
        _series(
            "huaweicloud_task_oldest_unfinished_start_timestamp_seconds",
            labels + ',task_name="AddReplica"',
            "60x10",
        ),
        # Another instance's tasks stay out.
        _series(
            "huaweicloud_task_oldest_unfinished_info",
            _TARGET.format(svc="dcs", iid="r9") + ',task_name="AddReplica",task_id="t-3"',
            "1x10",
        ),
    ]
    values = {"region": ".*", "project": ".*", "service": ".*", "instance": "r1"}
    failed, started, running_for = _board_query(
        "huaweicloud-task-instance.json",
        "Last failure and oldest running task per task name",
        values,
    )
    failure = (
        '{change="capacity 1 -> 2",state="failed",task_id="t-1",task_name="EXTEND",'
        'user_name="alice"}'
    )
    running = '{state="running",task_id="t-2",task_name="AddReplica",user_name="bob"}'
    _promtool_expr_test(
        tmp_path,
        series,
        [
            {
                "expr": failed,
                "eval_time": "5m",
                "exp_samples": [{"labels": failure, "value": 120000}],
            },
            {
                "expr": started,
                "eval_time": "5m",
                "exp_samples": [{"labels": running, "value": 60000}],
            },
            {
                "expr": running_for,
                "eval_time": "5m",
                "exp_samples": [{"labels": running, "value": 240}],
            },
        ],
    )
