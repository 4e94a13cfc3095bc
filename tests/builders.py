"""Values the tests build again and again, made in one place."""

from __future__ import annotations

from exporter.core.tasklists import Kind, TaskList, task_list_key


def task_list(
    service: str = "dcs",
    instance_id: str = "i1",
    name: str = "",
    *,
    region: str = "r1",
    project_id: str = "p1",
    base_url: str = "http://127.0.0.1:1",
    credentials_id: str = "credentials/0",
) -> TaskList:
    """A task list as the sources make one: an instance's, or (no `instance_id`) the project's
    task center."""
    kind: Kind = "instance" if instance_id else "task_center"
    return TaskList(
        key=task_list_key(kind, service, region, project_id, instance_id),
        kind=kind,
        service=service,
        region=region,
        project_id=project_id,
        instance_id=instance_id,
        instance_name=name,
        base_url=base_url,
        credentials_id=credentials_id,
    )
