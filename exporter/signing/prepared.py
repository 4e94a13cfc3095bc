"""Signing one GET over and over: its fixed parts computed once, a request only fills in the rest.

A task list is polled with the same method, path, host and headers every time; only the
query (its window and page), the date and so the signature change. `PreparedSigner` keeps the
canonical request's fixed parts and the keyed HMAC, so a request costs one SHA-256 of the
canonical text and one HMAC. The result is byte-identical to `AkSkAuth.sign` (and so to the
official SDK's signer) for the same request: the test suite checks both.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from exporter.signing import (
    ALGORITHM,
    DATE_FORMAT,
    EMPTY_BODY_SHA256,
    HEADER_DATE,
    HEADER_PROJECT_ID,
    HEADER_SECURITY_TOKEN,
    UNSIGNED_HEADERS,
    AkSkAuth,
    _utcnow,
    canonical_uri,
)

_DATE_NAME = HEADER_DATE.lower()


class _Clock:
    """`X-Sdk-Date` for now, formatted once per second (every poll in that second shares it)."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._text = time.strftime(DATE_FORMAT, time.gmtime(second))
            self._second = second
        return self._text


_NOW = _Clock()


class PreparedSigner:
    """The signature of `method path` on `host` with `headers`, for any query and date.

    `headers` are the request's other headers (name: value); those `AkSkAuth` signs are
    signed here too. `header_lines()` are the fixed header lines to send with them.
    """

    def __init__(
        self,
        auth: AkSkAuth,
        method: str,
        host: str,
        path: str,
        headers: Mapping[str, str],
    ) -> None:
        sent: dict[str, str] = {"Host": host, **headers}
        if auth._project_id:
            sent[HEADER_PROJECT_ID] = auth._project_id
        if auth._security_token:
            sent[HEADER_SECURITY_TOKEN] = auth._security_token
        signed = {
            name.lower(): value.strip()
            for name, value in sent.items()
            if name.lower() not in UNSIGNED_HEADERS
        }
        signed[_DATE_NAME] = ""
        names = sorted(name for name in signed if "_" not in name)
        at = names.index(_DATE_NAME)
        self._prefix = f"{method.upper()}\n{canonical_uri(path)}\n"
        self._before_date = "".join(f"{n}:{signed[n]}\n" for n in names[:at]) + _DATE_NAME + ":"
        self._after_date = (
            "\n"
            + "".join(f"{n}:{signed[n]}\n" for n in names[at + 1 :])
            + "\n"
            + ";".join(names)
            + "\n"
            + EMPTY_BODY_SHA256
        )
        self._authorization = (
            f"{ALGORITHM} Access={auth.access_key}, SignedHeaders={';'.join(names)}, Signature="
        )
        self._mac = hmac.new(auth._secret_key.encode("utf-8"), digestmod=hashlib.sha256)
        self._lines = "".join(f"{name}: {value}\r\n" for name, value in sent.items())
        # A clock set for tests is honoured; the real one is read once per second.
        clock = auth._clock
        self._clock: Callable[[], datetime] | None = None if clock is _utcnow else clock

    def header_lines(self) -> str:
        """The fixed header lines (`Name: value\\r\\n` each), Host first."""
        return self._lines

    def sign(self, query: str) -> tuple[str, str]:
        """(X-Sdk-Date, Authorization) for the request with this canonical `query`."""
        date = self._clock().strftime(DATE_FORMAT) if self._clock else _NOW()
        canonical = self._prefix + query + "\n" + self._before_date + date + self._after_date
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        mac = self._mac.copy()
        mac.update(f"{ALGORITHM}\n{date}\n{digest}".encode())
        return date, self._authorization + mac.hexdigest()
