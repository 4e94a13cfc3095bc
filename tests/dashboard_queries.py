"""Read the PromQL out of a Grafana dashboard, and fill its variables in the way Grafana would.

Shared by the structural dashboard tests and the end-to-end test, which runs every query
against a real Prometheus: both must see exactly the queries Grafana would send.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Grafana's builtins, at values a short end-to-end run can answer (1s scrapes, minutes of data).
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}

# $name, ${name} and ${name:format}; names are word characters, as in Grafana.
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included (a collapsed row keeps its panels inside)."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title or "annotation: <name>", PromQL) for every Prometheus query of a dashboard."""
    queries: list[tuple[str, str]] = []
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if (annotation.get("datasource") or {}).get("type") != "prometheus":
            continue  # Grafana's own annotations query no Prometheus
        expr = annotation.get("expr") or (annotation.get("target") or {}).get("expr")
        if expr:
            queries.append((f"annotation: {annotation['name']}", expr))
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                queries.append((panel.get("title", ""), target["expr"]))
    return queries


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace $region, $project, $service, $instance (or ${name}) and Grafana's builtins.

    A name found in neither `values` nor the builtins is left as it is, so that a caller can
    detect it (a `$` left in the result).
    """
    known = {**BUILTINS, **values}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return known.get(name, match.group(0))

    return _VARIABLE.sub(replace, expr)
