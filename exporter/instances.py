"""What discovery found, as plain values: instances and each listing's health.

Kept apart from `exporter.sources` (which does the listing, over HTTP) so that the
snapshot and the exposition can hold them without importing any I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """An instance as a list-instances API describes it."""

    service: str
    region: str
    project_id: str
    instance_id: str
    name: str
    engine: str
    engine_version: str
    status: str
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DiscoveryHealth:
    service: str
    region: str
    project_id: str  # empty while the project is not resolved
    up: bool
    error: str | None = None
