"""Small asyncio helpers for the long-running loops, the same on every supported Python."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


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
