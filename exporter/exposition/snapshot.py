"""What the poller knows, kept as a model and as pre-rendered lines.

The poller publishes each poll's outcome here. The store re-renders only the objects a
change touches (the task list's families, the duration group it observes into, the
discovery results) into the exposition store, so a poll costs what it changed and a scrape
costs the bytes it writes. The landing page and the reference collector read an immutable
snapshot, rebuilt at most once per change when one is asked for.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from exporter.core.counting import TaskSummary
from exporter.core.expectations import Expectation, FleetKey
from exporter.core.histograms import HistogramRow
from exporter.core.instances import DiscoveryHealth, InstanceInfo
from exporter.core.tasklists import TASKLIST_LABELS, TaskList
from exporter.core.tasks import ZERO_INITIALIZED_STATUSES
from exporter.exposition.families import (
    TaskFamilies,
    format_bound,
    render_discovery,
    render_expected,
    render_fleet,
    render_histograms,
    render_labels,
    render_status,
    render_summary,
)
from exporter.exposition.store import ExpositionStore

# A duration group: the series one set of histogram labels (before task_name and status)
# covers. Without duration_by_instance every instance of a service in a project shares one.
Group = tuple[str, str, str, str, str]  # service, region, project_id, source, instance_id

_DISCOVERY = ("discovery",)


@dataclass(frozen=True, slots=True)
class TaskListSnapshot:
    task_list: TaskList
    polled: bool = False  # whether this process has finished a poll of it yet
    up: bool = False
    last_success: float | None = None
    last_attempt: float | None = None
    poll_duration: float | None = None
    last_error: str | None = None
    summary: TaskSummary = TaskSummary()  # noqa: RUF009 - immutable
    expected: tuple[Expectation, ...] = ()  # how long each task name usually takes here


@dataclass(frozen=True, slots=True)
class HistogramSeries:
    labels: tuple[str, ...]
    buckets: tuple[int, ...]  # per bucket, not cumulative; the last one is +Inf
    sum: float
    count: int


@dataclass(frozen=True)
class ExporterSnapshot:
    task_lists: tuple[TaskListSnapshot, ...] = ()
    histograms: tuple[HistogramSeries, ...] = ()
    bucket_bounds: tuple[float, ...] = ()
    histogram_labels: tuple[str, ...] = ()
    instances: tuple[InstanceInfo, ...] = ()
    discovery: tuple[DiscoveryHealth, ...] = ()
    # (service, expectation) of each task name across the task lists, sorted
    fleet: tuple[tuple[str, Expectation], ...] = ()

    def fleet_of(self, service: str, name: str) -> Expectation | None:
        """The fleet's expectation of a service's task name, if it has one."""
        for s, e in self.fleet:
            if s == service and e.name == name:
                return e
        return None


@dataclass
class _GroupState:
    labels: tuple[str, ...]  # the histogram label values before task_name and status
    dialect_zero: tuple[str, ...]  # statuses whose series start at 0
    names: Counter[str]  # task names its task lists have seen, by how many lists


class SnapshotStore:
    """Holds what the poller knows and keeps its rendered lines current.

    The set of task lists changes at run time (discovery): a removed one's series go with it.
    """

    def __init__(
        self, bucket_bounds: Sequence[float], by_instance: bool, families: TaskFamilies
    ) -> None:
        self._lock = threading.Lock()
        self._by_instance = by_instance
        self.families = families
        self.exposition = ExpositionStore(families.all)
        self._bounds = tuple(bucket_bounds)
        self._le = (*map(format_bound, self._bounds), "+Inf")
        self._task_lists: dict[str, TaskListSnapshot] = {}
        self._labels: dict[str, str] = {}  # rendered task list labels, by task list key
        self._series: dict[Group, dict[tuple[str, str], HistogramRow]] = {}
        self._groups: dict[Group, _GroupState] = {}
        self._discovery: tuple[tuple[InstanceInfo, ...], tuple[DiscoveryHealth, ...]] = ((), ())
        self._fleet: dict[FleetKey, Expectation] = {}
        self._current = ExporterSnapshot(
            bucket_bounds=self._bounds, histogram_labels=families.durations.labels
        )
        self._dirty = True

    # -- keys ------------------------------------------------------------------------------

    def _group(self, t: TaskList) -> Group:
        return (
            t.service,
            t.region,
            t.project_id,
            t.kind,
            t.instance_id if self._by_instance else "",
        )

    def _group_labels(self, t: TaskList) -> tuple[str, ...]:
        prefix = (t.service, t.region, t.project_id, t.kind)
        return (*prefix, t.instance_id, t.instance_name) if self._by_instance else prefix

    def _series_group(self, series: str) -> tuple[Group, str, str] | None:
        """The group, task name and status of a stored series key, if this mode's."""
        key = json.loads(series)
        if key[0] != ("instance" if self._by_instance else "aggregate"):
            return None
        return (key[1], key[2], key[3], key[4], key[5]), key[6], key[7]

    # -- changes ---------------------------------------------------------------------------

    def set_task_lists(self, task_lists: Sequence[TaskList]) -> None:
        """Make `task_lists` the current set: new ones start empty, missing ones go away, and a
        renamed one keeps its data under its new name."""
        with self._lock:
            old = self._task_lists
            self._task_lists = {}
            touched: set[Group] = set()
            for t in task_lists:
                snap = old.get(t.key)
                if snap is None:
                    self._task_lists[t.key] = TaskListSnapshot(t)
                    self._join(t, ())
                    touched.add(self._group(t))
                elif snap.task_list != t:
                    self._task_lists[t.key] = replace(snap, task_list=t)
                    self._leave(snap.task_list, snap.summary.names)
                    self._join(t, snap.summary.names)
                    touched.update((self._group(snap.task_list), self._group(t)))
                    self._render_task_list(self._task_lists[t.key])
                else:
                    self._task_lists[t.key] = snap
            for key, snap in old.items():
                if key not in self._task_lists:
                    self._leave(snap.task_list, snap.summary.names)
                    touched.add(self._group(snap.task_list))
                    self.exposition.remove(key)
                    self._labels.pop(key, None)
            for group in touched:
                self._render_group(group)
            self._dirty = True

    def publish_task_list(
        self, snap: TaskListSnapshot, histograms: Iterable[HistogramRow] = ()
    ) -> None:
        """A poll's outcome (or what the state file knows, before the first poll), with the
        new totals of the duration series it observed into: one call per poll."""
        with self._lock:
            self._observe(histograms)
            old = self._task_lists.get(snap.task_list.key)
            if old is None:
                return  # removed while it was being polled
            if snap.task_list is not old.task_list:
                snap = replace(snap, task_list=old.task_list)
            self._task_lists[snap.task_list.key] = snap
            if snap.expected != old.expected:
                self._render_expected(snap)
            if snap.summary is not old.summary and snap.summary != old.summary:
                self._render_summary(snap)
                if snap.summary.names != old.summary.names:
                    # A group's histograms show the names its members have: rendered again
                    # only when that set changes, not for every member's first poll.
                    group = self._group(snap.task_list)
                    before = self._groups.get(group)
                    names = set(before.names) if before is not None else None
                    self._leave(snap.task_list, old.summary.names)
                    self._join(snap.task_list, snap.summary.names)
                    after = self._groups.get(group)
                    if after is None or names is None or set(after.names) != names:
                        self._render_group(group)
            self._render_status(snap)
            self._dirty = True

    def update_task_list(self, key: str, **changes: object) -> None:
        """A change of poll status only (a failed poll)."""
        with self._lock:
            old = self._task_lists.get(key)
            if old is None:
                return
            snap = self._task_lists[key] = replace(old, **changes)  # type: ignore[arg-type]
            self._render_status(snap)
            self._dirty = True

    def publish_expected(self, key: str, expected: tuple[Expectation, ...]) -> None:
        """A task list's expectations changed outside a poll (its history was read)."""
        with self._lock:
            old = self._task_lists.get(key)
            if old is None or old.expected == expected:
                return
            snap = self._task_lists[key] = replace(old, expected=expected)
            self._render_expected(snap)
            self._dirty = True

    def publish_fleet(self, kinds: Mapping[FleetKey, Expectation | None]) -> None:
        """The fleet expectations of these kinds (None: no run of that kind any more)."""
        with self._lock:
            for (service, name), e in kinds.items():
                if e is None:
                    if self._fleet.pop((service, name), None) is None:
                        continue
                elif self._fleet.get((service, name)) == e:
                    continue
                else:
                    self._fleet[(service, name)] = e
                self.exposition.put(
                    ("fleet", service, name), render_fleet(self.families, service, e)
                )
                self._dirty = True

    def publish_discovery(
        self, instances: Sequence[InstanceInfo], health: Sequence[DiscoveryHealth]
    ) -> None:
        found = (tuple(instances), tuple(health))
        with self._lock:
            if found == self._discovery:
                return
            self._discovery = found
            self.exposition.put(_DISCOVERY, render_discovery(self.families, *found))
            self._dirty = True

    def update_histograms(self, rows: Iterable[HistogramRow]) -> None:
        """Totals of duration series as the state file has them (at start; a poll's come
        with `publish_task_list`), replacing what was known."""
        with self._lock:
            self._observe(rows)

    def _observe(self, rows: Iterable[HistogramRow]) -> None:
        touched: set[Group] = set()
        for row in rows:
            found = self._series_group(row.series)
            if found is None or len(row.buckets) != len(self._le):
                continue
            group, name, status = found
            self._series.setdefault(group, {})[(name, status)] = row
            touched.add(group)
        for group in touched:
            self._render_group(group)
        if touched:
            self._dirty = True

    # -- membership of duration groups ---------------------------------------------------

    def _join(self, t: TaskList, names: Iterable[str]) -> None:
        group = self._group(t)
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = _GroupState(
                self._group_labels(t), ZERO_INITIALIZED_STATUSES[t.dialect], Counter()
            )
        state.names[""] += 1  # members, under a name no task has
        state.names.update(names)

    def _leave(self, t: TaskList, names: Iterable[str]) -> None:
        group = self._group(t)
        state = self._groups.get(group)
        if state is None:
            return
        state.names[""] -= 1
        state.names.subtract(names)
        state.names = +state.names  # drop names no member has any more
        if not state.names:
            del self._groups[group]

    # -- rendering ---------------------------------------------------------------------------

    def _task_list_labels(self, t: TaskList) -> str:
        labels = self._labels.get(t.key)
        if labels is None:
            labels = self._labels[t.key] = render_labels(TASKLIST_LABELS, t.labels)
        return labels

    def _render_task_list(self, snap: TaskListSnapshot) -> None:
        self._labels.pop(snap.task_list.key, None)
        self._render_summary(snap)
        self._render_status(snap)
        self._render_expected(snap)

    def _render_summary(self, snap: TaskListSnapshot) -> None:
        labels = self._task_list_labels(snap.task_list)
        self.exposition.put(snap.task_list.key, render_summary(self.families, labels, snap.summary))

    def _render_expected(self, snap: TaskListSnapshot) -> None:
        labels = self._task_list_labels(snap.task_list)
        self.exposition.put(
            snap.task_list.key, render_expected(self.families, labels, snap.expected)
        )

    def _render_status(self, snap: TaskListSnapshot) -> None:
        labels = self._task_list_labels(snap.task_list)
        self.exposition.put(
            snap.task_list.key,
            render_status(
                self.families,
                labels,
                polled=snap.polled,
                up=snap.up,
                poll_duration=snap.poll_duration,
                last_success=snap.last_success,
            ),
        )

    def _group_series(self, group: Group) -> list[tuple[str, str, tuple[int, ...], float, int]]:
        """A group's series, sorted: stored ones and zero ones for every name seen."""
        state = self._groups[group]
        stored = self._series.get(group, {})
        keys = set(stored)
        for name in state.names:
            if name:
                keys.update((name, status) for status in state.dialect_zero)
        zero = (0,) * len(self._le)
        out = []
        for name, status in sorted(keys):
            row = stored.get((name, status))
            if row is None:
                out.append((name, status, zero, 0.0, 0))
            else:
                out.append((name, status, row.buckets, row.sum, row.count))
        return out

    def _render_group(self, group: Group) -> None:
        key = ("durations", group)
        state = self._groups.get(group)
        if state is None:
            self.exposition.remove(key)  # its task lists are no longer polled
            return
        labels = render_labels(self.families.durations.labels[:-2], state.labels)
        data = render_histograms(
            self.families.durations,
            labels,
            self._le,
            ((n, s, b, total) for n, s, b, total, _ in self._group_series(group)),
        )
        self.exposition.put(key, {self.families.durations.name: data})

    # -- reading ---------------------------------------------------------------------------

    @property
    def current(self) -> ExporterSnapshot:
        """The snapshot as of now, rebuilt at most once per read after any change."""
        with self._lock:
            if self._dirty:
                self._current = self._rebuild()
                self._dirty = False
            return self._current

    def _rebuild(self) -> ExporterSnapshot:
        series: list[HistogramSeries] = []
        for group, state in self._groups.items():
            for name, status, buckets, total, count in self._group_series(group):
                series.append(HistogramSeries((*state.labels, name, status), buckets, total, count))
        series.sort(key=lambda s: s.labels)
        return replace(
            self._current,
            task_lists=tuple(self._task_lists.values()),
            histograms=tuple(series),
            instances=self._discovery[0],
            discovery=self._discovery[1],
            fleet=tuple(
                (service, e) for (service, _), e in sorted(self._fleet.items(), key=lambda i: i[0])
            ),
        )
