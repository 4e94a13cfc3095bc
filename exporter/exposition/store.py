"""The pre-rendered exposition: a scrape concatenates, it renders nothing.

Like kube-state-metrics' metrics store: the lines of each object (a task list, a group of
duration series, the discovery results) are rendered per family when the object changes
(`exporter.exposition.snapshot`) and kept here as bytes. A scrape (`exporter.web.metrics`)
takes each family's header and the stored blocks behind it, in the Prometheus text format or
OpenMetrics; `name[]` selects samples by name for every family.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence

from exporter.exposition.families import Family


class ExpositionStore:
    """The rendered lines of every object, by family; written by the poller's thread, read
    by the HTTP threads."""

    def __init__(self, families: Sequence[Family]) -> None:
        self.families = tuple(families)
        self._headers = {(f.name, om): f.header(om) for f in self.families for om in (False, True)}
        self._blocks: dict[str, dict[Hashable, bytes]] = {f.name: {} for f in self.families}
        self._lock = threading.Lock()
        # Moves at every change: a scrape's joined body stays good while it does not.
        self.generation = 0

    def put(self, obj: Hashable, blocks: Mapping[str, bytes]) -> None:
        """Replace `obj`'s lines in each family named in `blocks` (empty bytes: none)."""
        with self._lock:
            self.generation += 1
            for name, data in blocks.items():
                family = self._blocks[name]
                if data:
                    family[obj] = data
                else:
                    family.pop(obj, None)

    def remove(self, obj: Hashable) -> None:
        """Drop every line of `obj`: its series disappear from the next scrape."""
        with self._lock:
            self.generation += 1
            for family in self._blocks.values():
                family.pop(obj, None)

    def render(self, openmetrics: bool, names: frozenset[str] | None = None) -> list[bytes]:
        """One chunk per family: its header and its objects' lines.

        With `names` (the `name[]` parameters), only the samples of those names, and only
        the families that have some, as prometheus_client's restricted registry does.
        """
        return self.render_at(openmetrics, names)[1]

    def render_at(
        self, openmetrics: bool, names: frozenset[str] | None = None, join: bool = True
    ) -> tuple[int, list[bytes]]:
        """`render`, with the generation the chunks are of; without `join`, the headers and
        objects' blocks in order, unjoined (for a compressor: no copy of the whole)."""
        with self._lock:
            generation = self.generation
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
            header = self._headers[(family.name, openmetrics)]
            if join:
                out.append(header + b"".join(parts))
            else:
                out.append(header)
                out.extend(parts)
        return generation, out


def _only(block: bytes, names: Iterable[str]) -> bytes:
    """The lines of `block` whose sample name is one of `names` (for a partial `name[]`)."""
    prefixes = tuple(n.encode() + b"{" for n in names) + tuple(n.encode() + b" " for n in names)
    return b"".join(line for line in block.splitlines(keepends=True) if line.startswith(prefixes))
