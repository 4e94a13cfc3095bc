"""What the poller works on: one task list per instance, or a project's task center.

Task lists come from the targets (`exporter.polling.targets`): configured instances and discovered
ones. Their `key` is what the state store files their tasks and counters under, so it
depends only on what identifies the task list (never on the display name, so that renaming
an instance keeps its counters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

Dialect = Literal["dcs", "dms"]
Kind = Literal["instance", "task_center"]


def dialect_of(service: str) -> Dialect:
    """DCS speaks its own API dialect; Kafka, RabbitMQ and RocketMQ share DMS's."""
    return "dcs" if service == "dcs" else "dms"


TASKLIST_LABELS = ("cloud_service", "region", "project_id", "instance_id", "instance_name")


@dataclass(frozen=True)
class TaskList:
    """One task list to poll: a value object (what to ask, where, and its labels)."""

    key: str
    kind: Kind
    service: str
    region: str
    project_id: str
    instance_id: str
    instance_name: str
    base_url: str
    # Which credentials sign its requests: a key of `CloudClient.providers` (the value
    # object holds no live provider, only what names one).
    credentials_id: str = field(compare=False)

    # Computed once per task list (every poll asks): a frozen dataclass keeps them in its
    # __dict__, outside the fields, so equality and `replace` are unaffected.
    @cached_property
    def dialect(self) -> Dialect:
        return dialect_of(self.service)

    @cached_property
    def path(self) -> str:
        if self.kind == "task_center":
            return f"/v2/{self.project_id}/tasks"
        return f"/v2/{self.project_id}/instances/{self.instance_id}/tasks"

    @cached_property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def labels(self) -> tuple[str, str, str, str, str]:
        return (self.service, self.region, self.project_id, self.instance_id, self.instance_name)


def task_list_key(kind: Kind, service: str, region: str, project_id: str, instance_id: str) -> str:
    if kind == "task_center":
        return f"task_center/{region}/{project_id}"
    return f"{service}/{region}/{project_id}/{instance_id}"
