"""The task-list GET, prepared once per task list and sent as bytes.

Every poll of a task list sends the same request but for its query (window and page), its
date and signature. What does not change (the request line's path, the header block, the
canonical request's fixed parts, the signed header names, the keyed HMAC) is prepared at
the first poll; a poll fills in the rest, writes the bytes on a kept-alive connection
(`exporter.cloud.wire`) and decodes the answer from the bytes, within the same bounds as
`exporter.cloud.replies`: one deadline for the whole exchange, the body's size on the wire
and once decoded. Only AK/SK and token auths are prepared; anything else, and every request
that is not a task-list poll, goes through httpx.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from exporter.cloud.credentials import TokenAuth
from exporter.cloud.replies import ACCEPT_ENCODING, Reply, ReplyError, decode_body, failure
from exporter.cloud.urls import Url
from exporter.cloud.wire import Expired, Origin, WirePool
from exporter.signing import AkSkAuth, canonical_query
from exporter.signing.prepared import PreparedSigner

MAX_PREPARED = 100_000

# The status, the body (decoded), and the whole reply, built only when asked (errors).
Answered = tuple[int, bytes, Callable[[], Reply]]


class _Prepared:
    __slots__ = ("auth", "head", "origin", "signer", "target", "token", "url")

    def __init__(
        self,
        url: Url,
        auth: httpx.Auth,
        headers: dict[str, str],
    ) -> None:
        self.url = url
        self.auth = auth
        scheme = url.scheme
        self.origin: Origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        self.target = (url.raw_path or b"/").decode("ascii") + "?"
        host = url.netloc.decode("ascii")
        self.signer: PreparedSigner | None = None
        self.token: str | None = None
        if isinstance(auth, AkSkAuth):
            self.signer = PreparedSigner(auth, "GET", host, url.path, headers)
            self.head = self.signer.header_lines()
        else:
            self.token = _token_of(auth)
            lines = {"Host": host, **headers, "X-Auth-Token": self.token or ""}
            self.head = "".join(f"{k}: {v}\r\n" for k, v in lines.items())

    def request(self, query: str) -> tuple[bytes, dict[str, str]]:
        """The request's bytes, and its extra headers (what a reply's error text is cleaned of)."""
        if self.signer is not None:
            date, authorization = self.signer.sign(query)
            extra = {"X-Sdk-Date": date, "Authorization": authorization}
            tail = f"X-Sdk-Date: {date}\r\nAuthorization: {authorization}\r\n\r\n"
        else:
            extra = {}
            tail = "\r\n"
        return f"GET {self.target}{query} HTTP/1.1\r\n{self.head}{tail}".encode(), extra


def _token_of(auth: httpx.Auth) -> str | None:
    """The token of an `exporter.cloud.credentials.TokenAuth`, read the way it sends it."""
    request = httpx.Request("GET", "http://token.invalid/")
    sent = next(auth.sync_auth_flow(request))
    token = sent.headers.get("X-Auth-Token")
    return None if token is None else str(token)


class HotPath:
    """Prepared task-list GETs over a `WirePool`, with the headers of an httpx client."""

    def __init__(self, http: httpx.AsyncClient, wire: WirePool) -> None:
        self._wire = wire
        headers = dict(http.headers)
        headers["accept-encoding"] = ACCEPT_ENCODING
        # httpx's names as it sends them (Title-Case), minus what is written per request.
        self._headers = {
            "-".join(p.capitalize() for p in k.split("-")): v
            for k, v in headers.items()
            if k not in ("host", "authorization", "x-sdk-date")
        }
        self._prepared: dict[str, _Prepared] = {}

    def prepared(self, url_text: str, url: Url, auth: httpx.Auth) -> _Prepared | None:
        """The prepared request for this URL and auth; None when it cannot be prepared."""
        found = self._prepared.get(url_text)
        if found is not None and found.auth is auth:
            return found
        if url.query or url.fragment or not isinstance(auth, (AkSkAuth, TokenAuth)):
            return None
        if len(self._prepared) >= MAX_PREPARED:
            self._prepared.clear()  # task lists come and go
        # One per URL: renewed credentials replace the request prepared with the old ones.
        found = self._prepared[url_text] = _Prepared(url, auth, self._headers)
        return found

    async def get(
        self, prepared: _Prepared, params: dict[str, str], timeout: float, max_bytes: int
    ) -> Answered:
        """Send one GET and read its whole answer within `timeout` seconds in all."""
        query = canonical_query(list(params.items()))
        data, extra = prepared.request(query)
        try:
            answer = await self._wire.exchange(prepared.origin, data, time.monotonic() + timeout)
        except Expired:
            raise ReplyError(f"no complete answer within {timeout:g}s", retryable=True) from None
        except httpx.TransportError as exc:
            raise failure(exc, timeout) from None
        status = answer.status
        body = decode_body(answer.encoding, answer.body, max_bytes, status)

        def reply() -> Reply:
            request = httpx.Request(
                "GET",
                prepared.url.httpx.copy_with(query=query.encode("ascii")),
                headers={**self._headers, **extra, "X-Auth-Token": prepared.token or ""},
            )
            return Reply(status, httpx.Headers(answer.headers), body, request)

        return status, body, reply
