"""Targets: each `targets[]` entry of the configuration at run time, and its task lists.

A target knows its cloud's endpoints and credentials, resolves its project ID through IAM
when the configuration leaves it out, and, with `discover:`, lists the instances of its
services (again every `discover.interval`). A listing that fails keeps the instances of the
last one that worked: a passing error never makes series vanish; a deleted instance does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialProvider
from exporter.cloud.discovery import list_instances
from exporter.cloud.projects import resolve_project
from exporter.cloud.providers import ProviderCache
from exporter.config import Config, TargetConfig
from exporter.core.instances import DiscoveryHealth, InstanceInfo, matches
from exporter.core.sharding import UNSHARDED, Shard
from exporter.core.tasklists import Kind, TaskList, dialect_of, task_list_key

log = logging.getLogger(__name__)


class Target:
    """One `targets[]` entry at run time: its project, its discovered instances, its health."""

    def __init__(
        self, index: int, tc: TargetConfig, credentials: CredentialProvider, client: CloudClient
    ) -> None:
        self.index = index
        self.config = tc
        self.credentials = credentials
        self.client = client
        self.credentials_id = client.register_credentials(credentials)
        self.project_id: str | None = tc.project_id
        self.project_error: str | None = None
        # Per discovered service: the instances of the last listing that worked.
        self.discovered: dict[str, list[InstanceInfo]] = {}
        self.health: dict[str, DiscoveryHealth] = {}

    @property
    def region(self) -> str:
        region = self.config.region
        assert region is not None, "a Target is one region: an account-wide one makes several"
        return region

    @property
    def owner_key(self) -> str:
        """What decides which shard polls the task center and exports discovery series."""
        tc = self.config
        return f"target/{tc.cloud}/{tc.region}/{tc.project_id or ''}"

    @property
    def services(self) -> set[str]:
        """Every service this target has task lists of (or looks for)."""
        found: set[str] = {i.service for i in self.config.instances}
        if self.config.task_center:
            found.add("dcs")
        if self.config.discover is not None:
            found.update(self.config.discover.services)
        return found

    @property
    def needs_refresh(self) -> bool:
        """Whether it asks the cloud for anything: its project, or its instances."""
        return self.project_id is None or self.config.discover is not None

    def describe(self) -> str:
        return f"targets[{self.index}] ({self.config.cloud} {self.region})"

    def refresh_delay(self, poll_interval: float) -> float | None:
        """When to refresh again: until the project is known, every poll interval; then at
        each discovery interval, or never without discovery."""
        if self.project_id is None:
            return poll_interval
        return self.config.discover.interval if self.config.discover is not None else None

    def adopt(self, old: Target) -> None:
        """Carry over what the same target found out under the previous configuration (its
        project, its instances), so a reload does not make them vanish until looked up again."""
        if self.project_id is None:
            self.project_id = old.project_id
            self.project_error = old.project_error
        self.discovered = dict(old.discovered)
        self.health = dict(old.health)

    # -- refreshing -----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Resolve the project if needed, then list instances if discovery is on.

        Never raises: problems are logged and kept in `project_error` and `health`.
        """
        try:
            await self._refresh()
        except Exception:  # a bug must not stop the other targets or the polls
            log.exception(
                "unexpected error while refreshing a source",
                extra={"fields": {"source": self.describe()}},
            )

    async def _refresh(self) -> None:
        if self.project_id is None:
            try:
                self.project_id = await resolve_project(
                    self.client, self.credentials, self.config.endpoint("iam"), self.region
                )
                self.project_error = None
                log.info(
                    "project resolved",
                    extra={"fields": {"source": self.describe(), "project_id": self.project_id}},
                )
            except ApiError as exc:
                self.project_error = str(exc)
                log.error(
                    "cannot resolve the project ID; set project_id to skip this step",
                    extra={"fields": {"source": self.describe(), "error": str(exc)}},
                )
                return
        if self.config.discover is None:
            return
        project = self.project_id
        for service in self.config.discover.services:
            try:
                found = await list_instances(
                    self.client,
                    self.credentials,
                    self.config.endpoint(dialect_of(service)),
                    service,
                    self.region,
                    project,
                )
            except ApiError as exc:
                self.health[service] = DiscoveryHealth(
                    service, self.region, project, False, str(exc)
                )
                log.warning(
                    "listing instances failed; keeping the last list",
                    extra={
                        "fields": {"source": self.describe(), "service": service, "error": str(exc)}
                    },
                )
                continue
            self.discovered[service] = found
            self.health[service] = DiscoveryHealth(service, self.region, project, True)
            log.debug(
                "instances listed",
                extra={
                    "fields": {"source": self.describe(), "service": service, "found": len(found)}
                },
            )

    # -- results --------------------------------------------------------------------------

    def instance_infos(self) -> list[InstanceInfo]:
        """The discovered instances that pass the filters (for `instance_info`)."""
        rules = self.config.discover
        if rules is None:
            return []
        return [i for infos in self.discovered.values() for i in infos if matches(i, rules)]

    def discovery_health(self) -> list[DiscoveryHealth]:
        if self.project_id is None:
            return [
                DiscoveryHealth(s, self.region, "", False, self.project_error)
                for s in sorted(self.services)
            ]
        return sorted(self.health.values(), key=lambda h: h.service)

    def task_lists(self) -> list[TaskList]:
        """The task lists to poll now: configured instances, discovered ones, task center."""
        project = self.project_id
        if project is None:
            return []
        tc = self.config
        wanted: dict[str, tuple[str, str]] = {}  # instance id -> (service, name)
        for info in self.instance_infos():
            wanted[info.instance_id] = (info.service, info.name)
        for inst in tc.instances:  # configured entries win, and their names
            found = wanted.get(inst.id)
            wanted[inst.id] = (inst.service, inst.name or (found[1] if found else ""))
        out: list[TaskList] = []
        if tc.task_center:
            out.append(self._task_list("task_center", "dcs", project, "", ""))
        for instance_id, (service, name) in wanted.items():
            out.append(self._task_list("instance", service, project, instance_id, name))
        return out

    def _task_list(
        self, kind: Kind, service: str, project: str, instance_id: str, name: str
    ) -> TaskList:
        return TaskList(
            key=task_list_key(kind, service, self.region, project, instance_id),
            kind=kind,
            service=service,
            region=self.region,
            project_id=project,
            instance_id=instance_id,
            instance_name=name,
            base_url=self.config.endpoint(dialect_of(service)),
            credentials_id=self.credentials_id,
        )


def build_targets(config: Config, providers: ProviderCache, client: CloudClient) -> list[Target]:
    return [
        Target(i, tc, providers.get(config.credentials_for(tc), tc), client)
        for i, tc in enumerate(config.targets)
    ]


def all_task_lists(targets: Iterable[Target], shard: Shard = UNSHARDED) -> list[TaskList]:
    """This shard's task lists of every target; a task list claimed twice is polled once."""
    seen: dict[str, TaskList] = {}
    for target in targets:
        for task_list in target.task_lists():
            owner = target.owner_key if task_list.kind == "task_center" else task_list.instance_id
            if not shard.owns(owner):
                continue
            if task_list.key in seen:
                log.warning(
                    "task list configured twice; polling it once",
                    extra={"fields": {"target": task_list.key}},
                )
                continue
            seen[task_list.key] = task_list
    return list(seen.values())
