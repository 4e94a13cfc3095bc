"""The poll slots (`http.max_concurrency`), shared fairly between endpoints and never idle.

An endpoint (host:port) has a fair share of the slots, half of them: a hanging endpoint
cannot hold more, so another endpoint's polls always find slots. Above its share, an
endpoint may borrow free slots while no other endpoint's poll is waiting for one, up to all
but a reserve (an eighth of the slots, at least one): a fleet on one endpoint is not held to
half its concurrency, and an endpoint that hangs after borrowing still leaves the reserve to
a poll of another endpoint arriving later, which then gets every slot the hanging one gives
back beyond its share. Slots are granted in the order polls asked for them, except that a
poll whose endpoint is at its limit does not hold up those behind it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque


class PollSlots:
    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.share = max(1, (self.total + 1) // 2)
        self.ceiling = max(self.share, self.total - max(1, self.total // 8))
        self._used = 0
        self._held: dict[str, int] = {}
        # Per endpoint, its polls waiting (in order), each with its place in the global order.
        self._queues: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._waiting: dict[str, int] = {}  # live waiters per endpoint
        self._waiting_total = 0
        self._order = itertools.count()

    def held(self, endpoint: str) -> int:
        return self._held.get(endpoint, 0)

    def _may(self, endpoint: str) -> bool:
        if self._used >= self.total:
            return False
        held = self._held.get(endpoint, 0)
        if held < self.share:
            return True
        others = self._waiting_total - self._waiting.get(endpoint, 0)
        return held < self.ceiling and others == 0

    def _take(self, endpoint: str) -> None:
        self._used += 1
        self._held[endpoint] = self._held.get(endpoint, 0) + 1

    def try_acquire(self, endpoint: str) -> bool:
        """A slot at once, if one is free for `endpoint` and nobody waits (no timer needed)."""
        if not self._waiting_total and self._may(endpoint):
            self._take(endpoint)
            return True
        return False

    async def acquire(self, endpoint: str) -> None:
        """A slot for a poll of `endpoint`; give it back with `release`."""
        if self.try_acquire(endpoint):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(endpoint, deque()).append((next(self._order), waiter))
        self._waiting[endpoint] = self._waiting.get(endpoint, 0) + 1
        self._waiting_total += 1
        self._grant()  # this very poll may be the first in line for a free slot
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(endpoint)  # granted, then cancelled before it could use it
            else:
                waiter.cancel()
                self._unwait(endpoint)
                self._grant()  # one fewer waiting: another endpoint may borrow again
            raise

    def release(self, endpoint: str) -> None:
        self._used -= 1
        held = self._held[endpoint] - 1
        if held:
            self._held[endpoint] = held
        else:
            del self._held[endpoint]
        self._grant()

    def _unwait(self, endpoint: str) -> None:
        left = self._waiting[endpoint] - 1
        if left:
            self._waiting[endpoint] = left
        else:
            del self._waiting[endpoint]
        self._waiting_total -= 1

    def _grant(self) -> None:
        """Hand free slots to the waiting polls that may take them, the longest waiting
        first (among endpoints: few, so a scan of their queues' heads is cheap)."""
        while self._waiting_total and self._used < self.total:
            best: str | None = None
            best_at = -1
            for endpoint, queue in self._queues.items():
                while queue and queue[0][1].done():
                    queue.popleft()  # cancelled while waiting
                if queue and (best is None or queue[0][0] < best_at) and self._may(endpoint):
                    best, best_at = endpoint, queue[0][0]
            if best is None:
                return
            queue = self._queues[best]
            _, waiter = queue.popleft()
            if not queue:
                del self._queues[best]
            self._unwait(best)
            self._take(best)
            waiter.set_result(None)
