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
