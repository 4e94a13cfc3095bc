"""The configuration's schema: the file's top level, its targets, HTTP and metrics settings.

Models validate data already read (see `exporter.config.loading` for the file itself); the
building blocks are in `exporter.config.base`, the credential sources in
`exporter.config.credentials`, secret values are read through `exporter.config.secrets`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter.config.base import (
    MAX_DURATION,
    SERVICES,
    CrossChecked,
    Duration,
    Interval,
    Loc,
    Service,
    StrictModel,
    Timeout,
    check_url,
    format_path,
    not_below,
)
from exporter.config.credentials import (
    AkSkCredentials,
    AnyCredentials,
    Credentials,
    EnvCredentials,
    PasswordCredentials,
)
from exporter.config.regions import ACCOUNT_IAM
from exporter.config.scopes import account_checks
from exporter.config.secrets import (
    ENV_AK,
    ENV_SK,
)


class Endpoints(StrictModel):
    dcs: str | None = None
    dms: str | None = None
    iam: str | None = None

    _urls = field_validator("dcs", "dms", "iam")(check_url)


# The domain of each cloud's service endpoints: https://{service}.{region}.{domain}
CLOUD_DOMAINS = {
    "huaweicloud": "myhuaweicloud.com",
    "huaweicloud-eu": "myhuaweicloud.eu",
    "opentelekomcloud": "otc.t-systems.com",
}
Cloud = Literal["huaweicloud", "huaweicloud-eu", "opentelekomcloud"]


class DiscoverConfig(StrictModel):
    """Find the instances to poll through the list-instances APIs, again every `interval`."""

    services: list[Service] = Field(default=list(SERVICES), min_length=1)
    interval: Interval = 600.0
    name_regex: str | None = None
    exclude_name_regex: str | None = None
    statuses: list[str] = []
    tags: dict[str, str] = {}
    exclude_tags: dict[str, str] = {}

    @field_validator("name_regex", "exclude_name_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("services")
    @classmethod
    def _unique(cls, value: list[Service]) -> list[Service]:
        if len(set(value)) != len(value):
            raise ValueError("a service is listed twice")
        return value

    @field_validator("statuses")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [v.upper() for v in value]


_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_REGION_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# A shell-style pattern on a region or project name (`eu-*`, `ap-southeast-1_*`).
Pattern = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.*?\[\]!-]+$")]


class InstanceConfig(StrictModel):
    service: Service
    id: str = Field(pattern=_ID_PATTERN, max_length=128)
    name: str = Field(default="", max_length=256)


class TargetConfig(CrossChecked):
    """One region and project with the instances to poll there, or, without `region`, every
    region and project the credentials can use (account-wide: each one's instances found by
    discovery)."""

    region: str | None = Field(default=None, pattern=_REGION_PATTERN)
    project_id: str | None = Field(default=None, pattern=_ID_PATTERN, max_length=128)
    cloud: Cloud = "huaweicloud"
    endpoints: Endpoints = Endpoints()
    task_center: bool = False
    credentials: Credentials | None = None
    instances: list[InstanceConfig] = []
    discover: DiscoverConfig | None = None
    # Account-wide targets only: shell-style patterns (`eu-*`) on region and project names.
    regions: list[Pattern] = []
    exclude_regions: list[Pattern] = []
    projects: list[Pattern] = []
    exclude_projects: list[Pattern] = []

    @model_validator(mode="after")
    def _something_to_poll(self) -> TargetConfig:
        if (
            self.region is not None
            and not self.instances
            and not self.task_center
            and self.discover is None
        ):
            raise ValueError(
                "nothing to poll: list instances, set task_center: true, or discover instances"
            )
        return self

    @classmethod
    def cross_checks(cls, data: Mapping[str, Any], context: Any) -> list[tuple[Loc, str]]:
        return account_checks(data)

    @property
    def account_wide(self) -> bool:
        """Without a region: every project the credentials can use, found through IAM."""
        return self.region is None

    @property
    def discovery(self) -> DiscoverConfig | None:
        """The discovery rules: an account-wide target always discovers (all services by
        default)."""
        if self.discover is None and self.account_wide:
            return DiscoverConfig()
        return self.discover

    def endpoint(self, kind: Literal["dcs", "dms", "iam"]) -> str:
        """The endpoint of a service: the configured one (`{region}` in it replaced), else the
        cloud's for the region; an account-wide target's IAM is the cloud's global one."""
        override = getattr(self.endpoints, kind)
        if self.region is None:
            assert kind == "iam", "an account-wide target has no regional endpoint"
            return override or ACCOUNT_IAM[self.cloud]
        if override:
            return str(override).replace("{region}", self.region)
        return f"https://{kind}.{self.region}.{CLOUD_DOMAINS[self.cloud]}"


DEFAULT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


class HttpSettings(CrossChecked):
    timeout: Timeout = 10.0
    retries: int = Field(default=3, ge=0, le=10)
    backoff_initial: Duration = 0.5
    backoff_max: Duration = 30.0
    max_concurrency: int = Field(default=8, ge=1, le=256)
    requests_per_second: float = Field(default=10.0, gt=0, le=1000)
    burst: int = Field(default=10, ge=1, le=1000)
    page_size: int = Field(default=100, ge=1, le=100)
    max_pages: int = Field(default=100, ge=1, le=10000)
    # Hardening: a whole poll's deadline, and the most a reply may hold once decompressed.
    poll_timeout: Duration = Field(default=300.0, gt=0)
    max_response_bytes: int = Field(default=16 * 2**20, ge=2**16, le=2**30)
    proxy: str | None = None
    ca_file: Path | None = None
    tls_verify: bool = True

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|socks5h?)://[^/\s]+/?$", value):
            raise ValueError("must be a proxy URL such as http://proxy.example.com:3128")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except ssl.SSLError as exc:  # an OSError too: first
                reason = exc.reason or "not PEM certificates"
                raise ValueError(f"cannot load CA certificates: {reason}") from None
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "strerror", None) or "cannot read the file"
                raise ValueError(f"cannot load CA certificates: {reason}") from None
        return value

    @classmethod
    def cross_checks(cls, data: Mapping[str, Any], context: Any) -> list[tuple[Loc, str]]:
        return not_below(cls, data, "backoff_initial", "backoff_max")


class ExpectedDurations(CrossChecked):
    """How long each kind of task usually takes: the most recent `window` successful runs per
    task list and task name, none older than `max_age`; a task list's history is read back
    `history` when it is first polled (`0s`: never)."""

    window: int = Field(default=50, ge=1, le=1000)
    max_age: Interval = 30 * 86400.0
    history: Duration = 30 * 86400.0

    @classmethod
    def cross_checks(cls, data: Mapping[str, Any], context: Any) -> list[tuple[Loc, str]]:
        return not_below(cls, data, "history", "max_age")  # older runs would be dropped


class MetricsSettings(StrictModel):
    duration_buckets: list[float] = Field(
        default=list(DEFAULT_BUCKETS), min_length=1, max_length=100
    )
    duration_by_instance: bool = False
    expected_durations: ExpectedDurations = ExpectedDurations()
    # Task names are the cloud's to choose: past this many distinct names on one task list,
    # further ones are counted under task_name="_other" (a few dozen are documented).
    max_task_names_per_list: int = Field(default=200, ge=1, le=100_000)

    @field_validator("duration_buckets")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if not all(0 < b <= MAX_DURATION for b in value):  # also false for NaN
            raise ValueError("buckets must be positive, finite and at most 366d in seconds")
        if any(a >= b for a, b in itertools.pairwise(value)):
            raise ValueError("buckets must be strictly increasing")
        return value


def _file_path(value: Any) -> Any:
    """A path naming a file: `""` would be the working directory, `/` has no name."""
    if isinstance(value, str | Path) and (
        "\0" in str(value) or Path(value).name.strip() in ("", ".", "..")
    ):
        raise ValueError("must be the path of a file, such as /var/lib/exporter/state.db")
    return value


class Config(CrossChecked):
    poll_interval: Interval = 60.0
    lookback: Duration = 86400.0
    overlap: Duration = 600.0
    catchup_max: Duration = 3 * 86400.0
    state_path: Annotated[Path, BeforeValidator(_file_path)] = Path(
        "./huaweicloud-task-exporter.db"
    )
    credentials: Credentials | None = None
    http: HttpSettings = HttpSettings()
    metrics: MetricsSettings = MetricsSettings()
    # One log line per task when it is first seen unfinished and when it is counted
    # (also `--log.task-events`).
    log_task_events: bool = False
    targets: list[TargetConfig] = Field(min_length=1)

    @classmethod
    def cross_checks(cls, data: Mapping[str, Any], context: Any) -> list[tuple[Loc, str]]:
        problems = not_below(cls, data, "poll_interval", "lookback")
        problems += not_below(cls, data, "poll_interval", "catchup_max")
        targets = data.get("targets")
        if isinstance(targets, list):
            problems += _listed_twice(targets)
            env: Mapping[str, str] = (context or {}).get("env", os.environ)
            if (
                data.get("credentials") is None
                and any(not isinstance(t, Mapping) or t.get("credentials") is None for t in targets)
                and not (env.get(ENV_AK) and env.get(ENV_SK))
            ):
                problems.append(
                    (
                        (),
                        "no credentials: set credentials (at the top level or on each target), "
                        f"or the environment variables {ENV_AK} and {ENV_SK}",
                    )
                )
        return problems

    @property
    def retention(self) -> float:
        """How long task IDs are remembered: as far back as any poll may ever read."""
        return max(self.lookback, self.catchup_max)

    _env_default: EnvCredentials | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _default_credentials(self, info: ValidationInfo) -> Config:
        """Without credentials in the file, take them from the environment, as the SDKs do.

        When the environment has none either, `cross_checks` reports it.
        """
        if self.credentials is None and any(t.credentials is None for t in self.targets):
            with contextlib.suppress(ValidationError):
                self._env_default = EnvCredentials.model_validate({}, context=info.context)
        return self

    def credentials_for(self, target: TargetConfig) -> AnyCredentials:
        creds = target.credentials or self.credentials or self._env_default
        assert creds is not None  # guaranteed by validation
        return creds

    def secrets(self) -> list[str]:
        """Every secret value known at start, so that logging can scrub them everywhere."""
        found: list[str] = []
        for creds in [self.credentials, self._env_default, *(t.credentials for t in self.targets)]:
            if isinstance(creds, AkSkCredentials | EnvCredentials):
                found.append(creds.secret())
                token = creds.token()
                if token:
                    found.append(token)
            elif isinstance(creds, PasswordCredentials):
                found.append(creds.secret())
        return found


def _listed_twice(targets: list[Any]) -> list[tuple[Loc, str]]:
    """Each instance (and each project's task center) in one place only: polled twice, its
    tasks would be counted twice. Read from the raw targets, values of the wrong type skipped.
    """
    problems: list[tuple[Loc, str]] = []
    seen: dict[tuple[str, str, str], Loc] = {}

    def claim(key: tuple[str, str, str], loc: Loc, what: str) -> None:
        first = seen.setdefault(key, loc)
        if first != loc:
            problems.append((loc, f"{what} is already listed at {format_path(first)}"))

    for i, target in enumerate(targets):
        if not isinstance(target, Mapping) or not isinstance(target.get("region"), str):
            continue
        project = target.get("project_id")
        scope = (target["region"], project if isinstance(project, str) else "")
        if target.get("task_center") is True:
            claim((*scope, ""), ("targets", i, "task_center"), "the task center of this project")
        instances = target.get("instances")
        for j, inst in enumerate(instances if isinstance(instances, list) else []):
            if isinstance(inst, Mapping) and isinstance(inst.get("id"), str):
                claim((*scope, inst["id"]), ("targets", i, "instances", j), "this instance")
    return problems
