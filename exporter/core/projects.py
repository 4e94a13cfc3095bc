"""Which of an account's projects an account-wide target covers, and in which region.

IAM's `GET /v3/auth/projects` lists every project the credentials can use: the region
projects, named after their region (`eu-de`), their sub-projects, named `{region}_{name}`
(`eu-de_analytics`), and system projects such as `MOS`, which belong to no region. Pure
rules over the parsed answer; the request is `exporter.cloud.projects`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config.regions import REGION_NAME
from exporter.config.scopes import selected

MAX_PROJECTS = 2_000  # far more than any account has: a bound on a hostile answer


@dataclass(frozen=True, slots=True)
class Project:
    """A project an account-wide target polls: its ID, its name and the region it is in."""

    project_id: str
    name: str
    region: str


def region_of(name: str) -> str | None:
    """The region a project name belongs to: `eu-de` and `eu-de_team` are in `eu-de`; `MOS`
    is in none."""
    region = name.split("_", 1)[0]
    return region if REGION_NAME.match(region) else None


def account_projects(
    entries: Sequence[tuple[str, str, bool]],
    regions: Sequence[str] = (),
    exclude_regions: Sequence[str] = (),
    projects: Sequence[str] = (),
    exclude_projects: Sequence[str] = (),
) -> list[Project]:
    """The region projects and sub-projects among (id, name, enabled) entries that pass the
    target's patterns, sorted by region then name; disabled projects are left out."""
    found: dict[str, Project] = {}
    for project_id, name, enabled in entries[:MAX_PROJECTS]:
        region = region_of(name)
        if not enabled or not project_id or region is None:
            continue
        if not selected(region, regions, exclude_regions):
            continue
        if not selected(name, projects, exclude_projects):
            continue
        found.setdefault(project_id, Project(project_id, name, region))
    return sorted(found.values(), key=lambda p: (p.region, p.name))
