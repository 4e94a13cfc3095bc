"""What the probe may import (the package-level rules live in tests/test_layering.py).

The probe uses the polls' own client and reader (and the targets' project lookup and
discovery), and reaches neither the state store, the poller, the exposition nor the web
server: it keeps no state file and serves nothing. Only the command line imports it.
"""

from __future__ import annotations

import pytest

from tests.test_layering import LEAVES, MODULES, _reachable, imports

pytestmark = pytest.mark.smoke

PROBE = sorted(m for m in MODULES if m.startswith("exporter.probe"))
ALLOWED_UNITS = LEAVES | {"exporter", "exporter.core", "exporter.cloud", "exporter.probe"}
ALLOWED_POLLING = {"exporter.polling", "exporter.polling.dialects", "exporter.polling.targets"}


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_probe_is_there() -> None:
    assert {"exporter.probe.run", "exporter.probe.checks", "exporter.probe.record"} <= set(PROBE)
    assert "exporter.polling.dialects" in _reachable("exporter.probe.run")


@pytest.mark.parametrize("module", PROBE)
def test_the_probe_imports_only_its_layers(module: str) -> None:
    inside = {d for d in imports()[module] if d.startswith("exporter")}
    outside = {d for d in inside if _unit(d) not in ALLOWED_UNITS and d not in ALLOWED_POLLING}
    assert not outside, outside


@pytest.mark.parametrize("module", PROBE)
def test_the_probe_reaches_no_state_poller_exposition_or_web(module: str) -> None:
    reached = {d for d in _reachable(module) if d in MODULES}
    forbidden = {
        d
        for d in reached
        if _unit(d) in ("exporter.web", "exporter.exposition", "exporter.simulator")
        or d in ("exporter.polling.state", "exporter.polling.poller", "exporter.app")
    }
    assert not forbidden


def test_only_the_command_line_imports_the_probe() -> None:
    importers = {
        m
        for m, deps in imports().items()
        if not m.startswith("exporter.probe") and any(d.startswith("exporter.probe") for d in deps)
    }
    assert importers == {"exporter.cli"}
