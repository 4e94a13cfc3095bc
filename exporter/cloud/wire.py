"""HTTP/1.1 on the wire for the task-list polls: bytes out, an answer parsed from the bytes in.

A quiet poll is one small GET and a tiny answer; going through streams, a transport object
and a timer per read costs several times the work itself. Here a connection is a
non-blocking socket (TLS on the socket itself, `exporter.cloud.sockets`) read from the
loop's readiness callback: the request is written in one call, the answer is parsed as it
arrives (status line, headers, then a body by Content-Length, chunked or up to the close)
and hands itself over whole. Bounds, as in `exporter.cloud.transport`: the head (64 KiB,
100 headers), chunk lines, the body on the wire. Deadlines are checked by one periodic sweep
for every request in flight (`Deadlines`) rather than one timer per request. Decoding and
the JSON's own bounds are the caller's (`exporter.cloud.hotpath`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import NamedTuple, cast

import httpx

from exporter.aio import within
from exporter.cloud.sockets import open_socket

MAX_HEAD = 64 * 1024  # status line and headers together
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024
SWEEP = 0.05  # how late a deadline may be noticed, in seconds
RECV = 256 * 1024  # read at most this much in one call (TLS: one record at a time)

Origin = tuple[str, str, int]
Header = tuple[bytes, bytes]


def parse_head(raw: bytes) -> tuple[int, bytes, list[Header]]:
    """Status, reason and headers of a response head (without its final blank line)."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError("not an HTTP/1.x status line")
    if len(lines) - 1 > MAX_HEADERS:
        raise httpx.RemoteProtocolError(f"more than {MAX_HEADERS} response headers")
    headers: list[Header] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError("malformed response header")
        headers.append((name, value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else b"", headers


class Answer(NamedTuple):
    status: int
    headers: list[Header]
    body: bytes  # as it came, still encoded
    encoding: str = ""  # its Content-Encoding (the last one, as the headers say)


class Dropped(Exception):
    """The connection ended before any byte of the answer: a kept-alive one may be stale."""


class Expired(Exception):
    """The request's deadline passed."""


class Deadlines:
    """Deadlines (`time.monotonic()`) of the requests in flight, checked together every
    `SWEEP` seconds.

    Adding and dropping one is a dict operation; one timer runs while any is in flight, on
    the loop of the connection that started it (not asked of asyncio: on 3.11 each ask is a
    getpid() system call).
    """

    def __init__(self) -> None:
        self._due: dict[_Connection, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, conn: _Connection, deadline: float) -> None:
        self._due[conn] = deadline
        if self._timer is None:
            self._loop = conn.loop
            self._timer = conn.loop.call_later(SWEEP, self._sweep)

    def discard(self, conn: _Connection) -> None:
        self._due.pop(conn, None)

    def _sweep(self) -> None:
        self._timer = None
        now = time.monotonic()
        for conn, deadline in list(self._due.items()):
            if now >= deadline:
                del self._due[conn]
                conn.fail(Expired())
        if self._due and self._loop is not None:
            self._timer = self._loop.call_later(SWEEP, self._sweep)


class _Connection:
    """One kept-alive connection carrying one request at a time, on a non-blocking socket
    (plain, or an `ssl.SSLSocket`) read from the loop's readiness callback: while it is
    open, it is watched, so a server that closes an idle connection is noticed at once."""

    def __init__(self, origin: Origin, limit: int, sock: socket.socket) -> None:
        self.origin = origin
        self._limit = limit
        self.sock = sock
        self._fd = sock.fileno()
        self._tls = isinstance(sock, ssl.SSLSocket)
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self._waiter: asyncio.Future[Answer] | None = None
        self._out: memoryview | None = None  # what is left to write of a request
        self._buf = bytearray()
        self._start()
        self.loop.add_reader(self._fd, self._readable)

    def _start(self) -> None:
        self._buf.clear()
        self._status = -1  # no head yet
        self._headers: list[Header] = []
        self._length: int | None = None  # None: chunked or up to the close
        self._chunked = False
        self.keep_alive = True
        self._encoding = ""
        self._at = 0  # parsed up to here (chunked)
        self._need = -1  # chunked: bytes of the current chunk still due; -1: a size line
        self._trailers = False
        self._parts: list[bytes] = []
        self._total = 0

    # -- the socket ----------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self.sock
        while not self.closed:
            try:
                data = sock.recv(RECV)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:  # TLS must write before it reads on (rare)
                self.loop.remove_reader(self._fd)
                self.loop.add_writer(self._fd, self._read_again)
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            except OSError:
                data = b""  # reset or broken: the end of the connection, as for asyncio
            if not data:
                self._ended()
                return
            self._received(data)
            # Called again while the socket has bytes. A TLS read returns one record (at
            # most 16 KiB) whole, so only a read that filled the buffer may leave bytes in
            # the TLS layer the socket's readiness does not show.
            if not self._tls or len(data) < RECV or not cast(ssl.SSLSocket, sock).pending():
                return

    def _read_again(self) -> None:
        self.loop.remove_writer(self._fd)
        if not self.closed:
            self.loop.add_reader(self._fd, self._readable)
            self._readable()

    def _send(self, data: bytes | memoryview) -> None:
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError:
            self._ended()  # a stale kept-alive connection: Dropped, and tried again
            return
        if sent < len(data):
            first = self._out is None
            self._out = memoryview(data)[sent:]
            if first:
                self.loop.add_writer(self._fd, self._writable)
        elif self._out is not None:
            self._out = None
            self.loop.remove_writer(self._fd)

    def _writable(self) -> None:
        if self._out is not None and not self.closed:
            self._send(self._out)

    def _received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._buf += data
        try:
            answer = self._parse(eof=False)
        except httpx.TransportError as exc:
            self.fail(exc)
            return
        if answer is not None:
            self._waiter.set_result(answer)

    def _ended(self) -> None:
        self.close()
        if self._waiter is None or self._waiter.done():
            return
        if not self._buf and self._status < 0:
            self._waiter.set_exception(Dropped())
            return
        try:
            answer = self._parse(eof=True)
        except httpx.TransportError as exc:
            self._waiter.set_exception(exc)
            return
        if answer is None:
            error = (
                "connection closed inside a chunked body"
                if self._chunked
                else "connection closed before the body ended"
                if self._status >= 0
                else "connection lost: IncompleteReadError"
            )
            kind = httpx.RemoteProtocolError if self._status >= 0 else httpx.ReadError
            self._waiter.set_exception(kind(error))
        else:
            self._waiter.set_result(answer)

    # -- one exchange --------------------------------------------------------------------------

    async def exchange(self, data: bytes, deadline: float, deadlines: Deadlines) -> Answer:
        if self.closed:
            raise Dropped()
        self._start()
        waiter: asyncio.Future[Answer] = self.loop.create_future()
        self._waiter = waiter
        deadlines.add(self, deadline)
        try:
            self._send(data)
            return await waiter
        except BaseException:
            self.close()
            raise
        finally:
            deadlines.discard(self)
            self._waiter = None

    def fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self._fd)
        self.loop.remove_writer(self._fd)
        self._out = None
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                sock.unwrap()  # says close_notify; does not wait for the server's
        sock.close()

    # -- parsing -------------------------------------------------------------------------------

    def _parse(self, eof: bool) -> Answer | None:
        buf = self._buf
        if self._status < 0:
            end = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise httpx.RemoteProtocolError("response head over 64 KiB")
                return None
            self._status, _, self._headers = parse_head(bytes(buf[:end]))
            self._framing()
            del buf[: end + 4]
        if self._length is not None:
            if len(buf) < self._length:
                return None
            if len(buf) > self._length:
                self.keep_alive = False  # more than was announced: do not trust what follows
            return Answer(self._status, self._headers, bytes(buf[: self._length]), self._encoding)
        if self._chunked:
            return self._chunks()
        if len(buf) > self._limit:
            raise httpx.RemoteProtocolError(f"response body over {self._limit} bytes")
        return Answer(self._status, self._headers, bytes(buf), self._encoding) if eof else None

    def _framing(self) -> None:
        values = {k.lower(): v for k, v in self._headers}
        self._encoding = values.get(b"content-encoding", b"").decode("latin-1")
        self.keep_alive = values.get(b"connection", b"").lower() != b"close"
        self._chunked = b"chunked" in values.get(b"transfer-encoding", b"").lower()
        status = self._status
        if status in (204, 304) or 100 <= status < 200:
            self._length = 0
        elif not self._chunked and b"content-length" in values:
            text = values[b"content-length"]
            if not text.isdigit():
                raise httpx.RemoteProtocolError("invalid Content-Length")
            self._length = int(text)
            if self._length > self._limit:
                raise httpx.RemoteProtocolError(f"response body over {self._limit} bytes")
        elif not self._chunked:
            self.keep_alive = False  # delimited by the end of the connection

    def _line(self) -> bytes | None:
        buf = self._buf
        end = buf.find(b"\r\n", self._at, self._at + MAX_CHUNK_LINE)
        if end < 0 or end + 2 - self._at > MAX_CHUNK_LINE:
            if len(buf) - self._at >= MAX_CHUNK_LINE:
                raise httpx.RemoteProtocolError("chunk line too long")
            return None
        line = bytes(buf[self._at : end])
        self._at = end + 2
        return line

    def _chunks(self) -> Answer | None:
        buf = self._buf
        while True:
            if self._trailers:
                line = self._line()
                if line is None:
                    return None
                if not line:
                    if len(buf) > self._at:
                        self.keep_alive = False
                    return Answer(
                        self._status, self._headers, b"".join(self._parts), self._encoding
                    )
                continue
            if self._need < 0:
                line = self._line()
                if line is None:
                    return None
                text = line.split(b";", 1)[0].strip()
                try:
                    size = int(text, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError("invalid chunk size") from None
                if size < 0:
                    raise httpx.RemoteProtocolError("invalid chunk size")
                if size == 0:
                    self._trailers = True
                    continue
                self._total += size
                if self._total > self._limit:
                    raise httpx.RemoteProtocolError(f"response body over {self._limit} bytes")
                self._need = size
            if len(buf) - self._at < self._need + 2:
                return None
            end = self._at + self._need
            self._parts.append(bytes(buf[self._at : end]))
            if buf[end : end + 2] != b"\r\n":
                raise httpx.RemoteProtocolError("chunk not followed by CRLF")
            self._at = end + 2
            self._need = -1


class WirePool:
    """Kept-alive connections per origin, over plain TCP or TLS, for prepared requests."""

    def __init__(self, ssl_context: ssl.SSLContext | None, max_idle: int, max_body: int) -> None:
        self._ssl = ssl_context
        self._max_idle = max_idle
        self._max_body = max_body
        self._idle: dict[Origin, list[_Connection]] = {}
        self._deadlines = Deadlines()

    async def exchange(self, origin: Origin, data: bytes, deadline: float) -> Answer:
        """Send `data` (a whole request) and read its answer, by `deadline`
        (`time.monotonic()`).

        Raises Expired, or an httpx.TransportError as `LeanTransport` would.
        """
        while True:
            conn = self._take(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, deadline)
            try:
                answer = await conn.exchange(data, deadline, self._deadlines)
            except Dropped:
                if reused:
                    continue  # a kept-alive connection the server had closed: a new one
                raise httpx.ReadError("connection lost: IncompleteReadError") from None
            if conn.keep_alive and not conn.closed:
                self._give_back(conn)
            else:
                conn.close()
            return answer

    def _take(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        while stack:
            conn = stack.pop()
            if not conn.closed:
                return conn
            conn.close()
        return None

    def _give_back(self, conn: _Connection) -> None:
        stack = self._idle.setdefault(conn.origin, [])
        if len(stack) >= self._max_idle:
            conn.close()
            return
        stack.append(conn)

    async def _connect(self, origin: Origin, deadline: float) -> _Connection:
        scheme, host, port = origin
        tls = self._ssl if scheme == "https" else None
        if scheme == "https" and tls is None:
            tls = ssl.create_default_context()
        left = deadline - time.monotonic()
        if left <= 0:
            raise Expired()
        try:
            # Not wait_for (a task of its own before 3.12): the connect starts at once.
            sock = await within(open_socket(host, port, tls), left)
        except asyncio.TimeoutError:
            raise Expired() from None
        except ssl.SSLError as exc:
            raise httpx.ConnectError(f"TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise httpx.ConnectError(exc.strerror or str(exc)) from None
        return _Connection(origin, self._max_body, sock)

    def close(self) -> None:
        for stack in self._idle.values():
            for conn in stack:
                conn.close()
        self._idle.clear()
