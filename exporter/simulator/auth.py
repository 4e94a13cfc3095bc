"""Server-side check of `SDK-HMAC-SHA256` signatures, as the API gateway does it.

It rebuilds the canonical request from what came over the wire (the raw path and query, the
headers the client says it signed), so a client that signs one thing and sends another fails
here as it would on the real gateway.

The signature itself is recomputed by a pluggable `SignatureCheck`. The shipped default
(`exporter_check`) reuses `exporter.signing`, so the simulator needs nothing beyond the package;
the test suite installs one built on the official SDK's signer instead, so that a bug shared by
the exporter's signer and this check cannot pass the end-to-end tests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl

from exporter.signing import canonical_query, canonical_request, signature, string_to_sign

_AUTH_RE = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$"
)


@dataclass(frozen=True)
class Received:
    """A signed request as it came over the wire, for a `SignatureCheck` to recompute."""

    method: str
    raw_path: str
    raw_query: str
    headers: dict[str, str]
    """The signed headers only (lower-cased names, in `SignedHeaders` order), values as sent."""
    body: bytes
    authorization: str
    """The `Authorization` header as sent (stripped)."""
    access_key: str
    signature: str


SignatureCheck = Callable[[Received, str], bool]
"""True when the request is correctly signed with the given secret key."""


def exporter_check(request: Received, secret_key: str) -> bool:
    """The signature recomputed with the exporter's own signing code (no SDK needed)."""
    query = canonical_query(parse_qsl(request.raw_query, keep_blank_values=True))
    payload = hashlib.sha256(request.body).hexdigest()
    canonical, _ = canonical_request(
        request.method, request.raw_path, query, request.headers, payload
    )
    expected = signature(secret_key, string_to_sign(canonical, request.headers["x-sdk-date"]))
    return hmac.compare_digest(expected, request.signature)


class AuthFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, tuple[str, str | None, float | None]],
    now: float,
    max_skew: float,
    check: SignatureCheck = exporter_check,
) -> str:
    """Return the access key of a correctly signed request, or raise AuthFailure.

    `headers` maps lower-cased names to values; `credentials` maps access keys to (secret key,
    security token or None, expiry or None). An expired key is refused as the gateway does.
    """
    auth = headers.get("authorization")
    if not auth:
        raise AuthFailure(
            "APIG.0301", "Incorrect IAM authentication information: Authorization header is missing"
        )
    m = _AUTH_RE.match(auth.strip())
    if not m:
        raise AuthFailure(
            "APIG.0301",
            "Incorrect IAM authentication information: unsupported Authorization format",
        )
    access_key, signed, sig = m.groups()
    names = signed.split(";")
    if "host" not in names or "x-sdk-date" not in names:
        raise AuthFailure(
            "APIG.0301",
            "Incorrect IAM authentication information: host and x-sdk-date must be signed",
        )
    try:
        date = datetime.strptime(headers.get("x-sdk-date", ""), "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise AuthFailure(
            "APIG.0301", "Incorrect IAM authentication information: bad X-Sdk-Date"
        ) from None
    if abs(date.replace(tzinfo=timezone.utc).timestamp() - now) > max_skew:
        raise AuthFailure(
            "APIG.0301",
            "Incorrect IAM authentication information: "
            "verify aksk signature fail, X-Sdk-Date expired",
        )
    found = credentials.get(access_key)
    if found is None:
        raise AuthFailure("APIG.0301", "Incorrect IAM authentication information: ak not exist")
    secret_key, token, expires_at = found
    if expires_at is not None and expires_at <= now:
        raise AuthFailure(
            "APIG.0301", "Incorrect IAM authentication information: the security token has expired"
        )
    if token is not None and (
        headers.get("x-security-token") != token or "x-security-token" not in names
    ):
        raise AuthFailure(
            "APIG.0301", "Incorrect IAM authentication information: security token invalid"
        )
    missing = [n for n in names if n not in headers]
    if missing:
        raise AuthFailure(
            "APIG.0301",
            f"Incorrect IAM authentication information: signed header {missing[0]} not sent",
        )
    received = Received(
        method,
        raw_path,
        raw_query,
        {n: headers[n] for n in names},
        body,
        auth.strip(),
        access_key,
        sig,
    )
    if not check(received, secret_key):
        raise AuthFailure(
            "APIG.0301", "Incorrect IAM authentication information: verify aksk signature fail"
        )
    return access_key
