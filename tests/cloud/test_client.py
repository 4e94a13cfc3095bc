"""The classification of the cloud's error answers (`classify`), in-process: what to retry,
what throttling says, and error text that never echoes the request's credentials."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest

from exporter.cloud.client import classify
from exporter.cloud.replies import Reply

pytestmark = pytest.mark.smoke

NOW = datetime.now(timezone.utc).timestamp() // 60 * 60


AUTH = "SDK-HMAC-SHA256 Access=AKVISIBLE123, SignedHeaders=host, Signature=abcdef0123"


def _reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    request = httpx.Request(
        "GET",
        "http://cloud.test/v2/p1/tasks",
        headers={"Authorization": AUTH, "X-Security-Token": "tok-SECRET-1"},
    )
    return Reply(status, httpx.Headers(headers or {}), body, request)


def test_throttling_by_status_or_code_is_retried_after_the_gateway_says() -> None:
    err = classify(_reply(429, b'{"error_code": "X", "error_msg": "slow"}', {"Retry-After": "7"}))
    assert (err.throttled, err.retryable, err.retry_after) == (True, True, 7.0)
    assert str(err) == "throttled by the cloud (HTTP 429 X: slow)"
    for code in ("APIG.0308", "DMS.10240407"):
        err = classify(_reply(400, f'{{"code": "{code}", "message": "m"}}'.encode()))
        assert (err.throttled, err.retryable, err.code, err.retry_after) == (True, True, code, None)
    later = format_datetime(datetime.fromtimestamp(NOW + 3600, timezone.utc), usegmt=True)
    err = classify(_reply(429, b"", {"Retry-After": later}))
    assert err.retry_after is not None
    assert 3000 < err.retry_after <= 3600 + 60
    assert classify(_reply(429, b"", {"Retry-After": "soon"})).retry_after is None
    assert classify(_reply(429, b"", {"Retry-After": "-5"})).retry_after == 0.0


@pytest.mark.parametrize(
    ("status", "retryable", "start"),
    [
        (500, True, "server error (HTTP 500"),
        (503, True, "server error (HTTP 503"),
        (401, False, "authentication or permission refused (HTTP 401"),
        (403, False, "authentication or permission refused (HTTP 403"),
        (404, False, "not found: the instance or project may not exist (HTTP 404"),
        (400, False, "request refused (HTTP 400"),
    ],
)
def test_status_classes(status: int, retryable: bool, start: str) -> None:
    err = classify(_reply(status, b'{"error_code": "E.1", "error_msg": "no"}'))
    assert str(err).startswith(start)
    assert (err.status, err.code, err.retryable, err.throttled) == (status, "E.1", retryable, False)
    if status in (401, 403):
        assert "dcs:instance:getBackgroundTask" in str(err)


def test_error_text_is_cleaned_and_never_echoes_the_request_credentials() -> None:
    echoed = f'{{"error_msg": "bad header {AUTH} token tok-SECRET-1 key AKVISIBLE123"}}'
    err = classify(_reply(401, echoed.encode()))
    for secret in ("AKVISIBLE123", "tok-SECRET-1", "Signature=abcdef0123"):
        assert secret not in str(err)
    not_json = classify(_reply(502, b"<html>\x1b[31m" + b"x" * 1000))
    assert "\x1b" not in str(not_json)
    assert len(str(not_json)) < 300
    assert not_json.code is None
    assert str(classify(_reply(400, b"[1, 2]"))) == "request refused (HTTP 400)"
