"""The two paging dialects of the task-list APIs, over `exporter.cloud.client`'s signed GET.

DCS pages with `offset` (0-based) and a `start_time` window; DMS with `start` and a
`begin_time` window. The references disagree on whether DMS `start` counts from 0 or 1, and
on the DCS window parameter's name, so the reader is built to be exact under every reading:

- pages advance by the number of entries received, starting at 0: a 1-based server then
  repeats one task per page, which deduplication by ID absorbs, and a 0-based server repeats
  none; a server that refuses `start=0` is asked again from 1;
- the time window is always filtered here, whatever the server did with it, and paging
  stops once the list visibly reaches past the window (lists are newest first; a page out of
  that order, or a lone old date, never stops it: see `_past_window`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

from exporter.aio import SharedDeadlines
from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.paging import check_pages
from exporter.core.tasklists import TaskList
from exporter.core.tasks import Task, parse_page

log = logging.getLogger(__name__)


@dataclass
class FetchResult:
    tasks: list[Task]
    pages: int = 0  # one request each
    truncated: bool = False  # stopped at http.max_pages (only when asked to keep what it read)


class TaskReader:
    """Reads whole task lists through a `CloudClient`, learning each host's DMS paging."""

    def __init__(self, client: CloudClient) -> None:
        self.client = client
        # Learned per host: the first index of DMS `start` (0 until a server refuses 0).
        self.dms_first_index: dict[str, int] = {}
        # Every poll's http.poll_timeout (and the poller's wait for a slot): one timer.
        self.deadlines = SharedDeadlines()

    async def fetch_tasks(
        self, target: TaskList, since: float, *, truncate: bool = False
    ) -> FetchResult:
        """Every task created at or after `since` (epoch seconds), deduplicated by ID.

        Tasks without a readable `created_at` are kept: the server returned them for this
        window and nothing says they are outside it. The whole read has a deadline
        (`http.poll_timeout`), so that no server can hold a poll, and its slot, for ever.
        With `truncate` (a history read), reaching `http.max_pages` ends the read with the
        newest tasks read so far instead of failing it.
        """
        limit = self.client.settings.poll_timeout
        try:
            return await self.deadlines.within(self._fetch_tasks(target, since, truncate), limit)
        except asyncio.TimeoutError:
            raise ApiError(
                f"the poll did not finish within {limit:g}s (http.poll_timeout)"
            ) from None

    async def _fetch_tasks(self, target: TaskList, since: float, truncate: bool) -> FetchResult:
        settings = self.client.settings
        page_size = settings.page_size
        window = time.strftime("%Y%m%d%H%M%S", time.gmtime(since))
        host = self.client.parsed(target.base_url)[1]
        if target.dialect == "dcs":
            index_param, window_param, index = "offset", "start_time", 0
        else:
            index_param, window_param = "start", "begin_time"
            index = self.dms_first_index.get(host, 0)
        result = FetchResult(tasks=[])
        seen: dict[str, Task] = {}
        trail: list[float] = []  # the last two creation times seen, in list order
        repeats = 0
        while True:
            if truncate and result.pages >= settings.max_pages:
                result.truncated = True
                break
            check_pages(
                result.pages,
                settings.max_pages,
                "of tasks since the window start; raise http.max_pages or shorten "
                "lookback/catchup_max",
            )
            params = {index_param: str(index), "limit": str(page_size), window_param: window}
            try:
                body = await self.client.request_json(
                    target.url,
                    params,
                    self.client.providers[target.credentials_id],
                    target.service,
                    target.region,
                )
            except ApiError as exc:
                if (
                    target.dialect == "dms"
                    and exc.status == 400
                    and index == 0
                    and result.pages == 0
                ):
                    # A server reading `start` as 1-based may refuse 0: ask again from 1.
                    log.info(
                        "DMS server refuses start=0; paging from 1",
                        extra={"fields": {"host": host}},
                    )
                    self.dms_first_index[host] = index = 1
                    continue
                raise
            result.pages += 1
            try:
                page, raw_count, total = parse_page(body)
            except ValueError as exc:
                raise ApiError(f"unexpected answer: {exc}") from None
            new = 0
            for task in page:
                old = seen.get(task.id)
                if old is None:
                    new += 1
                    seen[task.id] = task
                elif _fresher(task, old):
                    seen[task.id] = task
            if raw_count == 0:
                break
            dated = [t.created_at for t in page if t.created_at is not None]
            if _past_window(trail, dated, since):
                break  # newest first, checked: everything further on is older still
            trail = (trail + dated)[-2:]
            # A full page with nothing new happens once on a 1-based server (one task repeats
            # per page); twice in a row means the server ignores the paging parameter.
            repeats = repeats + 1 if new == 0 and raw_count >= page_size else 0
            if repeats >= 2:
                raise ApiError(
                    "the server returned the same page twice: it does not honour the paging "
                    f"parameter {index_param!r}"
                )
            if total is not None:
                if len(seen) >= total:
                    break
            elif raw_count < page_size:
                break
            index += raw_count
        result.tasks = [t for t in seen.values() if t.created_at is None or t.created_at >= since]
        return result


def _past_window(trail: list[float], dated: list[float], since: float) -> bool:
    """Whether paging may stop: the list has visibly reached tasks older than the window.

    Lists are newest first, but one task with a bogus date must not end a read early: the
    page (with the entry before it) must be in newest-first order, and its last two dates in
    list order must both be older than the window. A single odd date can satisfy neither.
    """
    order = trail[-1:] + dated
    if any(a < b for a, b in itertools.pairwise(order)):
        return False
    tail = (trail + dated)[-2:]
    return len(tail) == 2 and all(ts < since for ts in tail)


def _fresher(a: Task, b: Task) -> bool:
    """Which of two copies of a task (seen on two pages of one poll) is the later state."""
    return (a.updated_at or 0.0, a.status) > (b.updated_at or 0.0, b.status)
