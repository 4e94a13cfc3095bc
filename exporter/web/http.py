"""HTTP/1.1 on the wire: strict request heads, the WSGI environ, response heads.

What the server (`exporter.web.server`) reads from a client is parsed here, strictly: a
request line and at most MAX_HEADERS headers in at most MAX_HEAD_BYTES, no obsolete line
folding, no control characters; anything else is a `BadRequest` the server answers itself.
"""

from __future__ import annotations

import io
import re
import resource
import sys
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

from exporter.web.wsgi import RECEIVED, Environ


def parse_listen_address(value: str) -> tuple[str, int]:
    """`:10418`, `0.0.0.0:10418`, `127.0.0.1:0`, `[::]:10418` to (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"invalid listen address {value!r}: use host:port or :port")
    host = host.strip("[]")
    return host, int(port_text)


MAX_HEAD_BYTES = 16 * 1024  # request line + headers
MAX_HEADERS = 100
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]\Z")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class BadRequest(Exception):
    """A request the server answers itself, with this status, and then closes."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class Request:
    __slots__ = ("headers", "keep_alive", "method", "target", "version")

    def __init__(
        self, method: str, target: str, version: str, headers: list[tuple[str, str]]
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        names = {n for n, _ in headers}
        tokens = {t.strip().lower() for n, v in headers if n == "connection" for t in v.split(",")}
        lengths = {v.strip() for n, v in headers if n == "content-length"}
        if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
            raise BadRequest("400 Bad Request")
        # Bodies are never read (no path takes one): a request that has one ends the
        # connection, as its body would otherwise be read as the next request.
        has_body = "transfer-encoding" in names or lengths - {"", "0"} != set()
        if version == "HTTP/1.1":
            self.keep_alive = "close" not in tokens and not has_body
        else:
            self.keep_alive = "keep-alive" in tokens and not has_body


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3:  # also HTTP/0.9's `GET /path`, which has no version
        raise BadRequest("400 Bad Request")
    method, target, version = parts
    if not _TOKEN.match(method) or not target.startswith(b"/") or _BAD_TARGET.search(target):
        raise BadRequest("400 Bad Request")
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        if _VERSION.match(version):
            raise BadRequest("505 HTTP Version Not Supported")
        raise BadRequest("400 Bad Request")
    return method.decode("ascii"), target.decode("latin-1"), version.decode("ascii")


def parse_head(head: bytes) -> Request:
    """The request line and headers (without the final empty line), strictly."""
    lines = head.split(b"\r\n")
    method, target, version = parse_request_line(lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest("431 Request Header Fields Too Large")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        # No obsolete line folding, no space before the colon, no control characters.
        if not sep or not _TOKEN.match(name) or _BAD_VALUE.search(value):
            raise BadRequest("400 Bad Request")
        headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    return Request(method, target, version, headers)


def simple_response(status: str, text: str, extra: str = "") -> bytes:
    """A complete response that closes the connection, for answers the server gives itself."""
    body = text.encode("utf-8")
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode("latin-1") + body


OVERLOADED = simple_response(
    "503 Service Unavailable", "too many connections\n", "Retry-After: 1\r\n"
)


def default_max_connections() -> int:
    """A quarter of the open-file limit, at most 256: the rest stays for the polls' sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(8, min(256, soft // 4))


def wsgi_environ(
    request: Request, server_name: str, port: int, peer: Any, *, https: bool, received: float
) -> Environ:
    """The WSGI environ of a parsed request (no body: no path takes one), with when its head
    was complete (`RECEIVED`: scrapes queued behind one share its body)."""
    path, _, query = request.target.partition("?")
    environ: Environ = {
        # HEAD is GET without the body: the app need not know about it.
        "REQUEST_METHOD": "GET" if request.method == "HEAD" else request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": str(peer[0]) if isinstance(peer, tuple) else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if https else "http",
        RECEIVED: received,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        if "_" in name:  # `X_Y` would pass for `X-Y`
            continue
        if name in ("content-type", "content-length"):
            key = name.upper().replace("-", "_")
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = environ[key] + "," + value if key in environ else value
    return environ


def response_head(
    status: str, headers: list[tuple[str, str]], length: int, keep_alive: bool, idle: int
) -> bytes:
    """Status line and headers of a response whose body is `length` bytes (for HEAD too:
    the GET body's length); the app's hop-by-hop headers are replaced by the server's."""
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{n}: {v}" for n, v in headers if n.lower() not in HOP_BY_HOP]
    lines.append(f"Content-Length: {length}")
    lines.append("Date: " + formatdate(usegmt=True))
    if keep_alive:
        lines.append("Connection: keep-alive")
        lines.append(f"Keep-Alive: timeout={idle}")
    else:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
