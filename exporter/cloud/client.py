"""Signed GET requests to the cloud: pacing per endpoint, retries, throttling, renewal.

A failed call becomes an `ApiError` whose message is safe to log and show, and which says
whether trying again may help (`classify`). What is asked for, and how its pages follow
each other, is `exporter.polling.dialects`'s business.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from datetime import datetime, timezone
from typing import Any

import httpx

from exporter.cloud.credentials import CredentialError, CredentialProvider
from exporter.cloud.hotpath import Answered, HotPath
from exporter.cloud.ratelimit import HostLimiters
from exporter.cloud.replies import Reply, ReplyError, read_reply
from exporter.cloud.transport import LeanTransport
from exporter.cloud.urls import Url, endpoint_key
from exporter.config import HttpSettings
from exporter.telemetry.logs import REDACTED, scrub
from exporter.telemetry.selfmetrics import SelfMetrics
from exporter.text import TooDeep, clean_text, parse_json

log = logging.getLogger(__name__)

THROTTLE_CODES = frozenset({"APIG.0308", "DMS.10240407"})
MAX_RETRY_AFTER = 120.0


MAX_CACHED_URLS = 100_000


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


class CloudClient:
    """Sends the GET requests of a poll: pacing, timeouts, retries with backoff and jitter."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: HttpSettings,
        metrics: SelfMetrics,
        direct: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = http
        # `http`'s own transport, to send the task-list requests to without the client's
        # per-request machinery (exporter.cloud.replies); None: through the client (a proxy).
        self.direct = direct
        # Task-list polls over the lean transport skip httpx altogether (prepared requests).
        self.hot = HotPath(http, direct.wire) if isinstance(direct, LeanTransport) else None
        # The labelled children of the request metrics, looked up once each.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.settings = settings
        self.metrics = metrics
        self.limiters = HostLimiters(settings.requests_per_second, settings.burst)
        self._urls: dict[str, tuple[Url, str]] = {}
        # The credential providers task lists name by `credentials_id`.
        self.providers: dict[str, CredentialProvider] = {}
        self._provider_ids: dict[int, str] = {}

    def register_credentials(self, provider: CredentialProvider) -> str:
        """The ID task lists name `provider` by (one per provider, however often asked)."""
        found = self._provider_ids.get(id(provider))
        if found is None:
            found = self._provider_ids[id(provider)] = f"credentials/{len(self.providers)}"
            self.providers[found] = provider
        return found

    def parsed(self, url_text: str) -> tuple[Url, str]:
        """A URL and its endpoint key, parsed once (every poll asks for the same ones)."""
        found = self._urls.get(url_text)
        if found is None:
            if len(self._urls) >= MAX_CACHED_URLS:
                self._urls.clear()  # task lists come and go: never grow without bound
            url = Url(url_text)
            found = self._urls[url_text] = (url, endpoint_key(url))
        return found

    def _metrics(self, service: str, region: str, code: str) -> tuple[Any, Any]:
        """The request counter and duration histogram children (the codes are few)."""
        key = (service, region, code)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self.metrics.api_requests.labels(service, region, code),
                self.metrics.api_request_duration.labels(service, region),
            )
        return found

    async def _get(
        self, url_text: str, url: Url, params: dict[str, str], auth: httpx.Auth
    ) -> Answered:
        """One GET: prepared over the wire when it can be, else through httpx."""
        settings = self.settings
        if self.hot is not None:
            prepared = self.hot.prepared(url_text, url, auth)
            if prepared is not None:
                return await self.hot.get(
                    prepared, params, settings.timeout, settings.max_response_bytes
                )
        response = await read_reply(
            self.http,
            "GET",
            url.httpx,
            direct=self.direct,
            params=params,
            auth=auth,
            timeout=settings.timeout,
            max_bytes=settings.max_response_bytes,
        )
        return response.status, response.body, lambda: response

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff_max, self.settings.backoff_initial * 2.0**attempt)
        return base * (0.5 + random.random() / 2)

    async def request_json(
        self,
        url_text: str,
        params: dict[str, str],
        credentials: CredentialProvider,
        service: str,
        region: str,
    ) -> Any:
        """GET a JSON document: paced per endpoint, retried, and counted by status code."""
        url, host = self.parsed(url_text)
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
                status, body, reply = await self._get(url_text, url, params, auth)
            except ReplyError as exc:
                hint = " (http.max_response_bytes)" if exc.oversized else ""
                last = ApiError(f"{exc}{hint}", status=exc.status, retryable=exc.retryable)
                code = str(exc.status) if exc.status is not None else "error"
                self._metrics(service, region, code)[0].inc()
            else:
                counter, duration = self._metrics(service, region, str(status))
                counter.inc()
                duration.observe(time.monotonic() - started)
                if 200 <= status < 300:
                    try:
                        return parse_json(body)
                    except TooDeep as exc:
                        last = ApiError(str(exc), status=200)
                    except ValueError:
                        last = ApiError("the answer is not valid JSON", status=200, retryable=True)
                else:
                    last = classify(reply())
                    if last.throttled:
                        self.metrics.api_throttled.labels(service, region).inc()
                    if status == 401 and credentials.renewable and not refreshed:
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
            await asyncio.sleep(delay)
        assert last is not None
        raise last
