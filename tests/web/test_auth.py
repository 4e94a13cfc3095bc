"""Basic authentication: bcrypt once per (user, password), then a constant-time comparison of
a keyed digest; a wrong password is never remembered as good."""

from __future__ import annotations

import base64
import hmac
from typing import Any

import bcrypt
import pytest

from exporter.web import auth as auth_module
from exporter.web.auth import BasicAuth, Verdict, parse_basic

PASSWORD = b"right-password-7c1e"
HASH = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(4))
OTHER = bcrypt.hashpw(b"bobs-password", bcrypt.gensalt(4))


def basic(user: str, password: bytes) -> str:
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode()


@pytest.fixture
def auth() -> BasicAuth:
    return BasicAuth({"prometheus": HASH, "bob": OTHER})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("u", b"p:w"), ("u", b"p:w")),  # the first colon splits
        ("basic " + base64.b64encode(b"u:").decode(), ("u", b"")),
        (None, None),
        ("Bearer abc", None),
        ("Basic !!!notbase64", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
        ("Basic " + "A" * 5000, None),
    ],
)
def test_parse_basic(header: str | None, expected: tuple[str, bytes] | None) -> None:
    assert parse_basic(header) == expected


@pytest.mark.smoke
def test_a_right_password_costs_one_bcrypt_then_none(auth: BasicAuth) -> None:
    header = basic("prometheus", PASSWORD)
    assert auth.quick(header) is Verdict.VERIFY
    assert auth.verify(header) is True
    assert auth.bcrypt_calls == 1
    for _ in range(100):
        assert auth.quick(header) is Verdict.ALLOW
        assert auth.verify(header) is True
    assert auth.bcrypt_calls == 1


def test_a_wrong_password_is_never_cached_as_good(auth: BasicAuth) -> None:
    right, wrong = basic("prometheus", PASSWORD), basic("prometheus", PASSWORD + b"x")
    assert auth.verify(right) is True
    # The right one is remembered; a wrong one next to it is not taken for it...
    assert auth.quick(wrong) is Verdict.VERIFY
    assert auth.verify(wrong) is False
    # ...is then refused without another bcrypt, and the right one still passes.
    calls = auth.bcrypt_calls
    assert auth.quick(wrong) is Verdict.DENY
    assert auth.verify(wrong) is False
    assert auth.bcrypt_calls == calls
    assert auth.quick(right) is Verdict.ALLOW
    # Another user's password is not this user's.
    assert auth.verify(basic("prometheus", b"bobs-password")) is False
    assert auth.verify(basic("bob", b"bobs-password")) is True


def test_failures_are_remembered_within_a_bound(auth: BasicAuth) -> None:
    first = basic("prometheus", b"guess-0")
    assert auth.verify(first) is False
    for i in range(1, auth_module.MAX_REMEMBERED_FAILURES + 1):
        auth._bad[auth._digest("prometheus", f"guess-{i}".encode())] = None  # as verify() does
        while len(auth._bad) > auth_module.MAX_REMEMBERED_FAILURES:
            auth._bad.popitem(last=False)
    assert len(auth._bad) == auth_module.MAX_REMEMBERED_FAILURES
    # The oldest is forgotten: checked by bcrypt again, and still refused.
    assert auth.quick(first) is Verdict.VERIFY
    assert auth.verify(first) is False


def test_an_unknown_user_costs_a_bcrypt_and_never_passes(auth: BasicAuth) -> None:
    # Even with a known user's password: the decoy hash is a real one.
    header = basic("mallory", PASSWORD)
    assert auth.verify(header) is False
    assert auth.bcrypt_calls == 1
    assert auth.quick(header) is Verdict.DENY


def test_a_password_longer_than_bcrypt_takes_is_refused_without_bcrypt(auth: BasicAuth) -> None:
    header = basic("prometheus", PASSWORD + b"x" * 80)
    assert auth.quick(header) is Verdict.DENY
    assert auth.verify(header) is False
    assert auth.bcrypt_calls == 0


def test_remembered_passwords_are_compared_in_constant_time(
    auth: BasicAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    header = basic("prometheus", PASSWORD)
    auth.verify(header)
    compared.clear()
    assert auth.quick(header) is Verdict.ALLOW
    assert auth.quick(basic("prometheus", b"nearly-right")) is Verdict.VERIFY
    # Both went through compare_digest, with 32-byte digests, never the passwords.
    assert len(compared) == 2
    assert all(len(a) == len(b) == 32 for a, b in compared)
    assert all(PASSWORD not in a and PASSWORD not in b for a, b in compared)


def test_no_password_is_kept_in_the_clear(auth: BasicAuth) -> None:
    auth.verify(basic("prometheus", PASSWORD))
    auth.verify(basic("prometheus", b"a-wrong-one"))
    kept = repr(vars(auth)).encode()
    assert PASSWORD not in kept
    assert b"a-wrong-one" not in kept


def test_no_users_is_no_authenticator() -> None:
    with pytest.raises(ValueError, match="no users"):
        BasicAuth({})
