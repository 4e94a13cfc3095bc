"""The simulated cloud's state: instances, their tasks, churn over time, dialects and faults.

Everything here is plain Python behind one lock, so tests can drive it directly while the
HTTP front end (`exporter.simulator.server`) serves it. Churn is lazy and deterministic:
each instance has its own seeded random stream and the world is advanced to "now" when it
is read, so the same seed gives the same tasks whatever the timing of requests.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import heapq
import itertools
import json
import math
import random
import secrets
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

DCS_TASK_NAMES = (
    "EXTEND",
    "BindEip",
    "UnBindEip",
    "AddReplica",
    "DelReplica",
    "AddWhitelist",
    "UpdatePort",
    "RemoveIpFromDns",
    "masterStandbySwapJob",
    "modify",
    "DeleteAcl",
)
KAFKA_TASK_NAMES = (
    "modifyAutoTopic",
    "changeRetentionPolicy",
    "bindInstancePublicIp",
    "kafkaConfigModify",
    "kafkaResetConsumerOffset",
)
MQ_TASK_NAMES = ("bindInstancePublicIp", "unbindInstancePublicIp")
TASK_NAMES = {
    "dcs": DCS_TASK_NAMES,
    "kafka": KAFKA_TASK_NAMES,
    "rabbitmq": MQ_TASK_NAMES,
    "rocketmq": MQ_TASK_NAMES,
}
# How long each kind of task usually takes in the simulated history: the median in seconds
# and the spread (sigma of a log-normal): a resize takes a quarter of an hour, binding an
# EIP seconds, a master/standby switchover half a minute.
TYPICAL_DURATIONS: dict[str, tuple[float, float]] = {
    "EXTEND": (900.0, 0.5),
    "BindEip": (15.0, 0.4),
    "UnBindEip": (12.0, 0.4),
    "AddReplica": (600.0, 0.4),
    "DelReplica": (300.0, 0.4),
    "AddWhitelist": (8.0, 0.3),
    "UpdatePort": (20.0, 0.3),
    "RemoveIpFromDns": (10.0, 0.3),
    "masterStandbySwapJob": (30.0, 0.3),
    "modify": (6.0, 0.4),
    "DeleteAcl": (5.0, 0.3),
    "dcsExportJob": (300.0, 0.5),
    "modifyAutoTopic": (20.0, 0.4),
    "changeRetentionPolicy": (15.0, 0.4),
    "bindInstancePublicIp": (40.0, 0.4),
    "unbindInstancePublicIp": (30.0, 0.4),
    "kafkaConfigModify": (120.0, 0.5),
    "kafkaResetConsumerOffset": (10.0, 0.4),
}
# The task center shows some instance tasks under another name (same task ID).
CENTER_NAMES = {"EXTEND": "ChangeInstanceSpec"}
CENTER_ONLY_NAMES = ("dcsExportJob",)

MISSING = object()  # a raw override that removes the field from the answer


class Auto(enum.Enum):
    """`add_task`'s default for a task's context: made up to look like the cloud's."""

    AUTO = enum.auto()


AUTO = Auto.AUTO

# Who starts tasks: people, automation and the services' own accounts (as in the examples).
USERS = {
    "dcs": ("alice", "bob", "carol", "ops-terraform", "dcs_000_02"),
    "dms": ("alice", "bob", "carol", "ops-terraform", "paas_dms"),
}
# DCS capacities (GB) and the spec codes of each cache mode, smallest first.
DCS_CAPACITIES = {
    "single": ("0.125", "0.25", "0.5", "1", "2", "4", "8"),
    "ha": ("0.125", "0.25", "0.5", "1", "2", "4", "8", "16"),
    "cluster": ("4", "8", "16", "24", "32", "48", "64"),
}

Service = Literal["dcs", "kafka", "rabbitmq", "rocketmq"]
Listener = Literal["dcs", "dms", "iam", "metadata"]

DEFAULT_PROJECT = "0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b"
DEFAULT_DOMAIN_ID = "d78cbac186b744899480f25bd022f468"
DEFAULT_ENGINE_VERSIONS: dict[str, str] = {
    "dcs": "6.0",
    "kafka": "2.7",
    "rabbitmq": "3.8.35",
    "rocketmq": "4.8.0",
}
# The `engine` the list-instances APIs show (and DMS filters on): RocketMQ is "reliability".
LIST_ENGINES: dict[str, str] = {
    "dcs": "Redis",
    "kafka": "kafka",
    "rabbitmq": "rabbitmq",
    "rocketmq": "reliability",
}


def listener_of(service: str) -> Listener:
    return "dcs" if service == "dcs" else "dms"


def format_expiry(ts: float) -> str:
    """IAM and metadata expiry times: `%Y-%m-%dT%H:%M:%S.%fZ` in UTC."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_ms(ts: float) -> float:
    """The precision the APIs show: the world keeps times exactly as they go on the wire."""
    return int(ts * 1000) / 1000


def user_id_of(user_name: str) -> str:
    """A stable 32-hex user ID per user name, like IAM's."""
    return hashlib.sha256(f"user/{user_name}".encode()).hexdigest()[:32]


def _spec_code(mode: str, capacity: str) -> str:
    """Spec codes like the references': `redis.single.xu1.tiny.128`, `redis.ha.xu1.large.r2.2`."""
    if mode == "cluster":
        return f"redis.cluster.xu1.large.shard.{capacity}"
    tiny = capacity in ("0.125", "0.25", "0.5")
    size = str(int(float(capacity) * 1024)) if tiny else capacity
    replicas = "" if mode == "single" else "r2."
    return f"redis.{mode}.xu1.{'tiny' if tiny else 'large'}.{replicas}{size}"


def _ip(rng: random.Random) -> str:
    first = rng.choice((49, 94, 119, 121, 159))
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def dcs_details(name: str, mode: str, rng: random.Random) -> dict[str, Any] | None:
    """A DCS task's `details` as the DetailsBody of the references shows it, or None."""
    if name == "EXTEND":
        caps = DCS_CAPACITIES[mode]
        old = rng.randrange(len(caps) - 1)
        new = old + 1 if rng.random() < 0.8 or old == 0 else old - 1
        replicas = 1 if mode == "single" else 2
        return {
            "old_cache_mode": mode,
            "new_cache_mode": mode,
            "old_capacity": caps[old],
            "new_capacity": caps[new],
            "old_resource_spec_code": _spec_code(mode, caps[old]),
            "new_resource_spec_code": _spec_code(mode, caps[new]),
            "old_replica_num": replicas,
            "new_replica_num": replicas,
            "old_cache_type": mode,
            "new_cache_type": mode,
            "is_only_adjust_charging": False,
        }
    if name in ("AddReplica", "DelReplica"):
        n = rng.randint(2, 4)
        return {
            "old_replica_num": n,
            "new_replica_num": n + 1 if name == "AddReplica" else n - 1,
            "replica_ip": f"192.168.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
            "replica_az": rng.choice(("az01", "az02", "az03")),
        }
    if name == "BindEip":
        bind: dict[str, Any] = {
            "enable_public_ip": True,
            "public_ip_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "public_ip_address": _ip(rng),
        }
        if rng.random() < 0.3:
            bind["enable_ssl"] = True  # given "only when SSL is enabled"
        return bind
    if name == "UnBindEip":
        return {"enable_public_ip": False}
    if name == "UpdatePort":
        return {"old_port": 6379, "new_port": 6380}
    return None


def dms_params(name: str, rng: random.Random) -> str | None:
    """A DMS task's `params`: a JSON document inside a string, as in the references."""
    doc: dict[str, Any]
    if name == "modifyAutoTopic":
        old = rng.random() < 0.5
        doc = {"old_auto_status": old, "new_auto_status": not old}
    elif name == "changeRetentionPolicy":
        policies = ["time_base", "produce_reject"]
        rng.shuffle(policies)
        doc = {"new_retention_policy": policies[0], "origin_retention_policy": policies[1]}
    elif name == "bindInstancePublicIp":
        doc = {
            "public_ip_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "public_ip_address": _ip(rng),
            "enable_public_ip": True,
        }
    elif name == "unbindInstancePublicIp":
        doc = {"enable_public_ip": False}
    elif name == "kafkaConfigModify":
        # Config names and values are the user's (some hold credentials): summaries skip them.
        hours = rng.choice((24, 72, 168))
        doc = {"kafka_configs": [{"name": "log.retention.hours", "value": str(hours)}]}
    elif name == "kafkaResetConsumerOffset":
        doc = {"group": "order-consumers", "topic": "orders", "partition": -1, "message_offset": 0}
    else:
        return None
    return json.dumps(doc, separators=(",", ":"))


def center_details(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """The task center's `details`: its example gives capacities as numbers."""
    if details is None:
        return None
    shown = dict(details)
    for key in ("old_capacity", "new_capacity"):
        value = shown.get(key)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # a test's odd value is kept as given
                shown[key] = float(value)
    return shown


def format_ts(ts: float) -> str:
    dt = datetime.fromtimestamp(round(ts, 3), timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{round(dt.microsecond / 1000):03d}Z"


@dataclass
class SimInstance:
    id: str
    service: Service
    name: str
    project_id: str
    engine_version: str = ""
    status: str = "RUNNING"
    tags: dict[str, str] = field(default_factory=dict)
    # Fields of the listing overridden as given (MISSING removes one), like `SimTask.raw`.
    raw: dict[str, Any] = field(default_factory=dict)

    def listing(self) -> dict[str, Any]:
        """The instance as the list-instances APIs show it (fields the SDKs' models declare:
        the listing names no project)."""
        body: dict[str, Any] = {
            "instance_id": self.id,
            "name": self.name,
            "engine": LIST_ENGINES[self.service],
            "engine_version": self.engine_version,
            "status": self.status,
            "tags": [{"key": k, "value": v} for k, v in self.tags.items()],
        }
        for key, value in self.raw.items():
            if value is MISSING:
                body.pop(key, None)
            else:
                body[key] = value
        return body


@dataclass
class SimToken:
    """An IAM token (`X-Subject-Token`), scoped to one project."""

    token: str
    domain: str
    user: str
    project_id: str
    issued_at: float
    expires_at: float


@dataclass
class SimTask:
    id: str
    service: Service
    project_id: str
    instance_id: str | None  # None: a project-level job only the task center lists
    name: str
    status: str
    created_at: float
    updated_at: float
    params: str | None = None
    details: dict[str, Any] | None = None
    job_id: str = ""
    error_code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    user_name: str = "sim_user"
    user_id: str = "d53977d1adfb49c5b025ba7d33a13fd7"

    def view(self, center: bool = False) -> dict[str, Any]:
        """The task as the API shows it: DCS or DMS fields, or the task center's."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": CENTER_NAMES.get(self.name, self.name) if center else self.name,
            "user_name": self.user_name,
            "user_id": self.user_id,
        }
        if self.service == "dcs":
            body["details"] = center_details(self.details) if center else self.details
            body["enable_show"] = self.details is not None
        if self.params is not None:
            body["params"] = self.params
        body["status"] = self.status
        body["created_at"] = format_ts(self.created_at)
        body["updated_at"] = format_ts(self.updated_at)
        if center:
            body["job_id"] = self.job_id
            body["error_code"] = self.error_code
        for key, value in self.raw.items():
            if value is MISSING:
                body.pop(key, None)
            else:
                body[key] = value
        return body


@dataclass
class Options:
    """How the simulated APIs read the parameters the references disagree on."""

    # Which parameter the DCS APIs take as the window start: the reference's `start_time`, the
    # doc example's `begin_time`, or none (the window is ignored and everything is listed).
    dcs_window_param: Literal["start_time", "begin_time", "none"] = "start_time"
    # DMS `start`: 0-based, 1-based taking 0 as 1, or 1-based refusing 0.
    dms_start: Literal["0", "1", "1-strict"] = "0"
    dms_window: bool = True
    # Which parameter the DMS APIs take as the window start (the references' `begin_time`, or
    # `start_time` as DCS names it); `dms_window: false` ignores either.
    dms_window_param: Literal["begin_time", "start_time"] = "begin_time"
    # Whether DMS also honours `offset` (0-based) when `start` is left out, as newer EU pages
    # name the paging parameter.
    dms_offset: bool = False
    # Whether DCS honours `offset` (a server that ignores it serves the first page always).
    dcs_offset: bool = True
    # Assumption breakers: task fields renamed in every answer (`{"created_at": "create_time"}`;
    # an empty new name drops the field), and top-level fields likewise (`{"tasks": ""}`).
    rename_task_fields: dict[str, str] = field(default_factory=dict)
    rename_answer_fields: dict[str, str] = field(default_factory=dict)
    # `task_count` as a string (the references), an integer (the examples), or alternating.
    task_count: Literal["string", "int", "mixed"] = "string"
    dcs_max_limit: int = 1000
    dms_max_limit: int = 100
    signature_max_skew: float = 900.0
    # IAM tokens and the metadata service's temporary credentials: lifetimes in seconds.
    iam_token_ttl: float = 86400.0
    temp_credential_ttl: float = 3600.0
    # Metadata service: whether `PUT /meta-data/latest/api/token` exists (200) or not (404),
    # whether `securitykey` refuses requests without a valid `X-Metadata-Token` (401), and
    # whether the ECS has an agency attached (without one, `securitykey` answers 401).
    metadata_token_supported: bool = True
    metadata_token_required: bool = False
    metadata_agency: bool = True
    # List-instances page sizes: DCS `limit` 1..1000, DMS `limit` 1..50.
    dcs_list_max_limit: int = 1000
    dms_list_max_limit: int = 50
    # Whether IAM's `GET /v3/auth/projects` takes AK/SK signatures (the docs show a token).
    iam_auth_projects_signed: bool = True


FaultKind = Literal[
    "latency",
    "http_error",
    "throttle",
    "flow_control",
    "malformed",
    "reset",
    "not_found",
    "wrong_page",
]


@dataclass
class Fault:
    kind: FaultKind
    listener: Listener | None = None
    instance_id: str | None = None
    project_id: str | None = None
    center: bool | None = None  # only the task center (True) or only instance lists (False)
    # Only list-instances calls (True) or only task lists (False). Listings ignore faults aimed
    # at an instance or at the task center (`instance_id` or `center` set).
    listing: bool | None = None
    remaining: int | None = None  # None: until cleared
    latency: float = 0.0
    status: int = 500
    retry_after: float | None = None
    # Only the projects of one region (the region project and its sub-projects), as when a
    # region's endpoints fail.
    region: str | None = None
    id: int = 0

    def matches(
        self, listener: Listener, project_id: str, instance_id: str | None, listing: bool = False
    ) -> bool:
        if self.listener is None and listener not in ("dcs", "dms"):
            return False  # IAM and metadata faults must name their listener
        if self.listing is not None and self.listing != listing:
            return False
        if listing and (self.center is not None or self.instance_id is not None):
            return False
        return (
            (self.listener is None or self.listener == listener)
            and (self.project_id is None or self.project_id == project_id)
            and (self.center is None or self.center == (instance_id is None))
            and (self.instance_id is None or self.instance_id == instance_id)
        )


@dataclass
class Churn:
    """Random task traffic: per instance, a task every `mean_interval` seconds on average."""

    mean_interval: float = 60.0
    min_duration: float = 2.0
    max_duration: float = 120.0
    p_failed: float = 0.15
    p_stuck: float = 0.03
    p_cancelled: float = 0.02  # DMS only: cancelled scheduled tasks
    center_job_interval: float = 0.0  # task-center-only jobs per project; 0 = none


@dataclass
class RequestRecord:
    at: float
    listener: str
    method: str
    path: str
    query: dict[str, str]
    status: int
    access_key: str | None


class World:
    def __init__(
        self, seed: int = 1, clock: Callable[[], float] = time.time, region: str = "ap-southeast-1"
    ) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.clock = clock
        self.region = region
        self.rng = random.Random(seed)
        self.instances: dict[str, SimInstance] = {}
        self.tasks: dict[str, SimTask] = {}
        # The same tasks by instance: an instance's list is read without a scan of the world.
        self._by_instance: dict[str, dict[str, SimTask]] = {}
        self.options = Options()
        # access key -> (secret key, security token or None, expiry epoch or None)
        self.credentials: dict[str, tuple[str, str | None, float | None]] = {}
        # project name (a region name) -> project ID
        self.projects: dict[str, str] = {region: DEFAULT_PROJECT}
        self.domain_id = DEFAULT_DOMAIN_ID
        self.iam_users: dict[tuple[str, str], str] = {}  # (domain, user) -> password
        self.tokens: dict[str, SimToken] = {}
        self.tokens_issued = 0
        self.metadata_tokens: dict[str, float] = {}  # metadata token -> expiry epoch
        self.metadata_issued = 0
        self.faults: list[Fault] = []
        self.requests: deque[RequestRecord] = deque(maxlen=50_000)
        self.churn: Churn | None = None
        self._plans: list[tuple[float, int, str, str]] = []  # (when, seq, task_id, status)
        self._seq = itertools.count()
        self._fault_ids = itertools.count(1)
        self._next_arrival: dict[str, float] = {}
        self._inst_rng: dict[str, random.Random] = {}
        self._count_flip = False

    # -- set-up ---------------------------------------------------------------------------

    def add_credentials(
        self,
        access_key: str,
        secret_key: str,
        security_token: str | None = None,
        expires_at: float | None = None,
    ) -> None:
        """Keys the gateways accept; temporary ones carry a token and (usually) an expiry."""
        with self.lock:
            self.credentials[access_key] = (secret_key, security_token, expires_at)

    def add_project(self, name: str, project_id: str) -> None:
        with self.lock:
            self.projects[name] = project_id

    def remove_project(self, name: str) -> None:
        with self.lock:
            self.projects.pop(name, None)

    def project_region(self, project_id: str) -> str | None:
        """The region of a project: `eu-de` for `eu-de` and for its sub-project `eu-de_x`."""
        name = self.project_name(project_id)
        return None if name is None else name.split("_", 1)[0]

    def project_listing(self) -> list[tuple[str, str, str]]:
        """(name, ID, parent ID) of every project, as IAM's project lists show them: a
        sub-project's parent is its region's project, a region project's is the domain."""
        with self.lock:
            out = []
            for name, pid in self.projects.items():
                region = name.split("_", 1)[0]
                parent = self.projects.get(region, self.domain_id) if region != name else None
                out.append((name, pid, parent or self.domain_id))
            return out

    def project_name(self, project_id: str) -> str | None:
        with self.lock:
            for name, pid in self.projects.items():
                if pid == project_id:
                    return name
            return None

    def add_iam_user(self, domain: str, user: str, password: str) -> None:
        with self.lock:
            self.iam_users[(domain, user)] = password

    def issue_token(self, domain: str, user: str, project_id: str) -> tuple[str, float]:
        """A new IAM token for a project, valid `options.iam_token_ttl` seconds."""
        with self.lock:
            now = self.clock()
            token = secrets.token_urlsafe(48)
            expires_at = now + self.options.iam_token_ttl
            self.tokens[token] = SimToken(token, domain, user, project_id, now, expires_at)
            self.tokens_issued += 1
            return token, expires_at

    def valid_token(self, token: str) -> SimToken | None:
        """The token's record, or None when it is unknown or expired."""
        with self.lock:
            found = self.tokens.get(token)
            if found is None or found.expires_at <= self.clock():
                return None
            return found

    def issue_metadata_token(self, ttl: float) -> str:
        with self.lock:
            token = secrets.token_urlsafe(32)
            self.metadata_tokens[token] = self.clock() + ttl
            return token

    def metadata_token_valid(self, token: str | None) -> bool:
        with self.lock:
            if token is None:
                return False
            expires_at = self.metadata_tokens.get(token)
            return expires_at is not None and expires_at > self.clock()

    def issue_temporary_credentials(self) -> tuple[str, str, str, float]:
        """New (access key, secret key, security token, expiry) as the metadata service
        hands out, registered so the gateways accept them until they expire."""
        with self.lock:
            alphabet = string.ascii_uppercase + string.digits
            access_key = "".join(secrets.choice(alphabet) for _ in range(20))
            secret_key = "".join(
                secrets.choice(string.ascii_letters + string.digits) for _ in range(40)
            )
            security_token = "gQpjbi1ub3J0aC00" + secrets.token_urlsafe(180)
            expires_at = self.clock() + self.options.temp_credential_ttl
            self.add_credentials(access_key, secret_key, security_token, expires_at)
            self.metadata_issued += 1
            return access_key, secret_key, security_token, expires_at

    def new_id(self) -> str:
        with self.lock:
            return uuid.UUID(int=self.rng.getrandbits(128)).hex

    def add_instance(
        self,
        service: Service,
        name: str = "",
        project_id: str = "",
        instance_id: str | None = None,
        *,
        status: str = "RUNNING",
        tags: dict[str, str] | None = None,
        engine_version: str | None = None,
    ) -> SimInstance:
        with self.lock:
            inst = SimInstance(
                id=instance_id or str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                service=service,
                name=name,
                project_id=project_id or DEFAULT_PROJECT,
                engine_version=(
                    DEFAULT_ENGINE_VERSIONS[service] if engine_version is None else engine_version
                ),
                status=status,
                tags=dict(tags or {}),
            )
            self.instances[inst.id] = inst
            if self.churn is not None:
                self._schedule_arrival(inst.id, self.clock())
            return inst

    def set_instance_status(self, instance_id: str, status: str) -> SimInstance:
        with self.lock:
            inst = self.instances[instance_id]
            inst.status = status
            return inst

    def remove_instance(self, instance_id: str) -> None:
        with self.lock:
            self.instances.pop(instance_id, None)
            self._next_arrival.pop(instance_id, None)

    def add_task(
        self,
        instance_id: str | None,
        name: str,
        status: str,
        created_at: float | None = None,
        updated_at: float | None = None,
        *,
        project_id: str | None = None,
        raw: dict[str, Any] | None = None,
        task_id: str | None = None,
        plan: Iterable[tuple[float, str]] = (),
        user_name: str | None = None,
        params: str | dict[str, Any] | Auto | None = AUTO,
        details: dict[str, Any] | Auto | None = AUTO,
    ) -> SimTask:
        """A task on an instance, or (instance_id None) a job only the task center lists.

        Who started it and what it changes are made up from the task's name (deterministic
        per world seed and task ID) unless given: `params` as an object is sent as the APIs
        send it, JSON inside a string, so a test can put anything there (a password too).
        """
        with self.lock:
            now = self.clock()
            if instance_id is not None:
                inst = self.instances[instance_id]
                service, project = inst.service, inst.project_id
            else:
                service, project = "dcs", project_id or DEFAULT_PROJECT
            created = to_ms(now if created_at is None else created_at)
            task = SimTask(
                id=task_id or self.new_id(),
                service=service,
                project_id=project,
                instance_id=instance_id,
                name=name,
                status=status,
                created_at=created,
                updated_at=created if updated_at is None else to_ms(updated_at),
                job_id=self.new_id(),
                raw=dict(raw or {}),
            )
            rng = random.Random(f"{self.seed}/context/{task.id}")
            users = USERS[listener_of(service)]
            task.user_name = rng.choice(users) if user_name is None else user_name
            task.user_id = user_id_of(task.user_name)
            if service == "dcs":
                mode = self.cache_mode(instance_id)
                task.details = dcs_details(name, mode, rng) if details is AUTO else details
                task.error_code = "111400063" if status == "FAILED" else None
            if params is AUTO:
                task.params = None if service == "dcs" else dms_params(name, rng)
            elif isinstance(params, dict):
                task.params = json.dumps(params)
            else:
                task.params = params
            replaced = self.tasks.get(task.id)
            if replaced is not None and replaced.instance_id is not None:
                self._by_instance.get(replaced.instance_id, {}).pop(task.id, None)
            self.tasks[task.id] = task
            if task.instance_id is not None:
                self._by_instance.setdefault(task.instance_id, {})[task.id] = task
            for when, next_status in plan:
                heapq.heappush(self._plans, (when, next(self._seq), task.id, next_status))
            return task

    def add_history(
        self,
        instance_id: str,
        days: float,
        per_day: float,
        *,
        p_failed: float = 0.1,
        names: Iterable[str] | None = None,
    ) -> list[SimTask]:
        """Weeks of finished tasks behind now: `per_day` on average (a Poisson stream), each of
        a kind of the instance's service (or of `names`), lasting a log-normal time around its
        kind's TYPICAL_DURATIONS, `p_failed` of them FAILED; every one finished a minute ago
        at the latest. Deterministic per world seed and instance."""
        with self.lock:
            now = self.clock()
            inst = self.instances[instance_id]
            kinds = tuple(names or TASK_NAMES[inst.service])
            rng = random.Random(f"{self.seed}/history/{instance_id}")
            at = now - days * 86400.0
            added: list[SimTask] = []
            while True:
                at += rng.expovariate(per_day / 86400.0)
                name = rng.choice(kinds)
                median, sigma = TYPICAL_DURATIONS.get(name, (60.0, 0.5))
                duration = rng.lognormvariate(math.log(median), sigma)
                failed = rng.random() < p_failed
                if at + duration > now - 60:
                    return added
                task_id = uuid.UUID(int=rng.getrandbits(128)).hex
                status = "FAILED" if failed else "SUCCESS"
                added.append(
                    self.add_task(instance_id, name, status, at, at + duration, task_id=task_id)
                )

    def cache_mode(self, instance_id: str | None) -> str:
        """A DCS instance's cache mode, fixed per instance (the task center's jobs: single)."""
        if instance_id is None:
            return "single"
        return random.Random(f"{self.seed}/mode/{instance_id}").choice(tuple(DCS_CAPACITIES))

    def set_status(self, task_id: str, status: str, at: float | None = None) -> SimTask:
        with self.lock:
            task = self.tasks[task_id]
            task.status = status
            task.updated_at = to_ms(self.clock() if at is None else at)
            if task.service == "dcs":
                task.error_code = "111400063" if status == "FAILED" else None
            return task

    def remove_task(self, task_id: str) -> None:
        with self.lock:
            task = self.tasks.pop(task_id, None)
            if task is not None and task.instance_id is not None:
                self._by_instance.get(task.instance_id, {}).pop(task_id, None)

    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            fault.id = next(self._fault_ids)
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def start_churn(self, churn: Churn) -> None:
        with self.lock:
            self.churn = churn
            now = self.clock()
            self._next_arrival = {}
            for inst in self.instances.values():
                self._schedule_arrival(inst.id, now)

    def stop_churn(self) -> None:
        with self.lock:
            self.advance()
            self.churn = None
            self._next_arrival.clear()

    # -- time -----------------------------------------------------------------------------

    def _rng_for(self, instance_id: str) -> random.Random:
        rng = self._inst_rng.get(instance_id)
        if rng is None:
            rng = self._inst_rng[instance_id] = random.Random(f"{self.seed}/{instance_id}")
        return rng

    def _schedule_arrival(self, instance_id: str, after: float) -> None:
        assert self.churn is not None
        rng = self._rng_for(instance_id)
        self._next_arrival[instance_id] = after + rng.expovariate(1 / self.churn.mean_interval)

    def advance(self) -> None:
        """Bring churn and planned transitions up to now."""
        with self.lock:
            now = self.clock()
            if self.churn is not None:
                for inst_id in list(self._next_arrival):
                    while inst_id in self._next_arrival and self._next_arrival[inst_id] <= now:
                        at = self._next_arrival[inst_id]
                        self._spawn(inst_id, at)
                        self._schedule_arrival(inst_id, at)
            while self._plans and self._plans[0][0] <= now:
                when, _, task_id, status = heapq.heappop(self._plans)
                if task_id in self.tasks:
                    self.set_status(task_id, status, at=when)

    def _spawn(self, instance_id: str, at: float) -> None:
        assert self.churn is not None
        c = self.churn
        inst = self.instances.get(instance_id)
        if inst is None:
            return
        rng = self._rng_for(instance_id)
        name = rng.choice(TASK_NAMES[inst.service])
        # Lifecycles only move forward: CREATED, then EXECUTING, then a final status.
        start = at + rng.uniform(0.05, min(1.0, c.min_duration / 2))
        end = start + rng.uniform(c.min_duration, c.max_duration)
        roll = rng.random()
        plan: list[tuple[float, str]] = [(start, "EXECUTING")]
        if roll < c.p_stuck:
            pass
        elif roll < c.p_stuck + c.p_failed:
            plan.append((end, "FAILED"))
        elif inst.service != "dcs" and roll < c.p_stuck + c.p_failed + c.p_cancelled:
            plan.append((end, "CANCELLED"))
        else:
            plan.append((end, "SUCCESS"))
        task_id = uuid.UUID(int=rng.getrandbits(128)).hex
        self.add_task(instance_id, name, "CREATED", created_at=at, task_id=task_id, plan=plan)

    # -- reading --------------------------------------------------------------------------

    def instance_tasks(self, instance_id: str) -> list[SimTask]:
        with self.lock:
            self.advance()
            found = list(self._by_instance.get(instance_id, {}).values())
        return sorted(found, key=lambda t: (t.created_at, t.id), reverse=True)

    def center_tasks(self, project_id: str) -> list[SimTask]:
        with self.lock:
            self.advance()
            found = [
                t for t in self.tasks.values() if t.project_id == project_id and t.service == "dcs"
            ]
        return sorted(found, key=lambda t: (t.created_at, t.id), reverse=True)

    def task_count_value(self, n: int) -> int | str:
        with self.lock:
            mode = self.options.task_count
            if mode == "mixed":
                self._count_flip = not self._count_flip
                return n if self._count_flip else str(n)
            return n if mode == "int" else str(n)

    def take_fault(
        self, listener: Listener, project_id: str, instance_id: str | None, listing: bool = False
    ) -> tuple[float, Fault | None]:
        """Total injected latency, and the first matching non-latency fault (used up once)."""
        latency = 0.0
        chosen: Fault | None = None
        with self.lock:
            for fault in list(self.faults):
                if not fault.matches(listener, project_id, instance_id, listing):
                    continue
                if fault.region is not None and self.project_region(project_id) != fault.region:
                    continue
                if fault.kind == "latency":
                    latency += fault.latency
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self.faults.remove(fault)
                    continue
                if chosen is None:
                    chosen = fault
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self.faults.remove(fault)
        return latency, chosen

    def list_instances(
        self, project_id: str, services: Iterable[str] | None = None
    ) -> list[SimInstance]:
        """A project's instances (of some services), in creation order."""
        wanted = None if services is None else set(services)
        with self.lock:
            return [
                i
                for i in self.instances.values()
                if i.project_id == project_id and (wanted is None or i.service in wanted)
            ]

    def record(self, rec: RequestRecord) -> None:
        with self.lock:
            self.requests.append(rec)

    def requests_for(
        self, instance_id: str | None = None, since: float = 0.0
    ) -> list[RequestRecord]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.at >= since
                and (instance_id is None or f"/instances/{instance_id}/" in r.path + "/")
            ]
