"""How long each kind of task usually takes, learned from the exact durations of its
successful runs: pure values and rules, no I/O.

Why these statistics. Task durations are skewed (most resizes take minutes, a few an hour)
and often multi-modal across a fleet (small and large instances), and a task list sees a few
runs a day, not a continuous series. So the expectation is the *exact* empirical quantiles
(p50, p95) of a bounded window of recent runs, interpolated on the log scale
(`log1p(duration)`): no distribution is assumed, a fleet's two modes stay two modes, the
label `quantile="0.95"` means what it says (95% of these runs finished within it), and an
outlier in the history (a run that hung for hours, then succeeded) moves p95 only once it is
more than 5% of the window, the median never below half. Median and MAD would assume one
log-normal mode and extrapolate p95 from the spread of the middle, which is wrong for a
fleet's mixture and for the ties of quick tasks (MAD 0).

Bounds: per task list and task name, the most recent `window` runs (by finish time) no older
than `max_age`; the fleet (per service and task name, across the replica's task lists) is
the union of those windows, each task ID once (a DCS task is listed by its instance and by
the task center). Failed and cancelled runs say nothing about a healthy run and are never
samples.

The stuck threshold (`stuck_threshold`) is the shipped rules' fallback order, for the
landing page: the task list's own expectation with at least MIN_RUNS runs, else the
fleet's, else the static default; STUCK_FACTOR x p95, at least STUCK_FLOOR.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

QUANTILES = (0.5, 0.95)
DEFAULT_WINDOW = 50
DEFAULT_MAX_AGE = 30 * 86400.0
DEFAULT_HISTORY = 30 * 86400.0

# The shipped rules' fallback (deploy/prometheus/rules/huaweicloud-task.rules.yml).
MIN_RUNS = 10
STUCK_FACTOR = 3.0
STUCK_FLOOR = 240.0
STATIC_DEFAULT = 1800.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One successful run: when it finished (its `updated_at`) and how long it took."""

    task_id: str
    name: str
    finished_at: float
    duration: float

    @property
    def order(self) -> tuple[float, str]:
        """Recency, ties broken by task ID, so that every bound cuts the same way everywhere
        (memory, the state file, after a restart)."""
        return (self.finished_at, self.task_id)


@dataclass(frozen=True, slots=True)
class Expectation:
    """How long a kind of task usually takes: its quantiles and the runs behind them."""

    name: str
    p50: float
    p95: float
    samples: int

    @property
    def values(self) -> tuple[tuple[str, float], ...]:
        """(quantile label, seconds), as exported."""
        return (("0.5", self.p50), ("0.95", self.p95))


def quantile(sorted_logs: Sequence[float], q: float) -> float:
    """The q-quantile (linear interpolation between order statistics, Hyndman-Fan type 7)
    of values already on the log scale and sorted, back in seconds."""
    n = len(sorted_logs)
    if n == 0:
        raise ValueError("no samples")
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    value = sorted_logs[lo] + (h - lo) * (sorted_logs[hi] - sorted_logs[lo])
    return math.expm1(value)


def to_log(duration: float) -> float:
    """The log scale the quantiles are taken on: log1p, so that a 0-second run is fine."""
    return math.log1p(max(0.0, duration))


def expectation_of(name: str, durations: Iterable[float]) -> Expectation | None:
    """The expectation of a kind from its runs' durations, None without any."""
    logs = sorted(to_log(d) for d in durations)
    if not logs:
        return None
    return _from_sorted(name, logs)


def _from_sorted(name: str, logs: Sequence[float]) -> Expectation:
    p50, p95 = (round(quantile(logs, q), 3) for q in QUANTILES)
    return Expectation(name, p50, p95, len(logs))


def bound_window(samples: Iterable[Sample], window: int, since: float) -> tuple[Sample, ...]:
    """The most recent `window` samples finished at or after `since`, each task ID once,
    oldest first."""
    unique: dict[str, Sample] = {}
    for s in samples:
        if s.finished_at >= since and s.task_id not in unique:
            unique[s.task_id] = s
    kept = sorted(unique.values(), key=lambda s: s.order)
    return tuple(kept[-window:]) if window > 0 else ()


@dataclass(frozen=True, slots=True)
class Threshold:
    """When a running task counts as stuck, and on what basis (task_list, fleet, default)."""

    seconds: float
    basis: str
    usual: Expectation | None


def stuck_threshold(own: Expectation | None, fleet: Expectation | None) -> Threshold:
    """The shipped rules' order: own with >= MIN_RUNS runs, else the fleet's, else the static
    default (the rules' per-name static thresholds live in Prometheus, not here)."""
    for basis, e in (("task_list", own), ("fleet", fleet)):
        if e is not None and e.samples >= MIN_RUNS:
            return Threshold(max(STUCK_FLOOR, STUCK_FACTOR * e.p95), basis, e)
    return Threshold(STATIC_DEFAULT, "default", None)


@dataclass
class _Pool:
    """A fleet kind's runs: sorted log durations, and how many task lists hold each task ID."""

    logs: list[float] = field(default_factory=list)
    holders: dict[str, tuple[int, float]] = field(default_factory=dict)

    def add(self, s: Sample) -> None:
        count, value = self.holders.get(s.task_id, (0, to_log(s.duration)))
        if count == 0:
            insort(self.logs, value)
        self.holders[s.task_id] = (count + 1, value)

    def remove(self, s: Sample) -> None:
        found = self.holders.get(s.task_id)
        if found is None:
            return
        count, value = found
        if count > 1:
            self.holders[s.task_id] = (count - 1, value)
            return
        del self.holders[s.task_id]
        i = bisect_left(self.logs, value)
        if i < len(self.logs) and self.logs[i] == value:
            del self.logs[i]


FleetKey = tuple[str, str]  # service, task name


class ExpectationBook:
    """Every task list's windows of successful runs, and the fleet pools they make up.

    In memory; the state file holds the same windows (`exporter.polling.state`), so that a
    restart rebuilds exactly this. Adding costs the window (at most `window` entries) and an
    insertion into the fleet's sorted pool; nothing is recomputed for other task lists.
    """

    def __init__(self, window: int = DEFAULT_WINDOW, max_age: float = DEFAULT_MAX_AGE) -> None:
        self.window = window
        self.max_age = max_age
        self._windows: dict[str, dict[str, tuple[Sample, ...]]] = {}
        self._service: dict[str, str] = {}
        self._pools: dict[FleetKey, _Pool] = {}
        self._cache: dict[str, tuple[Expectation, ...]] = {}

    def add(self, key: str, service: str, samples: Iterable[Sample], now: float) -> set[FleetKey]:
        """Fold new runs (and the passing of time) into a task list's windows; the fleet kinds
        whose pool changed."""
        self._service[key] = service
        windows = self._windows.setdefault(key, {})
        by_name: dict[str, list[Sample]] = {}
        for s in samples:
            by_name.setdefault(s.name, []).append(s)
        since = now - self.max_age
        names = set(by_name)
        names.update(n for n, w in windows.items() if w and w[0].finished_at < since)
        touched: set[FleetKey] = set()
        for name in names:
            old = windows.get(name, ())
            new = bound_window((*old, *by_name.get(name, ())), self.window, since)
            if new == old:
                continue
            self._replace(service, old, new)
            touched.add((service, name))
            if new:
                windows[name] = new
            else:
                windows.pop(name, None)
        if touched:
            self._cache.pop(key, None)
        return touched

    def drop(self, key: str) -> set[FleetKey]:
        """A task list no longer polled: its runs leave the fleet."""
        windows = self._windows.pop(key, {})
        service = self._service.pop(key, "")
        self._cache.pop(key, None)
        for w in windows.values():
            self._replace(service, w, ())
        return {(service, name) for name in windows}

    def _replace(self, service: str, old: Sequence[Sample], new: Sequence[Sample]) -> None:
        kept = set(new)
        gone = [s for s in old if s not in kept]
        had = set(old)
        for s in gone:
            self._pool(service, s.name).remove(s)
        for s in new:
            if s not in had:
                self._pool(service, s.name).add(s)
        for s in gone:
            pool = self._pools.get((service, s.name))
            if pool is not None and not pool.holders:
                del self._pools[(service, s.name)]

    def _pool(self, service: str, name: str) -> _Pool:
        pool = self._pools.get((service, name))
        if pool is None:
            pool = self._pools[(service, name)] = _Pool()
        return pool

    def samples(self, key: str) -> Mapping[str, tuple[Sample, ...]]:
        """A task list's windows, by task name (oldest first)."""
        return self._windows.get(key, {})

    def expectations(self, key: str) -> tuple[Expectation, ...]:
        """A task list's expectations, by task name."""
        found = self._cache.get(key)
        if found is None:
            windows = self._windows.get(key, {})
            found = tuple(
                _from_sorted(name, sorted(to_log(s.duration) for s in windows[name]))
                for name in sorted(windows)
            )
            self._cache[key] = found
        return found

    def fleet(self, kinds: Iterable[FleetKey] | None = None) -> dict[FleetKey, Expectation | None]:
        """The fleet expectation of these kinds (all when None); None for a kind gone."""
        wanted = list(self._pools) if kinds is None else list(kinds)
        out: dict[FleetKey, Expectation | None] = {}
        for service, name in wanted:
            pool = self._pools.get((service, name))
            out[(service, name)] = _from_sorted(name, pool.logs) if pool and pool.logs else None
        return out
