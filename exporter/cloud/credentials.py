"""Where request credentials come from: fixed keys, the ECS metadata service, or IAM passwords.

A provider hands out the `httpx.Auth` to use for the next request and renews what expires
before it does, so that no poll fails for an expired key or token. When the cloud still
refuses a credential (a 401), `invalidate()` makes the next request fetch a fresh one.
Every secret a provider obtains is registered with the log scrubber the moment it arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Generator
from typing import Any

import httpx

from exporter.cloud.replies import Reply, ReplyError, read_reply
from exporter.signing import AkSkAuth
from exporter.telemetry.logs import register_secret
from exporter.telemetry.selfmetrics import SelfMetrics
from exporter.text import clean_text, parse_json, parse_timestamp

log = logging.getLogger(__name__)

METADATA_TOKEN_TTL = 21600
# Token and key answers are small; nothing legitimate comes near this.
MAX_CREDENTIAL_REPLY = 2**20
# Renew temporary keys and tokens once this share of their lifetime has passed.
RENEW_AT = 2 / 3


class CredentialError(Exception):
    """Credentials could not be obtained; the message is safe to log and show."""


class TokenAuth(httpx.Auth):
    """IAM token authentication: the token goes in `X-Auth-Token`, nothing is signed."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "TokenAuth(<token>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self._token
        yield request


class CredentialProvider:
    """Base class: `auth()` gives the current credentials; `invalidate()` drops them."""

    kind = "static"

    async def auth(self) -> httpx.Auth:
        raise NotImplementedError

    def invalidate(self) -> None:
        """The cloud refused the current credentials: fetch new ones next time (if possible)."""

    @property
    def renewable(self) -> bool:
        return False

    @property
    def project_id(self) -> str | None:
        """The project the credentials are scoped to, when they say (IAM tokens do)."""
        return None


class StaticKeys(CredentialProvider):
    """An access key pair from the configuration, a secret file or the environment."""

    def __init__(self, access_key: str, secret_key: str, security_token: str | None) -> None:
        register_secret(secret_key)
        register_secret(security_token)
        self._auth = AkSkAuth(access_key, secret_key, security_token=security_token)

    async def auth(self) -> httpx.Auth:
        return self._auth


class _Renewing(CredentialProvider):
    """Shared renewal logic: one fetch at a time, renew ahead of expiry, keep what still works.

    A failed renewal while the current credentials are still valid is only a warning: polls
    go on with them, and the next request tries again.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._current: httpx.Auth | None = None
        self._renew_at = 0.0
        self._expires_at = 0.0

    @property
    def renewable(self) -> bool:
        return True

    def invalidate(self) -> None:
        self._current = None

    async def auth(self) -> httpx.Auth:
        now = self._clock()
        if self._current is not None and now < self._renew_at:
            return self._current
        async with self._lock:
            now = self._clock()
            if self._current is not None and now < self._renew_at:
                return self._current
            try:
                auth, expires_at = await self._fetch()
            except CredentialError as exc:
                if self._current is not None and now < self._expires_at - 30:
                    log.warning(
                        "renewing credentials failed; the current ones are still valid",
                        extra={"fields": {"kind": self.kind, "error": str(exc)}},
                    )
                    self._renew_at = now + min(60.0, (self._expires_at - now) / 4)
                    return self._current
                raise
            issued = self._clock()
            self._current = auth
            self._expires_at = expires_at
            self._renew_at = issued + max(1.0, (expires_at - issued) * RENEW_AT)
            log.debug(
                "credentials renewed",
                extra={"fields": {"kind": self.kind, "valid_for": round(expires_at - issued)}},
            )
            return auth

    async def _fetch(self) -> tuple[httpx.Auth, float]:
        raise NotImplementedError


class CredentialHttp:
    """How providers reach IAM and the metadata service: bounded like every cloud request,
    and counted in `api_requests_total` (cloud_service "iam" or "metadata")."""

    def __init__(
        self, http: httpx.AsyncClient, metrics: SelfMetrics | None, timeout: float
    ) -> None:
        self.http = http
        self.metrics = metrics
        self.timeout = timeout

    async def send(self, service: str, region: str, method: str, url: str, **kwargs: Any) -> Reply:
        """One request; ReplyError when no usable answer came (counted as its code or error)."""
        started = time.monotonic()
        try:
            reply = await read_reply(
                self.http,
                method,
                url,
                timeout=self.timeout,
                max_bytes=MAX_CREDENTIAL_REPLY,
                **kwargs,
            )
        except ReplyError as exc:
            self._count(service, region, str(exc.status) if exc.status else "error")
            raise
        self._count(service, region, str(reply.status))
        if self.metrics is not None:
            self.metrics.api_request_duration.labels(service, region).observe(
                time.monotonic() - started
            )
        return reply

    def _count(self, service: str, region: str, code: str) -> None:
        if self.metrics is not None:
            self.metrics.api_requests.labels(service, region, code).inc()


def _json(reply: Reply) -> Any:
    """The reply's JSON document, None when it is not one."""
    try:
        return parse_json(reply.body)
    except ValueError:
        return None


def _error_text(reply: Reply) -> str:
    """The message of an error answer, cleaned (it is logged and shown)."""
    data = _json(reply)
    if data is None:
        return clean_text(reply.body[:300].decode("utf-8", errors="replace"), 300)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return clean_text(str(error.get("message") or error), 300)
        return clean_text(str(data.get("error_msg") or data.get("message") or data), 300)
    return clean_text(str(data), 300)


class MetadataKeys(_Renewing):
    """Temporary keys of the agency attached to this ECS or CCE node, from its metadata service.

    Asks for a metadata session token first (newer metadata services require it; 404, 405 or
    503 mean they do not), then for the keys.
    """

    kind = "metadata"

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        clock: Callable[[], float] = time.time,
        *,
        metrics: SelfMetrics | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(clock)
        self._http = CredentialHttp(http, metrics, timeout)
        self._url = url.rstrip("/")
        self._session: tuple[str, float] | None = None  # metadata token and its expiry

    def _unreachable(self, exc: ReplyError) -> CredentialError:
        if exc.status is not None:  # it answered, but not usably
            return CredentialError(f"the ECS metadata service at {self._url}: {exc}")
        return CredentialError(
            f"the ECS metadata service at {self._url} is not reachable "
            f"({exc}); is this an ECS or CCE node?"
        )

    async def _session_token(self) -> str | None:
        now = self._clock()
        if self._session is not None and now < self._session[1]:
            return self._session[0]
        try:
            response = await self._http.send(
                "metadata",
                "",
                "PUT",
                f"{self._url}/meta-data/latest/api/token",
                headers={"X-Metadata-Token-Ttl-Seconds": str(METADATA_TOKEN_TTL)},
            )
        except ReplyError as exc:
            raise self._unreachable(exc) from None
        if response.status in (404, 405, 503):
            return None
        if response.status != 200:
            raise CredentialError(f"metadata token request refused (HTTP {response.status})")
        token = response.body.decode("utf-8", errors="replace").strip()
        register_secret(token)
        self._session = (token, now + METADATA_TOKEN_TTL * RENEW_AT)
        return token

    async def _fetch(self) -> tuple[httpx.Auth, float]:
        token = await self._session_token()
        headers = {"X-Metadata-Token": token} if token else {}
        try:
            response = await self._http.send(
                "metadata", "", "GET", f"{self._url}/openstack/latest/securitykey", headers=headers
            )
        except ReplyError as exc:
            raise self._unreachable(exc) from None
        if response.status == 401 and b"agency" in response.body.lower():
            raise CredentialError(
                "no agency is attached to this ECS: bind an IAM agency with the exporter's "
                "permissions to the ECS (or CCE node pool) to get temporary credentials"
            )
        if response.status == 401 and token:
            self._session = None  # the metadata token may have expired: get a new one
        if response.status != 200:
            raise CredentialError(
                f"metadata service refused the temporary keys (HTTP "
                f"{response.status}: {_error_text(response)})"
            )
        try:
            cred = parse_json(response.body)["credential"]
            access, secret, security_token = cred["access"], cred["secret"], cred["securitytoken"]
        except (ValueError, KeyError, TypeError):
            raise CredentialError("unexpected answer from the metadata service") from None
        register_secret(secret)
        register_secret(security_token)
        expires_at = parse_timestamp(cred.get("expires_at"))
        if expires_at is None:
            expires_at = self._clock() + 900  # unknown: assume a short life, renew early
        return AkSkAuth(access, secret, security_token=security_token), expires_at


class IamPassword(_Renewing):
    """An IAM user's password, exchanged for a project-scoped token (valid about 24 hours).

    The project is the target's: by ID when it is configured, else by name (the region), in
    which case the token also tells the project ID. An account-wide target's token is scoped
    to the domain (`domain_scoped`): it lists the projects, each of which gets its own.
    """

    kind = "password"

    def __init__(
        self,
        http: httpx.AsyncClient,
        iam_url: str,
        user: str,
        domain: str,
        password: str,
        region: str,
        project_id: str | None,
        clock: Callable[[], float] = time.time,
        *,
        metrics: SelfMetrics | None = None,
        timeout: float = 10.0,
        domain_scoped: bool = False,
    ) -> None:
        super().__init__(clock)
        register_secret(password)
        self._domain_scoped = domain_scoped
        self._http = CredentialHttp(http, metrics, timeout)
        self._iam_url = iam_url.rstrip("/")
        self._user = user
        self._domain = domain
        self._password = password
        self._region = region
        self._project_id = project_id

    @property
    def project_id(self) -> str | None:
        return self._project_id

    async def _fetch(self) -> tuple[httpx.Auth, float]:
        by_project: dict[str, Any] = (
            {"id": self._project_id}
            if self._project_id
            else {"name": self._region, "domain": {"name": self._domain}}
        )
        scope: dict[str, Any] = (
            {"domain": {"name": self._domain}} if self._domain_scoped else {"project": by_project}
        )
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self._user,
                            "password": self._password,
                            "domain": {"name": self._domain},
                        }
                    },
                },
                "scope": scope,
            }
        }
        try:
            response = await self._http.send(
                "iam",
                self._region,
                "POST",
                f"{self._iam_url}/v3/auth/tokens",
                content=json.dumps(body),
                headers={"Content-Type": "application/json;charset=utf8"},
            )
        except ReplyError as exc:
            if exc.status is not None:
                raise CredentialError(f"IAM at {self._iam_url}: {exc}") from None
            raise CredentialError(f"IAM at {self._iam_url} is not reachable ({exc})") from None
        if response.status not in (200, 201):
            raise CredentialError(
                f"IAM refused the password of user {self._user} in domain {self._domain} "
                f"(HTTP {response.status}: {_error_text(response)})"
            )
        token = response.headers.get("X-Subject-Token")
        if not token:
            raise CredentialError("IAM answered without an X-Subject-Token")
        register_secret(token)
        data = _json(response)
        info = data.get("token") if isinstance(data, dict) else None
        project = info.get("project") if isinstance(info, dict) else None
        if isinstance(project, dict) and project.get("id"):
            self._project_id = clean_text(str(project["id"]), 128) or None
        expires_at = parse_timestamp(info.get("expires_at")) if isinstance(info, dict) else None
        if expires_at is None:
            expires_at = self._clock() + 3600
        return TokenAuth(token), expires_at
