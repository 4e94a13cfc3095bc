"""The status lines' numbers, written without `repr`: the very text prometheus_client writes
for the value rounded to the millisecond (timestamps) or the microsecond (durations)."""

from __future__ import annotations

import math
import random

import pytest

from exporter.exposition.families import floatToGoString, seconds_text, timestamp_text

pytestmark = pytest.mark.smoke

EDGE_TIMESTAMPS = [
    1_000_000_000.0,  # the first with ten digits
    1_764_679_000.0,
    1_764_679_000.1,
    1_764_679_000.0005,  # rounds up
    1_764_679_000.9995,  # carries into the seconds
    9_999_999_999.9996,  # carries into an eleventh digit: the slow path
    999_999_999.9,  # nine digits: the slow path
    0.0,
    float("inf"),
    float("nan"),
]
EDGE_DURATIONS = [
    float("inf"),
    float("nan"),
    0.0,
    0.00005,
    0.0001,
    0.000099999,
    1.0,
    2.5,
    0.052346,
    999_999.9999995,
    1e6,
    3e7,
]


def test_timestamps_read_as_prometheus_client_writes_them_to_the_millisecond() -> None:
    rng = random.Random(7)
    values = EDGE_TIMESTAMPS + [rng.uniform(9e8, 1.1e10) for _ in range(50_000)]
    for value in values:
        assert timestamp_text(value) == floatToGoString(
            round(value * 1000) / 1000 if math.isfinite(value) else value
        ), value


def test_durations_read_as_prometheus_client_writes_them_to_the_microsecond() -> None:
    rng = random.Random(7)
    values = EDGE_DURATIONS + [
        rng.choice([rng.uniform(0, 2), rng.uniform(0, 1e-3), rng.uniform(0, 1e7)])
        for _ in range(50_000)
    ]
    for value in values:
        assert seconds_text(value) == floatToGoString(
            round(value * 1e6) / 1e6 if math.isfinite(value) else value
        ), value
