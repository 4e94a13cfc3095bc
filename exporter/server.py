"""HTTP: `/metrics`, a landing page at `/`, `/healthz` and `/readyz`, served from a thread.

`/metrics` writes out pre-rendered lines (`exporter.exposition`). The server only reads
what the poller published, so it runs beside the event loop without touching it.
"""

from __future__ import annotations

import contextlib
import errno
import html
import io
import logging
import math
import queue
import re
import resource
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

from exporter import __version__
from exporter.exposition import MetricsApp
from exporter.snapshot import SnapshotStore, TaskListSnapshot
from exporter.tasklists import TaskList

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


def parse_listen_address(value: str) -> tuple[str, int]:
    """`:10418`, `0.0.0.0:10418`, `127.0.0.1:0`, `[::]:10418` to (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"invalid listen address {value!r}: use host:port or :port")
    host = host.strip("[]")
    return host, int(port_text)


# -- HTTP/1.1 server -------------------------------------------------------------------------
#
# One selector thread owns every socket: it accepts, reads request heads, enforces the
# deadlines and writes responses without blocking. A few worker threads only run the WSGI
# app. So no client, however slow or idle, can hold a thread, and the number of sockets and
# of threads is bounded whatever the clients do.

MAX_HEAD_BYTES = 16 * 1024  # request line + headers
MAX_HEADERS = 100
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]\Z")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class _BadRequest(Exception):
    """A request the server answers itself, with this status, and then closes."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class _Request:
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
            raise _BadRequest("400 Bad Request")
        # Bodies are never read (no path takes one): a request that has one ends the
        # connection, as its body would otherwise be read as the next request.
        has_body = "transfer-encoding" in names or lengths - {"", "0"} != set()
        if version == "HTTP/1.1":
            self.keep_alive = "close" not in tokens and not has_body
        else:
            self.keep_alive = "keep-alive" in tokens and not has_body


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3:  # also HTTP/0.9's `GET /path`, which has no version
        raise _BadRequest("400 Bad Request")
    method, target, version = parts
    if not _TOKEN.match(method) or not target.startswith(b"/") or _BAD_TARGET.search(target):
        raise _BadRequest("400 Bad Request")
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        if _VERSION.match(version):
            raise _BadRequest("505 HTTP Version Not Supported")
        raise _BadRequest("400 Bad Request")
    return method.decode("ascii"), target.decode("latin-1"), version.decode("ascii")


def _parse_head(head: bytes) -> _Request:
    """The request line and headers (without the final empty line), strictly."""
    lines = head.split(b"\r\n")
    method, target, version = _parse_request_line(lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise _BadRequest("431 Request Header Fields Too Large")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        # No obsolete line folding, no space before the colon, no control characters.
        if not sep or not _TOKEN.match(name) or _BAD_VALUE.search(value):
            raise _BadRequest("400 Bad Request")
        headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    return _Request(method, target, version, headers)


def _simple_response(status: str, text: str, extra: str = "") -> bytes:
    """A complete response that closes the connection, for answers the server gives itself."""
    body = text.encode("utf-8")
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode("latin-1") + body


_OVERLOADED = _simple_response(
    "503 Service Unavailable", "too many connections\n", "Retry-After: 1\r\n"
)


def default_max_connections() -> int:
    """A quarter of the open-file limit, at most 256: the rest stays for the polls' sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(8, min(256, soft // 4))


class _Conn:
    """One client connection; only the selector thread touches it."""

    __slots__ = (
        "buf",
        "busy",
        "close_after",
        "closed",
        "deadline",
        "events",
        "out",
        "peer",
        "pending",
        "sock",
    )

    def __init__(self, sock: socket.socket, peer: Any, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.deadline = deadline
        self.busy = False  # a worker has its request
        self.closed = False  # a worker seeing this drops the request: no one is waiting
        self.out: memoryview | None = None  # response bytes not yet sent
        self.pending: deque[bytes] = deque()  # the response's further pieces, sent in order
        self.close_after = False
        self.events = 0  # what the selector watches for

    @property
    def waiting(self) -> bool:
        """Idle between requests (nothing of the next one read): the cheapest to close."""
        return not self.busy and self.out is None and not self.buf


class App:
    def __init__(
        self,
        metrics_app: MetricsApp,
        snapshots: SnapshotStore,
        health: Callable[[], tuple[bool, str]],
        ready: Callable[[], bool],
    ) -> None:
        self.metrics_app = metrics_app
        self.snapshots = snapshots
        self.health = health
        self.ready = ready

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "method not allowed\n")
        if path == "/metrics":
            return self.metrics_app(environ, start_response)
        if path == "/healthz":
            ok, why = self.health()
            return _text(start_response, "200 OK" if ok else "503 Service Unavailable", why + "\n")
        if path == "/readyz":
            if self.ready():
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", "first polls not done\n")
        if path == "/":
            body = self.landing_page().encode("utf-8")
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    # Every value on the page is escaped; this is the second line of defence:
                    # no script, image or other fetch runs even if one ever slipped through.
                    ("Content-Security-Policy", LANDING_CSP),
                    ("X-Content-Type-Options", "nosniff"),
                ],
            )
            return [body]
        return _text(start_response, "404 Not Found", "not found\n")

    def landing_page(self) -> str:
        """The targets, the recent failures and the running tasks, every value escaped."""
        now = time.time()
        targets = self.snapshots.current.targets
        return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Huawei Cloud task exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
th{{background:#f4f4f4}}small{{color:#666}}p.note{{color:#555}}
tr.ok td:nth-child(6){{color:#080}}tr.fail td:nth-child(6){{color:#b00}}
td.when{{white-space:nowrap}}td.change{{min-width:12em}}#failures td.when{{color:#b00}}
</style></head>
<body><h1>Huawei Cloud task exporter</h1>
<p>Version {_e(__version__)}.
<a href="/metrics">Metrics</a> &middot; <a href="/healthz">Health</a> &middot;
<a href="/readyz">Readiness</a></p>
<h2>Targets</h2>
<table id="targets"><tr><th>service</th><th>region</th><th>project</th><th>instance</th>
<th>name</th><th>last poll</th><th>last success</th><th>duration</th></tr>
{"".join(_target_row(ts, now) for ts in targets)}
</table>
{_failures(targets, now)}
{_running(targets, now)}
</body></html>
"""


# The landing page runs no script and loads nothing: only its own inline style.
LANDING_CSP = "default-src 'none'; style-src 'unsafe-inline'"
# Rows per table on the landing page: enough to see what is going on, bounded whatever the
# number of task lists.
LANDING_MAX_ROWS = 50


def _e(value: object) -> str:
    """Escaped for HTML text and quoted attributes: every value comes from the cloud."""
    return html.escape(str(value), quote=True)


def _target_row(ts: TaskListSnapshot, now: float) -> str:
    t = ts.target
    if not ts.polled:
        result = "not polled yet"
    elif ts.up:
        result = "ok"
    else:
        result = "failed: " + (ts.last_error or "")
    if ts.last_attempt is not None:
        result += f" ({now - ts.last_attempt:.0f}s ago)"
    ago = f"{now - ts.last_success:.0f}s ago" if ts.last_success else "never"
    took = f"{ts.poll_duration:.2f}s" if ts.poll_duration is not None else ""
    cells = [
        t.service,
        t.region,
        t.project_id,
        t.instance_id or "(task center)",
        t.instance_name,
        result,
        ago,
        took,
    ]
    cls = "ok" if ts.up else ("fail" if ts.polled else "")
    return f"<tr class='{cls}'>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"


def _task_list(t: TaskList) -> str:
    """A task list in one cell: service and instance name, then region and instance ID (the
    project for the task center, which has one list per project)."""
    name = t.instance_name or t.instance_id or "(task center)"
    where = t.instance_id or f"project {t.project_id}"
    return f"{_e(t.service)} {_e(name)}<br><small>{_e(t.region)} &middot; {_e(where)}</small>"


def _when(ts: float | None, now: float) -> str:
    """A UTC time and how long ago it was."""
    if ts is None or not math.isfinite(ts) or abs(ts) > 1e11:
        return "unknown"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return f"{stamp}<br><small>{_e(_ago(now - ts))}</small>"


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _task_table(
    table_id: str,
    title: str,
    note: str,
    when: str,
    rows: list[tuple[float | None, TaskList, str, str, str, str]],
    now: float,
) -> str:
    """A table of tasks with their context, newest first, at most LANDING_MAX_ROWS rows."""
    rows.sort(key=lambda r: -math.inf if r[0] is None else r[0], reverse=True)
    shown = rows[:LANDING_MAX_ROWS]
    if len(rows) > len(shown):
        note += f" Showing the newest {len(shown)} of {len(rows)}."
    head = f"<h2>{title}</h2>\n<p class='note'>{note}</p>\n"
    if not shown:
        return head + f"<p id='{table_id}'>None.</p>"
    body = "".join(
        f"<tr><td class='when'>{_when(at, now)}</td><td>{_task_list(t)}</td><td>{_e(name)}</td>"
        f"<td><code>{_e(task_id)}</code></td><td>{_e(user)}</td>"
        f"<td class='change'>{_e(change)}</td></tr>"
        for at, t, name, task_id, user, change in shown
    )
    return (
        head
        + f"<table id='{table_id}'><tr><th>{when}</th><th>task list</th><th>task</th>"
        + "<th>task ID</th><th>user</th><th>change</th></tr>\n"
        + body
        + "\n</table>"
    )


def _failures(targets: Iterable[TaskListSnapshot], now: float) -> str:
    rows: list[tuple[float | None, TaskList, str, str, str, str]] = [
        (finished_at, ts.target, name, task_id, user, change)
        for ts in targets
        for name, task_id, user, change, finished_at in ts.summary.last_failure
    ]
    return _task_table(
        "failures",
        "Recent failures",
        "The last failed task of each name on each task list.",
        "failed",
        rows,
        now,
    )


def _running(targets: Iterable[TaskListSnapshot], now: float) -> str:
    rows: list[tuple[float | None, TaskList, str, str, str, str]] = []
    for ts in targets:
        started = dict(ts.summary.oldest_unfinished)
        rows.extend(
            (started.get(name), ts.target, name, task_id, user, change)
            for name, task_id, user, change in ts.summary.oldest_unfinished_info
        )
    return _task_table(
        "running",
        "Running tasks",
        "The oldest unfinished task of each name on each task list.",
        "started",
        rows,
        now,
    )


def _text(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode("utf-8")
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


_Job = tuple[float, _Conn, _Request] | None  # queued at; None: stop


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
    - HEAD is GET without the body, for every path.
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
    ) -> None:
        host, port = parse_listen_address(address)
        host = host or "0.0.0.0"  # noqa: S104 - ':PORT' means every interface, as in Prometheus
        self.app = app
        self.max_connections = max_connections or default_max_connections()
        self.queue_timeout = queue_timeout
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
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
        self._conns: set[_Conn] = set()
        # Two lanes: 0 for every path but /metrics, 1 for /metrics.
        self._lanes: tuple[queue.SimpleQueue[_Job], ...] = (
            queue.SimpleQueue(),
            queue.SimpleQueue(),
        )
        self._done: deque[tuple[_Conn, list[bytes], bool]] = deque()
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
                    elif isinstance(key.data, _Conn) and key.data in self._conns:
                        if mask & selectors.EVENT_WRITE:
                            self._flush(key.data)
                        else:
                            self._read(key.data)
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

    def _watch(self, conn: _Conn, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._sel.register(conn.sock, events, conn)
        elif events == 0:
            self._sel.unregister(conn.sock)
        else:
            self._sel.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: _Conn) -> None:
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
            if len(self._conns) >= self.max_connections and not self._evict_one():
                with contextlib.suppress(OSError):
                    sock.send(_OVERLOADED)
                sock.close()
                continue
            with contextlib.suppress(OSError):  # small responses: no Nagle delay
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, peer, time.monotonic() + self.header_timeout)
            self._conns.add(conn)
            self._watch(conn, selectors.EVENT_READ)

    def _evict_one(self) -> bool:
        """Make room: close a connection its client has closed already (whose end of file
        is not read yet), else the one that has waited longest for its next request."""
        idle = []
        for conn in [c for c in self._conns if c.waiting]:
            try:
                pending = conn.sock.recv(1, socket.MSG_PEEK)
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

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
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

    def _dispatch(self, conn: _Conn) -> None:
        """Hand a complete request head to the workers; reject a bad one as early as possible."""
        end = conn.buf.find(b"\r\n\r\n")
        try:
            if end < 0 or end > MAX_HEAD_BYTES:
                if len(conn.buf) > MAX_HEAD_BYTES:
                    raise _BadRequest("431 Request Header Fields Too Large")
                line_end = conn.buf.find(b"\r\n")
                if line_end >= 0:
                    _parse_request_line(bytes(conn.buf[:line_end]))
                return
            request = _parse_head(bytes(conn.buf[:end]))
        except _BadRequest as exc:
            conn.buf.clear()
            self._respond(conn, _simple_response(exc.status, exc.status[4:].lower() + "\n"), False)
            return
        del conn.buf[: end + 4]
        conn.busy = True
        lane = 1 if request.target.partition("?")[0] == "/metrics" else 0
        self._lanes[lane].put((time.monotonic(), conn, request))

    def _respond(self, conn: _Conn, data: bytes | list[bytes], keep_alive: bool) -> None:
        """Send a response: a large one as its pieces, never joined into one more copy."""
        pieces = [p for p in ([data] if isinstance(data, bytes) else data) if p]
        conn.pending = deque(pieces[1:])
        conn.out = memoryview(pieces[0]) if pieces else None
        conn.close_after = not keep_alive
        conn.deadline = time.monotonic() + self.write_timeout
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                self._watch(conn, selectors.EVENT_WRITE)
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
                    conn.sock.send(_simple_response("408 Request Timeout", "request timeout\n"))
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
            queued_at, conn, request = job
            if conn.closed:
                continue
            if time.monotonic() - queued_at > self.queue_timeout:
                # Overloaded: the client has likely given up; answer at once, render nothing.
                data, keep_alive = [_OVERLOADED], False
            else:
                data, keep_alive = self._run_app(request, conn.peer)
            self._done.append((conn, data, keep_alive))
            self._wake()

    def _environ(self, request: _Request, peer: Any) -> Environ:
        path, _, query = request.target.partition("?")
        environ: Environ = {
            # HEAD is GET without the body: the app need not know about it.
            "REQUEST_METHOD": "GET" if request.method == "HEAD" else request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": self.server_name,
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": str(peer[0]) if isinstance(peer, tuple) else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
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

    def _run_app(self, request: _Request, peer: Any) -> tuple[list[bytes], bool]:
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
            result = self.app(self._environ(request, peer), start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not started:
                raise RuntimeError("the WSGI app did not call start_response")
            status, headers = started[0]
        except Exception:
            log.exception("http: the request handler failed")
            status = "500 Internal Server Error"
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            chunks = [b"internal error\n"]
            keep_alive = False
        length = sum(map(len, chunks))
        lines = [f"HTTP/1.1 {status}"]
        lines += [f"{n}: {v}" for n, v in headers if n.lower() not in _HOP_BY_HOP]
        lines.append(f"Content-Length: {length}")  # for HEAD too: the GET body's length
        lines.append("Date: " + formatdate(usegmt=True))
        if keep_alive:
            lines.append("Connection: keep-alive")
            lines.append(f"Keep-Alive: timeout={int(self.idle_timeout)}")
        else:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return ([head] if request.method == "HEAD" else [head, *chunks]), keep_alive
