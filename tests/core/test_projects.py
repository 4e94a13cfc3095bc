"""Which projects of an IAM listing an account-wide target covers, and their regions."""

from __future__ import annotations

import pytest

from exporter.core.projects import MAX_PROJECTS, Project, account_projects, region_of

pytestmark = pytest.mark.smoke

LISTING = [
    ("p-eu-de", "eu-de", True),
    ("p-team", "eu-de_team", True),
    ("p-sandbox", "eu-de_sandbox", True),
    ("p-eu-nl", "eu-nl", True),
    ("p-mos", "MOS", True),  # a system project: no region
    ("p-off", "ap-southeast-1", False),  # disabled
    ("", "af-south-1", True),  # no ID
    ("p-eu-de", "eu-de", True),  # listed twice
]


def test_region_of_a_project_name() -> None:
    assert region_of("eu-west-101") == "eu-west-101"
    assert region_of("eu-de_team_a") == "eu-de"
    assert region_of("MOS") is None
    assert region_of("_x") is None


def test_region_projects_and_sub_projects_are_kept_in_order() -> None:
    assert account_projects(LISTING) == [
        Project("p-eu-de", "eu-de", "eu-de"),
        Project("p-sandbox", "eu-de_sandbox", "eu-de"),
        Project("p-team", "eu-de_team", "eu-de"),
        Project("p-eu-nl", "eu-nl", "eu-nl"),
    ]


def test_patterns_on_regions_and_project_names() -> None:
    ids = [p.project_id for p in account_projects(LISTING, regions=["eu-d*"])]
    assert ids == ["p-eu-de", "p-sandbox", "p-team"]
    ids = [p.project_id for p in account_projects(LISTING, exclude_regions=["eu-de"])]
    assert ids == ["p-eu-nl"]
    ids = [p.project_id for p in account_projects(LISTING, projects=["eu-de_*"])]
    assert ids == ["p-sandbox", "p-team"]
    ids = [p.project_id for p in account_projects(LISTING, exclude_projects=["*_sandbox"])]
    assert ids == ["p-eu-de", "p-team", "p-eu-nl"]


def test_a_hostile_listing_is_bounded() -> None:
    many = [(f"p{i}", f"eu-de_{i}", True) for i in range(MAX_PROJECTS + 50)]
    assert len(account_projects(many)) == MAX_PROJECTS
