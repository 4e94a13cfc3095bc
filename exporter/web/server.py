"""The HTTP server: one selector thread owns every socket, a few workers run the app.

The selector thread accepts, reads request heads, enforces the deadlines and writes
responses without blocking; worker threads only run the WSGI app. So no client, however
slow or idle, can hold a thread, and the number of sockets and of threads is bounded
whatever the clients do. The server only reads what the poller published, so it runs
beside the event loop without touching it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from exporter.web.auth import Verdict
from exporter.web.connection import Conn
from exporter.web.http import (
    MAX_HEAD_BYTES,
    OVERLOADED,
    BadRequest,
    Request,
    default_max_connections,
    parse_head,
    parse_listen_address,
    parse_request_line,
    response_head,
    simple_response,
    wsgi_environ,
)
from exporter.web.tls import TLS_CHUNK, handshake, peer_sans_allowed, raw_peek, wrap
from exporter.web.webwatch import WebConfigWatcher
from exporter.web.wsgi import Environ, StartResponse

log = logging.getLogger(__name__)


_Job = tuple[float, Conn, Request, bool] | None  # queued at, ..., bcrypt first; None: stop


class HttpServer:
    """A small bounded HTTP/1.1 server for the WSGI `App`.

    - at most `max_connections` sockets: beyond that the longest-idle keep-alive connection
      is closed to make room, or, if every connection is busy, the new one gets a quick 503;
      so clients can never take the file descriptors the polls need;
    - a request line and headers must arrive within `header_timeout` in total (a client
      trickling bytes is cut off), a keep-alive connection may wait `idle_timeout` for its
      next request, a response must be taken within `write_timeout`;
    - `scrape_workers` threads (one) render `/metrics`, one more thread serves every other
      path, so `/healthz` answers during a scrape storm and scrapes compete with the event
      loop for the GIL from one thread only (with two render threads, 200 scrapers made
      polls skip slots at 1,000 task lists; with one, none); each connection has at most one
      request queued, a request whose client left is dropped unrun, one queued over
      `queue_timeout` gets a 503;
    - HEAD is GET without the body, for every path;
    - a web config (`web_config`) adds TLS (handshakes within `header_timeout`, never
      blocking) and basic auth on every path (new credentials checked off the scrape lane).
    """

    def __init__(
        self,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        address: str,
        *,
        max_connections: int | None = None,
        scrape_workers: int = 1,
        queue_timeout: float = 5.0,
        header_timeout: float = 10.0,
        idle_timeout: float = 120.0,
        write_timeout: float = 30.0,
        backlog: int = 1024,
        web_config: WebConfigWatcher | None = None,
    ) -> None:
        host, port = parse_listen_address(address)
        host = host or "0.0.0.0"  # noqa: S104 - ':PORT' means every interface, as in Prometheus
        self.app = app
        self.max_connections = max_connections or default_max_connections()
        self.queue_timeout = queue_timeout
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.web = web_config
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(backlog)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.server_name = host
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._conns: set[Conn] = set()
        # Two lanes: 0 for every path but /metrics, 1 for /metrics.
        self._lanes: tuple[queue.SimpleQueue[_Job], ...] = (
            queue.SimpleQueue(),
            queue.SimpleQueue(),
        )
        self._done: deque[tuple[Conn, list[bytes], bool]] = deque()
        self._stopping = False
        self._accept_paused_until = 0.0
        self.thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._workers = [
            threading.Thread(target=self._work, args=(lane,), name=f"http-{name}", daemon=True)
            for lane, name in [(self._lanes[0], "other")]
            + [(self._lanes[1], f"scrape-{i}") for i in range(scrape_workers)]
        ]

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> None:
        if self.web is not None:
            self.web.start()
        for worker in self._workers:
            worker.start()
        self.thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._lanes[0].put(None)
        for _ in self._workers[1:]:
            self._lanes[1].put(None)
        if self.thread.is_alive():
            self.thread.join(5)
        else:
            self._close_all()
        for worker in self._workers:
            if worker.is_alive():
                worker.join(5)
        if self.web is not None:
            self.web.stop()

    # -- selector thread ------------------------------------------------------------------

    def _serve(self) -> None:
        next_sweep = 0.0
        try:
            while not self._stopping:
                for key, mask in self._sel.select(0.25):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    elif isinstance(key.data, Conn) and key.data in self._conns:
                        conn = key.data
                        if conn.tls == 1:
                            self._handshake(conn)
                        elif conn.out is not None:  # a response is being written
                            self._flush(conn)
                        elif mask & selectors.EVENT_READ or conn.want:
                            self._read(conn)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 0.25
        except Exception:
            log.exception("the HTTP server stopped on an unexpected error")
        finally:
            self._close_all()

    def _close_all(self) -> None:
        for conn in list(self._conns):
            self._close(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._sel.close()

    def _watch(self, conn: Conn, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._sel.register(conn.sock, events, conn)
        elif events == 0:
            self._sel.unregister(conn.sock)
        else:
            self._sel.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: Conn) -> None:
        if conn not in self._conns:
            return
        self._watch(conn, 0)
        self._conns.discard(conn)
        conn.closed = True
        conn.sock.close()

    def _accept(self) -> None:
        for _ in range(64):  # then let the other sockets have a turn
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Leave the connection in the backlog and try again a little later.
                    log.warning("http: cannot accept a connection: %s", exc.strerror)
                    self._sel.unregister(self._listener)
                    self._accept_paused_until = time.monotonic() + 0.5
                return
            sock.setblocking(False)
            context = self.web.current.tls if self.web is not None else None
            if len(self._conns) >= self.max_connections and not self._evict_one():
                if context is None:  # a TLS client would read plain text as garbage
                    with contextlib.suppress(OSError):
                        sock.send(OVERLOADED)
                sock.close()
                continue
            with contextlib.suppress(OSError):  # small responses: no Nagle delay
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock = wrap(context, sock)
            except OSError:
                continue
            # The deadline covers a TLS handshake too: stalling it is trickling a request head.
            conn = Conn(sock, peer, time.monotonic() + self.header_timeout)
            self._conns.add(conn)
            self._watch(conn, selectors.EVENT_READ)
            if context is not None:
                conn.tls = 1
                self._handshake(conn)

    def _handshake(self, conn: Conn) -> None:
        """One non-blocking step of a TLS handshake; then the request as for plain HTTP."""
        assert isinstance(conn.sock, ssl.SSLSocket)
        step = handshake(conn.sock)
        sans = self.web.current.allowed_sans if self.web is not None else None
        if step is None and sans is not None and not peer_sans_allowed(conn.sock, sans):
            log.info("http: a client certificate without an allowed SAN was refused")
            step = -1
        if step is None:
            conn.tls = 2
            self._watch(conn, selectors.EVENT_READ)
            self._read(conn)  # the request may have come with the handshake's last flight
        elif step < 0:
            self._close(conn)
        else:
            self._watch(conn, step)

    def _evict_one(self) -> bool:
        """Make room: close a connection its client has closed already (whose end of file
        is not read yet), else the one that has waited longest for its next request."""
        idle = []
        for conn in [c for c in self._conns if c.waiting]:
            try:
                pending = raw_peek(conn.sock)
            except (BlockingIOError, InterruptedError):
                idle.append(conn)
                continue
            except OSError:
                pending = b""
            if not pending:
                self._close(conn)
                return True
        if not idle:
            return False
        self._close(min(idle, key=lambda c: c.deadline))
        return True

    def _read(self, conn: Conn) -> None:
        if conn.want:
            conn.want = 0
            self._watch(conn, selectors.EVENT_READ)
        try:
            data = conn.sock.recv(65536)
            if conn.tls:  # the rest of a TLS record already read off the socket
                while conn.sock.pending() and len(data) <= MAX_HEAD_BYTES:  # type: ignore[attr-defined]
                    data += conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return
        except ssl.SSLWantWriteError:
            conn.want = selectors.EVENT_WRITE
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if not conn.buf:
            data = data.lstrip(b"\r\n")  # empty lines before a request are allowed
            if not data:
                return
            # The whole head must arrive within header_timeout of its first byte (or of
            # the connection's start).
            conn.deadline = min(conn.deadline, time.monotonic() + self.header_timeout)
        conn.buf += data
        if conn.busy:
            # Read on while a worker has the request, to see the client leave (the worker
            # then skips it); what else comes is the next request, kept for later.
            if len(conn.buf) > MAX_HEAD_BYTES:
                self._watch(conn, 0)
            return
        self._dispatch(conn)

    def _dispatch(self, conn: Conn) -> None:
        """Hand a complete request head to the workers; reject a bad one as early as possible."""
        end = conn.buf.find(b"\r\n\r\n")
        try:
            if end < 0 or end > MAX_HEAD_BYTES:
                if len(conn.buf) > MAX_HEAD_BYTES:
                    raise BadRequest("431 Request Header Fields Too Large")
                line_end = conn.buf.find(b"\r\n")
                if line_end >= 0:
                    parse_request_line(bytes(conn.buf[:line_end]))
                return
            request = parse_head(bytes(conn.buf[:end]))
        except BadRequest as exc:
            conn.buf.clear()
            self._respond(conn, simple_response(exc.status, exc.status[4:].lower() + "\n"), False)
            return
        del conn.buf[: end + 4]
        verdict = Verdict.ALLOW if self.web is None else self.web.authenticate(request)
        if verdict is Verdict.DENY and self.web is not None:
            denied = self.web.unauthorized(request, int(self.idle_timeout))
            self._respond(conn, denied, request.keep_alive)
            return
        conn.busy = True
        # New credentials are checked by bcrypt in the other lane: scrapes never wait for it.
        lane = 1 if request.target.partition("?")[0] == "/metrics" else 0
        lane = 0 if verdict is Verdict.VERIFY else lane
        self._lanes[lane].put((time.monotonic(), conn, request, verdict is Verdict.VERIFY))

    def _respond(self, conn: Conn, data: bytes | list[bytes], keep_alive: bool) -> None:
        """Send a response: a large one as its pieces, never joined into one more copy."""
        pieces = [p for p in ([data] if isinstance(data, bytes) else data) if p]
        conn.pending = deque(pieces[1:])
        conn.out = memoryview(pieces[0]) if pieces else None
        conn.close_after = not keep_alive
        conn.deadline = time.monotonic() + self.write_timeout
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.out:
            try:
                # TLS: a bounded record batch; retried with the same bytes when it must wait.
                sent = conn.sock.send(conn.out[:TLS_CHUNK] if conn.tls else conn.out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._watch(conn, selectors.EVENT_READ)
                return
            except OSError:
                self._close(conn)
                return
            conn.out = conn.out[sent:]
            if not conn.out and conn.pending:
                conn.out = memoryview(conn.pending.popleft())  # never empty: filtered
        conn.out = None
        if conn.close_after:
            self._close(conn)
            return
        conn.deadline = time.monotonic() + self.idle_timeout
        self._watch(conn, selectors.EVENT_READ)
        if conn.buf:  # a pipelined request
            conn.deadline = time.monotonic() + self.header_timeout
            self._dispatch(conn)

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._conns if not c.busy and c.deadline < now]:
            if conn.buf and conn.out is None:
                with contextlib.suppress(OSError):
                    conn.sock.send(simple_response("408 Request Timeout", "request timeout\n"))
            self._close(conn)
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._sel.register(self._listener, selectors.EVENT_READ, "listen")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: it is awake already; closed: stopped
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        while self._done:
            conn, data, keep_alive = self._done.popleft()
            if conn in self._conns:
                conn.busy = False
                self._respond(conn, data, keep_alive)

    # -- worker threads -------------------------------------------------------------------

    def _work(self, lane: queue.SimpleQueue[_Job]) -> None:
        while True:
            job = lane.get()
            if job is None or self._stopping:
                return
            queued_at, conn, request, verify = job
            if conn.closed:
                continue
            if time.monotonic() - queued_at > self.queue_timeout:
                # Overloaded: the client has likely given up; answer at once, render nothing.
                data, keep_alive = [OVERLOADED], False
            elif verify and self.web and self.web.authenticate(request, True) is Verdict.DENY:
                data = self.web.unauthorized(request, int(self.idle_timeout))
                keep_alive = request.keep_alive
            else:
                data, keep_alive = self._run_app(request, conn.peer, queued_at)
            self._done.append((conn, data, keep_alive))
            self._wake()

    def _run_app(self, request: Request, peer: Any, received: float) -> tuple[list[bytes], bool]:
        """The complete response to one request (its head, then the app's own chunks), and
        whether to keep the connection."""
        started: list[tuple[str, list[tuple[str, str]]]] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            started[:] = [(status, headers)]
            return chunks.append

        keep_alive = request.keep_alive
        try:
            https = self.web is not None and self.web.tls
            environ = wsgi_environ(
                request, self.server_name, self.port, peer, https=https, received=received
            )
            result = self.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not started:
                raise RuntimeError("the WSGI app did not call start_response")
            status, headers = started[0]
            if self.web is not None:
                headers = headers + self.web.extra_headers(headers)
        except Exception:
            log.exception("http: the request handler failed")
            status = "500 Internal Server Error"
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            chunks = [b"internal error\n"]
            keep_alive = False
        head = response_head(
            status, headers, sum(map(len, chunks)), keep_alive, int(self.idle_timeout)
        )
        return ([head] if request.method == "HEAD" else [head, *chunks]), keep_alive
