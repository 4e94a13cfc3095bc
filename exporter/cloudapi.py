"""Reading task lists from the cloud: HTTP with retries and throttling, and both paging dialects.

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
import email.utils
import itertools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from exporter.aio import within
from exporter.config import HttpSettings
from exporter.credentials import CredentialError, CredentialProvider
from exporter.logs import REDACTED, scrub
from exporter.ratelimit import HostLimiters
from exporter.replies import Reply, ReplyError, TooDeep, clean_text, parse_json, read_reply
from exporter.selfmetrics import SelfMetrics
from exporter.tasklists import TaskList
from exporter.tasks import Task, parse_page

log = logging.getLogger(__name__)

THROTTLE_CODES = frozenset({"APIG.0308", "DMS.10240407"})
MAX_RETRY_AFTER = 120.0


MAX_CACHED_URLS = 100_000


def endpoint_key(url: httpx.URL) -> str:
    """What rate limits and learned dialect quirks are kept per: the endpoint's host and port."""
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


class ApiError(Exception):
    """A failed call, with a message safe to log and show (no secrets, no request headers)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        throttled: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(scrub(message))
        self.status = status
        self.code = code
        self.retryable = retryable
        self.throttled = throttled
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_fields(body: bytes) -> tuple[str | None, str]:
    """The code and message of an error body, cleaned: they are logged and shown on `/`."""
    try:
        data = parse_json(body)
    except ValueError:
        return None, clean_text(body[:300].decode("utf-8", errors="replace"), 200)
    if not isinstance(data, dict):
        return None, ""
    code = data.get("error_code") or data.get("code")
    msg = data.get("error_msg") or data.get("message") or ""
    code_text = clean_text(str(code), 64) if code else None
    return code_text or None, clean_text(str(msg), 300)


_ACCESS_RE = re.compile(r"Access=([^,\s]+)")


def _redact_request(text: str, request: httpx.Request) -> str:
    """Remove what a gateway may echo of the request's credentials from an error text.

    The signature header names the access key; tokens are whole headers.
    """
    for name in ("Authorization", "X-Auth-Token", "X-Security-Token"):
        value = request.headers.get(name)
        if not value:
            continue
        secrets = [value]
        if name == "Authorization":
            secrets += _ACCESS_RE.findall(value)
        for secret in secrets:
            if len(secret) >= 4:
                text = text.replace(secret, REDACTED)
    return text


def classify(response: Reply) -> ApiError:
    """Turn a non-2xx answer into an ApiError that says whether to retry."""
    status = response.status
    code, msg = _error_fields(response.body)
    msg = _redact_request(msg, response.request)
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {msg}" if msg else "")
    if status == 429 or code in THROTTLE_CODES:
        return ApiError(
            f"throttled by the cloud ({detail})",
            status=status,
            code=code,
            retryable=True,
            throttled=True,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        return ApiError(f"server error ({detail})", status=status, code=code, retryable=True)
    if status in (401, 403):
        return ApiError(
            f"authentication or permission refused ({detail}); check the credentials and the "
            "IAM permissions (dcs:instance:getBackgroundTask, dcs:task:list, "
            "dms:instance:getBackgroundTask)",
            status=status,
            code=code,
        )
    if status == 404:
        return ApiError(
            f"not found: the instance or project may not exist ({detail})", status=status, code=code
        )
    return ApiError(f"request refused ({detail})", status=status, code=code)


@dataclass
class FetchResult:
    tasks: list[Task]
    requests: int = 0
    pages: int = 0


class CloudClient:
    """Sends the GET requests of a poll: pacing, timeouts, retries with backoff and jitter."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: HttpSettings,
        metrics: SelfMetrics,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        direct: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = http
        # `http`'s own transport, to send the task-list requests to without the client's
        # per-request machinery (exporter.replies); None: through the client (a proxy).
        self.direct = direct
        self.settings = settings
        self.metrics = metrics
        self.limiters = HostLimiters(settings.requests_per_second, settings.burst)
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Learned per host: the first index of DMS `start` (0 until a server refuses 0).
        self.dms_first_index: dict[str, int] = {}
        self._urls: dict[str, tuple[httpx.URL, str]] = {}

    def _parsed(self, url_text: str) -> tuple[httpx.URL, str]:
        """A URL and its endpoint key, parsed once (every poll asks for the same ones)."""
        found = self._urls.get(url_text)
        if found is None:
            if len(self._urls) >= MAX_CACHED_URLS:
                self._urls.clear()  # task lists come and go: never grow without bound
            url = httpx.URL(url_text)
            found = self._urls[url_text] = (url, endpoint_key(url))
        return found

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff_max, self.settings.backoff_initial * 2.0**attempt)
        return base * (0.5 + self._rng.random() / 2)

    async def get_json(self, target: TaskList, params: dict[str, str]) -> Any:
        return await self.request_json(
            target.url, params, target.credentials, target.service, target.region
        )

    async def request_json(
        self,
        url_text: str,
        params: dict[str, str],
        credentials: CredentialProvider,
        service: str,
        region: str,
    ) -> Any:
        """GET a JSON document: paced per endpoint, retried, and counted by status code."""
        url, host = self._parsed(url_text)
        bucket = self.limiters.for_host(host)
        last: ApiError | None = None
        refreshed = False
        attempt = 0
        while True:
            try:
                auth = await credentials.auth()
            except CredentialError as exc:
                raise ApiError(f"credentials: {exc}") from None
            await bucket.acquire()
            started = time.monotonic()
            try:
                response = await read_reply(
                    self.http,
                    "GET",
                    url,
                    direct=self.direct,
                    params=params,
                    auth=auth,
                    timeout=self.settings.timeout,
                    max_bytes=self.settings.max_response_bytes,
                )
            except ReplyError as exc:
                hint = " (http.max_response_bytes)" if exc.oversized else ""
                last = ApiError(f"{exc}{hint}", status=exc.status, retryable=exc.retryable)
                code = str(exc.status) if exc.status is not None else "error"
                self.metrics.api_requests.labels(service, region, code).inc()
            else:
                self.metrics.api_requests.labels(service, region, str(response.status)).inc()
                self.metrics.api_request_duration.labels(service, region).observe(
                    time.monotonic() - started
                )
                if response.is_success:
                    try:
                        return parse_json(response.body)
                    except TooDeep as exc:
                        last = ApiError(str(exc), status=200)
                    except ValueError:
                        last = ApiError("the answer is not valid JSON", status=200, retryable=True)
                else:
                    last = classify(response)
                    if last.throttled:
                        self.metrics.api_throttled.labels(service, region).inc()
                    if response.status == 401 and credentials.renewable and not refreshed:
                        # Expired temporary keys or token: renew them and try once more.
                        credentials.invalidate()
                        refreshed = True
                        continue
            if not last.retryable or attempt >= self.settings.retries:
                break
            delay = self._backoff(attempt)
            attempt += 1
            if last.retry_after is not None:
                if last.retry_after > MAX_RETRY_AFTER:
                    break
                delay = max(delay, last.retry_after)
                bucket.pause_until(time.monotonic() + last.retry_after)
            log.debug(
                "retrying",
                extra={"fields": {"url": url.path, "error": str(last), "delay": round(delay, 3)}},
            )
            await self._sleep(delay)
        assert last is not None
        raise last

    async def fetch_tasks(self, target: TaskList, since: float) -> FetchResult:
        """Every task created at or after `since` (epoch seconds), deduplicated by ID.

        Tasks without a readable `created_at` are kept: the server returned them for this
        window and nothing says they are outside it. The whole read has a deadline
        (`http.poll_timeout`), so that no server can hold a poll, and its slot, for ever.
        """
        limit = self.settings.poll_timeout
        try:
            return await within(self._fetch_tasks(target, since), limit)
        except asyncio.TimeoutError:
            raise ApiError(
                f"the poll did not finish within {limit:g}s (http.poll_timeout)"
            ) from None

    async def _fetch_tasks(self, target: TaskList, since: float) -> FetchResult:
        page_size = self.settings.page_size
        window = datetime.fromtimestamp(since, timezone.utc).strftime("%Y%m%d%H%M%S")
        host = self._parsed(target.base_url)[1]
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
            if result.pages >= self.settings.max_pages:
                raise ApiError(
                    f"more than {self.settings.max_pages} pages of tasks since the window start; "
                    "raise http.max_pages or shorten lookback/catchup_max"
                )
            params = {index_param: str(index), "limit": str(page_size), window_param: window}
            try:
                body = await self.get_json(target, params)
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
            result.requests += 1
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
