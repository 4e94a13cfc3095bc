"""Each cloud's regions and its account-wide IAM endpoint, kept in this one place.

The table only advises: clouds add regions, so a region missing here is a warning of
`--check-config` (with the closest known name), never an error. The regions are those the
official SDKs list for DCS and DMS (Huawei Cloud) and those the clouds document.
"""

from __future__ import annotations

import difflib
import re

REGIONS: dict[str, tuple[str, ...]] = {
    "huaweicloud": (
        "af-north-1",
        "af-south-1",
        "ae-ad-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "cn-east-2",
        "cn-east-3",
        "cn-east-4",
        "cn-east-5",
        "cn-north-1",
        "cn-north-2",
        "cn-north-4",
        "cn-north-9",
        "cn-north-11",
        "cn-north-12",
        "cn-south-1",
        "cn-south-2",
        "cn-south-4",
        "cn-southwest-2",
        "cn-southwest-3",
        "eu-west-0",
        "eu-west-101",
        "la-north-2",
        "la-south-2",
        "me-east-1",
        "my-kualalumpur-1",
        "na-mexico-1",
        "ru-moscow-1",
        "ru-northwest-2",
        "sa-brazil-1",
        "tr-west-1",
    ),
    "huaweicloud-eu": ("eu-west-101",),
    "opentelekomcloud": ("eu-ch2", "eu-de", "eu-nl"),
}

# Where an account-wide target lists its projects (`GET /v3/auth/projects`) unless
# `endpoints.iam` says otherwise: IAM is global, one endpoint answers for every region.
ACCOUNT_IAM: dict[str, str] = {
    "huaweicloud": "https://iam.myhuaweicloud.com",
    "huaweicloud-eu": "https://iam.eu-west-101.myhuaweicloud.eu",
    "opentelekomcloud": "https://iam.eu-de.otc.t-systems.com",
}

# What a region project's name looks like (`ap-southeast-1`, `eu-de`, `eu-west-101`); a
# system project such as `MOS` does not.
REGION_NAME = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+)+$")


def region_advice(cloud: str, region: str) -> str | None:
    """Why `region` looks wrong for `cloud` (None when it is known there), without quoting it.

    A region of another cloud names that cloud; otherwise the closest known region is given.
    """
    known = REGIONS.get(cloud, ())
    if region in known:
        return None
    others = [c for c, names in REGIONS.items() if c != cloud and region in names]
    if others:
        return f"a region of cloud {others[0]}, not of {cloud}: set cloud: {others[0]}"
    close = difflib.get_close_matches(region, known, n=1, cutoff=0.0)
    hint = f" (closest known: {close[0]})" if close else ""
    return f"a region unknown to {cloud}{hint}; fine if the cloud opened it recently"
