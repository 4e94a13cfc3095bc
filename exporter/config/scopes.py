"""Account-wide targets: which keys go with them, and which projects their patterns keep.

A target without `region` covers every project its credentials can use. Some keys only make
sense with a region (an instance ID or a project ID belongs to one), the name filters only
without one; these checks read the raw target, like every `cross_checks`, so that they are
reported together with the field errors.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from exporter.config.base import Loc

ACCOUNT_ONLY = ("regions", "exclude_regions", "projects", "exclude_projects")
_WITHOUT_REGION = "an account-wide target (without region) finds its projects and instances"


def account_checks(target: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems of one raw target: keys that need a region, or that need none."""
    problems: list[tuple[Loc, str]] = []
    if target.get("region") is None:
        if target.get("project_id") is not None:
            problems.append((("project_id",), f"needs region: {_WITHOUT_REGION} itself"))
        if target.get("instances"):
            problems.append(
                (("instances",), f"needs region: {_WITHOUT_REGION} itself; name the region")
            )
        endpoints = target.get("endpoints")
        iam = endpoints.get("iam") if isinstance(endpoints, Mapping) else None
        if isinstance(iam, str) and "{region}" in iam:
            problems.append(
                (("endpoints", "iam"), "an account-wide target's IAM endpoint has no {region}")
            )
    else:
        for key in ACCOUNT_ONLY:
            if target.get(key):
                problems.append(((key,), "only for account-wide targets (without region)"))
    return problems


def selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a region or project name passes shell-style include and exclude patterns."""
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in exclude)
