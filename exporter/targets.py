"""What the poller works on: one target per instance task list or project task center.

Targets are built from the configuration; their `key` is what the state store files
their tasks and counters under, so it depends only on what identifies the task list
(never on the display name, so that renaming an instance keeps its counters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import httpx

from exporter.config import Config
from exporter.signing import AkSkAuth

Dialect = Literal["dcs", "dms"]
Kind = Literal["instance", "task_center"]

TARGET_LABELS = ("cloud_service", "region", "project_id", "instance_id", "instance_name")


@dataclass(frozen=True)
class Target:
    key: str
    kind: Kind
    service: str
    region: str
    project_id: str
    instance_id: str
    instance_name: str
    base_url: str
    auth: httpx.Auth = field(compare=False, repr=False)

    @property
    def dialect(self) -> Dialect:
        return "dcs" if self.service == "dcs" else "dms"

    @property
    def path(self) -> str:
        if self.kind == "task_center":
            return f"/v2/{self.project_id}/tasks"
        return f"/v2/{self.project_id}/instances/{self.instance_id}/tasks"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def labels(self) -> tuple[str, str, str, str, str]:
        return (self.service, self.region, self.project_id, self.instance_id, self.instance_name)

    @property
    def source(self) -> str:
        """Which kind of list the task came from; keeps task-center durations apart."""
        return self.kind

    def describe(self) -> str:
        if self.kind == "task_center":
            return f"dcs task center of project {self.project_id} in {self.region}"
        name = f" ({self.instance_name})" if self.instance_name else ""
        return f"{self.service} instance {self.instance_id}{name} in {self.region}"


def target_key(kind: Kind, service: str, region: str, project_id: str, instance_id: str) -> str:
    if kind == "task_center":
        return f"task_center/{region}/{project_id}"
    return f"{service}/{region}/{project_id}/{instance_id}"


def build_targets(config: Config) -> list[Target]:
    targets: list[Target] = []
    auth_cache: dict[int, httpx.Auth] = {}
    for tc in config.targets:
        creds = config.credentials_for(tc)
        auth = auth_cache.get(id(creds))
        if auth is None:
            auth = AkSkAuth(
                creds.access_key,
                creds.secret(),
                security_token=creds.token(),
                project_id=None,
            )
            auth_cache[id(creds)] = auth
        if tc.task_center:
            targets.append(
                Target(
                    key=target_key("task_center", "dcs", tc.region, tc.project_id, ""),
                    kind="task_center",
                    service="dcs",
                    region=tc.region,
                    project_id=tc.project_id,
                    instance_id="",
                    instance_name="",
                    base_url=tc.endpoint("dcs"),
                    auth=auth,
                )
            )
        for inst in tc.instances:
            dialect: Dialect = "dcs" if inst.service == "dcs" else "dms"
            targets.append(
                Target(
                    key=target_key("instance", inst.service, tc.region, tc.project_id, inst.id),
                    kind="instance",
                    service=inst.service,
                    region=tc.region,
                    project_id=tc.project_id,
                    instance_id=inst.id,
                    instance_name=inst.name,
                    base_url=tc.endpoint(dialect),
                    auth=auth,
                )
            )
    return targets
