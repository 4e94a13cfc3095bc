"""Immutable snapshots of what the poller knows, the only thing a scrape ever reads.

The poller records each poll's results here and marks the snapshot stale; a read rebuilds
it (at most once per change) under a lock held only for that in-memory work. A scrape thus
never waits on a poll's requests or commits, and never sees half of a poll.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from exporter.sources import DiscoveryHealth, InstanceInfo
from exporter.state import HistogramDelta, HistogramRow, TaskRow
from exporter.targets import Target
from exporter.tasks import is_finished, is_unfinished


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """The task gauges of one target, computed from its stored tasks."""

    recent: tuple[tuple[str, str, int], ...] = ()
    finished: tuple[tuple[str, str, int], ...] = ()
    last_status: tuple[tuple[str, str], ...] = ()
    last_finished: tuple[tuple[str, float | None, float], ...] = ()
    oldest_unfinished: tuple[tuple[str, float], ...] = ()
    names: tuple[str, ...] = ()  # task names seen within the window
    zero_statuses: tuple[str, ...] = ()  # statuses whose series start at 0 for those names


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    target: Target
    polled: bool = False  # whether this process has finished a poll of it yet
    up: bool = False
    last_success: float | None = None
    last_attempt: float | None = None
    poll_duration: float | None = None
    last_error: str | None = None
    summary: TaskSummary = TaskSummary()


def summarize(
    tasks: Iterable[TaskRow],
    finished: Mapping[tuple[str, str], int],
    since: float,
    zero_statuses: Sequence[str] = (),
) -> TaskSummary:
    """Gauges over the tasks created at or after `since` (the lookback window).

    Counters are completed with zeros: every name seen in the window, in every status of
    `zero_statuses`, so that the first finish of its kind is an increase from 0.
    """
    recent: Counter[tuple[str, str]] = Counter()
    newest: dict[str, TaskRow] = {}
    last_done: dict[str, TaskRow] = {}
    oldest: dict[str, float] = {}
    for t in tasks:
        if t.created_at < since:
            continue
        recent[(t.name, t.status)] += 1
        cur = newest.get(t.name)
        if cur is None or (t.created_at, t.id) > (cur.created_at, cur.id):
            newest[t.name] = t
        if is_finished(t.status) and t.updated_at is not None:
            done = last_done.get(t.name)
            if done is None or (t.updated_at, t.id) > (done.updated_at or 0.0, done.id):
                last_done[t.name] = t
        if is_unfinished(t.status) and (t.name not in oldest or t.created_at < oldest[t.name]):
            oldest[t.name] = t.created_at
    counts = dict(finished)
    for name in newest:
        for status in zero_statuses:
            counts.setdefault((name, status), 0)
    return TaskSummary(
        recent=tuple(sorted((n, s, c) for (n, s), c in recent.items())),
        finished=tuple(sorted((n, s, c) for (n, s), c in counts.items())),
        last_status=tuple(sorted((n, t.status) for n, t in newest.items())),
        last_finished=tuple(
            sorted(
                (n, t.duration, t.updated_at)
                for n, t in last_done.items()
                if t.updated_at is not None
            )
        ),
        oldest_unfinished=tuple(sorted(oldest.items())),
        names=tuple(sorted(newest)),
        zero_statuses=tuple(zero_statuses),
    )


# -- duration histograms ------------------------------------------------------------------


def histogram_series_key(target: Target, by_instance: bool, name: str, status: str) -> str:
    """The stored key of a histogram series.

    Without `by_instance` the instances of a service in a project share series; the task
    center keeps its own (`source`), so a DCS task seen in both lists is never observed twice
    in one series.
    """
    instance = target.instance_id if by_instance else ""
    mode = "instance" if by_instance else "aggregate"
    return json.dumps(
        [
            mode,
            target.service,
            target.region,
            target.project_id,
            target.source,
            instance,
            name,
            status,
        ]
    )


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


@dataclass(frozen=True, slots=True)
class HistogramSeries:
    labels: tuple[str, ...]
    buckets: tuple[int, ...]  # per bucket, not cumulative; the last one is +Inf
    sum: float
    count: int


@dataclass(frozen=True)
class ExporterSnapshot:
    targets: tuple[TargetSnapshot, ...] = ()
    histograms: tuple[HistogramSeries, ...] = ()
    bucket_bounds: tuple[float, ...] = ()
    histogram_labels: tuple[str, ...] = HISTOGRAM_LABELS
    poll_interval: float = 60.0
    instances: tuple[InstanceInfo, ...] = ()
    discovery: tuple[DiscoveryHealth, ...] = ()


class SnapshotStore:
    """Holds what the poller knows; readers get an immutable snapshot of it.

    The set of targets changes at run time (discovery): a removed target's series go with it.
    """

    def __init__(
        self,
        bucket_bounds: Sequence[float],
        by_instance: bool,
        poll_interval: float,
        targets: Sequence[Target] = (),
    ) -> None:
        self._lock = threading.Lock()
        self._by_instance = by_instance
        self._order: dict[str, int] = {}
        self._targets: dict[str, TargetSnapshot] = {}
        self._hist: dict[str, tuple[tuple[Any, ...], HistogramRow]] = {}
        # Which histogram series belong to current targets, and under which labels.
        self._series_labels: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._base = ExporterSnapshot(
            bucket_bounds=tuple(bucket_bounds),
            histogram_labels=HISTOGRAM_LABELS_BY_INSTANCE if by_instance else HISTOGRAM_LABELS,
            poll_interval=poll_interval,
        )
        self._discovery: tuple[tuple[InstanceInfo, ...], tuple[DiscoveryHealth, ...]] = ((), ())
        self._current = self._base
        self._dirty = False
        self.set_targets(targets)

    def _labels_of(self, t: Target) -> tuple[str, ...]:
        """The histogram labels (before task_name and status) of a target's observations."""
        prefix = (t.service, t.region, t.project_id, t.source)
        return (*prefix, t.instance_id, t.instance_name) if self._by_instance else prefix

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Make `targets` the current set: new ones start empty, missing ones go away, and a
        renamed one keeps its data under its new name."""
        with self._lock:
            old = self._targets
            self._targets = {}
            for t in targets:
                snap = old.get(t.key)
                self._targets[t.key] = (
                    TargetSnapshot(t) if snap is None else replace(snap, target=t)
                )
            self._order = {t.key: i for i, t in enumerate(targets)}
            self._series_labels = {}
            for t in targets:
                prefix = (t.service, t.region, t.project_id, t.source)
                key = (*prefix, t.instance_id if self._by_instance else "")
                self._series_labels[key] = self._labels_of(t)
            self._dirty = True

    def publish_target(self, snap: TargetSnapshot) -> None:
        with self._lock:
            if snap.target.key not in self._targets:
                return  # removed while it was being polled
            self._targets[snap.target.key] = replace(
                snap, target=self._targets[snap.target.key].target
            )
            self._dirty = True

    def update_target(self, key: str, **changes: object) -> None:
        with self._lock:
            if key not in self._targets:
                return
            self._targets[key] = replace(self._targets[key], **changes)  # type: ignore[arg-type]
            self._dirty = True

    def publish_discovery(
        self, instances: Sequence[InstanceInfo], health: Sequence[DiscoveryHealth]
    ) -> None:
        with self._lock:
            self._discovery = (tuple(instances), tuple(health))
            self._dirty = True

    def load_histograms(self, rows: Iterable[HistogramRow]) -> None:
        with self._lock:
            self._hist = {r.series: (tuple(json.loads(r.series)), r) for r in rows}
            self._dirty = True

    def add_histograms(self, deltas: Mapping[str, HistogramDelta]) -> None:
        """Apply a committed poll's observations (only ever after the commit succeeded)."""
        if not deltas:
            return
        with self._lock:
            for series, d in deltas.items():
                found = self._hist.get(series)
                if found is None:
                    row = HistogramRow(series, tuple(d.buckets), d.sum, d.count)
                    self._hist[series] = (tuple(json.loads(series)), row)
                else:
                    key, old = found
                    self._hist[series] = (
                        key,
                        HistogramRow(
                            series,
                            tuple(a + b for a, b in zip(old.buckets, d.buckets, strict=True)),
                            old.sum + d.sum,
                            old.count + d.count,
                        ),
                    )
            self._dirty = True

    @property
    def current(self) -> ExporterSnapshot:
        """The snapshot as of now, rebuilt at most once per read after any change.

        Polls only mark the snapshot stale, so a poll costs the same whatever the fleet's
        size; the rebuild (all targets, all histogram series) happens once per scrape.
        """
        with self._lock:
            if self._dirty:
                self._rebuild()
                self._dirty = False
            return self._current

    def _rebuild(self) -> None:
        mode = "instance" if self._by_instance else "aggregate"
        series: list[HistogramSeries] = []
        for key, row in self._hist.values():
            if key[0] != mode:
                continue
            labels = self._series_labels.get(tuple(key[1:6]))
            if labels is None:
                continue  # its targets are no longer configured
            if len(row.buckets) != len(self._base.bucket_bounds) + 1:
                continue
            series.append(
                HistogramSeries((*labels, key[6], key[7]), row.buckets, row.sum, row.count)
            )
        # Zero series for every task name a current target has seen, as for the counters.
        present = {s.labels for s in series}
        zero = (0,) * (len(self._base.bucket_bounds) + 1)
        for ts in self._targets.values():
            labels = self._labels_of(ts.target)
            for name in ts.summary.names:
                for status in ts.summary.zero_statuses:
                    hkey = (*labels, name, status)
                    if hkey not in present:
                        present.add(hkey)
                        series.append(HistogramSeries(hkey, zero, 0.0, 0))
        series.sort(key=lambda s: s.labels)
        targets = sorted(self._targets.values(), key=lambda s: self._order[s.target.key])
        self._current = replace(
            self._base,
            targets=tuple(targets),
            histograms=tuple(series),
            instances=self._discovery[0],
            discovery=self._discovery[1],
        )
