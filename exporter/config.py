"""YAML configuration: typed models that reject unknown keys, `${VAR}` expansion, durations.

Every problem in a file is reported at once, one line each, as `file:line: path: message`,
and no message ever carries the value of a secret.
"""

from __future__ import annotations

import itertools
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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


def parse_duration(value: Any) -> float:
    """`90s`, `5m`, `1h30m`, `500ms`, `2d`, `1w` to seconds. Bare numbers are refused.

    Refusing `60` avoids guessing whether the user meant seconds or minutes.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("must be a duration string such as 30s, 5m or 1h")
    text = value.strip()
    if not _DURATION_RE.match(text):
        raise ValueError(f"invalid duration {value!r}: use a number and a unit (ms, s, m, h, d, w)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text))


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


Duration = Annotated[float, BeforeValidator(parse_duration)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _read_secret_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"{str(path)!r} is empty")
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
    interval: Duration = 600.0
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

    @model_validator(mode="after")
    def _interval(self) -> DiscoverConfig:
        if self.interval < 1:
            raise ValueError("interval must be at least 1s")
        return self


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
        seen: set[str] = set()
        for inst in self.instances:
            if inst.id in seen:
                raise ValueError(f"instance {inst.id} is listed twice")
            seen.add(inst.id)
        return self

    def endpoint(self, kind: Literal["dcs", "dms", "iam"]) -> str:
        """The endpoint of a service: the configured one, else the cloud's for the region."""
        override = getattr(self.endpoints, kind)
        return override or f"https://{kind}.{self.region}.{CLOUD_DOMAINS[self.cloud]}"


DEFAULT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


class HttpSettings(StrictModel):
    timeout: Duration = 10.0
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
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"cannot load CA certificates from {str(value)!r}: {exc}"
                ) from None
        return value

    @model_validator(mode="after")
    def _positive(self) -> HttpSettings:

        if self.timeout <= 0:
            raise ValueError("timeout must be above 0")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must not be below backoff_initial")
        return self


class MetricsSettings(StrictModel):
    duration_buckets: list[float] = Field(default=list(DEFAULT_BUCKETS), min_length=1)
    duration_by_instance: bool = False

    @field_validator("duration_buckets")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(b <= 0 for b in value) or any(a >= b for a, b in itertools.pairwise(value)):
            raise ValueError("buckets must be positive and strictly increasing")
        return value


class Config(StrictModel):
    poll_interval: Duration = 60.0
    lookback: Duration = 86400.0
    overlap: Duration = 600.0
    catchup_max: Duration = 3 * 86400.0
    state_path: Path = Path("./huaweicloud-task-exporter.db")
    credentials: Credentials | None = None
    http: HttpSettings = HttpSettings()
    metrics: MetricsSettings = MetricsSettings()
    targets: list[TargetConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.poll_interval < 1:
            raise ValueError("poll_interval must be at least 1s")
        if self.lookback < self.poll_interval:
            raise ValueError("lookback must be at least poll_interval")
        if self.catchup_max < self.poll_interval:
            raise ValueError("catchup_max must be at least poll_interval")
        owners: dict[tuple[str, str, str], int] = {}
        for i, target in enumerate(self.targets):
            project = target.project_id or f"(resolved for {target.region})"
            keys = [(target.region, project, inst.id) for inst in target.instances]
            if target.task_center:
                keys.append((target.region, project, "task center"))
            for key in keys:
                if key in owners and owners[key] != i:
                    raise ValueError(
                        f"{key[2]} of project {key[1]} in {key[0]} is configured in both "
                        f"targets[{owners[key]}] and targets[{i}]"
                    )
                owners[key] = i
        return self

    @property
    def retention(self) -> float:
        """How long task IDs are remembered: as far back as any poll may ever read."""
        return max(self.lookback, self.catchup_max)

    _env_default: EnvCredentials | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _default_credentials(self, info: ValidationInfo) -> Config:
        """Without credentials in the file, take them from the environment, as the SDKs do."""
        if self.credentials is None and any(t.credentials is None for t in self.targets):
            try:
                self._env_default = EnvCredentials.model_validate({}, context=info.context)
            except ValidationError:
                raise ValueError(
                    "no credentials: set credentials (at the top level or on each target), "
                    f"or the environment variables {ENV_AK} and {ENV_SK}"
                ) from None
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


# --- loading ---------------------------------------------------------------------------


class ConfigError(Exception):
    """A file that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return m.group(0)  # left as written: the unset variable is the error to report

    return _VAR_RE.sub(repl, value), missing


def _expand_tree(node: Any, path: tuple[Any, ...], env: Mapping[str, str], errs: list[Any]) -> Any:
    if isinstance(node, str):
        expanded, missing = _expand(node, env)
        for name in missing:
            errs.append((path, f"environment variable {name} is not set"))
        return expanded
    if isinstance(node, dict):
        return {k: _expand_tree(v, (*path, k), env, errs) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, (*path, i), env, errs) for i, v in enumerate(node)]
    return node


def _secret_values(node: Any) -> list[str]:
    """Values under secret keys anywhere in the file, longest first, to scrub from errors.

    A secret pasted into the wrong field would otherwise be echoed back in its error.
    """
    found: set[str] = set()

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            for k, v in n.items():
                if k in SECRET_FIELDS and k != "access_key" and isinstance(v, str) and len(v) >= 4:
                    found.add(v)
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(node)
    return sorted(found, key=len, reverse=True)


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    nxt = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    leaf = next((p for p in reversed(loc) if isinstance(p, str)), "")
    value = err.get("input")
    if (
        kind in {"literal_error", "string_pattern_mismatch", "enum"}
        and leaf not in SECRET_FIELDS
        and isinstance(value, str | int | float)
    ):
        msg += f" (got {value!r})"
    return msg


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's internal loc parts (union branch names and tags, validator tags)."""
    out: list[Any] = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue
        if part in CREDENTIAL_SOURCES and out and out[-1] == "credentials":
            continue
        out.append(part)
    return tuple(out)


def load_config_text(
    text: str, source: str = "config", env: Mapping[str, str] | None = None
) -> Config:
    env = os.environ if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    if data is None:
        raise ConfigError([f"{source}: the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: (top level): must be a mapping of keys to values"])

    env_errors: list[tuple[tuple[Any, ...], str]] = []
    data = _expand_tree(data, (), env, env_errors)
    problems: list[tuple[int | None, str]] = [
        (_line_of(root, loc), f"{format_path(loc)}: {msg}") for loc, msg in env_errors
    ]
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"env": env})
    except ValidationError as exc:
        env_locs = {loc for loc, _ in env_errors}
        for err in exc.errors(include_url=False):
            loc = _clean_loc(tuple(err["loc"]))
            if loc in env_locs:
                continue  # already reported as the unset variable behind it
            problems.append((_line_of(root, loc), f"{format_path(loc)}: {_message(err)}"))
    if problems:
        problems.sort(key=lambda p: p[0] or 0)
        secrets = _secret_values(data)
        lines = []
        for line, problem in problems:
            for secret in secrets:
                problem = problem.replace(secret, "<redacted>")  # noqa: PLW2901
            lines.append(f"{source}:{line}: {problem}" if line else f"{source}: {problem}")
        raise ConfigError(lines)
    assert config is not None
    return config


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read the configuration file: {exc.strerror or exc}"]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the configuration file is not UTF-8 text"]) from None
    return load_config_text(text, source=str(path), env=env)
