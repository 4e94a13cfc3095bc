"""Non-blocking sockets for the wire: a TCP connection, and TLS on the socket itself.

asyncio's TLS transport runs a state machine in Python over memory BIOs for every read and
write; for a poll of a few hundred bytes each way that costs more than the work. Here TLS is
an `ssl.SSLSocket` in non-blocking mode: the handshake is driven from the loop's readiness
callbacks, and afterwards a read or a write is one C call (`exporter.cloud.wire`). The
context decides verification (the configured CA, the hostname check), as for httpx.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from typing import Any


async def open_socket(host: str, port: int, tls: ssl.SSLContext | None) -> socket.socket:
    """A connected non-blocking socket to `host:port`, with TLS done when `tls` is given.

    Raises OSError (ssl.SSLError for TLS); the caller bounds the time.
    """
    loop = asyncio.get_running_loop()
    sock = await _connect(loop, host, port)
    if tls is None:
        return sock
    try:
        wrapped = tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        await _handshake(loop, wrapped)
    except BaseException:
        wrapped.close()
        raise
    return wrapped


async def _connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """Each address of `host` in turn until one connects (a numeric one without a lookup)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        addresses: list[tuple[int, Any]] = [(info[0], info[4]) for info in infos]
    else:
        addresses = [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (str(ip), port))]
    last: OSError = OSError(f"no address for {host}")
    for family, address in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last


async def _handshake(loop: asyncio.AbstractEventLoop, sock: ssl.SSLSocket) -> None:
    fd = sock.fileno()
    while True:
        try:
            sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            await _ready(loop, fd, writable=False)
        except ssl.SSLWantWriteError:
            await _ready(loop, fd, writable=True)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, writable: bool) -> None:
    """Until `fd` is readable (or writable)."""
    waiter: asyncio.Future[None] = loop.create_future()
    if writable:
        loop.add_writer(fd, _wake, waiter)
    else:
        loop.add_reader(fd, _wake, waiter)
    try:
        await waiter
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
