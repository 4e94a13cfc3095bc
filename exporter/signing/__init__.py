"""AK/SK request signing (`SDK-HMAC-SHA256`) as an `httpx.Auth`.

Byte-identical to the official SDK's `huaweicloudsdkcore.signer.Signer` for the same request
(the test suite checks this against the SDK). The signer also rewrites the query string into
its canonical form, as the SDK does, so that what the gateway receives is exactly what was
signed whatever encoding the caller used. `prepared` signs one GET over and over (a task
list's poll) with its fixed parts computed once, to the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, unquote

import httpx

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
HEADER_DATE = "X-Sdk-Date"
HEADER_CONTENT_SHA256 = "X-Sdk-Content-Sha256"
HEADER_SECURITY_TOKEN = "X-Security-Token"  # noqa: S105 - a header name
HEADER_PROJECT_ID = "X-Project-Id"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

# Headers that httpx manages for the connection, not for the request's meaning. They are not
# signed, so that a proxy or a different HTTP stack rewriting them cannot break a signature.
UNSIGNED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "content-length",
        "transfer-encoding",
        "user-agent",
    }
)


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch  # what percent-encoding keeps


def _encode(text: str) -> str:
    # Most keys and values (digits, timestamps, names) need no encoding: no quote() call.
    return text if _UNRESERVED(text) else quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """Each segment of the decoded path percent-encoded, always ending in `/`."""
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(params: list[tuple[str, str]]) -> str:
    """`key=value` pairs sorted by key then value, percent-encoded, joined by `&`."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params))


def signed_header_names(headers: dict[str, str]) -> list[str]:
    """Lower-cased names, sorted; a name with `_` is never signed (gateways drop them)."""
    return sorted(name for name in headers if "_" not in name)


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    payload_hash: str,
) -> tuple[str, list[str]]:
    """The canonical request text and the names of the headers it signs.

    `headers` maps lower-cased names to values; values are trimmed here.
    """
    names = signed_header_names(headers)
    header_block = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    text = "\n".join(
        [method.upper(), canonical_uri(path), query, header_block, ";".join(names), payload_hash]
    )
    return text, names


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization_header(access_key: str, names: list[str], sig: str) -> str:
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(names)}, Signature={sig}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AkSkAuth(httpx.Auth):
    """Signs each request with an access key pair, optionally temporary (with a token).

    The secret never leaves this object: `repr` shows only the access key.
    """

    requires_request_body = True

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        security_token: str | None = None,
        project_id: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not access_key or not secret_key:
            raise ValueError("access key and secret key are both required")
        self.access_key = access_key
        self._secret_key = secret_key
        self._security_token = security_token
        self._project_id = project_id
        self._clock = clock

    def __repr__(self) -> str:
        return f"AkSkAuth(access_key={self.access_key!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Add the date, token, project and Authorization headers; canonicalize the query."""
        if HEADER_DATE not in request.headers:
            request.headers[HEADER_DATE] = self._clock().strftime(DATE_FORMAT)
        if self._project_id and HEADER_PROJECT_ID not in request.headers:
            request.headers[HEADER_PROJECT_ID] = self._project_id
        if self._security_token:
            request.headers[HEADER_SECURITY_TOKEN] = self._security_token
        content_type = request.headers.get("content-type", "")
        body = request.content
        if content_type and not content_type.startswith(("application/json", "application/bson")):
            request.headers[HEADER_CONTENT_SHA256] = "UNSIGNED-PAYLOAD"

        params = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
        query = canonical_query(params)
        request.url = request.url.copy_with(query=query.encode("ascii") if query else None)

        headers: dict[str, str] = {}
        for raw_name, raw_value in request.headers.raw:
            name = raw_name.decode("latin-1").lower()
            if name in UNSIGNED_HEADERS:
                continue
            headers[name] = raw_value.decode("utf-8", errors="replace").strip()

        if not body:
            payload_hash = EMPTY_BODY_SHA256
        elif HEADER_CONTENT_SHA256.lower() in headers:
            payload_hash = headers[HEADER_CONTENT_SHA256.lower()]
        else:
            payload_hash = hashlib.sha256(body).hexdigest()

        canonical, names = canonical_request(
            request.method,
            request.url.raw_path.split(b"?")[0].decode("ascii"),
            query,
            headers,
            payload_hash,
        )
        sig = signature(self._secret_key, string_to_sign(canonical, request.headers[HEADER_DATE]))
        request.headers["Authorization"] = authorization_header(self.access_key, names, sig)
