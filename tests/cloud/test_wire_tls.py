"""The wire over TLS on the socket itself (exporter.cloud.sockets) against a local TLS server
(tests/certs.py): the handshake and keep-alive, verification failures named, an answer split
across many records, a peer that closes, a stale kept-alive connection, the deadline."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from exporter.cloud.wire import Expired, WirePool
from tests.certs import make_ca_and_server_cert

pytestmark = pytest.mark.smoke

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQUEST = b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("pki"), ["localhost"], ["127.0.0.1"])


def _run(
    pki: tuple[Path, Path, Path],
    handler: Handler,
    check: Callable[[WirePool, tuple[str, str, int]], Awaitable[None]],
    *,
    client: ssl.SSLContext | None = None,
    host: str = "localhost",
) -> int:
    """Serve `handler` over TLS, run `check` with a pool trusting the CA; the connections."""
    ca, cert, key = pki
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    connections = 0

    async def main() -> None:
        writers: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            writers.append(writer)
            with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
                await handler(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        origin = ("https", host, server.sockets[0].getsockname()[1])
        context = client or ssl.create_default_context(cafile=str(ca))
        pool = WirePool(context, 4, 2**20)
        try:
            await check(pool, origin)
        finally:
            pool.close()
            server.close()
            for writer in writers:
                writer.close()
            await server.wait_closed()

    asyncio.run(main())
    return connections


async def _ask(pool: WirePool, origin: tuple[str, str, int], seconds: float = 3) -> bytes:
    return (await pool.exchange(origin, REQUEST, time.monotonic() + seconds)).body


async def _answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()


def test_handshake_verified_and_kept_alive(pki: tuple[Path, Path, Path]) -> None:
    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        for _ in range(5):
            assert await _ask(pool, origin) == b"ok"

    assert _run(pki, _answer_each, check) == 1


def test_an_unknown_ca_is_a_named_connect_error(pki: tuple[Path, Path, Path]) -> None:
    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        with pytest.raises(httpx.ConnectError, match="TLS: CERTIFICATE_VERIFY_FAILED"):
            await _ask(pool, origin)

    _run(pki, _answer_each, check, client=ssl.create_default_context())  # the system CAs


def test_a_name_the_certificate_does_not_hold_is_refused(tmp_path: Path) -> None:
    named_only = make_ca_and_server_cert(tmp_path, ["localhost"], [])  # no IP address in it

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        with pytest.raises(httpx.ConnectError, match="TLS: CERTIFICATE_VERIFY_FAILED"):
            await _ask(pool, ("https", "127.0.0.1", origin[2]))

    _run(named_only, _answer_each, check)


def test_an_answer_split_across_records(pki: tuple[Path, Path, Path]) -> None:
    body = bytes(range(256)) * 300  # 76,800 bytes: several 16 KiB records, and small ones
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for i in range(0, 201, 3):  # the head and the start, a few bytes per record
            writer.write(answer[i : i + 3])
            await writer.drain()
        writer.write(answer[201:])
        await writer.drain()
        await reader.read()

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        assert await _ask(pool, origin) == body

    _run(pki, handler, check)


def test_a_peer_that_closes(pki: tuple[Path, Path, Path]) -> None:
    async def at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
        await writer.drain()
        writer.close()

    async def lost(pool: WirePool, origin: tuple[str, str, int]) -> None:
        with pytest.raises(httpx.ReadError, match="connection lost"):
            await _ask(pool, origin)

    async def cut(pool: WirePool, origin: tuple[str, str, int]) -> None:
        with pytest.raises(httpx.RemoteProtocolError, match="before the body ended"):
            await _ask(pool, origin)

    _run(pki, at_once, lost)
    _run(pki, mid_body, cut)


def test_a_kept_alive_connection_the_server_closed_is_replaced(
    pki: tuple[Path, Path, Path],
) -> None:
    async def one_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)  # keep-alive announced, then closed
        await writer.drain()
        writer.close()

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        for _ in range(3):
            assert await _ask(pool, origin) == b"ok"

    assert _run(pki, one_each, check) == 3


def test_the_deadline_during_the_answer_and_the_handshake(pki: tuple[Path, Path, Path]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def check(pool: WirePool, origin: tuple[str, str, int]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Expired):
            await _ask(pool, origin, 0.3)
        assert loop.time() - started < 0.3 + 0.2

    _run(pki, silent, check)

    async def no_handshake() -> None:
        # A listener that accepts and never speaks TLS: the connect's own deadline.
        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        pool = WirePool(ssl.create_default_context(cafile=str(pki[0])), 4, 1024)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(Expired):
                await _ask(pool, ("https", "localhost", port), 0.3)
        finally:
            pool.close()
            server.close()

    asyncio.run(no_handshake())
