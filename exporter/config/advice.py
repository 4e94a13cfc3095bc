"""What users get wrong in a valid file: warnings, and better words for some errors.

Warnings never stop the exporter (clouds add regions, and an odd ID may still be right):
`--check-config` prints them and still exits 0. Like every message here, none quotes a value
from the file; they name the known value meant instead.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from exporter.config.base import SERVICES, Loc
from exporter.config.regions import REGIONS, region_advice

# DCS and DMS instance IDs are UUIDs; task and project IDs are 32 hex digits without dashes.
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_HEX32 = re.compile(r"^[0-9a-f]{32}$", re.I)

# Names users give a service, and the service that runs it.
_ALIASES = {
    "redis": "dcs",
    "memcached": "dcs",
    "memcache": "dcs",
    "cache": "dcs",
    "dcs-redis": "dcs",
    "rabbit": "rabbitmq",
    "rocket": "rocketmq",
    "reliability": "rocketmq",  # what the DMS listing calls RocketMQ
    "dms-kafka": "kafka",
}


def service_hint(value: Any) -> str | None:
    """`did you mean dcs?` for a service name that is not one (None when nothing is close)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    word = value.strip().lower()
    if word == "dms":
        return "DMS has three services: kafka, rabbitmq or rocketmq"
    meant = _ALIASES.get(word)
    if meant is None:
        close = difflib.get_close_matches(word, SERVICES, n=1, cutoff=0.6)
        meant = close[0] if close else None
    if meant is None:
        return None
    if meant == "dcs" and word in ("redis", "memcached", "memcache", "cache", "dcs-redis"):
        return "did you mean dcs? (Redis and Memcached instances are DCS)"
    return f"did you mean {meant}?"


def instance_id_advice(value: Any) -> str | None:
    """Why an instance ID does not look like one (None when it is a UUID)."""
    if not isinstance(value, str) or _UUID.match(value):
        return None
    if _HEX32.match(value):
        return (
            "does not look like an instance ID: 32 hex digits are a task or project ID; "
            "DCS and DMS instance IDs are UUIDs (8-4-4-4-12 hex digits)"
        )
    return "does not look like an instance ID: DCS and DMS instance IDs are UUIDs"


def warnings_of(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """(path, message) of every warning in the raw data of a file that validated: the
    messages name its `cloud`, which is then one of the known names, never a value typed."""
    found: list[tuple[Loc, str]] = []
    targets = data.get("targets")
    for i, target in enumerate(targets if isinstance(targets, list) else []):
        if not isinstance(target, Mapping):
            continue
        cloud = target.get("cloud", "huaweicloud")
        region = target.get("region")
        if isinstance(cloud, str) and isinstance(region, str):
            advice = region_advice(cloud, region)
            if advice is not None:
                found.append((("targets", i, "region"), advice))
        patterns = target.get("regions")
        known = REGIONS.get(cloud, ()) if isinstance(cloud, str) else ()
        for j, pattern in enumerate(patterns if isinstance(patterns, list) and known else []):
            if isinstance(pattern, str) and not any(fnmatch.fnmatchcase(r, pattern) for r in known):
                found.append((("targets", i, "regions", j), f"matches no region known to {cloud}"))
        instances = target.get("instances")
        for j, inst in enumerate(instances if isinstance(instances, list) else []):
            if isinstance(inst, Mapping):
                advice = instance_id_advice(inst.get("id"))
                if advice is not None:
                    found.append((("targets", i, "instances", j, "id"), advice))
    return found
