"""Account-wide targets: one `targets[]` entry without a region becomes a Target per project.

At every discovery interval the target lists the projects its credentials can use (IAM's
`GET /v3/auth/projects`), keeps the region projects and their sub-projects that pass its
patterns, and holds one `Target` (a region scope: one region and project, discovering its
instances) per project. A project that appears gets a scope at that listing; one that
disappears loses it, and its task lists and series go with it. A listing that fails keeps
the scopes of the last one that worked. Each scope discovers on its own, so a region whose
endpoints fail is down alone (`discovery_up` of its services) while the others go on.

Sharding is unchanged: a scope's `owner_key` is a regional target's, so each project's task
center and discovery series belong to one shard; every shard lists the projects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from exporter.cloud.client import ApiError, CloudClient
from exporter.cloud.credentials import CredentialProvider
from exporter.cloud.projects import list_account_projects
from exporter.cloud.providers import ProviderCache
from exporter.config import Config, TargetConfig
from exporter.core.instances import DiscoveryHealth, InstanceInfo
from exporter.core.projects import Project, account_projects
from exporter.polling.targets import Target

log = logging.getLogger(__name__)


class AccountTarget:
    """An account-wide `targets[]` entry at run time: its projects, each a `Target`."""

    needs_refresh = True

    def __init__(
        self,
        index: int,
        tc: TargetConfig,
        credentials: CredentialProvider,
        client: CloudClient,
        make_scope: Callable[[TargetConfig], Target],
    ) -> None:
        self.index = index
        self.config = tc
        self.credentials = credentials
        self.client = client
        self._make_scope = make_scope
        self.rules = tc.discovery
        assert self.rules is not None  # an account-wide target always discovers
        self.projects: dict[str, Project] = {}
        self.scopes: dict[str, Target] = {}  # project ID -> its scope
        self.listed = False  # whether a listing of the projects ever worked
        self.listing_error: str | None = None

    @property
    def owner_key(self) -> str:
        return f"account/{self.config.cloud}/{self.index}"

    def describe(self) -> str:
        return f"targets[{self.index}] ({self.config.cloud}, account-wide)"

    def refresh_delay(self, poll_interval: float) -> float | None:
        """The projects and their instances are listed again every discovery interval."""
        assert self.rules is not None
        return self.rules.interval

    def scope_config(self, project: Project) -> TargetConfig:
        """The regional target one project stands for: its region's endpoints, discovery."""
        return self.config.model_copy(
            update={
                "region": project.region,
                "project_id": project.project_id,
                "discover": self.rules,
                "regions": [],
                "exclude_regions": [],
                "projects": [],
                "exclude_projects": [],
            }
        )

    async def refresh(self) -> None:
        """List the projects, reconcile the scopes, then refresh every scope. Never raises."""
        try:
            await self._list_projects()
        except Exception:  # a bug must not stop the other targets or the polls
            log.exception(
                "unexpected error while listing projects",
                extra={"fields": {"source": self.describe()}},
            )
        await asyncio.gather(*(s.refresh() for s in self.scopes.values()))

    async def _list_projects(self) -> None:
        tc = self.config
        try:
            entries = await list_account_projects(self.client, self.credentials, tc.endpoint("iam"))
        except ApiError as exc:
            self.listing_error = str(exc)
            log.error(
                "cannot list the account's projects; keeping the last list",
                extra={"fields": {"source": self.describe(), "error": str(exc)}},
            )
            return
        found = account_projects(
            entries, tc.regions, tc.exclude_regions, tc.projects, tc.exclude_projects
        )
        wanted = {p.project_id: p for p in found}
        for project_id in set(self.scopes) - set(wanted):
            gone = self.projects.pop(project_id)
            del self.scopes[project_id]
            log.info(
                "project gone; no longer polled",
                extra={"fields": {"source": self.describe(), "project": gone.name}},
            )
        for project_id, project in wanted.items():
            if project_id not in self.scopes:
                self.scopes[project_id] = self._make_scope(self.scope_config(project))
                log.info(
                    "project found",
                    extra={
                        "fields": {
                            "source": self.describe(),
                            "project": project.name,
                            "region": project.region,
                            "project_id": project_id,
                        }
                    },
                )
            self.projects[project_id] = project
        self.listed = True
        self.listing_error = None
        if not wanted:
            log.warning(
                "no region project passes the target's patterns",
                extra={"fields": {"source": self.describe(), "projects": len(entries)}},
            )

    def health_without_scopes(self) -> list[DiscoveryHealth]:
        """Before any listing worked: each service down, without region or project."""
        if self.listed or self.listing_error is None:
            return []
        assert self.rules is not None
        error = self.listing_error
        return [DiscoveryHealth(s, "", "", False, error) for s in sorted(self.rules.services)]


AnyTarget = Target | AccountTarget


def build_all_targets(
    config: Config, providers: ProviderCache, client: CloudClient
) -> list[AnyTarget]:
    """A Target per regional `targets[]` entry, an AccountTarget per account-wide one."""
    out: list[AnyTarget] = []
    for i, tc in enumerate(config.targets):
        creds = config.credentials_for(tc)
        if not tc.account_wide:
            out.append(Target(i, tc, providers.get(creds, tc), client))
            continue

        def scope(scoped: TargetConfig, i: int = i) -> Target:
            return Target(i, scoped, providers.get(config.credentials_for(scoped), scoped), client)

        out.append(AccountTarget(i, tc, providers.get(creds, tc), client, scope))
    return out


def scopes_of(targets: Iterable[AnyTarget]) -> list[Target]:
    """Every regional scope: the regional targets, and each account-wide target's projects."""
    found: list[Target] = []
    for target in targets:
        if isinstance(target, AccountTarget):
            found.extend(target.scopes.values())
        else:
            found.append(target)
    return found


def discovery_of(
    targets: Iterable[AnyTarget], owns: Callable[[str], bool]
) -> tuple[list[InstanceInfo], list[DiscoveryHealth]]:
    """The discovery series this shard reports, each once (a project reached by two targets
    is one series)."""
    infos: dict[tuple[str, str, str], InstanceInfo] = {}
    health: dict[tuple[str, str, str], DiscoveryHealth] = {}
    targets = list(targets)
    for scope in scopes_of(targets):
        if not owns(scope.owner_key):
            continue
        for info in scope.instance_infos():
            infos.setdefault((info.service, info.project_id, info.instance_id), info)
        for h in scope.discovery_health():
            health.setdefault((h.service, h.region, h.project_id), h)
    for target in targets:
        if isinstance(target, AccountTarget) and owns(target.owner_key):
            for h in target.health_without_scopes():
                health.setdefault((h.service, h.region, h.project_id), h)
    return list(infos.values()), list(health.values())


def adopt(new: AnyTarget, old: AnyTarget) -> None:
    """After a reload, carry over what the same `targets[]` entry found out (its project, its
    instances; an account's projects, each scope rebuilt on the new client), so nothing
    vanishes until it is looked up again."""
    if isinstance(new, Target) and isinstance(old, Target):
        new.adopt(old)
    elif isinstance(new, AccountTarget) and isinstance(old, AccountTarget):
        new.listed, new.listing_error = old.listed, old.listing_error
        for project_id, project in old.projects.items():
            scope = new._make_scope(new.scope_config(project))
            scope.adopt(old.scopes[project_id])
            new.projects[project_id] = project
            new.scopes[project_id] = scope
