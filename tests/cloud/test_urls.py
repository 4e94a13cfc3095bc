"""A task-list URL parsed by hand gives what httpx would give, and the rest goes to httpx."""

from __future__ import annotations

import random

import httpx
import pytest

from exporter.cloud.urls import Url, endpoint_key

pytestmark = pytest.mark.smoke

PARTS = ("scheme", "host", "port", "netloc", "raw_path", "path", "query", "fragment")

PLAIN = [
    "https://dcs.eu-west-101.myhuaweicloud.eu/v2/0123abcd/instances/5e6f-77/tasks",
    "https://dms.ap-southeast-1.myhuaweicloud.com/v2/p/instances/i/tasks",
    "http://127.0.0.1:8080",
    "http://127.0.0.1:80/a",  # the default port: httpx drops it, so does Url
    "https://h:443/",
    "https://h/a/",
    "https://h/~u_x-y.z",
    "https://1.2.3.4:65535/v1.0/x",
]
LEFT_TO_HTTPX = [
    "https://H/a",  # upper case: httpx lowers it
    "https://h/a/./b",  # dot segments: httpx removes them
    "https://h/a/../b",
    "https://h//a",
    "https://h/a%20b",
    "https://h/a b",
    "https://h/a?x=1",
    "https://h/a#f",
    "https://u:p@h/a",
    "https://[::1]:8/a",
    "https://xn--bcher-kva.de/a",
    "https://bücher.de/a",
    "https://h./a",
    "https://a..b/x",
    "https://h:00443/a",
    "https://h:99999/a",  # a port out of range: httpx takes it as it is, so does Url
    "https://",
    "ftp://h/a",  # httpx takes any scheme (the config refuses this one)
]
INVALID = ["https://h:0x1/a", "http://[::1/a"]


def _same(text: str) -> bool | None:
    """Url(text) next to httpx.URL(text): the same components, or the same error. Whether
    it was parsed by hand (None: both refused it)."""
    try:
        expected = httpx.URL(text)
    except Exception as exc:  # httpx's own error: Url must raise it too
        with pytest.raises(type(exc)):
            Url(text)
        return None
    url = Url(text)
    by_hand = url._httpx is None
    assert {p: getattr(url, p) for p in PARTS} == {p: getattr(expected, p) for p in PARTS}, text
    assert url.httpx == expected
    assert endpoint_key(url) == endpoint_key(expected)
    return by_hand


@pytest.mark.parametrize("text", PLAIN)
def test_plain_urls_are_parsed_by_hand_as_httpx_would(text: str) -> None:
    assert _same(text) is True  # httpx was not asked


@pytest.mark.parametrize("text", LEFT_TO_HTTPX)
def test_anything_else_is_parsed_by_httpx(text: str) -> None:
    assert _same(text) is False


@pytest.mark.parametrize("text", INVALID)
def test_invalid_urls_fail_as_in_httpx(text: str) -> None:
    assert _same(text) is None


def test_random_urls_agree_with_httpx() -> None:
    rng = random.Random(18)
    alphabet = "aZ09.-_~/:%?#@[] Hxn"
    by_hand = 0
    for _ in range(5000):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        for text in (f"https://{tail}", f"http://h{tail}", f"https://h.example:8443/v2{tail}"):
            by_hand += _same(text) is True
    assert by_hand > 500  # the hand path was exercised, not only the fallback
