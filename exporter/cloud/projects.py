"""A target's project ID, through IAM, when the configuration leaves it out.

The project is the one named after the region (`GET /v3/projects?name=<region>`); an IAM
token scoped to a project names it itself, so password credentials need no further request.
"""

from __future__ import annotations

from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialError, CredentialProvider, IamPassword
from exporter.text import clean_text


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
