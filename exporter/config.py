"""YAML configuration: typed models that reject unknown keys, `${VAR}` expansion, durations.

Every problem in a file is reported at once, one line each, as `file:line: path: message`,
and no message ever quotes a value from the file: any of them might be a misplaced secret.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

SERVICES: tuple[Literal["dcs", "kafka", "rabbitmq", "rocketmq"], ...] = (
    "dcs",
    "kafka",
    "rabbitmq",
    "rocketmq",
)
SECRET_FIELDS = frozenset({"secret_key", "security_token", "password", "access_key"})

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# No setting needs more: a bound keeps sleeps and date arithmetic finite (`1e400s` is infinity).
MAX_DURATION = 366 * 86400.0


def parse_duration(value: Any) -> float:
    """`90s`, `5m`, `1h30m`, `500ms`, `2d`, `1w` to seconds. Bare numbers are refused.

    Refusing `60` avoids guessing whether the user meant seconds or minutes. The value is
    never quoted back: a secret pasted into the wrong key must not reach the error.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("must be a duration string such as 30s, 5m or 1h")
    text = value.strip()
    if len(text) > 1000 or not _DURATION_RE.match(text):
        raise ValueError("invalid duration: use a number and a unit (ms, s, m, h, d, w)")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text))
    if not seconds <= MAX_DURATION:  # also false for infinity
        raise ValueError("durations must be at most 366d")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


def _at_least_1s(seconds: float) -> float:
    if seconds < 1:
        raise ValueError("must be at least 1s")
    return seconds


def _above_0(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be above 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Interval = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_at_least_1s)]
Timeout = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_above_0)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


Loc = tuple[str | int, ...]


class CrossChecked(StrictModel):
    """A model with checks across its fields, reported together with the field errors.

    Pydantic runs `after` model validators only once every field is valid, so a file with
    a typo and a poll_interval above lookback would need two rounds of fixes. Checks here
    read the raw input instead (skipping values that are invalid on their own, which the
    field errors already report) and point at the key concerned.
    """

    @classmethod
    def cross_checks(cls, data: Mapping[str, Any], context: Any) -> list[tuple[Loc, str]]:
        """(location relative to this model, message) of every problem across fields."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checked(
        cls, data: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo
    ) -> Any:
        problems = cls.cross_checks(data, info.context) if isinstance(data, Mapping) else []
        try:
            model = handler(data)
        except ValidationError as exc:
            if not problems:
                raise
            errors = [
                InitErrorDetails(
                    type=PydanticCustomError(e["type"], e["msg"]), loc=e["loc"], input=None
                )
                for e in exc.errors(include_url=False)
            ]
        else:
            if not problems:
                return model
            errors = []
        errors += [
            InitErrorDetails(type=PydanticCustomError("cross_field", msg), loc=loc, input=None)
            for loc, msg in problems
        ]
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _raw_duration(model: type[BaseModel], data: Mapping[str, Any], key: str) -> float | None:
    """A duration as given (None when invalid: reported on its own), else its default."""
    if key not in data:
        default = model.model_fields[key].default
        return float(default)
    try:
        return parse_duration(data[key])
    except ValueError:
        return None


def _not_below(
    model: type[BaseModel], data: Mapping[str, Any], low: str, high: str
) -> list[tuple[Loc, str]]:
    """`high` must be at least `low`; reported at whichever of the two the file sets."""
    lo, hi = _raw_duration(model, data, low), _raw_duration(model, data, high)
    if lo is None or hi is None or hi >= lo:
        return []
    if high in data:
        return [((high,), f"must be at least {low} ({format_duration(lo)})")]
    return [((low,), f"must not be above {high} ({format_duration(hi)} by default)")]


MAX_SECRET_FILE = 64 * 1024


def _read_secret_file(path: Path) -> str:
    """The secret in a file of its own. The path is never quoted back: a secret pasted into
    a `*_file` key is then the path, and would otherwise be echoed in the error."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    except ValueError:  # a NUL in the path
        raise ValueError("cannot read the file: not a valid path") from None
    if len(raw) > MAX_SECRET_FILE:
        raise ValueError("the file is larger than 64 KiB: not a secret")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    if not text:
        raise ValueError("the file is empty")
    return text


def _secret_or_file(value: SecretStr | None, path: Path | None) -> str | None:
    """A secret given inline or in a file of its own (read each time: files get rotated)."""
    if path is not None:
        return _read_secret_file(path)
    return value.get_secret_value() if value is not None else None


class _SecretFiles(StrictModel):
    @field_validator("*", mode="after")
    @classmethod
    def _file_readable(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name and info.field_name.endswith("_file") and value is not None:
            _read_secret_file(value)
        return value


class AkSkCredentials(_SecretFiles):
    """An access key pair (optionally temporary, with a security token).

    Secrets may sit in the file itself (usually as `${VAR}`) or in files of their own, the
    way Kubernetes and Docker mount secrets.
    """

    source: Literal["aksk"] = "aksk"
    access_key: str = Field(min_length=1)
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None
    security_token: SecretStr | None = None
    security_token_file: Path | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> AkSkCredentials:
        if (self.secret_key is None) == (self.secret_key_file is None):
            raise ValueError("set exactly one of secret_key and secret_key_file")
        if self.secret_key is not None and not self.secret_key.get_secret_value():
            raise ValueError("secret_key is empty")
        if self.security_token is not None and self.security_token_file is not None:
            raise ValueError("set at most one of security_token and security_token_file")
        return self

    def secret(self) -> str:
        value = _secret_or_file(self.secret_key, self.secret_key_file)
        assert value is not None  # one of the two is set: checked above
        return value

    def token(self) -> str | None:
        return _secret_or_file(self.security_token, self.security_token_file) or None


ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"  # noqa: S105 - a variable name


class EnvCredentials(StrictModel):
    """An access key pair from the environment, the variables the official SDKs read."""

    source: Literal["env"] = "env"
    _keys: tuple[str, str, str | None] = PrivateAttr(default=("", "", None))

    @model_validator(mode="after")
    def _read_env(self, info: ValidationInfo) -> EnvCredentials:
        env: Mapping[str, str] = (info.context or {}).get("env", os.environ)
        missing = [name for name in (ENV_AK, ENV_SK) if not env.get(name)]
        if missing:
            raise ValueError(f"environment variable {' and '.join(missing)} not set")
        self._keys = (env[ENV_AK], env[ENV_SK], env.get(ENV_TOKEN) or None)
        return self

    @property
    def access_key(self) -> str:
        return self._keys[0]

    def secret(self) -> str:
        return self._keys[1]

    def token(self) -> str | None:
        return self._keys[2]


class MetadataCredentials(StrictModel):
    """Temporary keys of the agency attached to this ECS (or CCE node), renewed by themselves."""

    source: Literal["metadata"]
    url: str = "http://169.254.169.254"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        checked = _check_url(value)
        assert checked is not None
        return checked


class PasswordCredentials(_SecretFiles):
    """An IAM user's password, exchanged for an X-Auth-Token scoped to the target's project."""

    source: Literal["password"]
    user: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> PasswordCredentials:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("set exactly one of password and password_file")
        return self

    def secret(self) -> str:
        value = _secret_or_file(self.password, self.password_file)
        assert value is not None  # one of the two is set: checked above
        return value


CREDENTIAL_SOURCES = ("aksk", "env", "metadata", "password")


def _credential_source(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("source", "aksk"))
    return str(getattr(value, "source", "aksk"))


Credentials = Annotated[
    Annotated[AkSkCredentials, Tag("aksk")]
    | Annotated[EnvCredentials, Tag("env")]
    | Annotated[MetadataCredentials, Tag("metadata")]
    | Annotated[PasswordCredentials, Tag("password")],
    Discriminator(
        _credential_source,
        custom_error_type="credential_source",
        custom_error_message="source must be one of aksk, env, metadata, password",
    ),
]
AnyCredentials = AkSkCredentials | EnvCredentials | MetadataCredentials | PasswordCredentials


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
        raise ValueError("must be an http(s) URL such as https://dcs.eu-west-101.myhuaweicloud.eu")
    return value.rstrip("/")


class Endpoints(StrictModel):
    dcs: str | None = None
    dms: str | None = None
    iam: str | None = None

    _urls = field_validator("dcs", "dms", "iam")(_check_url)


# The domain of each cloud's service endpoints: https://{service}.{region}.{domain}
CLOUD_DOMAINS = {
    "huaweicloud": "myhuaweicloud.com",
    "huaweicloud-eu": "myhuaweicloud.eu",
    "opentelekomcloud": "otc.t-systems.com",
}
Cloud = Literal["huaweicloud", "huaweicloud-eu", "opentelekomcloud"]
Service = Literal["dcs", "kafka", "rabbitmq", "rocketmq"]


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


class InstanceConfig(StrictModel):
    service: Service
    id: str = Field(pattern=_ID_PATTERN, max_length=128)
    name: str = Field(default="", max_length=256)


class TargetConfig(StrictModel):
    """One region and project, with the instances to poll there."""

    region: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    project_id: str | None = Field(default=None, pattern=_ID_PATTERN, max_length=128)
    cloud: Cloud = "huaweicloud"
    endpoints: Endpoints = Endpoints()
    task_center: bool = False
    credentials: Credentials | None = None
    instances: list[InstanceConfig] = []
    discover: DiscoverConfig | None = None

    @model_validator(mode="after")
    def _something_to_poll(self) -> TargetConfig:
        if not self.instances and not self.task_center and self.discover is None:
            raise ValueError(
                "nothing to poll: list instances, set task_center: true, or discover instances"
            )
        return self

    def endpoint(self, kind: Literal["dcs", "dms", "iam"]) -> str:
        """The endpoint of a service: the configured one, else the cloud's for the region."""
        override = getattr(self.endpoints, kind)
        return override or f"https://{kind}.{self.region}.{CLOUD_DOMAINS[self.cloud]}"


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
        return _not_below(cls, data, "backoff_initial", "backoff_max")


class MetricsSettings(StrictModel):
    duration_buckets: list[float] = Field(
        default=list(DEFAULT_BUCKETS), min_length=1, max_length=100
    )
    duration_by_instance: bool = False

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
        problems = _not_below(cls, data, "poll_interval", "lookback")
        problems += _not_below(cls, data, "poll_interval", "catchup_max")
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


# --- loading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One problem of a configuration file: where (file, 1-based line, key path) and what."""

    source: str
    line: int | None
    path: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        if self.line and self.column:
            where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """A file that cannot be used; `problems` holds one line per problem, `details` the same
    problems as data."""

    def __init__(self, details: list[Problem]) -> None:
        self.details = details
        self.problems = [str(p) for p in details]
        super().__init__("\n".join(self.problems))


# --- reading YAML ------------------------------------------------------------------------
#
# The file is read from the parser's events rather than with yaml.safe_load: one pass, in a
# loop rather than recursion (so nesting is bounded, never a RecursionError or a C stack
# overflow), counting every value an alias expands to (so an alias bomb is refused at once,
# not after gigabytes), refusing duplicate keys (PyYAML keeps the last silently), expanding
# ${VAR} in place and recording the line of every key and item for the errors.

MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 32
MAX_VALUES = 1_000_000  # after alias expansion; 10,000 instances are about 50,000

_Parser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ten times faster
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_STR_TAG = "tag:yaml.org,2002:str"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "timestamp")
)
_MAP_TAGS = frozenset({None, "!", "tag:yaml.org,2002:map"})
_SEQ_TAGS = frozenset({None, "!", "tag:yaml.org,2002:seq"})
_MERGE_TAG = "tag:yaml.org,2002:merge"

# Where each key and item is: a mapping's marks map its keys to (line, marks of the value), a
# sequence's list (line, marks) per item; a scalar has none.
Marks = dict[Any, tuple[int, Any]] | list[tuple[int, Any]] | None


class _Fatal(Exception):
    """A problem after which the rest of the file cannot be read."""

    def __init__(self, line: int | None, path: Loc, message: str) -> None:
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


class _Node:
    """A mapping or sequence being read, with its size (values it holds, itself included)."""

    __slots__ = (
        "anchor",
        "explicit",
        "key",
        "key_line",
        "line",
        "marks",
        "merge",
        "merges",
        "path",
        "size",
        "value",
    )

    def __init__(self, value: Any, marks: Any, path: Loc, line: int, anchor: str | None) -> None:
        self.value, self.marks, self.path, self.line, self.anchor = value, marks, path, line, anchor
        self.size = 1
        self.key: Any = _NO_KEY  # a mapping's key awaiting its value
        self.key_line = 0
        self.merge = False  # that key is `<<`
        self.merges: list[tuple[Any, Any]] = []
        self.explicit: set[Any] = set()


_NO_KEY = object()


@dataclass
class _Document:
    data: Any
    marks: Marks
    problems: list[tuple[int | None, Loc, str]]  # duplicate keys, unset variables


def _scalar(event: yaml.ScalarEvent, line: int, path: Loc) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
    if tag == _STR_TAG:
        return event.value
    if tag == _MERGE_TAG:
        return _MERGE
    if tag not in _SCALAR_TAGS:
        raise _Fatal(line, path, "unsupported YAML tag (only plain values, lists and mappings)")
    try:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, event.value))
    except (ValueError, yaml.YAMLError):  # e.g. an integer of more than 4,300 digits
        raise _Fatal(line, path, "invalid value (a number too long?)") from None


_MERGE = object()  # the `<<` key


def _read_yaml(text: str, env: Mapping[str, str]) -> _Document:
    """The single document in `text`, with marks and the problems found on the way.

    Raises yaml.YAMLError for syntax errors, _Fatal for files that are too deep, too large
    after alias expansion, or use features that are not plain data.
    """
    problems: list[tuple[int | None, Loc, str]] = []
    anchors: dict[str, tuple[Any, Marks, int]] = {}
    stack: list[_Node] = []
    total = 0
    result: tuple[Any, Marks] | None = None
    documents = 0
    parser = _Parser(text)
    try:
        while parser.check_event():
            event = parser.get_event()
            line = event.start_mark.line + 1
            top = stack[-1] if stack else None
            if top is None:
                path: Loc = ()
            elif isinstance(top.value, list):
                path = (*top.path, len(top.value))
            else:
                path = top.path if top.key is _NO_KEY else (*top.path, top.key)

            if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                if isinstance(event, yaml.AliasEvent):
                    if event.anchor not in anchors:
                        raise _Fatal(line, path, f"alias *{event.anchor} is not defined before")
                    value, marks, size = anchors[event.anchor]
                else:
                    value, marks, size = _scalar(event, line, path), None, 1
                    if (
                        isinstance(value, str)
                        and "$" in value
                        and (top is None or top.key is not _NO_KEY or isinstance(top.value, list))
                    ):
                        value = _expand(value, env, line, path, problems)
                    if event.anchor is not None:
                        anchors[event.anchor] = (value, None, 1)
                total += size
                if total > MAX_VALUES:
                    raise _Fatal(line, path, f"more than {MAX_VALUES:,} values (YAML aliases?)")
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                is_map = isinstance(event, yaml.MappingStartEvent)
                if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                    raise _Fatal(
                        line, path, "unsupported YAML tag (only plain values, lists and mappings)"
                    )
                if top is not None and not isinstance(top.value, list) and top.key is _NO_KEY:
                    raise _Fatal(line, path, "a key must be a plain value, not a list or mapping")
                if len(stack) >= MAX_DEPTH:
                    raise _Fatal(line, path, f"nested more than {MAX_DEPTH} levels deep")
                node = _Node({} if is_map else [], {} if is_map else [], path, line, event.anchor)
                stack.append(node)
                total += 1
                if total > MAX_VALUES:
                    raise _Fatal(line, path, f"more than {MAX_VALUES:,} values (YAML aliases?)")
                continue
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                node = stack.pop()
                for merged, merged_marks in node.merges:  # explicit keys win, then in order
                    for k, v in merged.items():
                        if k not in node.value:
                            node.value[k] = v
                            node.marks[k] = merged_marks[k]
                value, marks, size = node.value, node.marks, node.size
                if node.anchor is not None:
                    anchors[node.anchor] = (value, marks, size)
                line, path = node.line, node.path
                top = stack[-1] if stack else None
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _Fatal(line, (), "more than one YAML document (---) in the file")
                continue
            else:  # stream start and end, document end
                continue

            # A complete value (scalar, alias, mapping or sequence): place it in its parent.
            if top is None:
                result = (value, marks)
            elif isinstance(top.value, list):
                top.value.append(value)
                top.marks.append((line, marks))
                top.size += size
            elif top.key is _NO_KEY:  # a key
                if isinstance(value, list | dict):
                    raise _Fatal(
                        line, top.path, "a key must be a plain value, not a list or mapping"
                    )
                if value is _MERGE:
                    top.merge = True
                elif value in top.explicit:
                    first = top.marks[value][0]
                    problems.append(
                        (line, (*top.path, value), f"duplicate key (also on line {first})")
                    )
                top.key, top.key_line = value, line
            else:
                if top.merge:
                    items = value if isinstance(value, list) else [value]
                    item_marks: Any = marks if isinstance(value, list) else [(line, marks)]
                    for item, (_, m) in zip(items, item_marks, strict=True):
                        if not isinstance(item, dict):
                            raise _Fatal(
                                line, top.path, "<< must merge a mapping or a list of mappings"
                            )
                        top.merges.append((item, m))
                    top.merge = False
                elif top.key not in top.explicit:
                    top.explicit.add(top.key)
                    top.marks[top.key] = (top.key_line, marks)
                    top.value[top.key] = value
                top.size += size
                top.key = _NO_KEY
    finally:
        parser.dispose()
    data, marks = result if result is not None else (None, None)
    return _Document(data, marks, problems)


_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: str, env: Mapping[str, str], line: int, path: Loc, problems: list[Any]) -> str:
    """`${VAR}` and `${VAR:-default}` from the environment, `$$` for a dollar sign.

    An unset or empty variable without a default is a problem (the text is left as written);
    the message tells the two apart: an empty one usually means a secret mount is missing.
    """

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        found = env.get(name)
        if found:
            return found
        if default is not None:
            return default
        state = "is not set" if found is None else "is set but empty"
        problems.append((line, path, f"environment variable {name} {state}"))
        return m.group(0)

    return _VAR_RE.sub(repl, value)


def _secret_values(node: Any) -> list[str]:
    """Values under secret keys anywhere in the file, longest first, to scrub from errors.

    Messages never quote values; this is the second line of defence, for keys (which are
    quoted) that turn out to be a pasted secret.
    """
    found: set[str] = set()
    stack = [node]
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:  # aliases share values
            continue
        seen.add(id(n))
        if isinstance(n, dict):
            for k, v in n.items():
                if k in SECRET_FIELDS and k != "access_key" and isinstance(v, str) and len(v) >= 4:
                    found.add(v)
            stack.extend(v for v in n.values() if isinstance(v, dict | list))
        elif isinstance(n, list):
            stack.extend(v for v in n if isinstance(v, dict | list))
    return sorted(found, key=len, reverse=True)


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(marks: Marks, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the key or item at `loc`, or of its nearest parent in the file."""
    line = 1
    node: Any = marks
    for part in loc:
        in_map = isinstance(node, dict) and not isinstance(part, int) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_map or in_list):
            break
        line, node = node[part]
    return line


_CREDENTIAL_MODELS: dict[str, type[BaseModel]] = {
    "aksk": AkSkCredentials,
    "env": EnvCredentials,
    "metadata": MetadataCredentials,
    "password": PasswordCredentials,
}
_SHAPES = {
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "dict_type": "must be a mapping of keys to values",
    "list_type": "must be a list",
}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model validating the mapping at `loc` (pydantic's own loc, union tags included)."""
    tp: Any = Config
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    models = _models_in(tp)
    return models[0] if len(models) == 1 else None


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    if get_origin(tp) in (Annotated, Union, UnionType):
        return [m for arg in get_args(tp) for m in _models_in(arg)]
    return []


def _step(tp: Any, part: Any) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *meta = get_args(tp)
        if any(isinstance(m, Tag) and m.tag == part for m in meta):
            return inner  # the union's tag: the branch it names
        return _step(inner, part)
    if origin in (Union, UnionType):
        return next((t for t in (_step(a, part) for a in get_args(tp)) if t is not None), None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict and isinstance(part, str):
        return get_args(tp)[1]
    return None


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """`unknown key`, with the key it probably meant or the credential source it belongs to."""
    key = loc[-1]
    model = _model_at(loc[:-1])
    if model is None or not isinstance(key, str):
        return "unknown key"
    for source, other in _CREDENTIAL_MODELS.items():
        if model in _CREDENTIAL_MODELS.values() and key in other.model_fields:
            return f"unknown key: {key} belongs to source: {source}"
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.7)
    return f"unknown key: did you mean {close[0]}?" if close else "unknown key"


def _message(err: Mapping[str, Any]) -> str:
    """The message of a pydantic error, never with the value: any value might be a secret
    pasted into the wrong key (the line and the path say which value is meant)."""
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key(tuple(err["loc"]))
    if kind == "missing":
        return "required key is missing"
    if kind in _SHAPES:
        return _SHAPES[kind]
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The path in the file: without pydantic's union tags (the part right after a
    `credentials` key) and validator names."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue
        if part in CREDENTIAL_SOURCES and i > 0 and loc[i - 1] == "credentials":
            continue
        out.append(part)
    return tuple(out)


def load_config_text(
    text: str, source: str = "config", env: Mapping[str, str] | None = None
) -> Config:
    """The configuration in `text`, or ConfigError with every problem found in it."""
    env = os.environ if env is None else env

    def fail(line: int | None, path: str, message: str) -> ConfigError:
        return ConfigError([Problem(source, line, path, message)])

    if len(text) > MAX_CONFIG_BYTES:
        raise fail(None, "", "the file is larger than 16 MiB")
    try:
        doc = _read_yaml(text, env)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError(
            [Problem(source, line, "", f"not valid YAML: {problem}", column)]
        ) from None
    except _Fatal as exc:
        raise fail(exc.line, format_path(exc.path), exc.message) from None
    if doc.data is None:
        raise fail(None, "", "the file is empty")
    if not isinstance(doc.data, dict):
        raise fail(1, "(top level)", "must be a mapping of keys to values")

    found: list[tuple[int | None, Loc, str]] = list(doc.problems)
    config: Config | None = None
    try:
        config = Config.model_validate(doc.data, context={"env": env})
    except ValidationError as exc:
        reported = {loc for _, loc, _ in found}
        for err in exc.errors(include_url=False):
            loc = _clean_loc(tuple(err["loc"]))
            if loc not in reported:  # not again as invalid: reported as the unset variable
                found.append((None, loc, _message(err)))
    if not found:
        assert config is not None
        return config
    secrets = _secret_values(doc.data)
    details = []
    for line, loc, message in found:
        scrubbed = f"{format_path(loc)}\0{message}"
        for secret in secrets:
            scrubbed = scrubbed.replace(secret, "<redacted>")
        path, what = scrubbed.split("\0", 1)
        details.append(Problem(source, line or _line_of(doc.marks, loc), path, what))
    details.sort(key=lambda p: p.line or 0)
    raise ConfigError(details)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    f"cannot read the configuration file: {exc.strerror or exc}",
                )
            ]
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem(str(path), None, "", "the file is larger than 16 MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            [Problem(str(path), None, "", "the configuration file is not UTF-8 text")]
        ) from None
    return load_config_text(text, source=str(path), env=env)
