"""The `/metrics` bodies scrapes share: built once, served to every scrape that may have them.

A body read after a scrape arrived is as fresh as that scrape can ask for; so a scrape takes
the last body built for its variant (format, `name[]` filter, gzip) if it was built after the
scrape arrived, and builds one otherwise, which the scrapes queued behind it then share. The
task part (the stored lines, joined, and their gzip prefix) is rebuilt only when the
exposition store's generation moved; the exporter's own metrics, which describe this process,
are rendered again for every body, so none is older than the scrape it answers.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.exposition.store import ExpositionStore

# Fast compression: a large exposition is compressed once per change it goes through.
GZIP_LEVEL = 1
GZIP_BATCH = 256 * 1024  # bytes of stored blocks compressed at a time
# Variants kept (each `name[]` set is one): clients choose them, so they are bounded.
MAX_VARIANTS = 32

Variant = tuple[bool, frozenset[str] | None, bool]  # OpenMetrics, name[] filter, gzip


@dataclass
class _Tasks:
    """The task part of a variant's body, at one generation of the store."""

    generation: int
    chunks: list[bytes]
    gzip_prefix: bytes = b""
    gzip: Any = None  # the compressor after the task part, copied for each body's tail


@dataclass
class _Body:
    built_at: float  # monotonic, when what it shows was read
    chunks: list[bytes]


class SharedBodies:
    """Bodies of `/metrics`, by variant, shared between the scrapes that may have them."""

    def __init__(self, store: ExpositionStore) -> None:
        self.store = store
        self._lock = threading.Lock()  # one build at a time; the others wait and share it
        self._bodies: dict[Variant, _Body] = {}
        self._tasks: dict[Variant, _Tasks] = {}

    def body(
        self, variant: Variant, arrived: float, own_metrics: Callable[[], bytes]
    ) -> list[bytes]:
        """The body for `variant`, built no earlier than `arrived` (monotonic seconds)."""
        with self._lock:
            found = self._bodies.get(variant)
            if found is not None and found.built_at >= arrived:
                return found.chunks
            if len(self._bodies) >= MAX_VARIANTS:
                self._bodies.clear()
                self._tasks.clear()
            built_at = time.monotonic()
            tasks = self._task_part(variant)
            own = own_metrics()  # last: in OpenMetrics it ends with `# EOF`
            if variant[2]:
                compressor = tasks.gzip.copy()
                chunks = [tasks.gzip_prefix + compressor.compress(own) + compressor.flush()]
            else:
                chunks = [*tasks.chunks, own]
            self._bodies[variant] = _Body(built_at, chunks)
            return chunks

    def _task_part(self, variant: Variant) -> _Tasks:
        openmetrics, names, gzip = variant
        found = self._tasks.get(variant)
        if found is not None and found.generation == self.store.generation:
            return found
        generation, chunks = self.store.render_at(openmetrics, names, join=not gzip)
        tasks = _Tasks(generation, chunks)
        if gzip:
            # Compressed in batches of the stored blocks: the whole is never joined.
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
            out: list[bytes] = []
            batch: list[bytes] = []
            size = 0
            for chunk in chunks:
                batch.append(chunk)
                size += len(chunk)
                if size >= GZIP_BATCH:
                    out.append(compressor.compress(b"".join(batch)))
                    batch.clear()
                    size = 0
            out.append(compressor.compress(b"".join(batch)))
            tasks.gzip_prefix = b"".join(out)
            tasks.gzip = compressor
            tasks.chunks = []  # only the compressed bytes are kept
        self._tasks[variant] = tasks
        return tasks
