"""The task metric families, declared once, and the sample lines they render to.

Each family is declared here with its name, type, help and labels; the pre-rendered
exposition (`store`), its `describe()` and the reference rendering through prometheus_client
(`reference`, which tests compare against) all derive from these declarations. Lines are
rendered when what they show changes (`snapshot`), never at scrape time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString as _float_to_go_string

from exporter.config import format_duration
from exporter.core.tasklists import TASKLIST_LABELS
from exporter.telemetry.selfmetrics import PREFIX

if TYPE_CHECKING:
    from exporter.core.counting import TaskSummary
    from exporter.core.expectations import Expectation
    from exporter.core.instances import DiscoveryHealth, InstanceInfo


# "summary": only the quantiles of a sliding window (no `_count`/`_sum`, which would be
# expected to be cumulative): a gauge may not carry a `quantile` label (promtool's lint).
FamilyType = Literal["gauge", "counter", "histogram", "summary"]

TASK_LABELS = (*TASKLIST_LABELS, "task_name", "status")
NAME_LABELS = (*TASKLIST_LABELS, "task_name")
HISTOGRAM_LABELS = ("cloud_service", "region", "project_id", "source", "task_name", "status")
HISTOGRAM_LABELS_BY_INSTANCE = (
    "cloud_service",
    "region",
    "project_id",
    "source",
    "instance_id",
    "instance_name",
    "task_name",
    "status",
)
INFO_LABELS = (*TASKLIST_LABELS, "engine", "engine_version", "instance_status")
CONTEXT_LABELS = (*TASKLIST_LABELS, "task_name", "task_id", "user_name", "change")
DISCOVERY_LABELS = ("cloud_service", "region", "project_id")
EXPECTED_LABELS = (*NAME_LABELS, "quantile")
FLEET_NAME_LABELS = ("cloud_service", "task_name")
FLEET_LABELS = (*FLEET_NAME_LABELS, "quantile")

_SUFFIXES: dict[str, tuple[str, ...]] = {
    "gauge": ("",),
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("",),
}


def escape_label_value(value: str) -> str:
    """The text formats' escaping of a label value: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_labels(names: Sequence[str], values: Sequence[str]) -> str:
    """`a="x",b="y"`: label pairs as they appear between the braces of a sample line."""
    return ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True))


def floatToGoString(value: float) -> str:
    """A sample value as Go (and so Prometheus) writes it, through prometheus_client."""
    return str(_float_to_go_string(value))  # type: ignore[no-untyped-call]


def timestamp_text(value: float) -> str:
    """A point in time (epoch seconds) to the millisecond, as `floatToGoString` writes it.

    Every poll renders its task list's last success anew; `repr` of a float is a shortest-
    digits conversion with big-number arithmetic, 3 % of a quiet poll's instructions. At
    milliseconds (what Prometheus keeps) the digits are those of an integer.
    """
    if not math.isfinite(value):
        return floatToGoString(value)
    ms = round(value * 1000)
    whole = str(ms // 1000)
    if len(whole) != 10 or ms <= 0:  # before 2001 or after 2286: not worth a fast path
        return floatToGoString(ms / 1000)
    mantissa = f"{whole[0]}.{whole[1:]}{ms % 1000:03d}".rstrip("0.")
    return f"{mantissa}e+09"


def seconds_text(value: float) -> str:
    """A duration to the microsecond, as `floatToGoString` writes it (see `timestamp_text`)."""
    if not math.isfinite(value):
        return floatToGoString(value)
    us = round(value * 1_000_000)
    if not 100 <= us < 1_000_000_000_000:  # repr writes exponents below 1e-4
        return floatToGoString(us / 1_000_000)
    fraction = f"{us % 1_000_000:06d}".rstrip("0") or "0"
    return f"{us // 1_000_000}.{fraction}"


def format_bound(bound: float) -> str:
    """A bucket's `le` value, as prometheus_client writes it (the reference rendering)."""
    return repr(float(bound))


@dataclass(frozen=True)
class Family:
    """One metric family: everything needed to render its header and its samples."""

    name: str  # without the `_total` of a counter's samples
    type: FamilyType
    help: str
    labels: tuple[str, ...]

    @property
    def sample_names(self) -> tuple[str, ...]:
        return tuple(self.name + s for s in _SUFFIXES[self.type])

    def header(self, openmetrics: bool) -> bytes:
        """`# HELP` and `# TYPE` in either format (the text format names a counter `_total`)."""
        if openmetrics:  # OpenMetrics escapes HELP as it does label values
            name = self.name
            text = escape_label_value(self.help)
        else:
            name = self.name + "_total" if self.type == "counter" else self.name
            text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        return f"# HELP {name} {text}\n# TYPE {name} {self.type}\n".encode()

    def prometheus_family(self) -> Metric:
        """The family as a prometheus_client object without samples (for `describe()`)."""
        if self.type == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.type == "histogram":
            return HistogramMetricFamily(self.name, self.help, labels=self.labels)
        if self.type == "summary":
            return Metric(self.name, self.help, "summary")
        return GaugeMetricFamily(self.name, self.help, labels=self.labels)


class TaskFamilies:
    """The task families of one exporter: help texts name its poll interval, and the
    histogram's labels depend on `metrics.duration_by_instance`."""

    def __init__(self, poll_interval: float, by_instance: bool) -> None:
        bg = f" Polled in the background every {format_duration(poll_interval)}."
        self.recent = Family(
            PREFIX + "recent_tasks",
            "gauge",
            "Tasks created within the lookback window, by task name and current status." + bg,
            TASK_LABELS,
        )
        self.finished = Family(
            PREFIX + "finished",
            "counter",
            "Tasks that reached a finished status (SUCCESS, FAILED, DELETED, CANCELLED or any "
            "other final status), counted once per task ID; tasks already finished at the "
            "first poll are not counted. Survives restarts." + bg,
            TASK_LABELS,
        )
        self.durations = Family(
            PREFIX + "duration_seconds",
            "histogram",
            "updated_at - created_at of each task counted in finished_total, observed once. "
            "Instances of a service share series unless metrics.duration_by_instance is set; "
            "source tells instance task lists from the task center." + bg,
            HISTOGRAM_LABELS_BY_INSTANCE if by_instance else HISTOGRAM_LABELS,
        )
        self.last_duration = Family(
            PREFIX + "last_duration_seconds",
            "gauge",
            "updated_at - created_at of the most recently finished task of this name." + bg,
            NAME_LABELS,
        )
        self.last_finished = Family(
            PREFIX + "last_finished_timestamp_seconds",
            "gauge",
            "When the most recently finished task of this name finished (its updated_at)." + bg,
            NAME_LABELS,
        )
        self.last_status = Family(
            PREFIX + "last_status",
            "gauge",
            "1 for the status of the most recently created task of this name; no other "
            "status has a series." + bg,
            TASK_LABELS,
        )
        self.oldest = Family(
            PREFIX + "oldest_unfinished_start_timestamp_seconds",
            "gauge",
            "created_at of the oldest task of this name still CREATED, WAITING or EXECUTING; "
            "absent when there is none." + bg,
            NAME_LABELS,
        )
        self.last_failure = Family(
            PREFIX + "last_failure_info",
            "gauge",
            "Always 1: the most recent task of this name that failed on this task list, with "
            "its task ID, who started it and what it changed (summarised from known fields "
            "only); replaced when a newer one fails." + bg,
            CONTEXT_LABELS,
        )
        self.oldest_info = Family(
            PREFIX + "oldest_unfinished_info",
            "gauge",
            "Always 1: the task behind oldest_unfinished_start_timestamp_seconds, with its task "
            "ID, who started it and what it changes." + bg,
            CONTEXT_LABELS,
        )
        self.names_folded = Family(
            PREFIX + "task_names_folded",
            "gauge",
            "Distinct task names of the last poll past metrics.max_task_names_per_list, "
            'counted under task_name="_other"; absent when none.',
            TASKLIST_LABELS,
        )
        self.up = Family(
            PREFIX + "up",
            "gauge",
            "1 when the last poll of this task list succeeded, 0 when it failed.",
            TASKLIST_LABELS,
        )
        self.last_success = Family(
            PREFIX + "last_poll_success_timestamp_seconds",
            "gauge",
            "When the last successful poll of this task list finished.",
            TASKLIST_LABELS,
        )
        self.poll_duration = Family(
            PREFIX + "poll_duration_seconds",
            "gauge",
            "How long the last poll of this task list took, successful or not.",
            TASKLIST_LABELS,
        )
        self.info = Family(
            PREFIX + "instance_info",
            "gauge",
            "Always 1: an instance found by discovery, with its engine, engine version and "
            "status as the list-instances API gives them.",
            INFO_LABELS,
        )
        self.discovery = Family(
            PREFIX + "discovery_up",
            "gauge",
            "1 when the last listing of a service's instances (discovery) succeeded, 0 when it "
            "failed; project_id is empty while the project ID cannot be resolved.",
            DISCOVERY_LABELS,
        )
        usual = (
            " Exact quantiles (p50, p95) of the most recent successful runs, on the log "
            "scale; failed and cancelled runs are not samples. Learned from the history read "
            "when a task list is first polled and from every run seen since; kept across "
            "restarts."
        )
        self.expected = Family(
            PREFIX + "expected_duration_seconds",
            "summary",
            "How long a task of this name usually takes on this task list." + usual,
            EXPECTED_LABELS,
        )
        self.expected_samples = Family(
            PREFIX + "expected_duration_samples",
            "gauge",
            "The successful runs behind expected_duration_seconds.",
            NAME_LABELS,
        )
        self.fleet_expected = Family(
            PREFIX + "fleet_expected_duration_seconds",
            "summary",
            "How long a task of this service and name usually takes across every task list "
            "of this exporter (each task once)." + usual,
            FLEET_LABELS,
        )
        self.fleet_samples = Family(
            PREFIX + "fleet_expected_duration_samples",
            "gauge",
            "The successful runs behind fleet_expected_duration_seconds.",
            FLEET_NAME_LABELS,
        )
        # The order of the exposition.
        self.all = (
            self.recent,
            self.finished,
            self.durations,
            self.last_duration,
            self.last_finished,
            self.last_status,
            self.oldest,
            self.last_failure,
            self.oldest_info,
            self.expected,
            self.expected_samples,
            self.fleet_expected,
            self.fleet_samples,
            self.names_folded,
            self.up,
            self.last_success,
            self.poll_duration,
            self.info,
            self.discovery,
        )


# -- rendering ---------------------------------------------------------------------------


def _lines(rows: Iterable[str]) -> bytes:
    return "".join(rows).encode("utf-8")


def render_summary(f: TaskFamilies, labels: str, s: TaskSummary) -> dict[str, bytes]:
    """The lines of a task list's summary families; `labels` are its rendered labels."""
    esc = escape_label_value
    go = floatToGoString
    return {
        f.recent.name: _lines(
            f'{f.recent.name}{{{labels},task_name="{esc(n)}",status="{esc(st)}"}} {go(c)}\n'
            for n, st, c in s.recent
        ),
        f.finished.name: _lines(
            f'{f.finished.name}_total{{{labels},task_name="{esc(n)}",status="{esc(st)}"}} {go(c)}\n'
            for n, st, c in s.finished
        ),
        f.last_duration.name: _lines(
            f'{f.last_duration.name}{{{labels},task_name="{esc(n)}"}} {go(d)}\n'
            for n, d, _ in s.last_finished
            if d is not None
        ),
        f.last_finished.name: _lines(
            f'{f.last_finished.name}{{{labels},task_name="{esc(n)}"}} {go(w)}\n'
            for n, _, w in s.last_finished
        ),
        f.last_status.name: _lines(
            f'{f.last_status.name}{{{labels},task_name="{esc(n)}",status="{esc(st)}"}} 1.0\n'
            for n, st in s.last_status
        ),
        f.oldest.name: _lines(
            f'{f.oldest.name}{{{labels},task_name="{esc(n)}"}} {go(c)}\n'
            for n, c in s.oldest_unfinished
        ),
        f.last_failure.name: _lines(
            f"{f.last_failure.name}{{{labels},{_context(n, i, u, c)}}} 1.0\n"
            for n, i, u, c, _ in s.last_failure
        ),
        f.oldest_info.name: _lines(
            f"{f.oldest_info.name}{{{labels},{_context(n, i, u, c)}}} 1.0\n"
            for n, i, u, c in s.oldest_unfinished_info
        ),
        f.names_folded.name: f"{f.names_folded.name}{{{labels}}} {go(s.names_folded)}\n".encode()
        if s.names_folded
        else b"",
    }


def render_expected(
    f: TaskFamilies, labels: str, expected: Iterable[Expectation]
) -> dict[str, bytes]:
    """The lines of a task list's expectations; `labels` are its rendered labels."""
    esc = escape_label_value
    go = floatToGoString
    rows = list(expected)
    return {
        f.expected.name: _lines(
            f'{f.expected.name}{{{labels},task_name="{esc(e.name)}",quantile="{q}"}} {go(v)}\n'
            for e in rows
            for q, v in e.values
        ),
        f.expected_samples.name: _lines(
            f'{f.expected_samples.name}{{{labels},task_name="{esc(e.name)}"}} {go(e.samples)}\n'
            for e in rows
        ),
    }


def render_fleet(f: TaskFamilies, service: str, e: Expectation | None) -> dict[str, bytes]:
    """The lines of one fleet kind (a service and task name); none once it has no runs."""
    if e is None:
        return {f.fleet_expected.name: b"", f.fleet_samples.name: b""}
    esc = escape_label_value
    go = floatToGoString
    labels = f'cloud_service="{esc(service)}",task_name="{esc(e.name)}"'
    return {
        f.fleet_expected.name: _lines(
            f'{f.fleet_expected.name}{{{labels},quantile="{q}"}} {go(v)}\n' for q, v in e.values
        ),
        f.fleet_samples.name: f"{f.fleet_samples.name}{{{labels}}} {go(e.samples)}\n".encode(),
    }


def _context(name: str, task_id: str, user: str, change: str) -> str:
    return render_labels(CONTEXT_LABELS[-4:], (name, task_id, user, change))


def render_status(
    f: TaskFamilies,
    labels: str,
    *,
    polled: bool,
    up: bool,
    poll_duration: float | None,
    last_success: float | None,
) -> dict[str, bytes]:
    """The lines of a task list's poll status families (rendered at every poll: the
    duration to the microsecond, the last success to the millisecond)."""
    duration, success = f.poll_duration.name, f.last_success.name
    return {
        f.up.name: f"{f.up.name}{{{labels}}} {'1.0' if up else '0.0'}\n".encode()
        if polled
        else b"",
        duration: f"{duration}{{{labels}}} {seconds_text(poll_duration)}\n".encode()
        if polled and poll_duration is not None
        else b"",
        success: f"{success}{{{labels}}} {timestamp_text(last_success)}\n".encode()
        if last_success is not None
        else b"",
    }


def render_histograms(
    family: Family,
    labels: str,
    bounds: Sequence[str],
    series: Iterable[tuple[str, str, Sequence[int], float]],
) -> bytes:
    """The lines of a group of duration series: (name, status, per-bucket counts, sum)
    each; `bounds` are the `le` values, "+Inf" last. `_count` is the +Inf bucket."""
    esc = escape_label_value
    go = floatToGoString
    name = family.name
    out: list[str] = []
    for task_name, status, buckets, total in series:
        series_labels = f'{labels},task_name="{esc(task_name)}",status="{esc(status)}"'
        cumulative = 0
        for le, n in zip(bounds, buckets, strict=True):
            cumulative += n
            out.append(f'{name}_bucket{{{series_labels},le="{le}"}} {go(cumulative)}\n')
        out.append(f"{name}_count{{{series_labels}}} {go(cumulative)}\n")
        out.append(f"{name}_sum{{{series_labels}}} {go(total)}\n")
    return _lines(out)


def render_discovery(
    f: TaskFamilies, instances: Iterable[InstanceInfo], health: Iterable[DiscoveryHealth]
) -> dict[str, bytes]:
    """The lines of the discovery families."""
    return {
        f.info.name: _lines(
            f"{f.info.name}{{{render_labels(INFO_LABELS, info_values(i))}}} 1.0\n"
            for i in instances
        ),
        f.discovery.name: _lines(
            f"{f.discovery.name}{{"
            f"{render_labels(DISCOVERY_LABELS, (d.service, d.region, d.project_id))}}} "
            f"{'1.0' if d.up else '0.0'}\n"
            for d in health
        ),
    }


def info_values(i: InstanceInfo) -> tuple[str, ...]:
    return (
        i.service,
        i.region,
        i.project_id,
        i.instance_id,
        i.name,
        i.engine,
        i.engine_version,
        i.status,
    )
