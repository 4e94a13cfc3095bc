"""Listing the instances of a service in a project, page by page (DCS and DMS list APIs).

What is read from a listing becomes label values, so every string is cleaned and cut. An
instance of another engine (a server that ignored the DMS engine filter) is left out.
"""

from __future__ import annotations

from typing import Any

from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialProvider
from exporter.cloud.paging import check_pages
from exporter.core.instances import InstanceInfo
from exporter.core.tasklists import dialect_of
from exporter.text import clean_text

# How each service is asked for in the DMS list-instances API, and the page sizes allowed.
DMS_ENGINES = {"kafka": "kafka", "rabbitmq": "rabbitmq", "rocketmq": "reliability"}
DCS_LIST_LIMIT = 100
DMS_LIST_LIMIT = 50
DMS_OFFSET_PAST_END = "DMS.40050010"
MAX_LIST_PAGES = 2_000


def _text(value: Any) -> str:
    """A string from a listing, cleaned and cut: names and statuses become label values."""
    return clean_text(str(value), 128) if value is not None else ""


def _tags(raw: Any) -> tuple[tuple[str, str], ...]:
    """Tags as `[{"key": k, "value": v}]` (the APIs) or as a mapping; anything else: none."""
    if isinstance(raw, dict):
        return tuple(sorted((_text(k), _text(v)) for k, v in raw.items()))
    if isinstance(raw, list):
        return tuple(
            sorted(
                (_text(t.get("key")), _text(t.get("value", "")))
                for t in raw
                if isinstance(t, dict) and t.get("key") is not None
            )
        )
    return ()


async def list_instances(
    client: CloudClient,
    credentials: CredentialProvider,
    base_url: str,
    service: str,
    region: str,
    project: str,
) -> list[InstanceInfo]:
    """Every instance of `service` in the project, page by page."""
    dcs = dialect_of(service) == "dcs"
    url = base_url + f"/v2/{project}/instances"
    limit = DCS_LIST_LIMIT if dcs else DMS_LIST_LIMIT
    found: dict[str, InstanceInfo] = {}
    offset = pages = 0
    while True:
        # Far more than any project holds: a server that never stops paging.
        check_pages(pages, MAX_LIST_PAGES, "of instances: the list-instances API does not stop")
        params = {"offset": str(offset), "limit": str(limit)}
        if not dcs:
            params["engine"] = DMS_ENGINES[service]
        try:
            body = await client.request_json(url, params, credentials, service, region)
        except ApiError as exc:
            if exc.code == DMS_OFFSET_PAST_END and offset > 0:
                break  # DMS's way of saying there is no further page
            raise
        pages += 1
        raw = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(raw, list):
            raise ApiError("unexpected answer from the list-instances API")
        for item in raw:
            info = _instance(service, region, project, item)
            if info is not None:
                found[info.instance_id] = info
        total = body.get("instance_num")
        offset += len(raw)
        if not raw or len(raw) < limit or (isinstance(total, int) and offset >= total):
            break
    return list(found.values())


def _instance(service: str, region: str, project: str, item: Any) -> InstanceInfo | None:
    if not isinstance(item, dict) or not _text(item.get("instance_id")):
        return None
    engine = _text(item.get("engine") or "")
    if service != "dcs" and engine and engine.lower() != DMS_ENGINES[service]:
        return None  # a server that ignored the engine filter
    return InstanceInfo(
        service=service,
        region=region,
        project_id=project,
        instance_id=_text(item["instance_id"]),
        name=_text(item.get("name") or ""),
        engine=engine,
        engine_version=_text(item.get("engine_version") or ""),
        status=_text(item.get("status") or ""),
        tags=_tags(item.get("tags")),
    )
