"""Golden exposition: a fixed snapshot rendered by `/metrics`, byte for byte.

The store of tests/exposition/test_snapshot.py (every kind of series, hostile label values, a
restored task center, a never-polled instance, discovery) at a fixed time, served through
`MetricsApp` as Prometheus text and as OpenMetrics, with and without `?name[]=`. Any change
to a name, a label, a value's formatting, the order of families or of series shows here as a
diff a reviewer can read.

To regenerate after an intended change:
`UPDATE_GOLDEN=1 pytest tests/exposition/test_golden.py`, then review
`git diff tests/exposition/golden/`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore
from exporter.web.metrics import MetricsApp
from tests.exposition.test_snapshot import BOUNDS, OM, _populate, _scrape

pytestmark = pytest.mark.smoke

GOLDEN = Path(__file__).resolve().parent / "golden"
NOW = 1_800_000_000.0
UPDATE = os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")
FILTER = "name[]=huaweicloud_task_up&name[]=huaweicloud_task_duration_seconds_count"


def _app(by_instance: bool) -> MetricsApp:
    families = TaskFamilies(60.0, by_instance)
    store = SnapshotStore(BOUNDS, by_instance, families)
    _populate(store, by_instance, now=NOW)
    return MetricsApp(store.exposition, CollectorRegistry(auto_describe=False))


@pytest.mark.parametrize("by_instance", [False, True], ids=["aggregate", "by-instance"])
@pytest.mark.parametrize(
    ("fmt", "accept", "query"),
    [
        ("prom", "", ""),
        ("om", OM, ""),
        ("prom-filtered", "", FILTER),
        ("om-filtered", OM, FILTER),
    ],
)
def test_exposition_matches_golden(by_instance: bool, fmt: str, accept: str, query: str) -> None:
    headers, body = _scrape(_app(by_instance), accept=accept, query=query)
    expected_type = "application/openmetrics-text" if accept else "text/plain"
    assert headers["Content-Type"].startswith(expected_type)
    path = GOLDEN / f"{'by-instance' if by_instance else 'aggregate'}.{fmt}.txt"
    if UPDATE:
        path.write_bytes(body)
    assert path.exists(), f"{path.name} missing: run with UPDATE_GOLDEN=1"
    assert body == path.read_bytes(), f"{path.name} differs (UPDATE_GOLDEN=1 to regenerate)"


def test_rendering_is_deterministic() -> None:
    """Two stores built alike render alike: the golden files cannot be flaky."""
    assert _scrape(_app(False))[1] == _scrape(_app(False))[1]
