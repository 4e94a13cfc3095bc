"""The landing page: the task lists, the recent failures and the running tasks, as HTML.

A pure function of a snapshot and the time (`render_landing`), so it is tested without
sockets. Every value comes from the cloud and is escaped; the page runs no script and loads
nothing (LANDING_CSP), and refreshes itself with a `<meta http-equiv="refresh">`.

Failing task lists come first; each task shows once (a DCS task is listed by its instance and
by the project's task center: the instance's row is kept); running tasks are oldest first,
with their age against how long their kind usually takes (p50-p95) and highlighted once past
the stuck threshold of the shipped rules (`exporter.core.expectations.stuck_threshold`).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable

from exporter import __version__
from exporter.config import format_duration
from exporter.core.expectations import (
    MIN_RUNS,
    STATIC_DEFAULT,
    STUCK_FACTOR,
    STUCK_FLOOR,
    Threshold,
    stuck_threshold,
)
from exporter.core.tasklists import TaskList
from exporter.exposition.snapshot import ExporterSnapshot, TaskListSnapshot


def render_landing(snapshot: ExporterSnapshot, now: float) -> str:
    """The task lists, the recent failures and the running tasks, every value escaped."""
    # Failing task lists first, then those not polled yet (the sort is stable).
    targets = sorted(snapshot.task_lists, key=lambda ts: 2 if ts.up else (0 if ts.polled else 1))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Huawei Cloud task exporter</title>
<meta http-equiv="refresh" content="{LANDING_REFRESH}">
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
th{{background:#f4f4f4}}small{{color:#666}}p.note{{color:#555}}
tr.ok td:nth-child(6){{color:#080}}tr.fail td:nth-child(6){{color:#b00}}
td.when{{white-space:nowrap}}td.change{{min-width:12em}}#failures td.when{{color:#b00}}
td.age{{white-space:nowrap;font-weight:bold}}td.usual{{min-width:11em}}
tr.stuck td{{background:#fde8e8}}tr.stuck td.age,tr.stuck td.usual{{color:#b00}}
</style></head>
<body><h1>Huawei Cloud task exporter</h1>
<p>Version {_e(__version__)}.
<a href="/metrics">Metrics</a> &middot; <a href="/healthz">Health</a> &middot;
<a href="/readyz">Readiness</a></p>
<h2>Targets</h2>
<table id="targets"><tr><th>service</th><th>region</th><th>project</th><th>instance</th>
<th>name</th><th>last poll</th><th>last success</th><th>duration</th></tr>
{"".join(_target_row(ts, now) for ts in targets)}
</table>
{_failures(targets, now)}
{_running(snapshot, now)}
</body></html>
"""


# The landing page runs no script and loads nothing: only its own inline style.
LANDING_CSP = "default-src 'none'; style-src 'unsafe-inline'"
# Rows per table on the landing page: enough to see what is going on, bounded whatever the
# number of task lists.
LANDING_MAX_ROWS = 50
# Seconds between the page's own reloads.
LANDING_REFRESH = 30


def _e(value: object) -> str:
    """Escaped for HTML text and quoted attributes: every value comes from the cloud."""
    return html.escape(str(value), quote=True)


def _target_row(ts: TaskListSnapshot, now: float) -> str:
    t = ts.task_list
    if not ts.polled:
        result = "not polled yet"
    elif ts.up:
        result = "ok"
    else:
        result = "failed: " + (ts.last_error or "")
    if ts.last_attempt is not None:
        result += f" ({now - ts.last_attempt:.0f}s ago)"
    ago = f"{now - ts.last_success:.0f}s ago" if ts.last_success else "never"
    took = f"{ts.poll_duration:.2f}s" if ts.poll_duration is not None else ""
    cells = [
        t.service,
        t.region,
        t.project_id,
        t.instance_id or "(task center)",
        t.instance_name,
        result,
        ago,
        took,
    ]
    cls = "ok" if ts.up else ("fail" if ts.polled else "")
    return f"<tr class='{cls}'>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"


def _task_list(t: TaskList) -> str:
    """A task list in one cell: service and instance name, then region and instance ID (the
    project for the task center, which has one list per project)."""
    name = t.instance_name or t.instance_id or "(task center)"
    where = t.instance_id or f"project {t.project_id}"
    return f"{_e(t.service)} {_e(name)}<br><small>{_e(t.region)} &middot; {_e(where)}</small>"


def _when(ts: float | None, now: float) -> str:
    """A UTC time and how long ago it was."""
    if ts is None or not math.isfinite(ts) or abs(ts) > 1e11:
        return "unknown"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return f"{stamp}<br><small>{_e(_ago(now - ts))}</small>"


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _span(seconds: float) -> str:
    """A duration in the two largest units: 45s, 12m 05s, 3h 04m, 2d 5h."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


Row = tuple[float | None, TaskList, str, str, str, str]  # when, list, name, ID, user, change


def _once(rows: list[Row]) -> list[Row]:
    """Each task ID once: a DCS task on its instance's row rather than the task center's."""
    best: dict[str, Row] = {}
    for row in rows:
        known = best.get(row[3])
        if known is None or (not known[1].instance_id and row[1].instance_id):
            best[row[3]] = row
    return list(best.values())


def _task_table(
    table_id: str,
    title: str,
    note: str,
    when: str,
    rows: list[Row],
    now: float,
) -> str:
    """A table of tasks with their context, newest first, at most LANDING_MAX_ROWS rows."""
    rows = _once(rows)
    rows.sort(key=lambda r: -math.inf if r[0] is None else r[0], reverse=True)
    shown = rows[:LANDING_MAX_ROWS]
    if len(rows) > len(shown):
        note += f" Showing the newest {len(shown)} of {len(rows)}."
    head = f"<h2>{title}</h2>\n<p class='note'>{note}</p>\n"
    if not shown:
        return head + f"<p id='{table_id}'>None.</p>"
    body = "".join(
        f"<tr><td class='when'>{_when(at, now)}</td><td>{_task_list(t)}</td><td>{_e(name)}</td>"
        f"<td><code>{_e(task_id)}</code></td><td>{_e(user)}</td>"
        f"<td class='change'>{_e(change)}</td></tr>"
        for at, t, name, task_id, user, change in shown
    )
    return (
        head
        + f"<table id='{table_id}'><tr><th>{when}</th><th>task list</th><th>task</th>"
        + "<th>task ID</th><th>user</th><th>change</th></tr>\n"
        + body
        + "\n</table>"
    )


def _failures(targets: Iterable[TaskListSnapshot], now: float) -> str:
    rows: list[Row] = [
        (finished_at, ts.task_list, name, task_id, user, change)
        for ts in targets
        for name, task_id, user, change, finished_at in ts.summary.last_failure
    ]
    return _task_table(
        "failures",
        "Recent failures",
        "The last failed task of each name on each task list, each task once.",
        "failed",
        rows,
        now,
    )


def _usual(threshold: Threshold, age: float | None) -> str:
    """How long the kind usually takes, and when it counts as stuck."""
    e = threshold.usual
    if e is None:
        text = f"no history of {MIN_RUNS}+ runs"
    else:
        where = "this task list" if threshold.basis == "task_list" else "all task lists"
        text = (
            f"usually {_e(_span(e.p50))}&ndash;{_e(_span(e.p95))}"
            f"<br><small>p50&ndash;p95 of {e.samples} runs, {where}</small>"
        )
    verdict = "stuck: over" if age is not None and age > threshold.seconds else "stuck after"
    return text + f"<br><small>{verdict} {_e(_span(threshold.seconds))}</small>"


def _running(snapshot: ExporterSnapshot, now: float) -> str:
    """The running tasks, oldest first, with their age against their kind's usual duration."""
    rows: list[tuple[Row, Threshold]] = []
    for ts in snapshot.task_lists:
        started = dict(ts.summary.oldest_unfinished)
        own = {e.name: e for e in ts.expected}
        t = ts.task_list
        for name, task_id, user, change in ts.summary.oldest_unfinished_info:
            threshold = stuck_threshold(own.get(name), snapshot.fleet_of(t.service, name))
            rows.append(((started.get(name), t, name, task_id, user, change), threshold))
    kept = {id(r) for r in _once([r for r, _ in rows])}
    rows = [(r, th) for r, th in rows if id(r) in kept]
    rows.sort(key=lambda r: (math.inf if r[0][0] is None else r[0][0], r[0][3]))
    shown = rows[:LANDING_MAX_ROWS]
    note = (
        "The oldest unfinished task of each name on each task list, oldest first, each task "
        "once. Highlighted: running for longer than its kind's stuck threshold, as in the "
        f"shipped rules: {STUCK_RULE}."
    )
    if len(rows) > len(shown):
        note += f" Showing the oldest {len(shown)} of {len(rows)}."
    head = f"<h2>Running tasks</h2>\n<p class='note'>{note}</p>\n"
    if not shown:
        return head + "<p id='running'>None.</p>"
    body = []
    for (at, t, name, task_id, user, change), threshold in shown:
        age = None if at is None else now - at
        stuck = age is not None and age > threshold.seconds
        body.append(
            f"<tr class='{'stuck' if stuck else ''}'><td class='when'>{_when(at, now)}</td>"
            f"<td class='age'>{'unknown' if age is None else _e(_span(age))}</td>"
            f"<td class='usual'>{_usual(threshold, age)}</td>"
            f"<td>{_task_list(t)}</td><td>{_e(name)}</td>"
            f"<td><code>{_e(task_id)}</code></td><td>{_e(user)}</td>"
            f"<td class='change'>{_e(change)}</td></tr>"
        )
    return (
        head
        + "<table id='running'><tr><th>started</th><th>age</th><th>usual duration</th>"
        + "<th>task list</th><th>task</th><th>task ID</th><th>user</th><th>change</th></tr>\n"
        + "".join(body)
        + "\n</table>"
    )


STUCK_RULE = (
    f"{STUCK_FACTOR:g} &times; the usual p95, at least {format_duration(STUCK_FLOOR)}, from "
    f"the task list's own runs once it has {MIN_RUNS}, else from all task lists' runs of that "
    f"service and name, else {format_duration(STATIC_DEFAULT)}"
)
