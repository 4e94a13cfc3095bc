"""HTTP basic authentication against `basic_auth_users` (bcrypt hashes).

A bcrypt check costs tens of milliseconds by design; Prometheus sends the same credentials
on every scrape. So a (user, password) verified once is remembered as a keyed digest of the
password (never the password itself), and later requests are compared with it in constant
time, costing microseconds: `quick()` answers those without bcrypt, on the server's selector
thread. Only a successful check is remembered as good. A failed one is remembered too,
bounded, so that repeating a wrong password does not cost a bcrypt each time; an unknown
user costs the same bcrypt as a known one, so timing does not tell which users exist.
bcrypt runs one at a time (it releases the GIL, but a flood of guesses must not take every
core).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt

MAX_AUTHORIZATION = 4096  # characters of the header
MAX_REMEMBERED_FAILURES = 1024
BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (the package refuses) anything longer
REALM = "huaweicloud-task-exporter"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    VERIFY = "verify"  # needs bcrypt: run `verify()` off the selector thread


def parse_basic(authorization: str | None) -> tuple[str, bytes] | None:
    """(user, password) of a `Basic` Authorization header, None for anything else."""
    if not authorization or len(authorization) > MAX_AUTHORIZATION:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class BasicAuth:
    """The users of one web config and what has been verified against them."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        if not users:
            raise ValueError("no users: authentication is off")
        self._users = dict(users)
        # For unknown users: a real hash of the same cost, checked and then ignored.
        self._decoy = next(iter(self._users.values()))
        self._key = secrets.token_bytes(32)  # digests mean nothing outside this process
        self._good: dict[str, bytes] = {}  # user -> digest of the password bcrypt accepted
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()  # guards the two caches
        self._bcrypt = threading.Lock()  # one bcrypt at a time
        self.bcrypt_calls = 0

    def _digest(self, user: str, password: bytes) -> bytes:
        return hmac.new(self._key, user.encode("utf-8") + b"\0" + password, hashlib.sha256).digest()

    def quick(self, authorization: str | None) -> Verdict:
        """The answer when no bcrypt is needed: missing or malformed credentials, or ones
        seen before."""
        creds = parse_basic(authorization)
        if creds is None:
            return Verdict.DENY
        user, password = creds
        if len(password) > BCRYPT_MAX_PASSWORD:
            return Verdict.DENY
        digest = self._digest(user, password)
        with self._lock:
            good = self._good.get(user)
            bad = digest in self._bad
        if good is not None and hmac.compare_digest(good, digest):
            return Verdict.ALLOW
        if bad:
            return Verdict.DENY
        return Verdict.VERIFY

    def verify(self, authorization: str | None) -> bool:
        """Whether the credentials are right, with bcrypt when `quick()` cannot tell."""
        verdict = self.quick(authorization)
        if verdict is not Verdict.VERIFY:
            return verdict is Verdict.ALLOW
        creds = parse_basic(authorization)
        assert creds is not None  # quick() said VERIFY
        user, password = creds
        hashed = self._users.get(user)
        with self._bcrypt:
            self.bcrypt_calls += 1
            try:
                matched = bcrypt.checkpw(password, hashed or self._decoy)
            except ValueError:  # a hash bcrypt refuses (validated at load: never expected)
                matched = False
        ok = matched and hashed is not None
        digest = self._digest(user, password)
        with self._lock:
            if ok:
                self._good[user] = digest
            else:
                self._bad[digest] = None
                while len(self._bad) > MAX_REMEMBERED_FAILURES:
                    self._bad.popitem(last=False)
        return ok
