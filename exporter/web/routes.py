"""The routes: `/metrics`, the landing page `/`, `/healthz` and `/readyz`.

A WSGI app over what the exporter publishes: the pre-rendered exposition, the snapshot the
landing page shows, and the health and readiness the poller reports. It knows nothing of
sockets (`exporter.web.server` runs it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from exporter.exposition.snapshot import SnapshotStore
from exporter.web.landing import LANDING_CSP, render_landing
from exporter.web.metrics import MetricsApp
from exporter.web.wsgi import Environ, StartResponse, plain_text


class Router:
    """Which answer each path gets; GET and HEAD only."""

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
            return plain_text(start_response, "405 Method Not Allowed", "method not allowed\n")
        if path == "/metrics":
            return self.metrics_app(environ, start_response)
        if path == "/healthz":
            ok, why = self.health()
            return plain_text(
                start_response, "200 OK" if ok else "503 Service Unavailable", why + "\n"
            )
        if path == "/readyz":
            if self.ready():
                return plain_text(start_response, "200 OK", "ready\n")
            return plain_text(start_response, "503 Service Unavailable", "first polls not done\n")
        if path == "/":
            body = render_landing(self.snapshots.current, time.time()).encode("utf-8")
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
        return plain_text(start_response, "404 Not Found", "not found\n")
