"""Reading what the cloud sends, within bounds: total time and decoded size.

Everything from the network is hostile. A reply that trickles one byte at a time defeats a
per-read timeout and a small gzip body can expand a thousandfold; so a reply is read within
one deadline for the whole of it, and decoded chunk by chunk with a cap on the output. What
the body then holds (JSON depth, strings) is checked by `exporter.text`.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Any

import httpx

from exporter.aio import within
from exporter.text import clean_text

# Encodings decoded here, chunk by chunk with a cap on the output; nothing else is asked for.
ACCEPT_ENCODING = "gzip, deflate"


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
    if not encoding:
        return None
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


def decode_body(encoding: str, raw: bytes, max_bytes: int, status: int) -> bytes:
    """A body read whole (gzip, deflate) decoded slice by slice, never past `max_bytes`."""
    decoder = _decoder(encoding)
    if decoder is None:
        if len(raw) > max_bytes:
            raise _oversized(max_bytes, status)
        return raw
    chunks: list[bytes] = []
    size = 0
    data = raw
    while data:
        try:
            # Never more output than the room left (plus one byte to notice excess).
            out = decoder.decompress(data, max_bytes - size + 1)
        except zlib.error:
            raise ReplyError(
                "the answer's compressed body is corrupt", retryable=True, status=status
            ) from None
        size += len(out)
        if size > max_bytes:
            raise _oversized(max_bytes, status)
        chunks.append(out)
        data = decoder.unconsumed_tail
    return b"".join(chunks)


def _oversized(max_bytes: int, status: int) -> ReplyError:
    return ReplyError(
        f"the answer is larger than {_size(max_bytes)} once decoded",
        retryable=False,
        status=status,
        oversized=True,
    )


async def _decoded(response: httpx.Response, raw_chunks: Any, max_bytes: int) -> Reply:
    """The body decoded (gzip, deflate) chunk by chunk, never past `max_bytes`."""
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    chunks: list[bytes] = []
    size = 0

    def add(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > max_bytes:
            raise _oversized(max_bytes, response.status_code)
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
    except httpx.TransportError as exc:
        raise failure(exc, timeout) from None


def failure(exc: httpx.TransportError, timeout: float) -> ReplyError:
    """What a failed exchange says: a timeout, or the connection's failure, cleaned."""
    if isinstance(exc, httpx.TimeoutException):
        return ReplyError(f"no answer within {timeout:g}s", retryable=True)
    detail = clean_text(str(exc), 200)
    return ReplyError(f"connection failed ({type(exc).__name__}: {detail})", retryable=True)
