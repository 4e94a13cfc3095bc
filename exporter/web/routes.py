"""The routes: `/metrics`, the landing page `/`, `/healthz`, `/readyz` and `/-/reload`.

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
    """Which answer each path gets; GET and HEAD, and POST (or PUT) for `/-/reload`."""

    def __init__(
        self,
        metrics_app: MetricsApp,
        snapshots: SnapshotStore,
        health: Callable[[], tuple[bool, str]],
        ready: Callable[[], bool],
        reload: Callable[[], tuple[bool, list[str]]] | None = None,
    ) -> None:
        self.metrics_app = metrics_app
        self.snapshots = snapshots
        self.health = health
        self.ready = ready
        self.reload = reload

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/-/reload":
            return self._reload(method, start_response)
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

    def _reload(self, method: str, start_response: StartResponse) -> Iterable[bytes]:
        """As Prometheus: POST or PUT reloads the configuration file; 500 and every problem
        when it is refused (the old configuration stays in use)."""
        if method not in ("POST", "PUT"):
            return plain_text(
                start_response, "405 Method Not Allowed", "use POST to reload the configuration\n"
            )
        if self.reload is None:
            return plain_text(start_response, "404 Not Found", "not found\n")
        ok, problems = self.reload()
        if ok:
            return plain_text(start_response, "200 OK", "configuration reloaded\n")
        text = "".join(f"{p}\n" for p in problems)
        return plain_text(
            start_response, "500 Internal Server Error", f"configuration not reloaded:\n{text}"
        )
