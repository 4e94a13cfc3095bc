"""Per-host request pacing: a token bucket that can also be paused by a throttling answer.

No numeric limits are published for these APIs, so the user sets a rate per endpoint host,
and a `Retry-After` from the gateway pauses every request to that host, not only the one
that was refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause_until(self, when: float) -> None:
        """Hold every request back until `when` (a value of the bucket's clock)."""
        self._paused_until = max(self._paused_until, when)

    async def acquire(self) -> None:
        """Wait for a token."""
        # Nobody waits: a token now, if there is one, without the lock.
        if not self._lock.locked() and self._wait() == 0.0:
            return
        async with self._lock:
            while (delay := self._wait()) > 0.0:
                await self._sleep(delay)

    def _wait(self) -> float:
        """Take a token and return 0, or return how long until one may be taken."""
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class HostLimiters:
    """One bucket per endpoint (host and port), created on first use."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def for_host(self, host: str) -> TokenBucket:
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = TokenBucket(self.rate, self.burst)
        return bucket
