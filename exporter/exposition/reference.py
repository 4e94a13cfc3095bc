"""The reference rendering of the task families through prometheus_client's own objects.

The exporter serves pre-rendered lines (`exporter.exposition.store`); this is what they are
checked against (tests) and compared with (benchmarks). It reads a snapshot, so it lives
here rather than in `families`, which only declares the families (and so needs nothing of
the snapshot).
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

from exporter.exposition.families import Family, TaskFamilies, format_bound, info_values
from exporter.exposition.snapshot import ExporterSnapshot, SnapshotStore


class TaskCollector(Collector):
    """The task families through prometheus_client's own objects, built from a snapshot.

    The exporter serves the pre-rendered lines instead (they cost a scrape nothing); this
    collector is the reference they are checked against, and what a benchmark renders with
    `generate_latest` to compare.
    """

    def __init__(self, snapshots: SnapshotStore, families: TaskFamilies) -> None:
        self.snapshots = snapshots
        self.families = families

    def describe(self) -> Iterator[Metric]:
        for family in self.families.all:
            yield family.prometheus_family()

    def collect(self) -> Iterator[Metric]:
        yield from collect_snapshot(self.families, self.snapshots.current)


def _gauge(family: Family) -> GaugeMetricFamily:
    return GaugeMetricFamily(family.name, family.help, labels=family.labels)


def _quantiles(family: Family) -> Metric:
    """A summary of quantiles only (see `FamilyType`): samples added one by one."""
    return Metric(family.name, family.help, "summary")


def _add(metric: Metric, family: Family, values: list[str], value: float) -> None:
    metric.add_sample(family.name, dict(zip(family.labels, values, strict=True)), value)


def collect_snapshot(f: TaskFamilies, snap: ExporterSnapshot) -> Iterator[Metric]:
    """Every task family of `snap` as prometheus_client objects with their samples."""
    recent, last_duration, last_finished = (
        _gauge(f.recent),
        _gauge(f.last_duration),
        _gauge(f.last_finished),
    )
    last_status, oldest, up = _gauge(f.last_status), _gauge(f.oldest), _gauge(f.up)
    last_failure, oldest_info = _gauge(f.last_failure), _gauge(f.oldest_info)
    last_success, poll_duration = _gauge(f.last_success), _gauge(f.poll_duration)
    expected, expected_samples = _quantiles(f.expected), _gauge(f.expected_samples)
    fleet_expected, fleet_samples = _quantiles(f.fleet_expected), _gauge(f.fleet_samples)
    names_folded = _gauge(f.names_folded)
    finished = CounterMetricFamily(f.finished.name, f.finished.help, labels=f.finished.labels)
    for ts in snap.task_lists:
        tl = list(ts.task_list.labels)
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
        for name, task_id, user, change, _ in s.last_failure:
            last_failure.add_metric([*tl, name, task_id, user, change], 1)
        for name, task_id, user, change in s.oldest_unfinished_info:
            oldest_info.add_metric([*tl, name, task_id, user, change], 1)
        for e in ts.expected:
            for q, value in e.values:
                _add(expected, f.expected, [*tl, e.name, q], value)
            expected_samples.add_metric([*tl, e.name], e.samples)
        if s.names_folded:
            names_folded.add_metric(tl, s.names_folded)
        if ts.polled:
            up.add_metric(tl, 1 if ts.up else 0)
            if ts.poll_duration is not None:
                # To the microsecond and the millisecond, as the status lines are rendered.
                poll_duration.add_metric(tl, round(ts.poll_duration * 1e6) / 1e6)
        if ts.last_success is not None:
            last_success.add_metric(tl, round(ts.last_success * 1000) / 1000)
    durations = HistogramMetricFamily(f.durations.name, f.durations.help, labels=f.durations.labels)
    bounds = (*map(format_bound, snap.bucket_bounds), "+Inf")
    for h in snap.histograms:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, n in zip(bounds, h.buckets, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        durations.add_metric(list(h.labels), buckets, h.sum)
    for service, e in snap.fleet:
        for q, value in e.values:
            _add(fleet_expected, f.fleet_expected, [service, e.name, q], value)
        fleet_samples.add_metric([service, e.name], e.samples)
    info, discovery = _gauge(f.info), _gauge(f.discovery)
    for i in snap.instances:
        info.add_metric(list(info_values(i)), 1)
    for d in snap.discovery:
        discovery.add_metric([d.service, d.region, d.project_id], 1 if d.up else 0)
    by_name: dict[str, Metric] = {
        m.name: m
        for m in (
            recent,
            finished,
            durations,
            last_duration,
            last_finished,
            last_status,
            oldest,
            last_failure,
            oldest_info,
            expected,
            expected_samples,
            fleet_expected,
            fleet_samples,
            names_folded,
            up,
            last_success,
            poll_duration,
            info,
            discovery,
        )
    }
    yield from (by_name[family.name] for family in f.all)
