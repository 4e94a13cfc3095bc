"""The task metrics: a custom collector rendering the current snapshot at scrape time.

A scrape never calls the cloud. Series exist only for what the snapshot holds, so the series
of a target removed from the configuration, or of a task name gone from the lookback window,
disappear by themselves.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.config import format_duration
from exporter.selfmetrics import PREFIX
from exporter.snapshot import ExporterSnapshot, SnapshotStore
from exporter.targets import TARGET_LABELS

TASK_LABELS = (*TARGET_LABELS, "task_name", "status")
NAME_LABELS = (*TARGET_LABELS, "task_name")


def _bg(snapshot: ExporterSnapshot) -> str:
    return f" Polled in the background every {format_duration(snapshot.poll_interval)}."


def _fmt_bound(bound: float) -> str:
    return repr(float(bound))


class TaskCollector(Collector):
    def __init__(self, snapshots: SnapshotStore) -> None:
        self.snapshots = snapshots

    def describe(self) -> list[Metric]:
        # Empty on purpose: the registry must not call collect() at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshots.current
        bg = _bg(snap)
        recent = GaugeMetricFamily(
            PREFIX + "recent_tasks",
            "Tasks created within the lookback window, by task name and current status." + bg,
            labels=TASK_LABELS,
        )
        finished = CounterMetricFamily(
            PREFIX + "finished",
            "Tasks that reached a finished status (SUCCESS, FAILED, DELETED, CANCELLED or any "
            "other final status), counted once per task ID; tasks already finished at the "
            "first poll are not counted. Survives restarts." + bg,
            labels=TASK_LABELS,
        )
        last_duration = GaugeMetricFamily(
            PREFIX + "last_duration_seconds",
            "updated_at - created_at of the most recently finished task of this name." + bg,
            labels=NAME_LABELS,
        )
        last_finished = GaugeMetricFamily(
            PREFIX + "last_finished_timestamp_seconds",
            "When the most recently finished task of this name finished (its updated_at)." + bg,
            labels=NAME_LABELS,
        )
        last_status = GaugeMetricFamily(
            PREFIX + "last_status",
            "1 for the status of the most recently created task of this name; no other "
            "status has a series." + bg,
            labels=TASK_LABELS,
        )
        oldest = GaugeMetricFamily(
            PREFIX + "oldest_unfinished_start_timestamp_seconds",
            "created_at of the oldest task of this name still CREATED, WAITING or EXECUTING; "
            "absent when there is none." + bg,
            labels=NAME_LABELS,
        )
        up = GaugeMetricFamily(
            PREFIX + "up",
            "1 when the last poll of this task list succeeded, 0 when it failed.",
            labels=TARGET_LABELS,
        )
        last_success = GaugeMetricFamily(
            PREFIX + "last_poll_success_timestamp_seconds",
            "When the last successful poll of this task list finished.",
            labels=TARGET_LABELS,
        )
        poll_duration = GaugeMetricFamily(
            PREFIX + "poll_duration_seconds",
            "How long the last poll of this task list took, successful or not.",
            labels=TARGET_LABELS,
        )
        for ts in snap.targets:
            tl = list(ts.target.labels)
            s = ts.summary
            for name, status, count in s.recent:
                recent.add_metric([*tl, name, status], count)
            for name, status, count in s.finished:
                finished.add_metric([*tl, name, status], count)
            for name, duration, when in s.last_finished:
                if duration is not None:
                    last_duration.add_metric([*tl, name], duration)
                last_finished.add_metric([*tl, name], when)
            for name, status in s.last_status:
                last_status.add_metric([*tl, name, status], 1)
            for name, created in s.oldest_unfinished:
                oldest.add_metric([*tl, name], created)
            if ts.polled:
                up.add_metric(tl, 1 if ts.up else 0)
                if ts.poll_duration is not None:
                    poll_duration.add_metric(tl, ts.poll_duration)
            if ts.last_success is not None:
                last_success.add_metric(tl, ts.last_success)

        durations = HistogramMetricFamily(
            PREFIX + "duration_seconds",
            "updated_at - created_at of each task counted in finished_total, observed once. "
            "Instances of a service share series unless metrics.duration_by_instance is set; "
            "source tells instance task lists from the task center." + bg,
            labels=snap.histogram_labels,
        )
        bounds = snap.bucket_bounds
        for h in snap.histograms:
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip((*map(_fmt_bound, bounds), "+Inf"), h.buckets, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            durations.add_metric(list(h.labels), buckets, h.sum)

        info = GaugeMetricFamily(
            PREFIX + "instance_info",
            "Always 1: an instance found by discovery, with its engine, engine version and "
            "status as the list-instances API gives them.",
            labels=(*TARGET_LABELS, "engine", "engine_version", "instance_status"),
        )
        for i in snap.instances:
            info.add_metric(
                [
                    i.service,
                    i.region,
                    i.project_id,
                    i.instance_id,
                    i.name,
                    i.engine,
                    i.engine_version,
                    i.status,
                ],
                1,
            )
        discovery = GaugeMetricFamily(
            PREFIX + "discovery_up",
            "1 when the last listing of a service's instances (discovery) succeeded, 0 when it "
            "failed; project_id is empty while the project ID cannot be resolved.",
            labels=("cloud_service", "region", "project_id"),
        )
        for d in snap.discovery:
            discovery.add_metric([d.service, d.region, d.project_id], 1 if d.up else 0)

        yield from (
            recent,
            finished,
            durations,
            last_duration,
            last_finished,
            last_status,
            oldest,
            up,
            last_success,
            poll_duration,
            info,
            discovery,
        )
