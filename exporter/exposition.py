"""`/metrics` from pre-rendered lines: a scrape concatenates, it renders nothing.

Like kube-state-metrics' metrics store: the lines of each object (a task list, a group of
duration series, the discovery results) are rendered per family when the object changes
(`exporter.snapshot`) and kept here as bytes. A scrape writes each family's header and the
stored blocks behind it, then the exporter's own metrics, which prometheus_client renders
(they do not grow with the fleet). Both the Prometheus text format and OpenMetrics are
served; `?name[]=` selects series by sample name for every family.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter.metrics import Family

StartResponse = Callable[..., Any]

# Fast compression: a large exposition is compressed on every scrape that asks for gzip.
GZIP_LEVEL = 1


class ExpositionStore:
    """The rendered lines of every object, by family; written by the poller's thread, read
    by the HTTP threads."""

    def __init__(self, families: Sequence[Family]) -> None:
        self.families = tuple(families)
        self._headers = {(f.name, om): f.header(om) for f in self.families for om in (False, True)}
        self._blocks: dict[str, dict[Hashable, bytes]] = {f.name: {} for f in self.families}
        self._lock = threading.Lock()

    def put(self, obj: Hashable, blocks: Mapping[str, bytes]) -> None:
        """Replace `obj`'s lines in each family named in `blocks` (empty bytes: none)."""
        with self._lock:
            for name, data in blocks.items():
                family = self._blocks[name]
                if data:
                    family[obj] = data
                else:
                    family.pop(obj, None)

    def remove(self, obj: Hashable) -> None:
        """Drop every line of `obj`: its series disappear from the next scrape."""
        with self._lock:
            for family in self._blocks.values():
                family.pop(obj, None)

    def render(self, openmetrics: bool, names: frozenset[str] | None = None) -> list[bytes]:
        """One chunk per family: its header and its objects' lines.

        With `names` (the `name[]` parameters), only the samples of those names, and only
        the families that have some, as prometheus_client's restricted registry does.
        """
        with self._lock:
            blocks = [(f, list(self._blocks[f.name].values())) for f in self.families]
        out: list[bytes] = []
        for family, parts in blocks:
            if names is not None:
                wanted = names.intersection(family.sample_names)
                if not wanted:
                    continue
                if len(wanted) < len(family.sample_names):
                    parts = [_only(part, wanted) for part in parts]  # noqa: PLW2901
                if not any(parts):
                    continue
            out.append(self._headers[(family.name, openmetrics)] + b"".join(parts))
        return out


def _only(block: bytes, names: Iterable[str]) -> bytes:
    """The lines of `block` whose sample name is one of `names` (for a partial `name[]`)."""
    prefixes = tuple(n.encode() + b"{" for n in names) + tuple(n.encode() + b" " for n in names)
    return b"".join(line for line in block.splitlines(keepends=True) if line.startswith(prefixes))


class MetricsApp:
    """The `/metrics` WSGI app: the stored task lines, then the exporter's own metrics."""

    def __init__(self, store: ExpositionStore, registry: CollectorRegistry) -> None:
        self.store = store
        self.registry = registry

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
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
