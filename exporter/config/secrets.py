"""Secrets of the configuration: secret files and the access keys in the environment.

Kept apart from the schema so that everything that touches a secret's value is in one
short module; nothing here ever quotes a secret (or a path that may be a pasted secret).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

SECRET_FIELDS = frozenset({"secret_key", "security_token", "password", "access_key"})


MAX_SECRET_FILE = 64 * 1024


def read_secret_file(path: Path) -> str:
    """The secret in a file of its own. The path is never quoted back: a secret pasted into
    a `*_file` key is then the path, and would otherwise be echoed in the error."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    except ValueError:  # a NUL in the path
        raise ValueError("cannot read the file: not a valid path") from None
    if len(raw) > MAX_SECRET_FILE:
        raise ValueError("the file is larger than 64 KiB: not a secret")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    if not text:
        raise ValueError("the file is empty")
    return text


def secret_or_file(value: SecretStr | None, path: Path | None) -> str | None:
    """A secret given inline or in a file of its own (read each time: files get rotated)."""
    if path is not None:
        return read_secret_file(path)
    return value.get_secret_value() if value is not None else None


ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"  # noqa: S105 - a variable name


def env_keys(env: Mapping[str, str] | None = None) -> tuple[str, str, str | None]:
    """(access key, secret key, security token or None) from the variables the SDKs read."""
    env = os.environ if env is None else env
    missing = [name for name in (ENV_AK, ENV_SK) if not env.get(name)]
    if missing:
        raise ValueError(f"environment variable {' and '.join(missing)} not set")
    return (env[ENV_AK], env[ENV_SK], env.get(ENV_TOKEN) or None)


def check_one_secret(
    value: SecretStr | None, path: Path | None, name: str, *, empty_ok: bool = False
) -> None:
    """A secret is given inline or in a file of its own (`<name>_file`), exactly one."""
    if (value is None) == (path is None):
        raise ValueError(f"set exactly one of {name} and {name}_file")
    if not empty_ok and value is not None and not value.get_secret_value():
        raise ValueError(f"{name} is empty")
