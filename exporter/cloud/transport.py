"""A lean HTTP/1.1 transport for httpx: keep-alive connections per origin, nothing else.

httpx's default stack (httpcore's pool, anyio, h11) costs more CPU per request than a whole
quiet poll may: its pool scans every connection (with a socket poll each) on every request,
quadratically when many are idle. The exporter only ever sends small GETs to a few origins,
so this transport keeps a stack of idle connections per origin, writes the request in one
go and reads the whole answer itself, with bounds on the status line, the headers, chunk
lines and the body. It plugs in under httpx, so everything above it (auth, redirects off, decoding,
streaming, timeouts as httpx exceptions) is unchanged. A proxy is left to httpx's own
transport (`exporter.app`). The task-list polls skip httpx altogether: they go out through
`wire`, this transport's pool of `exporter.cloud.wire` connections.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx

from exporter.aio import within
from exporter.cloud.wire import MAX_CHUNK_LINE, MAX_HEAD, WirePool, parse_head

READ_SIZE = 64 * 1024
SLICE = 16 * 1024  # what httpx's decoders get at a time
MAX_BODY = 16 * 2**20  # bytes on the wire; decoded size is bounded above it (cloudapi)

Origin = tuple[str, str, int]


class _Connection:
    __slots__ = ("origin", "reader", "writer")

    def __init__(
        self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    found = request.extensions.get("timeout")
    return found if isinstance(found, dict) else {}


async def _within(awaitable: Any, seconds: float | None, error: type[Exception]) -> Any:
    """`awaitable`, or `error` (an httpx timeout) after `seconds`."""
    if seconds is None:
        return await awaitable
    try:
        return await within(awaitable, seconds)
    except asyncio.TimeoutError:
        raise error(f"no progress within {seconds:g}s") from None


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive, over plain TCP or TLS, for httpx.AsyncClient."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        max_idle_per_origin: int = 16,
        max_body: int = MAX_BODY,
    ) -> None:
        self._ssl = ssl_context
        self._max_idle = max_idle_per_origin
        self._max_body = max_body
        self._idle: dict[Origin, list[_Connection]] = {}
        # The task-list polls' own path, on connections of its own (exporter.cloud.hotpath).
        self.wire = WirePool(ssl_context, max_idle_per_origin, max_body)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts = _timeouts(request)
        head = self._head(request)
        body = request.content
        while True:
            conn = self._take(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, timeouts.get("connect"))
            try:
                conn.writer.write(head + body if body else head)
                await _within(conn.writer.drain(), timeouts.get("write"), httpx.WriteTimeout)
                status, reason, headers = await _within(
                    self._read_head(conn), timeouts.get("read"), httpx.ReadTimeout
                )
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                conn.close()
                if reused:
                    continue  # a kept-alive connection the server had closed: a new one
                raise httpx.ReadError(f"connection lost: {type(exc).__name__}") from None
            except BaseException:
                conn.close()
                raise
            break
        try:
            body_reader = _BodyReader(
                conn.reader, headers, request.method, status, self._max_body, timeouts.get("read")
            )
            content = await body_reader.read()
        except (ConnectionError, OSError) as exc:
            conn.close()
            raise httpx.ReadError(f"connection lost: {type(exc).__name__}") from None
        except BaseException:
            conn.close()
            raise
        if body_reader.keep_alive:
            self._give_back(conn)
        else:
            conn.close()
        return httpx.Response(
            status,
            headers=headers,
            stream=_Buffered(content),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    @staticmethod
    def _head(request: httpx.Request) -> bytes:
        url = request.url
        target = url.raw_path or b"/"
        lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1\r\n"]
        has_host = False
        for name, value in request.headers.raw:
            if name.lower() == b"host":
                has_host = True
            lines.append(name + b": " + value + b"\r\n")
        if not has_host:
            lines.insert(1, b"Host: " + url.netloc + b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _take(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        while stack:
            conn = stack.pop()
            if conn.reader.at_eof() or conn.writer.is_closing():
                conn.close()
                continue
            return conn
        return None

    def _give_back(self, conn: _Connection) -> None:
        stack = self._idle.setdefault(conn.origin, [])
        if len(stack) >= self._max_idle:
            conn.close()
            return
        stack.append(conn)

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self._ssl if scheme == "https" else None
        if scheme == "https" and tls is None:
            tls = ssl.create_default_context()
        try:
            reader, writer = await _within(
                asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=MAX_HEAD
                ),
                timeout,
                httpx.ConnectTimeout,
            )
        except httpx.ConnectTimeout:
            raise
        except ssl.SSLError as exc:
            raise httpx.ConnectError(f"TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise httpx.ConnectError(exc.strerror or str(exc)) from None
        return _Connection(origin, reader, writer)

    async def _read_head(self, conn: _Connection) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            raw = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError("response head over 64 KiB") from None
        return parse_head(raw[:-4])

    async def aclose(self) -> None:
        self.wire.close()
        for stack in self._idle.values():
            for conn in stack:
                conn.close()
        self._idle.clear()


class _Buffered(httpx.AsyncByteStream):
    """A body already read off the connection, handed to httpx in slices (so that its
    decoders never inflate more than one slice's worth at a time)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._at = 0

    def __aiter__(self) -> _Buffered:
        return self

    async def __anext__(self) -> bytes:
        if self._at >= len(self._body):
            raise StopAsyncIteration
        piece = self._body[self._at : self._at + SLICE]
        self._at += SLICE
        return piece


class _BodyReader:
    """Reads one response body by Content-Length, chunked or until the server closes, at
    most `limit` bytes; says whether the connection can carry another request."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        headers: list[tuple[bytes, bytes]],
        method: str,
        status: int,
        limit: int,
        read_timeout: float | None,
    ) -> None:
        self._reader = reader
        self._timeout = read_timeout
        self._limit = limit
        values = {k.lower(): v for k, v in headers}
        self.keep_alive = values.get(b"connection", b"").lower() != b"close"
        self._chunked = b"chunked" in values.get(b"transfer-encoding", b"").lower()
        self._length: int | None = None
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._length = 0
        elif not self._chunked and b"content-length" in values:
            text = values[b"content-length"]
            if not text.isdigit():
                raise httpx.RemoteProtocolError("invalid Content-Length")
            self._length = int(text)
            if self._length > limit:
                raise httpx.RemoteProtocolError(f"response body over {limit} bytes")
        elif not self._chunked:
            self.keep_alive = False  # delimited by the end of the connection

    async def _exactly(self, n: int) -> bytes:
        try:
            return bytes(
                await _within(self._reader.readexactly(n), self._timeout, httpx.ReadTimeout)
            )
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError("connection closed before the body ended") from None

    async def _line(self) -> bytes:
        try:
            line = await _within(self._reader.readuntil(b"\r\n"), self._timeout, httpx.ReadTimeout)
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError("chunk line too long") from None
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError("connection closed inside a chunked body") from None
        if len(line) > MAX_CHUNK_LINE:
            raise httpx.RemoteProtocolError("chunk line too long")
        return bytes(line)

    async def read(self) -> bytes:
        if self._length is not None:
            return await self._exactly(self._length) if self._length else b""
        parts: list[bytes] = []
        total = 0
        if self._chunked:
            while True:
                size_text = (await self._line()).split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError("invalid chunk size") from None
                if size == 0:
                    while (await self._line()) != b"\r\n":  # trailers
                        pass
                    return b"".join(parts)
                total += size
                if total > self._limit:
                    raise httpx.RemoteProtocolError(f"response body over {self._limit} bytes")
                parts.append(await self._exactly(size))
                if await self._line() != b"\r\n":
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF")
        while data := await _within(self._reader.read(READ_SIZE), self._timeout, httpx.ReadTimeout):
            total += len(data)
            if total > self._limit:
                raise httpx.RemoteProtocolError(f"response body over {self._limit} bytes")
            parts.append(bytes(data))
        return b"".join(parts)
