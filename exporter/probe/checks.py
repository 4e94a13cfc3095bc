"""The probe's checks: pure functions of the answers it read, one verdict per assumption.

Each check says what it saw. `fail` means an assumption the exporter's readers rely on does
not hold on this endpoint (the report names it, and the probe exits 1); `warn` is worth
knowing but the exporter copes (a field it does not know, throttling); `skip` means the
answers could not tell (too few tasks to see how paging behaves).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from exporter.core.tasklists import Dialect, Kind
from exporter.core.tasks import UNFINISHED_STATUSES, ZERO_INITIALIZED_STATUSES
from exporter.text import clean_text, parse_timestamp

Verdict = Literal["ok", "warn", "fail", "skip"]

# What the references document for each family: anything else is a status never seen before
# (exported as it comes, but counted as finished, which may be wrong).
KNOWN_STATUSES: dict[str, frozenset[str]] = {
    d: UNFINISHED_STATUSES | frozenset(s) for d, s in ZERO_INITIALIZED_STATUSES.items()
}


@dataclass(frozen=True)
class TaskField:
    """A task field the exporter reads (exporter.core.tasks.parse_task), and how."""

    types: frozenset[str]
    required: bool = True
    timestamp: bool = False


TASK_FIELDS: dict[str, TaskField] = {
    "id": TaskField(frozenset({"string", "number"})),
    "name": TaskField(frozenset({"string"})),
    "status": TaskField(frozenset({"string"})),
    "created_at": TaskField(frozenset({"string"}), timestamp=True),
    "updated_at": TaskField(frozenset({"string"}), timestamp=True),
    "user_name": TaskField(frozenset({"string"})),
    # What a task changes (exporter.core.change): DCS `details`, `params` as JSON in a string.
    "details": TaskField(frozenset({"object", "null"}), required=False),
    "params": TaskField(frozenset({"string"}), required=False),
}
# Documented, not read: not "unknown".
OTHER_TASK_FIELDS: dict[Kind, frozenset[str]] = {
    "instance": frozenset({"user_id", "enable_show"}),
    "task_center": frozenset({"user_id", "enable_show", "job_id", "error_code"}),
}
ANSWER_FIELDS = frozenset({"task_count", "tasks"})
MAX_LISTED = 20  # names, statuses and fields listed in one report line, at most
MAX_FOUND = 100  # and in the JSON report's `found`
MAX_SHOWN_CHARS = 64


@dataclass
class Exchange:
    """One request of the probe and what came back (the body as JSON, or the error)."""

    seq: int
    purpose: str  # project, discovery, read (the reader's own pages), paging, window
    service: str
    region: str
    path: str
    params: dict[str, str]
    latency: float = 0.0
    body: Any = None
    error: str | None = None
    status: int | None = None
    code: str | None = None
    throttled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Check:
    """One assumption, checked: what was looked at, the verdict and what was seen."""

    subject: str
    name: str
    verdict: Verdict
    saw: str
    found: dict[str, Any] = field(default_factory=dict)  # the variant seen, for JSON readers


def type_name(value: Any) -> str:
    """JSON's name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def shown(value: Any) -> str:
    """A value from an answer, cleaned and cut, for a report line."""
    return clean_text(str(value), MAX_SHOWN_CHARS)


def _listed(items: Iterable[str]) -> str:
    items = list(items)
    head = ", ".join(shown(i) for i in items[:MAX_LISTED])
    return head + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def raw_tasks(bodies: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Every task object of the answers, in order (entries that are not objects left out)."""
    out: list[Mapping[str, Any]] = []
    for body in bodies:
        tasks = body.get("tasks") if isinstance(body, Mapping) else None
        if isinstance(tasks, list):
            out.extend(t for t in tasks if isinstance(t, Mapping))
    return out


def task_ids(body: Any) -> list[str]:
    """The IDs of one answer's tasks, in order."""
    return [str(t.get("id")) for t in raw_tasks([body])]


# -- the answer's shape --------------------------------------------------------------------


def answer_checks(subject: str, bodies: Sequence[Any]) -> list[Check]:
    """The top level of every page: `tasks` a list, `task_count` a number or digits."""
    checks: list[Check] = []
    shapes = Counter(_tasks_shape(b) for b in bodies)
    if not bodies:
        return [Check(subject, "answer.tasks", "skip", "no answer was read")]
    seen = ", ".join(f"{k} in {n}" for k, n in sorted(shapes.items()))
    if set(shapes) == {"array"}:
        checks.append(
            Check(subject, "answer.tasks", "ok", f"an array in all {len(bodies)} answers")
        )
    elif set(shapes) <= {"array", "null"}:
        checks.append(
            Check(
                subject,
                "answer.tasks",
                "warn",
                f"{seen} of {len(bodies)} answers: the reader takes null as no task",
                {"types": dict(shapes)},
            )
        )
    else:
        checks.append(
            Check(
                subject,
                "answer.tasks",
                "fail",
                f"`tasks` must be an array of tasks; it is {seen} of {len(bodies)} answers",
                {"types": dict(shapes)},
            )
        )
    counts = [b.get("task_count") for b in bodies if isinstance(b, Mapping)]
    kinds = Counter(_count_kind(c) for c in counts)
    variant = "+".join(sorted(kinds))
    if set(kinds) <= {"number", "string"}:
        checks.append(
            Check(
                subject,
                "answer.task_count",
                "ok",
                f"a {' and a '.join(sorted(kinds))} ({_listed(str(c) for c in counts[:3])})",
                {"task_count": variant},
            )
        )
    else:
        checks.append(
            Check(
                subject,
                "answer.task_count",
                "warn",
                f"not a number nor a string of digits in every answer ({variant}): the reader "
                "then stops at the first short page",
                {"task_count": variant},
            )
        )
    unknown = sorted(
        {shown(k) for b in bodies if isinstance(b, Mapping) for k in b if k not in ANSWER_FIELDS}
    )[:MAX_FOUND]
    if unknown:
        checks.append(
            Check(
                subject,
                "answer.unknown_fields",
                "warn",
                f"fields the exporter does not know: {_listed(unknown)}",
                {"fields": unknown},
            )
        )
    return checks


def _tasks_shape(body: Any) -> str:
    if not isinstance(body, Mapping):
        return f"no object but {type_name(body)}"
    return type_name(body["tasks"]) if "tasks" in body else "absent"


def _count_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "absent" if value is None else "boolean"
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return "number"  # as exporter.core.tasks.parse_task_count reads it
    if isinstance(value, str) and value.strip().isdigit():
        return "string"
    return f"unreadable {type_name(value)}"


def task_field_checks(subject: str, kind: Kind, tasks: Sequence[Mapping[str, Any]]) -> list[Check]:
    """Each field the exporter reads, in every task: present, of its type, readable."""
    if not tasks:
        return [
            Check(
                subject,
                "task.fields",
                "skip",
                "no task in the window: the shape of a task could not be checked (start a "
                "harmless task, or probe with a longer lookback)",
            )
        ]
    checks: list[Check] = []
    n = len(tasks)
    for name, spec in TASK_FIELDS.items():
        types = Counter(type_name(t[name]) for t in tasks if name in t)
        missing = n - sum(types.values())
        wrong = {k: c for k, c in types.items() if k not in spec.types}
        unreadable = 0
        if spec.timestamp:
            unreadable = sum(
                1
                for t in tasks
                if isinstance(t.get(name), str) and parse_timestamp(t[name]) is None
            )
        seen = ", ".join(f"{k} in {c}" for k, c in sorted(types.items())) or "in none"
        found = {"types": dict(types), "missing": missing}
        problems = []
        if missing and spec.required:
            problems.append(f"missing in {missing} of {n} tasks")
        if wrong:
            problems.append(f"expected {' or '.join(sorted(spec.types))}")
        if unreadable:
            problems.append(f"{unreadable} not a timestamp like 2020-06-17T07:38:42.503Z")
        if problems:
            checks.append(
                Check(subject, f"task.{name}", "fail", f"{seen}: {'; '.join(problems)}", found)
            )
        else:
            note = f" (absent in {missing})" if missing else ""
            checks.append(Check(subject, f"task.{name}", "ok", f"{seen} of {n} tasks{note}", found))
    if all(isinstance(t.get("params"), str) for t in tasks if "params" in t):
        bad = sum(1 for t in tasks if "params" in t and not _json_object(t["params"]))
        if bad:
            checks.append(
                Check(
                    subject,
                    "task.params_json",
                    "warn",
                    f"`params` is not a JSON object inside the string in {bad} tasks: what "
                    "those tasks change is not summarized",
                )
            )
    known = set(TASK_FIELDS) | OTHER_TASK_FIELDS[kind]
    unknown = sorted({shown(k) for t in tasks for k in t if k not in known})[:MAX_FOUND]
    if unknown:
        checks.append(
            Check(
                subject,
                "task.unknown_fields",
                "warn",
                f"fields the exporter does not know: {_listed(unknown)} (a renamed field?)",
                {"fields": unknown},
            )
        )
    return checks


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict) if len(text) <= 16_384 else False
    except ValueError:
        return False


def status_checks(
    subject: str, dialect: Dialect, tasks: Sequence[Mapping[str, Any]]
) -> list[Check]:
    """The statuses seen (all documented ones?) and the task names seen."""
    statuses = Counter(
        shown(t["status"]).upper() for t in tasks if isinstance(t.get("status"), str | int)
    )
    names = Counter(shown(t["name"]) for t in tasks if isinstance(t.get("name"), str))
    checks: list[Check] = []
    listing = ", ".join(f"{shown(s)} {c}" for s, c in sorted(statuses.items())) or "none"
    unknown = sorted(s for s in statuses if s not in KNOWN_STATUSES[dialect])
    if unknown:
        checks.append(
            Check(
                subject,
                "statuses",
                "fail",
                f"{listing}; never seen before: {_listed(unknown)} (counted as finished: is "
                "it final?)",
                {"statuses": dict(statuses), "unknown": unknown},
            )
        )
    else:
        verdict: Verdict = "ok" if statuses else "skip"
        checks.append(Check(subject, "statuses", verdict, listing, {"statuses": dict(statuses)}))
    checks.append(
        Check(
            subject,
            "task_names",
            "ok" if names else "skip",
            ", ".join(f"{n} {c}" for n, c in sorted(names.items())[:MAX_LISTED]) or "none",
            {"task_names": dict(names)},
        )
    )
    return checks


# -- paging ----------------------------------------------------------------------------------


def _first_id(exchange: Exchange | None) -> str | None:
    if exchange is None or not exchange.ok:
        return None
    ids = task_ids(exchange.body)
    return ids[0] if ids else ""


def dcs_paging_check(subject: str, listed: Sequence[str], second: Exchange | None) -> Check:
    """`offset=1&limit=1` must give the list's second task."""
    if len(listed) < 2 or second is None:
        return Check(subject, "paging", "skip", "fewer than 2 tasks in the window: not tested")
    got = _first_id(second)
    if got is None:
        return Check(subject, "paging", "fail", f"offset=1 was refused: {second.error}")
    if got == listed[1]:
        return Check(subject, "paging", "ok", "offset is honoured, 0-based", {"offset": "0-based"})
    if got == listed[0]:
        return Check(
            subject,
            "paging",
            "fail",
            "offset=1 gives the first task again: the server ignores offset",
            {"offset": "ignored"},
        )
    return Check(subject, "paging", "warn", "offset=1 gives a task of neither position 1 nor 2")


def dms_paging_checks(
    subject: str,
    listed: Sequence[str],
    refused_zero: bool,
    by_start: Mapping[int, Exchange],
    offset: Exchange | None,
) -> list[Check]:
    """Whether DMS `start` counts from 0 or from 1 (or is ignored), and whether `offset` is
    honoured too, from `limit=1` pages at `start` 1 and 2 against the list read from 0."""
    if len(listed) < 2:
        return [Check(subject, "paging", "skip", "fewer than 2 tasks in the window: not tested")]
    one, two = _first_id(by_start.get(1)), _first_id(by_start.get(2))
    checks: list[Check] = []
    if one is None:
        checks.append(Check(subject, "paging", "fail", "start=1 was refused"))
    elif refused_zero and one == listed[0]:
        checks.append(
            Check(
                subject,
                "paging",
                "ok",
                "start is 1-based and start=0 is refused",
                {"start": "1-strict"},
            )
        )
    elif one == listed[1]:
        checks.append(Check(subject, "paging", "ok", "start is 0-based", {"start": "0"}))
    elif one == listed[0] and two == listed[1]:
        checks.append(
            Check(subject, "paging", "ok", "start is 1-based (start=0 reads as 1)", {"start": "1"})
        )
    elif one == listed[0] and two == listed[0]:
        checks.append(
            Check(
                subject,
                "paging",
                "fail",
                "start=0, 1 and 2 all give the first task: the server ignores start",
                {"start": "ignored"},
            )
        )
    else:
        checks.append(Check(subject, "paging", "warn", "start gives tasks out of the list's order"))
    got = _first_id(offset)
    if offset is not None:
        if got == listed[1]:
            saw, variant = "offset is honoured too (0-based, without start)", "honoured"
        elif got is None:
            saw, variant = f"offset is refused: {offset.error}", "refused"
        else:
            saw, variant = "offset is ignored (the exporter sends start)", "ignored"
        checks.append(Check(subject, "paging.offset", "ok", saw, {"offset": variant}))
    return checks


# -- the time window -----------------------------------------------------------------------


def window_check(
    subject: str, sent: str, after: float | None, probes: Mapping[str, Exchange]
) -> Check:
    """Whether asking for tasks created after the newest one (`after`) filters them out,
    under each parameter name; the one the exporter sends (`sent`) must be honoured."""
    if after is None:
        return Check(subject, "window", "skip", "no dated task in the window: not tested")
    honoured: list[str] = []
    ignored: list[str] = []
    for name, exchange in probes.items():
        if not exchange.ok:
            ignored.append(f"{name} (refused)")
            continue
        dates = [parse_timestamp(t.get("created_at")) for t in raw_tasks([exchange.body])]
        if any(d is not None and d < after for d in dates):
            ignored.append(name)
        else:
            honoured.append(name)
    found = {"honoured": honoured, "ignored": ignored, "sent": sent}
    saw = (
        f"honoured under {', '.join(honoured) or 'no name'}"
        + (f"; ignored under {', '.join(ignored)}" if ignored else "")
        + f" (the exporter sends {sent})"
    )
    if sent in honoured:
        return Check(subject, "window", "ok", saw, found)
    return Check(subject, "window", "fail", saw, found)


# -- the requests themselves ---------------------------------------------------------------


def request_checks(subject: str, exchanges: Sequence[Exchange], throttled: float) -> list[Check]:
    """Latency of the answers, and throttling (the cloud publishes no limits)."""
    latencies = sorted(e.latency for e in exchanges)
    if not latencies:
        return []
    p50 = latencies[len(latencies) // 2]
    failed = sum(1 for e in exchanges if not e.ok)
    checks = [
        Check(
            subject,
            "latency",
            "ok",
            f"{len(latencies)} requests ({failed} refused or failed), median "
            f"{p50 * 1000:.0f} ms, slowest {latencies[-1] * 1000:.0f} ms",
            {
                "requests": len(latencies),
                "failed": failed,
                "median_seconds": p50,
                "max_seconds": latencies[-1],
            },
        )
    ]
    if throttled:
        checks.append(
            Check(
                subject,
                "throttling",
                "warn",
                f"{throttled:g} requests refused for flow control: lower http.requests_per_second",
                {"throttled": throttled},
            )
        )
    else:
        checks.append(
            Check(subject, "throttling", "ok", "no request was throttled", {"throttled": 0})
        )
    return checks
