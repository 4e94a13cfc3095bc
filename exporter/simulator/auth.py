"""Server-side check of `SDK-HMAC-SHA256` signatures, as the API gateway does it.

It rebuilds the canonical request from what came over the wire (the raw path and query, the
headers the client says it signed), so a client that signs one thing and sends another fails
here as it would on the real gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import parse_qsl

from exporter.signing import canonical_query, canonical_request, signature, string_to_sign

_AUTH_RE = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$"
)


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
    query = canonical_query(parse_qsl(raw_query, keep_blank_values=True))
    payload = hashlib.sha256(body).hexdigest()
    canonical, _ = canonical_request(
        method, raw_path, query, {n: headers[n] for n in names}, payload
    )
    expected = signature(secret_key, string_to_sign(canonical, headers["x-sdk-date"]))
    if not hmac.compare_digest(expected, sig):
        raise AuthFailure(
            "APIG.0301", "Incorrect IAM authentication information: verify aksk signature fail"
        )
    return access_key
