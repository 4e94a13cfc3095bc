"""Small asyncio helpers for the long-running loops, the same on every supported Python."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """`awaitable`, cancelled after `seconds` with `asyncio.TimeoutError`.

        A deadline on the running task: unlike `asyncio.wait_for` before 3.12, it starts no
        task of its own, which matters on a path taken by every request.
        """
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # 3.10: no asyncio.timeout

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """`awaitable`, cancelled after `seconds` with `asyncio.TimeoutError`."""
        return await asyncio.wait_for(awaitable, seconds)


if sys.version_info >= (3, 11):

    class _Due:
        __slots__ = ("cancelling", "deadline", "expired", "task")

        def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
            self.task = task
            self.deadline = deadline
            self.cancelling = task.cancelling()
            self.expired = False

    class SharedDeadlines:
        """`within` for many tasks at once: their deadlines checked together every `grain`
        seconds by one timer, instead of a timer of their own each.

        Every poll runs under a deadline (`http.poll_timeout`) that it almost never reaches;
        `asyncio.timeout` arms and disarms a timer for each, which at a poll's cost shows.
        A deadline here is noticed up to `grain` late.
        """

        def __init__(self, grain: float = 0.05) -> None:
            self.grain = grain
            self._due: set[_Due] = set()
            self._loop: asyncio.AbstractEventLoop | None = None
            self._timer: asyncio.TimerHandle | None = None

        async def within(self, awaitable: Awaitable[T], seconds: float) -> T:
            """`awaitable`, cancelled with `asyncio.TimeoutError` once `seconds` have passed."""
            # With the loop given, `current_task` does not ask for the running loop, which
            # on 3.11 is a getpid() system call each time.
            loop = self._loop
            task = None if loop is None else asyncio.current_task(loop)
            if task is None:
                loop = asyncio.get_running_loop()
                if loop is not self._loop:  # a new loop (tests run several): start afresh
                    self._loop, self._timer = loop, None
                    self._due.clear()
                task = asyncio.current_task(loop)
                if task is None:
                    return await within(awaitable, seconds)
            due = _Due(task, loop.time() + seconds)
            self._due.add(due)
            if self._timer is None:
                self._timer = loop.call_later(self.grain, self._sweep)
            try:
                return await awaitable
            except asyncio.CancelledError:
                if due.expired:
                    due.expired = False
                    if task.uncancel() <= due.cancelling:
                        raise asyncio.TimeoutError from None
                raise
            finally:
                self._due.discard(due)
                if due.expired:  # cancelled for its deadline, but it ended without seeing it
                    task.uncancel()

        def _sweep(self) -> None:
            self._timer = None
            loop = self._loop
            if loop is None:
                return
            now = loop.time()
            for due in self._due:
                if not due.expired and now >= due.deadline:
                    due.expired = True
                    due.task.cancel()
            if self._due:
                self._timer = loop.call_later(self.grain, self._sweep)

else:  # 3.10: no Task.uncancel

    class SharedDeadlines:
        """`within`, one timer per call, as on 3.10 it must be."""

        def __init__(self, grain: float = 0.05) -> None:
            self.grain = grain

        async def within(self, awaitable: Awaitable[T], seconds: float) -> T:
            return await within(awaitable, seconds)


async def wait_stopped(stop: asyncio.Event, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `stop`; True when it is set.

    Not `asyncio.wait_for`: it signals the timeout with `asyncio.TimeoutError`, which is the
    builtin `TimeoutError` only from Python 3.11 on; `asyncio.wait` returns on every version.
    """
    if stop.is_set():
        return True
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(0.0, timeout))
    finally:
        waiter.cancel()
    return stop.is_set()


def spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Run a loop as a task whose crash is logged: a task's exception is otherwise only
    seen by whoever awaits it, and a dead loop would stop polling without a word."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_log_crash)
    return task


def _log_crash(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error(
            "loop crashed; it runs no more",
            exc_info=exc,
            extra={"fields": {"loop": task.get_name()}},
        )


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop's event loop when it is installed (`pip install '.[fast]'`):
    its loop, timers and readiness callbacks are C, which a poll that costs little else
    notices (README, Sizing). `HUAWEICLOUD_TASK_EXPORTER_LOOP=asyncio` keeps asyncio's."""
    if os.environ.get("HUAWEICLOUD_TASK_EXPORTER_LOOP", "auto") != "asyncio":
        try:
            import uvloop  # noqa: PLC0415 - optional, and only where a loop runs
        except ImportError:
            pass
        else:
            result: T = uvloop.run(main)
            return result
    return asyncio.run(main)
