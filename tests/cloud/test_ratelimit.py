"""The token bucket and duration settings, in-process, on a fake clock where time matters."""

from __future__ import annotations

import asyncio

import pytest

from exporter.cloud.ratelimit import HostLimiters, TokenBucket
from exporter.config import MAX_DURATION, format_duration, parse_duration

pytestmark = pytest.mark.smoke


class Clock:
    """A clock that moves only when the bucket sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


def _bucket(rate: float, burst: int) -> tuple[TokenBucket, Clock]:
    clock = Clock()
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep), clock


def test_burst_is_free_then_one_token_per_interval() -> None:
    bucket, clock = _bucket(rate=4, burst=3)

    async def take(n: int) -> None:
        for _ in range(n):
            await bucket.acquire()

    asyncio.run(take(3))
    assert clock.sleeps == []
    asyncio.run(take(2))
    assert clock.sleeps == [pytest.approx(0.25), pytest.approx(0.25)]
    assert clock.now == pytest.approx(1000.5)


def test_refill_is_capped_at_the_burst() -> None:
    bucket, clock = _bucket(rate=10, burst=2)

    async def take(n: int) -> None:
        for _ in range(n):
            await bucket.acquire()

    asyncio.run(take(2))
    clock.now += 3600  # an hour idle refills two tokens, not 36000
    asyncio.run(take(3))
    assert clock.sleeps == [pytest.approx(0.1)]


def test_pause_holds_every_request_until_then() -> None:
    bucket, clock = _bucket(rate=100, burst=5)
    bucket.pause_until(clock.now + 7)
    bucket.pause_until(clock.now + 2)  # an earlier pause never shortens a later one
    asyncio.run(bucket.acquire())
    assert clock.sleeps == [pytest.approx(7)]
    assert clock.now == pytest.approx(1007)
    asyncio.run(bucket.acquire())
    assert clock.sleeps == [pytest.approx(7)]  # no more waiting after the pause


def test_concurrent_callers_are_served_one_at_a_time() -> None:
    bucket, clock = _bucket(rate=2, burst=1)

    async def many() -> None:
        await asyncio.gather(*(bucket.acquire() for _ in range(3)))

    asyncio.run(many())
    # The first takes the token at once, the two others wait half a second each in turn.
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]
    assert clock.now == pytest.approx(1001)


def test_one_bucket_per_host() -> None:
    limiters = HostLimiters(5, 2)
    a = limiters.for_host("a:443")
    assert limiters.for_host("a:443") is a
    assert limiters.for_host("b:443") is not a
    assert (a.rate, a.burst) == (5, 2.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2d", 172800),
        ("1w", 604800),
        (" 1.5s ", 1.5),
        ("366d", MAX_DURATION),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (60, "must be a duration string"),
        (True, "must be a duration string"),
        (None, "must be a duration string"),
        ("60", "invalid duration"),
        ("5 m", "invalid duration"),
        ("-5s", "invalid duration"),
        ("1e400s", "invalid duration"),
        ("s" * 2000, "invalid duration"),
        ("367d", "at most 366d"),
        ("9" * 400 + "s", "at most 366d"),
    ],
)
def test_bad_durations_are_refused_without_quoting_them(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_duration(value)
    assert str(value) not in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(7200, "2h"), (90, "90s"), (120, "2m"), (0.25, "250ms"), (59, "59s"), (3660, "61m")],
)
def test_durations_format_and_read_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
