"""The duration histograms' series, pure: their stored keys, buckets, deltas and totals.

A series is keyed by its labels as the state file stores it (`histogram_series_key`);
without `duration_by_instance` the instances of a service in a project share series, the task
center keeps its own. A poll observes into deltas (`HistogramDelta`); the state file sums
them and says the totals back (`HistogramRow`).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.core.tasklists import TaskList


@dataclass
class HistogramDelta:
    """One poll's observations of one duration series: per-bucket counts (not cumulative,
    the last one is +Inf), their sum and count."""

    buckets: list[int]
    sum: float = 0.0
    count: int = 0


@dataclass(frozen=True)
class HistogramRow:
    """A duration series' totals: per-bucket counts (not cumulative; the last is +Inf)."""

    series: str
    buckets: tuple[int, ...]
    sum: float
    count: int


def bucket_index(bounds: Sequence[float], value: float) -> int:
    """Index of the first bucket whose upper bound is >= value (`le` semantics)."""
    return bisect_left(bounds, value)


def histogram_series_key(task_list: TaskList, by_instance: bool, name: str, status: str) -> str:
    """The stored key of a histogram series.

    Without `by_instance` the instances of a service in a project share series; the task
    center keeps its own (`source`), so a DCS task seen in both lists is never observed twice
    in one series.
    """
    instance = task_list.instance_id if by_instance else ""
    mode = "instance" if by_instance else "aggregate"
    return json.dumps(
        [
            mode,
            task_list.service,
            task_list.region,
            task_list.project_id,
            task_list.kind,
            instance,
            name,
            status,
        ]
    )
