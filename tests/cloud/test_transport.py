"""The lean HTTP/1.1 transport against a scripted server on loopback: framing, keep-alive,
a kept-alive connection the server closed, and the bounds on what a server may send."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable

import httpx
import pytest

from exporter.cloud.transport import LeanTransport
from tests.cloud.answers import OVERSIZED

pytestmark = pytest.mark.smoke  # in-process: run on every supported Python

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _run(handler: Handler, check: Callable[[httpx.AsyncClient, str], Awaitable[None]]) -> None:
    async def main() -> None:
        server, url = await _serve(handler)
        async with server, httpx.AsyncClient(transport=LeanTransport(None), timeout=2) as client:
            await check(client, url)

    asyncio.run(main())


def test_content_length_chunked_gzip_and_keep_alive() -> None:
    connections = 0
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append(head)
            if b"/chunked" in head:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
                )
            elif b"/gzip" in head:
                body = gzip.compress(b'{"a": 1}')
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop")
            await writer.drain()
        writer.close()

    async def check(client: httpx.AsyncClient, url: str) -> None:
        r = await client.get(url + "/chunked")
        assert (r.status_code, r.text) == (200, "hello world")
        r = await client.get(url + "/gzip", params={"x": "1 2"})
        assert r.json() == {"a": 1}
        r = await client.get(url + "/other")
        assert (r.status_code, r.reason_phrase, r.text) == (404, "Not Found", "nop")

    _run(handler, check)
    assert connections == 1  # one connection, kept alive for all three
    assert seen[1].startswith(b"GET /gzip?x=1+2 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in seen[0]


def test_a_kept_alive_connection_closed_by_the_server_is_replaced() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # closes without saying so

    async def check(client: httpx.AsyncClient, url: str) -> None:
        for _ in range(3):
            r = await client.get(url)
            assert r.text == "ok"
            await asyncio.sleep(0.05)

    _run(handler, check)
    assert connections == 3


def test_connection_close_and_read_until_close() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def check(client: httpx.AsyncClient, url: str) -> None:
        assert (await client.get(url)).text == "all of it"
        assert (await client.get(url)).text == "all of it"

    _run(handler, check)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", httpx.ReadTimeout),  # stalls
        (b"", httpx.ReadError),  # closes at once
    ],
)
def test_hostile_answers_are_clean_errors(answer: bytes, error: type[Exception]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(answer)
        await writer.drain()
        if answer.endswith(b"short") or not answer:
            writer.close()
            return
        await asyncio.sleep(3)
        writer.close()

    async def check(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(error):
            await client.get(url, timeout=0.5)

    _run(handler, check)


def test_nothing_listening_is_a_connect_error() -> None:
    async def main() -> None:
        async with httpx.AsyncClient(transport=LeanTransport(None)) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:1/")

    asyncio.run(main())


@pytest.mark.parametrize("answer", OVERSIZED)
def test_a_body_over_the_limit_is_refused(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, url = await _serve(handler)
        transport = LeanTransport(None, max_body=1024)
        async with server, httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.RemoteProtocolError, match="over 1024 bytes"):
                await client.get(url)

    asyncio.run(main())
