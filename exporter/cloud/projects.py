"""Projects through IAM: a target's project ID, and every project of an account.

A target's project is the one named after the region (`GET /v3/projects?name=<region>`); an
IAM token scoped to a project names it itself, so password credentials need no further
request. An account-wide target lists every project its credentials can use
(`GET /v3/auth/projects`, which needs no IAM permission). Whether IAM takes AK/SK signatures
there is not documented (its examples send a token): when it refuses a signed request, the
domain's projects are listed instead (`GET /v3/projects`, which needs
`iam:projects:listProjects`).
"""

from __future__ import annotations

import logging
from typing import Any

from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialError, CredentialProvider, IamPassword
from exporter.core.projects import MAX_PROJECTS
from exporter.text import clean_text

log = logging.getLogger(__name__)


async def resolve_project(
    client: CloudClient, credentials: CredentialProvider, iam_url: str, region: str
) -> str:
    """The ID of the project named `region` for these credentials; ApiError when none."""
    if isinstance(credentials, IamPassword):
        try:
            await credentials.auth()
        except CredentialError as exc:
            raise ApiError(f"credentials: {exc}") from None
        if credentials.project_id:
            return credentials.project_id
    body = await client.request_json(
        iam_url + "/v3/projects", {"name": region}, credentials, "iam", region
    )
    projects = body.get("projects") if isinstance(body, dict) else None
    if not isinstance(projects, list) or not projects or not isinstance(projects[0], dict):
        raise ApiError(f"IAM knows no project named {region} for these credentials")
    project = clean_text(str(projects[0].get("id") or ""), 128)
    if not project:
        raise ApiError(f"IAM answered without an ID for the project named {region}")
    return project


async def list_account_projects(
    client: CloudClient, credentials: CredentialProvider, iam_url: str
) -> list[tuple[str, str, bool]]:
    """(id, name, enabled) of every project the credentials can use; ApiError when IAM does
    not answer with a list. IDs and names are cleaned and cut: they become label values."""
    try:
        body = await client.request_json(iam_url + "/v3/auth/projects", {}, credentials, "iam", "")
    except ApiError as exc:
        if isinstance(credentials, IamPassword) or exc.status not in (401, 403, 404):
            raise
        log.info(
            "IAM refuses a signed project list for these keys; listing the domain's projects "
            "(needs iam:projects:listProjects)",
            extra={"fields": {"error": str(exc)}},
        )
        body = await client.request_json(iam_url + "/v3/projects", {}, credentials, "iam", "")
    raw = body.get("projects") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise ApiError("unexpected answer from IAM's project list (no projects)")
    if len(raw) > MAX_PROJECTS:
        raise ApiError(f"IAM listed more than {MAX_PROJECTS} projects")
    return [entry for item in raw if (entry := _project(item)) is not None]


def _project(item: Any) -> tuple[str, str, bool] | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    name = item.get("name")
    if not isinstance(name, str):
        return None
    return clean_text(item["id"], 128), clean_text(name, 128), item.get("enabled") is not False
