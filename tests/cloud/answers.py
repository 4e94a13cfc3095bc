"""Answers both task-list transports (the lean one under httpx, and the wire) must refuse:
written once, so the two cannot drift apart."""

from __future__ import annotations

# Each is a body over a 1 KiB limit: declared, chunked, and read until close.
OVERSIZED = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"200\r\n"
    + b"x" * 512
    + b"\r\n"
    + b"400\r\n"
    + b"x" * 1024
    + b"\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 2000,
]
