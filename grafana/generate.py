"""Generate the Grafana dashboards of the exporter from Python, so that they are reviewed as code.

`python grafana/generate.py` writes grafana/dashboards/*.json; `python grafana/generate.py
--check` exits 1 and names the stale file when a committed JSON differs from what this script
generates (the tests run the same comparison). Hand edits in Grafana are lost: port them here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Json = dict[str, Any]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
OVERVIEW_UID = "huaweicloud-task-overview"
INSTANCE_UID = "huaweicloud-task-instance"
TAGS = ["huaweicloud", "tasks"]
SCHEMA_VERSION = 41
GRID_WIDTH = 24

# Every panel, target, variable and annotation reads the data source the user picks.
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}

# Series filters. Per-target series carry region, project_id and cloud_service; the API
# counters only cloud_service and region (a project filter would hide them).
FLEET = 'region=~"$region", project_id=~"$project", cloud_service=~"$service"'
INSTANCE = FLEET + ', instance_id="$instance"'
API = 'region=~"$region", cloud_service=~"$service"'
# The labels that identify a task list; `max by` them folds identical exporter replicas.
TARGET = "cloud_service, region, project_id, instance_id, instance_name"
# Table columns of the target labels, in this order, under their own names.
TARGET_COLUMNS = {
    label: label
    for label in ("cloud_service", "region", "project_id", "instance_name", "instance_id")
}
FAILED = 'status=~"FAILED|DELETED"'
UNFINISHED = 'status=~"CREATED|WAITING|EXECUTING"'
INCREASE_10M = "huaweicloud_task:finished:increase10m"
INCREASE_1D = "huaweicloud_task:finished:increase1d"
INCREASE_1H = "huaweicloud_task:finished:increase1h"
UNFINISHED_AGE = "huaweicloud_task:unfinished_age_seconds"
RECENT_TASKS = "huaweicloud_task:recent_tasks:dedup"
STUCK_AFTER = "huaweicloud_task:stuck_after_seconds"
USUAL_DURATION = "huaweicloud_task:usual_duration_seconds"
# The labels of one task name on one task list, as the recorded series carry them.
TARGET_NAME = f"{TARGET}, task_name"
STUCK_THRESHOLDS_FILE = (
    Path(__file__).resolve().parent.parent
    / "deploy"
    / "prometheus"
    / "rules"
    / "huaweicloud-task.stuck-thresholds.yml"
)
STUCK_DEFAULT_RECORD = "huaweicloud_task:stuck_threshold_default_seconds"


def stuck_default_seconds(path: Path = STUCK_THRESHOLDS_FILE) -> float:
    """HuaweiCloudTaskStuck's default threshold, read from the rules file that sets it (one
    place for the number: the dashboards draw the line the alert uses)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("record") == STUCK_DEFAULT_RECORD:
                m = re.fullmatch(r"\s*vector\(\s*([0-9.]+)\s*\)\s*", str(rule["expr"]))
                if m is None:
                    raise ValueError(f"{path}: {STUCK_DEFAULT_RECORD} is not vector(<seconds>)")
                value = float(m.group(1))
                return int(value) if value.is_integer() else value
    raise ValueError(f"{path}: no {STUCK_DEFAULT_RECORD} rule")


STUCK_DEFAULT_SECONDS = stuck_default_seconds()
# The labels of one task name on one task list: what the info series are unique by.
TASK_LIST_NAME = "cloud_service, region, project_id, instance_id, task_name"
# The context labels of the info series, and the series themselves.
CONTEXT = "task_id, user_name, change"
LAST_FAILURE_INFO = "huaweicloud_task_last_failure_info"
OLDEST_UNFINISHED_INFO = "huaweicloud_task_oldest_unfinished_info"

STATUS_COLORS = {
    "SUCCESS": "green",
    "FAILED": "red",
    "DELETED": "orange",
    "CANCELLED": "purple",
    "EXECUTING": "blue",
    "WAITING": "light-blue",
    "CREATED": "super-light-blue",
    "UNKNOWN": "text",
}


# -- building blocks --------------------------------------------------------------------------


def target(
    expr: str, legend: str = "__auto", *, ref: str = "A", instant: bool = False, table: bool = False
) -> Json:
    """One PromQL query; tables read instant vectors, graphs ranges."""
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": "table" if table else "time_series",
        "instant": instant or table,
        "legendFormat": legend,
        "range": not (instant or table),
        "refId": ref,
    }


def thresholds(*steps: tuple[float | None, str]) -> Json:
    """Absolute thresholds; the first step's value is None (from minus infinity)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def value_mapping(texts: dict[str, tuple[str, str]]) -> list[Json]:
    """Maps exact values to (text, color): shows 1/0 as up/down and colours statuses."""
    options = {
        value: {"color": color, "index": i, **({"text": text} if text else {})}
        for i, (value, (text, color)) in enumerate(texts.items())
    }
    return [{"type": "value", "options": options}]


UP_DOWN = value_mapping({"1": ("up", "green"), "0": ("down", "red")})
STATUS_MAPPING = value_mapping({s: ("", c) for s, c in STATUS_COLORS.items()})


def override(name: str, **properties: Any) -> Json:
    """Field override by display name; property ids use dots (custom.width), given as __."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in properties.items()],
    }


def instance_link(title: str = "Open the instance dashboard") -> list[Json]:
    """Data link from a table row to the instance dashboard, keeping data source and time."""
    url = (
        f"/d/{INSTANCE_UID}?${{datasource:queryparam}}"
        "&var-region=${__data.fields.region}&var-project=${__data.fields.project_id}"
        "&var-service=${__data.fields.cloud_service}&var-instance=${__data.fields.instance_id}"
        "&${__url_time_range}"
    )
    return [{"title": title, "url": url}]


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    *,
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    options: Json | None = None,
    transformations: list[Json] | None = None,
    interval: str | None = None,
) -> Json:
    """A panel of a core Grafana type; the grid assigns its id and gridPos."""
    result: Json = {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": defaults or {}, "overrides": overrides or []},
        "options": options or {},
        "targets": targets,
        "title": title,
        "type": kind,
    }
    if transformations:
        result["transformations"] = transformations
    if interval:
        result["interval"] = interval
    return result


def stat(
    title: str,
    description: str,
    expr: str,
    *,
    unit: str = "none",
    steps: Json | None = None,
    mappings: list[Json] | None = None,
    decimals: int | None = 0,
) -> Json:
    """A single number, coloured by thresholds; reads an instant vector."""
    defaults: Json = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "thresholds": steps or thresholds((None, "green")),
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return panel(
        "stat",
        title,
        description,
        [target(expr, title, instant=True)],
        defaults=defaults,
        options={
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showPercentChange": False,
            "textMode": "value",
            "wideLayout": True,
        },
    )


def timeseries(
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str = "none",
    bars: bool = False,
    stacked: bool = False,
    overrides: list[Json] | None = None,
    interval: str | None = None,
    threshold_line: float | None = None,
) -> Json:
    """A graph over time with a table legend, so that many task names stay readable."""
    custom: Json = {
        "axisSoftMin": 0,
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 80 if bars else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        "thresholdsStyle": {"mode": "off" if threshold_line is None else "line+area"},
    }
    steps = (
        thresholds((None, "green"))
        if threshold_line is None
        else thresholds((None, "transparent"), (threshold_line, "red"))
    )
    return panel(
        "timeseries",
        title,
        description,
        targets,
        defaults={
            "color": {"mode": "palette-classic"},
            "custom": custom,
            "thresholds": steps,
            "unit": unit,
        },
        overrides=overrides,
        options={
            "legend": {
                "calcs": ["max", "lastNotNull"],
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "sortBy": "Max",
                "sortDesc": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        interval=interval,
    )


def table(
    title: str,
    description: str,
    targets: list[Json],
    *,
    rename: dict[str, str],
    hide: tuple[str, ...] = (),
    sort_by: tuple[str, bool] | None = None,
    unit: str = "none",
    overrides: list[Json] | None = None,
) -> Json:
    """A table of instant vectors: several queries are merged on their labels into one row."""
    exclude = dict.fromkeys(("Time", "__name__", *hide), True)
    transformations: list[Json] = []
    if len(targets) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append(
        {
            "id": "organize",
            "options": {
                "excludeByName": exclude,
                "indexByName": {name: i for i, name in enumerate(rename)},
                "renameByName": rename,
            },
        }
    )
    options: Json = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
    }
    if sort_by:
        options["sortBy"] = [{"desc": sort_by[1], "displayName": sort_by[0]}]
    return panel(
        "table",
        title,
        description,
        targets,
        defaults={
            "color": {"mode": "thresholds"},
            "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
            "thresholds": thresholds((None, "green")),
            "unit": unit,
        },
        overrides=overrides,
        options=options,
        transformations=transformations,
    )


class Grid:
    """Places panels left to right, wrapping at 24 columns, so that no two overlap.

    Panels added after a collapsed row go inside it, positioned as if it were expanded.
    """

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self._ids: Iterator[int] = itertools.count(1)
        self._x = 0
        self._y = 0
        self._line_height = 0
        self._collapsed: Json | None = None

    def _newline(self) -> None:
        self._y += self._line_height
        self._x = 0
        self._line_height = 0

    def row(self, title: str, *, collapsed: bool = False) -> None:
        """A row header spanning the width; later panels belong to it."""
        self._newline()
        row: Json = {
            "collapsed": collapsed,
            "datasource": DATASOURCE,
            "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": self._y},
            "id": next(self._ids),
            "panels": [],
            "title": title,
            "type": "row",
        }
        self.panels.append(row)
        self._y += 1
        self._collapsed = row if collapsed else None

    def add(self, item: Json, width: int, height: int) -> None:
        """Give the panel an id and the next free place of the given size."""
        if self._x + width > GRID_WIDTH:
            self._newline()
        item["id"] = next(self._ids)
        item["gridPos"] = {"h": height, "w": width, "x": self._x, "y": self._y}
        (self._collapsed["panels"] if self._collapsed else self.panels).append(item)
        self._x += width
        self._line_height = max(self._line_height, height)


def query_variable(
    name: str, label: str, query: str, description: str, *, regex: str = "", multi: bool = True
) -> Json:
    """A variable filled from a Prometheus query, refreshed when the time range changes."""
    kind = 3 if query.startswith("query_result(") else 1
    variable: Json = {
        "current": {},
        "datasource": DATASOURCE,
        "definition": query,
        "description": description,
        "hide": 0,
        "includeAll": multi,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {
            "qryType": kind,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": regex,
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }
    if multi:
        variable["allValue"] = ".*"
    return variable


def variables(*, with_instance: bool) -> list[Json]:
    """Data source, then region, project and service, each narrowed by the ones before."""
    result = [
        {
            "current": {},
            "description": "The Prometheus that scrapes the exporter and evaluates its rules.",
            "hide": 0,
            "includeAll": False,
            "label": "Data source",
            "multi": False,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
            "type": "datasource",
        },
        query_variable(
            "region",
            "Region",
            "label_values(huaweicloud_task_up, region)",
            "Regions polled by the exporter.",
        ),
        query_variable(
            "project",
            "Project",
            'label_values(huaweicloud_task_up{region=~"$region"}, project_id)',
            "Project IDs polled in the selected regions.",
        ),
        query_variable(
            "service",
            "Service",
            'label_values(huaweicloud_task_up{region=~"$region", project_id=~"$project"}, '
            "cloud_service)",
            "dcs, kafka, rabbitmq or rocketmq.",
        ),
    ]
    if with_instance:
        # One series per instance: max by folds replicas; a nameless instance shows its id.
        selector = f'huaweicloud_task_up{{{FLEET}, instance_id!=""'
        named = f'max by (instance_id, instance_name) ({selector}, instance_name!=""}})'
        nameless = (
            f'label_replace(max by (instance_id) ({selector}, instance_name=""}}), '
            '"instance_name", "$1", "instance_id", "(.+)")'
        )
        result.append(
            query_variable(
                "instance",
                "Instance",
                f"query_result({named} or {nameless})",
                "The instance whose task list is shown (the DCS task center is on the overview).",
                regex='/instance_id="(?<value>[^"]+)", ?instance_name="(?<text>[^"]+)"/',
                multi=False,
            )
        )
    return result


def failure_context(selector: str) -> str:
    """One series per task list and task name: a `context` label saying which task failed.

    Grafana prints a missing or empty label as its own name, so the text is built here, each
    part only when its label is not empty: "task <id>, started by <user>, <change>". Replicas
    that briefly disagree are cut to one series, which a group_left join requires.
    """
    info = f"max by ({TASK_LIST_NAME}, {CONTEXT}) ({LAST_FAILURE_INFO}{{{selector}}})"
    parts = f'label_replace({info}, "context_id", "task $1", "task_id", "(.+)")'
    parts = f'label_replace({parts}, "context_user", ", started by $1", "user_name", "(.+)")'
    parts = f'label_replace({parts}, "context_change", ", $1", "change", "(.+)")'
    joined = f'label_join({parts}, "context", "", "context_id", "context_user", "context_change")'
    return f"topk by ({TASK_LIST_NAME}) (1, {joined})"


def failed_annotation_expr(selector: str) -> str:
    """Failed tasks with their context; without an info series (an older exporter, a DELETED
    task, which the info series never holds) the marker still shows, saying so."""
    failed = f'{INCREASE_10M}{{status="FAILED", {selector}}} > 0'
    every = f"{INCREASE_10M}{{{FAILED}, {selector}}} > 0"
    return (
        f"({failed}) * on ({TASK_LIST_NAME}) group_left (context) {failure_context(selector)}"
        f" or on ({TASK_LIST_NAME}, status) "
        f'label_replace({every}, "context", "no task details", "", "")'
    )


def annotation_list(selector: str) -> Json:
    """Grafana's own annotations, plus a marker at each failed task, saying which task it was."""
    return {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            },
            {
                "datasource": DATASOURCE,
                "enable": True,
                "expr": failed_annotation_expr(selector),
                "hide": False,
                "iconColor": "red",
                "name": "Failed tasks",
                "step": "1m",
                "tagKeys": "cloud_service,region,status",
                "textFormat": "{{instance_name}} {{instance_id}}: {{context}}",
                "titleFormat": "{{task_name}} {{status}}",
                "useValueForTime": False,
            },
        ]
    }


def dashboard(
    uid: str, title: str, description: str, grid: Grid, *, with_instance: bool, link: Json
) -> Json:
    """The dashboard envelope shared by both dashboards."""
    return {
        "annotations": annotation_list(INSTANCE if with_instance else FLEET),
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [link],
        "panels": grid.panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": TAGS,
        "templating": {"list": variables(with_instance=with_instance)},
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def dashboard_link(uid: str, title: str, tooltip: str) -> Json:
    """A link in the dashboard header carrying the variables and the time range along."""
    return {
        "asDropdown": False,
        "icon": "dashboard",
        "includeVars": True,
        "keepTime": True,
        "tags": [],
        "targetBlank": False,
        "title": title,
        "tooltip": tooltip,
        "type": "link",
        "url": f"/d/{uid}",
    }


STATUS_OVERRIDES = [
    override(status, color={"fixedColor": color, "mode": "fixed"})
    for status, color in STATUS_COLORS.items()
]


def recent_failures_table() -> Json:
    """The task lists and task names that failed in the last day, with the latest failed
    task's ID, user and change: who to ask, about what, without opening another dashboard."""
    failed = f'{INCREASE_1D}{{status="FAILED", {FLEET}}} > 0'
    info = f"max by ({TARGET_NAME}, {CONTEXT}) ({LAST_FAILURE_INFO}{{{FLEET}}})"
    # One info series per task list and task name, which group_left requires (replicas may
    # briefly disagree on the latest failure).
    latest = f"topk by ({TARGET_NAME}) (1, {info})"
    return table(
        "Recent failures (24h)",
        "Per task list and task name with a FAILED task in the last day: how many failed, "
        "and the latest failed task's ID, who started it and what it changed (from "
        "huaweicloud_task_last_failure_info), each task once. Click an instance to open its "
        "dashboard.",
        [
            target(
                f"sort_desc(({failed}) * on ({TARGET_NAME}) group_left ({CONTEXT}) {latest})",
                table=True,
            )
        ],
        rename={
            **TARGET_COLUMNS,
            "task_name": "task_name",
            "task_id": "Task ID",
            "user_name": "Started by",
            "change": "Change",
            "Value": "Failed (24h)",
        },
        sort_by=("Failed (24h)", True),
        overrides=[
            override("Failed (24h)", decimals=0),
            override("instance_id", links=instance_link()),
        ],
    )


def running_against_usual_table() -> Json:
    """Each running kind's age next to how long it usually takes and when it counts as stuck:
    a 20-minute switchover and a 20-minute resize are not the same news."""
    age = f"{UNFINISHED_AGE}{{{FLEET}}}"

    def of_running(expr: str) -> str:
        return f"{expr} and on ({TARGET_NAME}) {age}"

    usual = f"max without (basis, quantile) ({USUAL_DURATION}{{quantile=%r, {FLEET}}})"
    threshold = f"max without (basis) ({STUCK_AFTER}{{{FLEET}}})"
    return table(
        "Unfinished tasks by age, against their usual duration",
        "Per task list and task name, how long the oldest task still CREATED, WAITING or "
        "EXECUTING has been running, how long that kind usually takes (median and 95th "
        "percentile learned by the exporter, from this task list's runs or the fleet's), "
        "when it counts as stuck (huaweicloud_task:stuck_after_seconds), and the age as a "
        "share of that threshold: red past 100 %, when HuaweiCloudTaskStuck fires. An empty "
        "Usually column: too few runs to learn from, a static threshold applies. Click an "
        "instance to open its dashboard.",
        [
            target(f"sort_desc({age})", ref="A", table=True),
            target(of_running(usual.replace("%r", '"0.5"')), ref="B", table=True),
            target(of_running(usual.replace("%r", '"0.95"')), ref="C", table=True),
            target(of_running(threshold), ref="D", table=True),
            target(f"{age} / on ({TARGET_NAME}) {threshold}", ref="E", table=True),
        ],
        rename={
            **TARGET_COLUMNS,
            "task_name": "task_name",
            "Value #A": "Age",
            "Value #B": "Usually (p50)",
            "Value #C": "Usually (p95)",
            "Value #D": "Stuck after",
            "Value #E": "Of threshold",
        },
        sort_by=("Of threshold", True),
        overrides=[
            override("Age", unit="s"),
            override("Usually (p50)", unit="s"),
            override("Usually (p95)", unit="s"),
            override("Stuck after", unit="s"),
            override(
                "Of threshold",
                unit="percentunit",
                decimals=0,
                thresholds=thresholds((None, "green"), (0.5, "orange"), (1, "red")),
                custom__cellOptions={"type": "color-background"},
            ),
            override("instance_id", links=instance_link()),
        ],
    )


# -- the overview ----------------------------------------------------------------------------


def overview() -> Json:
    """Every polled task list at once: failures, stuck tasks, durations, exporter health."""
    grid = Grid()
    grid.row("Fleet")
    fleet_stats = [
        stat(
            "Finished (24h)",
            "Tasks that reached a finished status in the last 24 hours, each task once "
            "(recording rule huaweicloud_task:finished:increase1d: replicas folded, the DCS task "
            "center only where instances are not polled one by one).",
            f"sum({INCREASE_1D}{{{FLEET}}}) or vector(0)",
        ),
        stat(
            "Failed (24h)",
            "Tasks that ended FAILED (or DELETED, DMS) in the last 24 hours, each task once.",
            f"sum({INCREASE_1D}{{{FAILED}, {FLEET}}}) or vector(0)",
            steps=thresholds((None, "green"), (0.5, "red")),
        ),
        stat(
            "Running now",
            "Tasks created within the exporter's lookback that are CREATED, WAITING or "
            "EXECUTING now, each task once (recording rule huaweicloud_task:recent_tasks:dedup: "
            "the instance task lists, and the DCS task center where instances are not polled "
            "one by one).",
            f"sum({RECENT_TASKS}{{{UNFINISHED}, {FLEET}}}) or vector(0)",
            steps=thresholds((None, "green"), (0.5, "blue")),
        ),
        stat(
            "Stuck now",
            "Task names whose oldest unfinished task is past its threshold: firing "
            "HuaweiCloudTaskStuck alerts.",
            f'count(ALERTS{{alertname="HuaweiCloudTaskStuck", alertstate="firing", {FLEET}}}) '
            "or vector(0)",
            steps=thresholds((None, "green"), (0.5, "red")),
        ),
        stat(
            "Targets up",
            "Task lists (instances and task centers) whose last poll succeeded.",
            f"sum(max by ({TARGET}) (huaweicloud_task_up{{{FLEET}}})) or vector(0)",
        ),
        stat(
            "Targets down",
            "Task lists whose last poll failed: their task metrics are stale.",
            f"sum(1 - max by ({TARGET}) (huaweicloud_task_up{{{FLEET}}})) or vector(0)",
            steps=thresholds((None, "green"), (0.5, "red")),
        ),
    ]
    for item in fleet_stats:
        grid.add(item, 4, 4)
    grid.add(
        timeseries(
            "Finished tasks per hour by status",
            "Tasks finished within the hour before each point, by final status, each task once "
            "(recording rule huaweicloud_task:finished:increase1h).",
            [target(f"sum by (status) ({INCREASE_1H}{{{FLEET}}})", "{{status}}")],
            overrides=STATUS_OVERRIDES,
        ),
        12,
        8,
    )
    grid.add(
        timeseries(
            "Failed tasks per hour by service and task name",
            "Tasks that ended FAILED or DELETED within the hour before each point.",
            [
                target(
                    f"sum by (cloud_service, task_name) ({INCREASE_1H}{{{FAILED}, {FLEET}}})",
                    "{{cloud_service}} {{task_name}}",
                )
            ],
        ),
        12,
        8,
    )
    finished_1d = f"sum by (cloud_service, task_name) ({INCREASE_1D}{{{FLEET}}})"
    failed_1d = f"sum by (cloud_service, task_name) ({INCREASE_1D}{{{FAILED}, {FLEET}}})"
    grid.add(
        panel(
            "bargauge",
            "Failure ratio per task name (1d)",
            "Share of the tasks finished in the last day that ended FAILED or DELETED, per "
            "service and task name, in the selected regions and projects. "
            "HuaweiCloudTaskFailureRatioHigh fires above 25 % over every region and project.",
            [
                target(
                    f"sort_desc(({failed_1d} or 0 * {finished_1d}) / ({finished_1d} > 0))",
                    "{{cloud_service}} {{task_name}}",
                    instant=True,
                )
            ],
            defaults={
                "color": {"mode": "thresholds"},
                "decimals": 1,
                "max": 1,
                "min": 0,
                "thresholds": thresholds((None, "green"), (0.05, "orange"), (0.25, "red")),
                "unit": "percentunit",
            },
            options={
                "displayMode": "gradient",
                "maxVizHeight": 300,
                "minVizHeight": 16,
                "minVizWidth": 8,
                "namePlacement": "left",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
                "sizing": "auto",
                "valueMode": "color",
            },
        ),
        12,
        9,
    )
    grid.add(
        table(
            "Finished and failed per task name (1d)",
            "Tasks finished and failed in the last day per service and task name, in the "
            "selected regions and projects (recording rule huaweicloud_task:finished:increase1d).",
            [
                target(finished_1d, ref="A", table=True),
                target(f"{failed_1d} or 0 * {finished_1d}", ref="B", table=True),
            ],
            rename={
                "cloud_service": "Service",
                "task_name": "Task",
                "Value #A": "Finished",
                "Value #B": "Failed",
            },
            sort_by=("Failed", True),
            overrides=[
                override("Finished", decimals=0),
                override(
                    "Failed",
                    decimals=0,
                    thresholds=thresholds((None, "green"), (0.5, "red")),
                    custom__cellOptions={"type": "color-text"},
                ),
            ],
        ),
        12,
        9,
    )

    grid.add(recent_failures_table(), 24, 8)

    grid.row("Running and stuck")
    grid.add(running_against_usual_table(), 24, 9)
    grid.add(
        timeseries(
            "Running tasks by task name",
            "Tasks currently CREATED, WAITING or EXECUTING (created within the lookback), per "
            "service and task name, each task once (recording rule "
            "huaweicloud_task:recent_tasks:dedup).",
            [
                target(
                    f"sum by (cloud_service, task_name) ({RECENT_TASKS}{{{UNFINISHED}, {FLEET}}})",
                    "{{cloud_service}} {{task_name}}",
                )
            ],
            stacked=True,
        ),
        12,
        8,
    )
    grid.add(
        timeseries(
            "Oldest unfinished task against its stuck threshold",
            "Age of the oldest unfinished task of each name, as a share of its stuck threshold "
            "(huaweicloud_task:stuck_after_seconds: learned from the kind's usual duration, "
            "your override, or the static fallback); HuaweiCloudTaskStuck fires above the red "
            "line (100 %).",
            [
                target(
                    f"max by (cloud_service, task_name) ({UNFINISHED_AGE}{{{FLEET}}} "
                    f"/ on ({TARGET_NAME}) {STUCK_AFTER}{{{FLEET}}})",
                    "{{cloud_service}} {{task_name}}",
                )
            ],
            unit="percentunit",
            threshold_line=1,
        ),
        12,
        8,
    )

    grid.row("Durations")
    buckets = f'huaweicloud_task_duration_seconds_bucket{{source="instance", {FLEET}}}'

    def quantile(q: float, window: str) -> str:
        return (
            f"histogram_quantile({q}, sum by (le, cloud_service, task_name) "
            f"(rate({buckets}[{window}])))"
        )

    grid.add(
        table(
            "Slowest task types (1d)",
            "Median and 95th percentile of the duration (updated_at - created_at) of the "
            "tasks finished in the last day, per service and task name, from the duration "
            "histogram of the instance task lists; task names without a task in the day are "
            "left out.",
            [
                target(f"sort_desc({quantile(0.95, '1d')} >= 0)", ref="A", table=True),
                target(f"{quantile(0.5, '1d')} >= 0", ref="B", table=True),
            ],
            rename={
                "cloud_service": "Service",
                "task_name": "Task",
                "Value #B": "p50",
                "Value #A": "p95",
            },
            sort_by=("p95", True),
            unit="s",
        ),
        8,
        9,
    )
    grid.add(
        timeseries(
            "Task duration p95 (1h window)",
            "95th percentile of the duration of the tasks finished within the hour before each "
            "point, per service and task name (instance task lists).",
            [target(quantile(0.95, "1h"), "{{cloud_service}} {{task_name}}")],
            unit="s",
        ),
        8,
        9,
    )
    grid.add(
        timeseries(
            "Task duration p50 (1h window)",
            "Median duration of the tasks finished within the hour before each point, per "
            "service and task name (instance task lists).",
            [target(quantile(0.5, "1h"), "{{cloud_service}} {{task_name}}")],
            unit="s",
        ),
        8,
        9,
    )

    grid.row("Exporter health", collapsed=True)
    grid.add(
        table(
            "Targets up / down",
            "Each polled task list (an empty instance_id is the DCS task center): 1 (up) when "
            "its last poll succeeded, 0 (down) when it failed; with the time since its last "
            "successful poll and how long the last poll took.",
            [
                target(f"max by ({TARGET}) (huaweicloud_task_up{{{FLEET}}})", ref="A", table=True),
                target(
                    f"time() - max by ({TARGET}) "
                    f"(huaweicloud_task_last_poll_success_timestamp_seconds{{{FLEET}}})",
                    ref="B",
                    table=True,
                ),
                target(
                    f"max by ({TARGET}) (huaweicloud_task_poll_duration_seconds{{{FLEET}}})",
                    ref="C",
                    table=True,
                ),
            ],
            rename={
                **TARGET_COLUMNS,
                "Value #A": "Up",
                "Value #B": "Since last success",
                "Value #C": "Last poll took",
            },
            sort_by=("Up", False),
            overrides=[
                override("Up", mappings=UP_DOWN, custom__cellOptions={"type": "color-background"}),
                override("Since last success", unit="s"),
                override("Last poll took", unit="s"),
                override("instance_id", links=instance_link()),
            ],
        ),
        24,
        8,
    )
    target_legend = "{{cloud_service}} {{instance_name}} {{instance_id}}"
    grid.add(
        timeseries(
            "Poll duration per target",
            "How long the last poll of each task list took (an empty id is the task center).",
            [
                target(
                    f"max by ({TARGET}) (huaweicloud_task_poll_duration_seconds{{{FLEET}}})",
                    target_legend,
                )
            ],
            unit="s",
        ),
        12,
        8,
    )
    grid.add(
        timeseries(
            "Seconds since last successful poll",
            "Age of each task list's data; it grows while polls fail.",
            [
                target(
                    f"time() - max by ({TARGET}) "
                    f"(huaweicloud_task_last_poll_success_timestamp_seconds{{{FLEET}}})",
                    target_legend,
                )
            ],
            unit="s",
        ),
        12,
        8,
    )
    grid.add(
        timeseries(
            "API requests by code",
            "HTTP requests per second to the cloud APIs by status code ('error': no answer), "
            "summed over exporter replicas since each replica sends its own.",
            [
                target(
                    "sum by (cloud_service, code) (rate(huaweicloud_task_api_requests_total"
                    f"{{{API}}}[$__rate_interval]))",
                    "{{cloud_service}} {{code}}",
                )
            ],
            unit="reqps",
            stacked=True,
        ),
        12,
        8,
    )
    grid.add(
        timeseries(
            "Throttled API requests",
            "Requests per second the cloud refused for flow control (429 APIG.0308 or "
            "DMS.10240407); HuaweiCloudTaskApiThrottled fires above 0.05/s for 15 minutes.",
            [
                target(
                    "sum by (cloud_service, region) "
                    "(rate(huaweicloud_task_api_throttled_requests_total"
                    f"{{{API}}}[$__rate_interval]))",
                    "{{cloud_service}} {{region}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )
    grid.add(
        table(
            "Replicas and shards",
            "Each exporter replica Prometheus scrapes (its scrape address), the shard it is "
            "(--shard.index of --shard.count) and how many task lists it polls. Replicas "
            "sharing a shard poll the same task lists, for availability.",
            [
                target(
                    f"count by (instance) (huaweicloud_task_up{{{FLEET}}}) "
                    "* on (instance) group_left (shard, shard_count) "
                    "max by (instance, shard, shard_count) (huaweicloud_task_shard_info)",
                    ref="A",
                    table=True,
                )
            ],
            rename={
                "instance": "Replica",
                "shard": "Shard",
                "shard_count": "Of",
                "Value": "Task lists",
            },
            sort_by=("Shard", False),
        ),
        24,
        6,
    )
    return dashboard(
        OVERVIEW_UID,
        "Huawei Cloud tasks / Overview",
        "Background tasks of the polled Huawei Cloud DCS and DMS instances: failures, stuck "
        "tasks, durations and the exporter's health.",
        grid,
        with_instance=False,
        link=dashboard_link(
            INSTANCE_UID, "Instance detail", "The tasks of one instance, with these filters"
        ),
    )


# -- one instance ----------------------------------------------------------------------------


def recent_tasks_table() -> Json:
    """Per task name, the last failure and the oldest unfinished task: which, who, what."""
    by_task = f"max by (task_name, {CONTEXT})"

    def rows(info: str, state: str) -> str:
        return f'label_replace({by_task} ({info}{{{INSTANCE}}}), "state", "{state}", "", "")'

    def times(metric: str) -> str:
        return f"on (task_name) group_left () max by (task_name) ({metric}{{{INSTANCE}}})"

    failed = rows(LAST_FAILURE_INFO, "failed")
    running = rows(OLDEST_UNFINISHED_INFO, "running")
    return table(
        "Last failure and oldest running task per task name",
        "For each task name: the most recent task that ended FAILED, and the oldest task still "
        "CREATED, WAITING or EXECUTING, with its task ID, the user who started it and what it "
        "changes (from the task's details or params). Finished at is when the last task of "
        "that name finished: the failure's own time unless a later task of the name has "
        "finished since (Last duration and finish time per task name). Needs an exporter that "
        "exposes huaweicloud_task_last_failure_info and huaweicloud_task_oldest_unfinished_info.",
        [
            target(
                f"{failed} * {times('huaweicloud_task_last_finished_timestamp_seconds')} * 1000",
                ref="A",
                table=True,
            ),
            target(
                f"{running} * "
                f"{times('huaweicloud_task_oldest_unfinished_start_timestamp_seconds')} * 1000",
                ref="B",
                table=True,
            ),
            target(f"{running} * {times(UNFINISHED_AGE)}", ref="C", table=True),
        ],
        rename={
            "state": "State",
            "task_name": "Task",
            "task_id": "Task ID",
            "user_name": "Started by",
            "change": "Change",
            "Value #A": "Finished at",
            "Value #B": "Started at",
            "Value #C": "Running for",
        },
        sort_by=("State", False),
        overrides=[
            override(
                "State",
                mappings=value_mapping({"failed": ("", "red"), "running": ("", "blue")}),
                custom__cellOptions={"type": "color-text"},
            ),
            override("Finished at", unit="dateTimeAsIso"),
            override("Started at", unit="dateTimeAsIso"),
            override("Running for", unit="s"),
        ],
    )


def instance() -> Json:
    """One instance's task list: what runs, what failed, how long its tasks take."""
    grid = Grid()
    grid.row("Now")
    for item in [
        stat(
            "Up",
            "Whether the exporter's last poll of this instance's task list succeeded.",
            f"max(huaweicloud_task_up{{{INSTANCE}}})",
            mappings=UP_DOWN,
            steps=thresholds((None, "red"), (1, "green")),
        ),
        stat(
            "Running now",
            "Tasks of this instance CREATED, WAITING or EXECUTING now.",
            f"sum({RECENT_TASKS}{{{UNFINISHED}, {INSTANCE}}}) or vector(0)",
            steps=thresholds((None, "green"), (0.5, "blue")),
        ),
        stat(
            "Failed (24h)",
            "Tasks of this instance that ended FAILED (or DELETED) in the last 24 hours.",
            f"sum({INCREASE_1D}{{{FAILED}, {INSTANCE}}}) or vector(0)",
            steps=thresholds((None, "green"), (0.5, "red")),
        ),
        stat(
            "Finished (24h)",
            "Tasks of this instance that reached a finished status in the last 24 hours.",
            f"sum({INCREASE_1D}{{{INSTANCE}}}) or vector(0)",
        ),
        stat(
            "Oldest unfinished task",
            "How long the oldest task still CREATED, WAITING or EXECUTING has been running "
            "(0: none).",
            f"max({UNFINISHED_AGE}{{{INSTANCE}}}) or vector(0)",
            unit="s",
            decimals=None,
            steps=thresholds((None, "green"), (STUCK_DEFAULT_SECONDS, "red")),
        ),
        stat(
            "Last successful poll",
            "When the exporter last read this task list successfully.",
            f"max(huaweicloud_task_last_poll_success_timestamp_seconds{{{INSTANCE}}}) * 1000",
            unit="dateTimeFromNow",
            decimals=None,
        ),
    ]:
        grid.add(item, 4, 4)

    grid.row("Tasks")
    grid.add(
        table(
            "Tasks by name and status (lookback window)",
            "Tasks created within the exporter's lookback (24h by default), by task name and "
            "current status.",
            [
                target(
                    f"max by (task_name, status) (huaweicloud_task_recent_tasks{{{INSTANCE}}})",
                    table=True,
                )
            ],
            rename={"task_name": "Task", "status": "Status", "Value": "Tasks"},
            sort_by=("Task", False),
            overrides=[
                override(
                    "Status",
                    mappings=STATUS_MAPPING,
                    custom__cellOptions={"type": "color-text"},
                )
            ],
        ),
        12,
        9,
    )
    grid.add(
        table(
            "Last status per task name",
            "Status of the most recently created task of each name.",
            [
                target(
                    f"max by (task_name, status) (huaweicloud_task_last_status{{{INSTANCE}}})",
                    table=True,
                )
            ],
            rename={"task_name": "Task", "status": "Last status"},
            hide=("Value",),
            sort_by=("Task", False),
            overrides=[
                override(
                    "Last status",
                    mappings=STATUS_MAPPING,
                    custom__cellOptions={"type": "color-background"},
                )
            ],
        ),
        12,
        9,
    )
    grid.add(recent_tasks_table(), 24, 8)
    grid.add(
        table(
            "Last duration and finish time per task name",
            "For the most recently finished task of each name: how long it took "
            "(updated_at - created_at) and when it finished.",
            [
                target(
                    f"max by (task_name) (huaweicloud_task_last_duration_seconds{{{INSTANCE}}})",
                    ref="A",
                    table=True,
                ),
                target(
                    "max by (task_name) "
                    f"(huaweicloud_task_last_finished_timestamp_seconds{{{INSTANCE}}}) * 1000",
                    ref="B",
                    table=True,
                ),
            ],
            rename={"task_name": "Task", "Value #A": "Last duration", "Value #B": "Finished at"},
            sort_by=("Finished at", True),
            overrides=[
                override("Last duration", unit="s"),
                override("Finished at", unit="dateTimeAsIso"),
            ],
        ),
        12,
        9,
    )
    grid.add(
        timeseries(
            "Unfinished task age by task name",
            "Age of the oldest unfinished task of each name, and (dashed) when that kind "
            "counts as stuck: its threshold learned from its usual duration, your override or "
            "the static fallback (huaweicloud_task:stuck_after_seconds).",
            [
                target(f"max by (task_name) ({UNFINISHED_AGE}{{{INSTANCE}}})", "{{task_name}}"),
                target(
                    f"max by (task_name) ({STUCK_AFTER}{{{INSTANCE}}}) "
                    f"and on (task_name) max by (task_name) ({UNFINISHED_AGE}{{{INSTANCE}}})",
                    "{{task_name}} stuck after",
                    ref="B",
                ),
            ],
            unit="s",
            overrides=[
                {
                    "matcher": {"id": "byRegexp", "options": ".* stuck after"},
                    "properties": [
                        {
                            "id": "custom.lineStyle",
                            "value": {"dash": [10, 10], "fill": "dash"},
                        }
                    ],
                }
            ],
        ),
        12,
        9,
    )

    grid.row("History")
    grid.add(
        timeseries(
            "Failed tasks per hour by task name",
            "Timeline of failures: one bar per hour, tasks that ended FAILED or DELETED within "
            "the hour before it (recording rule huaweicloud_task:finished:increase1h).",
            [
                target(
                    f"sum by (task_name, status) ({INCREASE_1H}{{{FAILED}, {INSTANCE}}})",
                    "{{task_name}} {{status}}",
                )
            ],
            bars=True,
            stacked=True,
            interval="1h",
        ),
        12,
        8,
    )
    grid.add(
        timeseries(
            "Finished tasks per hour by status",
            "Tasks finished within the hour before each point, by final status.",
            [target(f"sum by (status) ({INCREASE_1H}{{{INSTANCE}}})", "{{status}}")],
            overrides=STATUS_OVERRIDES,
        ),
        12,
        8,
    )

    grid.row("Polling")
    grid.add(
        panel(
            "state-timeline",
            "Poll status",
            "Whether each poll of this task list succeeded (up) or failed (down).",
            [target(f"max(huaweicloud_task_up{{{INSTANCE}}})", "poll")],
            defaults={
                "color": {"mode": "thresholds"},
                "custom": {"fillOpacity": 80, "lineWidth": 0},
                "mappings": UP_DOWN,
                "thresholds": thresholds((None, "red"), (1, "green")),
            },
            options={
                "alignValue": "left",
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
                "mergeValues": True,
                "rowHeight": 0.9,
                "showValue": "auto",
                "tooltip": {"mode": "single", "sort": "none"},
            },
        ),
        12,
        8,
    )
    grid.add(
        timeseries(
            "Poll duration",
            "How long each poll of this task list took.",
            [
                target(
                    f"max(huaweicloud_task_poll_duration_seconds{{{INSTANCE}}})",
                    "poll duration",
                )
            ],
            unit="s",
        ),
        12,
        8,
    )
    return dashboard(
        INSTANCE_UID,
        "Huawei Cloud tasks / Instance",
        "The background tasks of one Huawei Cloud DCS or DMS instance.",
        grid,
        with_instance=True,
        link=dashboard_link(OVERVIEW_UID, "Overview", "Every polled instance"),
    )


# -- output ----------------------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    """File name to dashboard JSON, for the writer, `--check` and the tests."""
    return {f"{OVERVIEW_UID}.json": overview(), f"{INSTANCE_UID}.json": instance()}


def render(board: Json) -> str:
    """Deterministic text, so that regenerating an unchanged dashboard changes no byte."""
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with --check report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed dashboard is stale"
    )
    args = parser.parse_args(argv)
    stale = 0
    for name, board in dashboards().items():
        path = DASHBOARD_DIR / name
        text = render(board)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                print(f"{path} is stale: run python grafana/generate.py", file=sys.stderr)
                stale += 1
        else:
            DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
