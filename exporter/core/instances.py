"""What discovery found, as plain values: instances, each listing's health, the filters.

The listing itself is `exporter.cloud.discovery` (over HTTP); these values are what the
targets keep and the snapshot and exposition hold, without any I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.config import DiscoverConfig


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


def matches(info: InstanceInfo, rules: DiscoverConfig) -> bool:
    """Whether a discovered instance passes the name, status and tag filters."""
    if rules.name_regex and not re.search(rules.name_regex, info.name):
        return False
    if rules.exclude_name_regex and re.search(rules.exclude_name_regex, info.name):
        return False
    if rules.statuses and info.status.upper() not in rules.statuses:
        return False
    tags = dict(info.tags)

    def has(key: str, value: str) -> bool:
        return key in tags and (value in ("", "*") or tags[key] == value)

    if not all(has(k, v) for k, v in rules.tags.items()):
        return False
    return not any(has(k, v) for k, v in rules.exclude_tags.items())
