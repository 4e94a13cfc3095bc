"""The HTTP server under hostile or heavy clients, over real sockets against a real HttpServer.

Idle and trickling clients are cut off, connections are capped (so they cannot take the
file descriptors the polls need), 200 concurrent clients are all served, HEAD works.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge

from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore
from exporter.web.metrics import MetricsApp
from exporter.web.routes import Router
from exporter.web.server import HttpServer

Serve = Callable[..., HttpServer]
Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

release = threading.Event()
calls: list[str] = []


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Says what it got; `/block` waits until the test releases it."""
    calls.append(environ["PATH_INFO"])
    if environ["PATH_INFO"] == "/block" or environ["QUERY_STRING"] == "block":
        release.wait(20)
    body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Test", "yes")])
    return [body]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[HttpServer] = []

    def start(app: Wsgi = echo_app, **options: Any) -> HttpServer:
        server = HttpServer(app, "127.0.0.1:0", **options)
        server.start()
        servers.append(server)
        return server

    release.clear()
    calls.clear()
    try:
        yield start
    finally:
        release.set()
        for server in servers:
            server.stop()


def _get(port: int, path: str = "/", method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; socket.timeout if it never does."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_idle_connections_beyond_the_cap_neither_block_a_scrape_nor_take_fds(
    serve: Serve,
) -> None:
    server = serve(max_connections=16)
    before = _open_fds()
    idle = [_connect(server.port) for _ in range(64)]
    try:
        # Each new connection beyond the cap makes room by closing the longest-idle one.
        assert _get(server.port, "/metrics") == (200, b"GET /metrics\n")
        # The server side holds at most the cap, whatever the clients open (the 64 client
        # sockets are in this process too).
        assert _open_fds() - before - len(idle) <= 16 + 2
    finally:
        for sock in idle:
            sock.close()


def test_busy_connections_at_the_cap_get_a_quick_503(serve: Serve) -> None:
    server = serve(max_connections=4)
    busy = [_connect(server.port) for _ in range(4)]
    try:
        for sock in busy:
            sock.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)  # let the server read them: none is idle now
        status, body = _get(server.port, "/healthz")
        assert status == 503
        assert body == b"too many connections\n"
        release.set()
        for sock in busy:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in busy:
            sock.close()


def test_health_answers_while_a_scrape_renders(serve: Serve) -> None:
    server = serve()
    with _connect(server.port) as scrape:
        scrape.sendall(b"GET /metrics?block HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        assert _get(server.port, "/healthz") == (200, b"GET /healthz\n")
        release.set()
        assert scrape.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_request_whose_client_left_is_not_run(serve: Serve) -> None:
    server = serve()
    with _connect(server.port) as blocker:
        blocker.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        with _connect(server.port) as gone:
            gone.sendall(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)  # queued behind /block
        time.sleep(0.3)  # the server sees it closed
        release.set()
        assert blocker.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    assert _get(server.port, "/after") == (200, b"GET /after\n")
    assert calls == ["/block", "/after"]


def test_a_request_queued_too_long_gets_a_503_unrun(serve: Serve) -> None:
    server = serve(queue_timeout=0.5)
    with _connect(server.port) as blocker, _connect(server.port) as waiting:
        blocker.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        waiting.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.0)
        release.set()
        assert _read_until_closed(waiting).startswith(b"HTTP/1.1 503 ")
    assert calls == ["/block"]


def test_http09_request_is_answered_and_closed(serve: Serve) -> None:
    server = serve(header_timeout=1.0)
    with _connect(server.port) as sock:
        sock.sendall(b"GET /metrics\r\n")
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 400 ")


def test_unfinished_head_is_cut_off_at_the_header_deadline(serve: Serve) -> None:
    server = serve(header_timeout=1.0)
    with _connect(server.port) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_trickling_headers_are_cut_off_at_the_total_deadline(serve: Serve) -> None:
    """One byte every 0.1 s never lets a per-read timeout fire: the deadline is for the head."""
    server = serve(header_timeout=1.0)
    with _connect(server.port) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        cut_off = False
        for _ in range(100):  # 10 s of trickle, ten times the deadline
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
                break
            time.sleep(0.1)
        if not cut_off:
            sock.settimeout(0.5)
            try:
                cut_off = _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
            except TimeoutError:
                cut_off = False
        assert cut_off


def test_keep_alive_then_idle_timeout(serve: Serve) -> None:
    server = serve(idle_timeout=1.0)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path in ("/a", "/b", "/c"):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.read() == f"GET {path}\n".encode()
            assert resp.getheader("Connection") == "keep-alive"
        sock = conn.sock
        assert sock is not None
        # The same socket served all three; after the idle timeout the server closes it.
        assert _read_until_closed(sock) == b""
    finally:
        conn.close()


def test_head_has_the_get_headers_and_no_body(serve: Serve) -> None:
    registry = CollectorRegistry()
    Gauge("demo_value", "A value.", registry=registry).set(3)
    snapshots = SnapshotStore([1.0], False, TaskFamilies(60.0, False))
    app = Router(
        MetricsApp(snapshots.exposition, registry), snapshots, lambda: (True, "ok"), lambda: True
    )
    server = serve(app)
    for path in ("/metrics", "/healthz", "/", "/nope"):
        get = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        get.request("GET", path)
        want = get.getresponse()
        body = want.read()
        get.close()
        assert body
        with _connect(server.port) as sock:
            # HEAD then GET on one connection: a body after the HEAD's head would be read
            # as the start of the second response.
            sock.sendall(
                f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"
                f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            data = _read_until_closed(sock)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {want.status} ".encode())
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        assert headers["Content-Length"] == str(len(body))
        assert headers["Content-Type"] == want.getheader("Content-Type")
        assert rest.startswith(f"HTTP/1.1 {want.status} ".encode())
        assert rest.endswith(body)


def test_200_concurrent_clients_are_all_served(serve: Serve) -> None:
    server = serve(max_connections=256)
    clients, rounds = 200, 5
    start = threading.Barrier(clients)
    errors: list[str] = []
    served = [0] * clients

    def client(i: int) -> None:
        try:
            start.wait(30)
            for r in range(rounds):
                # Half reuse one connection (as Prometheus does), half connect every time.
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                for _ in range(2 if i % 2 else 1):
                    conn.request("GET", f"/c{i}/{r}")
                    resp = conn.getresponse()
                    if resp.status != 200 or resp.read() != f"GET /c{i}/{r}\n".encode():
                        errors.append(f"client {i}: {resp.status}")
                    served[i] += 1
                conn.close()
        except Exception as exc:  # refused, reset, timed out: all are failures here
            errors.append(f"client {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sum(served) == rounds * (clients + clients // 2)
