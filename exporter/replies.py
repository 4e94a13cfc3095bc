"""Reading what the cloud sends, within bounds: total time, decoded size, JSON depth, text.

Everything from the network is hostile. A reply that trickles one byte at a time defeats a
per-read timeout, a small gzip body can expand a thousandfold, deep JSON can exhaust the
parser's stack, and a string may carry lone surrogates (which SQLite and UTF-8 refuse),
control characters or a megabyte of text that would end up in a label.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

import httpx

from exporter.aio import within

MAX_JSON_DEPTH = 32
# Encodings decoded here, chunk by chunk with a cap on the output; nothing else is asked for.
ACCEPT_ENCODING = "gzip, deflate"

_SURROGATES = re.compile("[\ud800-\udfff]")
_SPACES = re.compile("[\t\n\r\u2028\u2029]+")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
TRUNCATED = "…"


def clean_text(value: str, limit: int) -> str:
    """A cloud string made safe to store, log and export.

    Lone surrogates become U+FFFD, line breaks and tabs a space, other control characters
    go, and text beyond `limit` characters is cut, ending in `…` to say so.
    """
    text = _SURROGATES.sub("\ufffd", value)
    text = _CONTROLS.sub("", _SPACES.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + TRUNCATED
    return text


class ReplyError(Exception):
    """No usable reply: the message is safe to show; `retryable` says whether to try again."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, oversized: bool = False
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.oversized = oversized


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes
    request: httpx.Request

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


def _decoder(encoding: str) -> Any:
    """A zlib decompressor for the reply's Content-Encoding (None: not encoded)."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if codings == ["deflate"]:
        return zlib.decompressobj()
    raise ReplyError(f"unsupported Content-Encoding {encoding[:40]!r}", retryable=False)


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


async def _read(
    http: httpx.AsyncClient,
    method: str,
    url: httpx.URL | str,
    max_bytes: int,
    kwargs: Any,
    direct: httpx.AsyncBaseTransport | None,
) -> Reply:
    headers = {"Accept-Encoding": ACCEPT_ENCODING, **kwargs.pop("headers", {})}
    if direct is not None:
        return await _read_direct(http, direct, method, url, headers, max_bytes, kwargs)
    async with http.stream(method, url, headers=headers, **kwargs) as response:
        return await _decoded(response, response.aiter_raw(), max_bytes)


async def _read_direct(
    http: httpx.AsyncClient,
    transport: httpx.AsyncBaseTransport,
    method: str,
    url: httpx.URL | str,
    headers: dict[str, str],
    max_bytes: int,
    kwargs: Any,
) -> Reply:
    """The request straight to the transport: the client's defaults and the auth's headers,
    without its per-request machinery (redirects, which are off, cookies, event hooks),
    which costs more than the rest of a quiet poll. For auths that answer no challenge."""
    auth: httpx.Auth | None = kwargs.pop("auth", None)
    request = http.build_request(method, url, headers=headers, **kwargs)
    if auth is not None:
        request = next(auth.sync_auth_flow(request))
    response = await transport.handle_async_request(request)
    try:
        response.request = request
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        return await _decoded(response, stream, max_bytes)
    finally:
        await response.aclose()


async def _decoded(response: httpx.Response, raw_chunks: Any, max_bytes: int) -> Reply:
    """The body decoded (gzip, deflate) chunk by chunk, never past `max_bytes`."""
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    chunks: list[bytes] = []
    size = 0

    def add(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > max_bytes:
            raise ReplyError(
                f"the answer is larger than {_size(max_bytes)} once decoded",
                retryable=False,
                status=response.status_code,
                oversized=True,
            )
        chunks.append(data)

    async for raw in raw_chunks:
        if decoder is None:
            add(raw)
            continue
        data = raw
        while data:
            try:
                # Never more output than the room left (plus one byte to notice excess).
                add(decoder.decompress(data, max_bytes - size + 1))
            except zlib.error:
                raise ReplyError(
                    "the answer's compressed body is corrupt",
                    retryable=True,
                    status=response.status_code,
                ) from None
            data = decoder.unconsumed_tail
    return Reply(response.status_code, response.headers, b"".join(chunks), response.request)


async def read_reply(
    http: httpx.AsyncClient,
    method: str,
    url: httpx.URL | str,
    *,
    timeout: float,
    max_bytes: int,
    direct: httpx.AsyncBaseTransport | None = None,
    **kwargs: Any,
) -> Reply:
    """Send one request and read its whole reply within `timeout` seconds in all.

    Raises ReplyError for a timeout, a failed connection or an oversized body.
    """
    try:
        return await within(
            _read(http, method, url, max_bytes, dict(kwargs, timeout=timeout), direct), timeout
        )
    except asyncio.TimeoutError:
        raise ReplyError(f"no complete answer within {timeout:g}s", retryable=True) from None
    except httpx.TimeoutException:
        raise ReplyError(f"no answer within {timeout:g}s", retryable=True) from None
    except httpx.TransportError as exc:
        detail = clean_text(str(exc), 200)
        raise ReplyError(
            f"connection failed ({type(exc).__name__}: {detail})", retryable=True
        ) from None


# Nesting depth by bracket: +1 for `[` and `{`, -1 for `]` and `}`, once strings are removed.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deeply a JSON document nests (0 for a scalar), without parsing it."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


class TooDeep(ValueError):
    """Valid JSON perhaps, but nested deeper than any answer of the APIs."""


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON document no deeper than `max_depth`; ValueError when it is not one."""
    if json_depth(body) > max_depth:
        raise TooDeep(f"the answer's JSON nests deeper than {max_depth} levels")
    return json.loads(body)


# The APIs' timestamps (tasks, IAM tokens, metadata keys): read leniently, UTC by default.
_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: Any) -> float | None:
    """Parse the APIs' `2020-06-17T07:38:42.503Z` (and close variants) to epoch seconds.

    A timestamp without a zone is taken as UTC, as the APIs document UTC everywhere.
    Anything unreadable gives None rather than an exception.
    """
    if not isinstance(value, str):
        return None
    m = _TS_RE.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        tz = timezone.utc
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            offset_min = int(digits[:2]) * 60 + int(digits[2:])
            tz = timezone(sign * timedelta(minutes=offset_min))
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz
        )
    except ValueError:
        return None
    ts = dt.timestamp()
    if frac:
        ts += int(frac) / 10 ** len(frac)
    return ts
