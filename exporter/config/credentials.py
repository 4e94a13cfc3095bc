"""The credential sources: AK/SK (with secret files), the environment, the ECS metadata
service, an IAM password; one discriminated union, `Credentials`, with a clear error for an
unknown `source`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter.config.base import StrictModel, check_url
from exporter.config.secrets import (
    check_one_secret,
    env_keys,
    read_secret_file,
    secret_or_file,
)


class _SecretFiles(StrictModel):
    @field_validator("*", mode="after")
    @classmethod
    def _file_readable(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name and info.field_name.endswith("_file") and value is not None:
            read_secret_file(value)
        return value


class AkSkCredentials(_SecretFiles):
    """An access key pair (optionally temporary, with a security token).

    Secrets may sit in the file itself (usually as `${VAR}`) or in files of their own, the
    way Kubernetes and Docker mount secrets.
    """

    source: Literal["aksk"] = "aksk"
    access_key: str = Field(min_length=1)
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None
    security_token: SecretStr | None = None
    security_token_file: Path | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> AkSkCredentials:
        check_one_secret(self.secret_key, self.secret_key_file, "secret_key")
        if self.security_token is not None and self.security_token_file is not None:
            raise ValueError("set at most one of security_token and security_token_file")
        return self

    def secret(self) -> str:
        value = secret_or_file(self.secret_key, self.secret_key_file)
        assert value is not None  # one of the two is set: checked above
        return value

    def token(self) -> str | None:
        return secret_or_file(self.security_token, self.security_token_file) or None


class EnvCredentials(StrictModel):
    """An access key pair from the environment, the variables the official SDKs read."""

    source: Literal["env"] = "env"
    _keys: tuple[str, str, str | None] = PrivateAttr(default=("", "", None))

    @model_validator(mode="after")
    def _read_env(self, info: ValidationInfo) -> EnvCredentials:
        self._keys = env_keys((info.context or {}).get("env"))
        return self

    @property
    def access_key(self) -> str:
        return self._keys[0]

    def secret(self) -> str:
        return self._keys[1]

    def token(self) -> str | None:
        return self._keys[2]


class MetadataCredentials(StrictModel):
    """Temporary keys of the agency attached to this ECS (or CCE node), renewed by themselves."""

    source: Literal["metadata"]
    url: str = "http://169.254.169.254"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        checked = check_url(value)
        assert checked is not None
        return checked


class PasswordCredentials(_SecretFiles):
    """An IAM user's password, exchanged for an X-Auth-Token scoped to the target's project."""

    source: Literal["password"]
    user: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> PasswordCredentials:
        check_one_secret(self.password, self.password_file, "password", empty_ok=True)
        return self

    def secret(self) -> str:
        value = secret_or_file(self.password, self.password_file)
        assert value is not None  # one of the two is set: checked above
        return value


CREDENTIAL_SOURCES = ("aksk", "env", "metadata", "password")


def _credential_source(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("source", "aksk"))
    return str(getattr(value, "source", "aksk"))


Credentials = Annotated[
    Annotated[AkSkCredentials, Tag("aksk")]
    | Annotated[EnvCredentials, Tag("env")]
    | Annotated[MetadataCredentials, Tag("metadata")]
    | Annotated[PasswordCredentials, Tag("password")],
    Discriminator(
        _credential_source,
        custom_error_type="credential_source",
        custom_error_message="source must be one of aksk, env, metadata, password",
    ),
]
AnyCredentials = AkSkCredentials | EnvCredentials | MetadataCredentials | PasswordCredentials
