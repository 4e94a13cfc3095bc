"""A small hostile HTTP server for the tests: replies the simulator is too well-behaved to give.

Each server answers every request with one `Behaviour`, a function that writes the raw reply
through the handler: headers then a body one byte at a time (`trickle`), a fixed answer
(`reply`), or task list pages computed from the query (`pages`). Requests are recorded.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Behaviour = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HostileServer
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        with contextlib.suppress(OSError):
            self.server.behaviour(self)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.do_GET()

    def send_raw(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour = behaviour
        self.requests: list[str] = []
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up on a hostile reply is the expected outcome, not an error."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def running(*behaviours: Behaviour) -> Iterator[list[HostileServer]]:
    """One server per behaviour, in background threads, shut down on exit."""
    servers = [HostileServer(b) for b in behaviours]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stopping.set()
            server.shutdown()
            server.server_close()


def trickle(interval: float = 1.0) -> Behaviour:
    """Headers at once, then one byte of a never-ending body every `interval` seconds."""

    def behave(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        # Within http.max_response_bytes: a larger declared length is refused at once.
        h.send_header("Content-Length", "10000000")
        h.end_headers()
        h.wfile.write(b"{")
        h.wfile.flush()
        while not h.server.stopping.wait(interval):
            h.wfile.write(b" ")
            h.wfile.flush()

    return behave


def reply(status: int, body: bytes | Any, headers: dict[str, str] | None = None) -> Behaviour:
    """The same answer to every request (`body` as raw bytes, or anything JSON can write)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")

    def behave(h: Handler) -> None:
        h.send_raw(status, data, headers)

    return behave


def pages(answer: Callable[[dict[str, str]], Any], delay: float = 0.0) -> Behaviour:
    """A JSON answer computed from the request's query, after `delay` seconds."""

    def behave(h: Handler) -> None:
        if delay:
            h.server.stopping.wait(delay)
        h.send_raw(200, json.dumps(answer(h.query)).encode("utf-8"))

    return behave
