"""`/metrics`: the stored task lines, then the exporter's own metrics.

The task families come pre-rendered from `exporter.exposition.store`; the exporter's own
metrics are rendered by prometheus_client (they describe this process and do not grow with
the fleet). Both the Prometheus text format and OpenMetrics are served, gzip when asked.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter.exposition.store import ExpositionStore
from exporter.web.wsgi import Environ, StartResponse

# Fast compression: a large exposition is compressed on every scrape that asks for gzip.
GZIP_LEVEL = 1


class MetricsApp:
    """The `/metrics` WSGI app: the stored task lines, then the exporter's own metrics."""

    def __init__(self, store: ExpositionStore, registry: CollectorRegistry) -> None:
        self.store = store
        self.registry = registry

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        params = parse_qs(environ.get("QUERY_STRING", ""))
        names = params.get("name[]")
        registry: Any = self.registry.restricted_registry(names) if names else self.registry
        chunks = self.store.render(openmetrics, frozenset(names) if names else None)
        chunks.append(encoder(registry))  # last: in OpenMetrics it ends with `# EOF`
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            chunks = [_gzip(chunks)]
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(map(len, chunks)))))
        start_response("200 OK", headers)
        return chunks


def _gzip(chunks: Iterable[bytes]) -> bytes:
    """One gzip member over all chunks, without joining them first."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    out = [compressor.compress(chunk) for chunk in chunks]
    out.append(compressor.flush())
    return b"".join(out)
