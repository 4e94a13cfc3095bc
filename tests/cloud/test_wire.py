"""The prepared requests' wire against a scripted server on loopback: framing, keep-alive, a
kept-alive connection the server closed, the deadline sweep, and every bound the lean
transport keeps (tests/cloud/test_transport.py) on what a server may send."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from exporter.cloud.wire import Answer, Expired, WirePool
from tests.cloud.answers import OVERSIZED

pytestmark = pytest.mark.smoke  # in-process: run on every supported Python

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQUEST = b"GET /x?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _run(
    handler: Handler, check: Callable[[WirePool, tuple[str, str, int]], Awaitable[None]], **kw: int
) -> None:
    async def main() -> None:
        writers: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await handler(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        origin = ("http", "127.0.0.1", server.sockets[0].getsockname()[1])
        pool = WirePool(None, kw.get("max_idle", 4), kw.get("max_body", 2**20))
        try:
            await check(pool, origin)
        finally:
            pool.close()
            server.close()
            # Since 3.12 wait_closed() waits for every connection: close the server's ends
            # (a handler may still wait for the client's end of file).
            for writer in writers:
                writer.close()
            await server.wait_closed()

    asyncio.run(main())


async def _ask(pool: WirePool, origin: tuple[str, str, int], seconds: float = 2) -> Answer:
    return await pool.exchange(origin, REQUEST, time.monotonic() + seconds)


def test_content_length_chunked_and_keep_alive_on_one_connection() -> None:
    connections = 0
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-Y: z\r\n\r\n{}",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for answer in answers:
            assert await _read_request(reader) == REQUEST
            # In pieces: the parser must wait for the rest.
            for i in range(0, len(answer), 7):
                writer.write(answer[i : i + 7])
                await writer.drain()
        await reader.read()

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        assert await _ask(pool, origin) == Answer(200, [(b"Content-Length", b"5")], b"hello")
        second = await _ask(pool, origin)
        assert (second.status, second.body) == (200, b"abcde")
        third = await _ask(pool, origin)
        assert third.status == 404
        assert (b"X-Y", b"z") in third.headers

    _run(handler, check)
    assert connections == 1


def test_a_kept_alive_connection_closed_by_the_server_is_replaced() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # without saying so

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        for _ in range(3):
            assert (await _ask(pool, origin)).body == b"ok"
            await asyncio.sleep(0.05)

    _run(handler, check)
    assert connections == 3


def test_read_until_close() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        assert (await _ask(pool, origin)).body == b"all of it"
        assert (await _ask(pool, origin)).body == b"all of it"

    _run(handler, check)


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", httpx.RemoteProtocolError, "status line"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", httpx.RemoteProtocolError, "64"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n", httpx.RemoteProtocolError, "100"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", httpx.RemoteProtocolError, "Length"),
        (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", httpx.RemoteProtocolError, "malformed"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            httpx.RemoteProtocolError,
            "chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000,
            httpx.RemoteProtocolError,
            "chunk line",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
            httpx.RemoteProtocolError,
            "CRLF",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", httpx.RemoteProtocolError, "ended"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", Expired, ""),  # stalls
        (b"HTTP/1.1 200", Expired, ""),  # a head that never ends
        (b"", httpx.ReadError, "connection lost"),  # closes at once
    ],
)
def test_hostile_answers_are_clean_errors(
    answer: bytes, error: type[Exception], message: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(answer)
        await writer.drain()
        if answer.endswith(b"short") or not answer:
            writer.close()
            return
        await asyncio.sleep(3)
        writer.close()

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(error, match=message or None):
            await _ask(pool, origin, 0.5)
        # The deadline sweep notices within its period; errors come at once.
        assert loop.time() - started < 0.5 + 0.2

    _run(handler, check)


@pytest.mark.parametrize("answer", OVERSIZED)
def test_a_body_over_the_limit_is_refused(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        with pytest.raises(httpx.RemoteProtocolError, match="over 1024 bytes"):
            await _ask(pool, origin)

    _run(handler, check, max_body=1024)


def test_nothing_listening_is_a_connect_error() -> None:
    async def main() -> None:
        pool = WirePool(None, 4, 1024)
        deadline = time.monotonic() + 2
        with pytest.raises(httpx.ConnectError):
            await pool.exchange(("http", "127.0.0.1", 1), REQUEST, deadline)

    asyncio.run(main())


def test_many_requests_in_flight_share_one_deadline_timer() -> None:
    """Fifty stalled requests: one sweep expires them all, on time."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()  # never answers (and sets no timer of its own)
        writer.close()

    def timers(loop: asyncio.AbstractEventLoop) -> int:
        return sum(not h.cancelled() for h in loop._scheduled)  # type: ignore[attr-defined]

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks = [asyncio.ensure_future(_ask(pool, origin, 0.3)) for _ in range(50)]
        await asyncio.sleep(0.1)  # all sent, none answered
        assert timers(loop) <= 2  # the sweep (and this sleep's own timer, just done)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, Expired) for r in results)
        assert loop.time() - started < 0.3 + 0.2

    _run(handler, check, max_idle=64)
