"""`/metrics`: the stored task lines, then the exporter's own metrics.

The task families come pre-rendered from `exporter.exposition.store`; the exporter's own
metrics are rendered by prometheus_client (they describe this process and do not grow with
the fleet). Both the Prometheus text format and OpenMetrics are served, gzip when asked.
Scrapes share their bodies (`exporter.web.bodies`): a storm of scrapes builds one body.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter.exposition.store import ExpositionStore
from exporter.web.bodies import SharedBodies
from exporter.web.wsgi import RECEIVED, Environ, StartResponse


class MetricsApp:
    """The `/metrics` WSGI app: the stored task lines, then the exporter's own metrics."""

    def __init__(self, store: ExpositionStore, registry: CollectorRegistry) -> None:
        self.store = store
        self.registry = registry
        self.bodies = SharedBodies(store)

    def use(self, store: ExpositionStore) -> None:
        """Serve another store from now on (a reload rebuilt the exposition): its own
        shared bodies, none of the old store's."""
        self.bodies = SharedBodies(store)
        self.store = store

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        arrived = environ.get(RECEIVED)
        if not isinstance(arrived, float):
            arrived = time.monotonic()
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        params = parse_qs(environ.get("QUERY_STRING", ""))
        names = params.get("name[]")
        registry: Any = self.registry.restricted_registry(names) if names else self.registry
        gzip = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
        chunks = self.bodies.body(
            (openmetrics, frozenset(names) if names else None, gzip),
            arrived,
            lambda: bytes(encoder(registry)),
        )
        headers = [("Content-Type", content_type)]
        if gzip:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(map(len, chunks)))))
        start_response("200 OK", headers)
        return chunks
