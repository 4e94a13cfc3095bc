"""Task-list URLs, parsed once each: by hand when they are plain, by httpx otherwise.

`httpx.URL` checks every character of its input in Python (27 us for a task-list URL, 3 %
of a `--once` over 1,000 task lists, once per list). The URLs the exporter polls are
almost always plain: `http(s)`, a lower-case ASCII host name or IPv4 address, a port, a
path of unreserved characters. Those are split here with one regular expression, into
the very components httpx would give (the default port dropped, an empty path read as
`/`); any other URL (user info, IPv6, IDNA, percent-escapes, dot segments, a query, upper
case) is left to httpx, so that nothing here has to agree with httpx on the hard cases.
"""

from __future__ import annotations

import re

import httpx

_PLAIN = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"(?P<path>(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?)"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Url:
    """What the task-list polls read of a URL, with httpx's names and values; `httpx` is
    the `httpx.URL` itself, built when something needs it (a reply that failed, a poll
    that goes through httpx)."""

    __slots__ = (
        *("_httpx", "fragment", "host", "netloc", "path"),
        *("port", "query", "raw_path", "scheme", "text"),
    )

    def __init__(self, text: str) -> None:
        self.text = text
        self._httpx: httpx.URL | None = None
        m = _PLAIN.fullmatch(text)
        port = int(m["port"]) if m is not None and m["port"] else None
        if m is None or "xn--" in m["host"] or ".." in m["host"] or (port or 0) > 65535:
            url = self._httpx = httpx.URL(text)
            self.scheme, self.host, self.port = url.scheme, url.host, url.port
            self.netloc, self.raw_path, self.path = url.netloc, url.raw_path, url.path
            self.query, self.fragment = url.query, url.fragment
            return
        self.scheme, self.host = m["scheme"], m["host"]
        self.port = None if port == _DEFAULT_PORTS[self.scheme] else port
        netloc = self.host if self.port is None else f"{self.host}:{self.port}"
        self.netloc = netloc.encode("ascii")
        self.path = m["path"] or "/"
        self.raw_path = self.path.encode("ascii")
        self.query, self.fragment = b"", ""

    @property
    def httpx(self) -> httpx.URL:
        if self._httpx is None:
            self._httpx = httpx.URL(self.text)
        return self._httpx

    def __repr__(self) -> str:
        return f"Url({self.text!r})"


def endpoint_key(url: Url | httpx.URL) -> str:
    """What rate limits and learned dialect quirks are kept per: the endpoint's host and port."""
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
