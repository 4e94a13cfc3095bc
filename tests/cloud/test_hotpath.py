"""What a prepared task-list GET puts on the wire, and when a request is prepared again."""

from __future__ import annotations

import httpx
import pytest

from exporter.cloud.credentials import TokenAuth
from exporter.cloud.hotpath import HotPath
from exporter.cloud.urls import Url
from exporter.cloud.wire import WirePool
from exporter.signing import AkSkAuth

pytestmark = pytest.mark.smoke

URL = "https://dcs.example.com:8443/v2/p1/instances/i1/tasks"


def _hot() -> HotPath:
    client = httpx.AsyncClient(headers={"User-Agent": "ua/1"})
    return HotPath(client, WirePool(None, 1, 1024))


def _lines(data: bytes) -> list[str]:
    assert data.endswith(b"\r\n\r\n")
    return data.decode().split("\r\n")[:-2]


def test_a_signed_request_on_the_wire() -> None:
    hot = _hot()
    url = Url(URL)
    auth = AkSkAuth("AKEXAMPLE", "secret", security_token="tok")
    prepared = hot.prepared(URL, url, auth)
    assert prepared is not None
    assert hot.prepared(URL, url, auth) is prepared  # prepared once
    data, extra = prepared.request("limit=10&offset=0&start_time=20261201000000")
    lines = _lines(data)
    assert (
        lines[0]
        == "GET /v2/p1/instances/i1/tasks?limit=10&offset=0&start_time=20261201000000 HTTP/1.1"
    )
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Host"] == "dcs.example.com:8443"
    assert headers["Accept-Encoding"] == "gzip, deflate"
    assert headers["User-Agent"] == "ua/1"
    assert headers["X-Security-Token"] == "tok"
    assert headers["Authorization"] == extra["Authorization"]
    assert headers["Authorization"].startswith(
        "SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders=host;x-sdk-date;x-security-token, "
    )
    assert "secret" not in data.decode()


def test_renewed_credentials_prepare_the_request_again() -> None:
    hot = _hot()
    url = Url(URL)
    first = hot.prepared(URL, url, AkSkAuth("AKOLD", "s1"))
    renewed = hot.prepared(URL, url, AkSkAuth("AKNEW", "s2"))
    assert first is not None
    assert renewed is not None
    assert renewed is not first
    assert b"Access=AKNEW," in renewed.request("limit=1")[0]
    token = hot.prepared(URL, url, TokenAuth("iam-token-value"))
    assert token is not None
    data, _ = token.request("limit=1")
    assert "X-Auth-Token: iam-token-value" in _lines(data)
    assert b"Authorization" not in data


def test_what_is_not_a_plain_task_list_get_goes_through_httpx() -> None:
    hot = _hot()
    auth = AkSkAuth("AK", "SK")
    with_query = URL + "?x=1"
    assert hot.prepared(with_query, Url(with_query), auth) is None
    assert hot.prepared(URL, Url(URL), httpx.BasicAuth("u", "p")) is None
