"""The effective configuration as YAML (`--print-config`): every default filled in, every
secret redacted, durations spelled as the file spells them, so the output reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, BeforeValidator, SecretStr
from pydantic.fields import FieldInfo

from exporter.config.base import format_duration, parse_duration
from exporter.config.schema import Config
from exporter.config.secrets import SECRET_FIELDS

REDACTED = "<redacted>"


def _is_duration(info: FieldInfo | None) -> bool:
    return info is not None and any(
        isinstance(m, BeforeValidator) and m.func is parse_duration for m in info.metadata
    )


def _plain(value: Any, info: FieldInfo | None = None, name: str = "") -> Any:
    if value is None:
        return None
    # A secret file's path too: a secret pasted into a `*_file` key is then the path.
    if isinstance(value, SecretStr) or name.removesuffix("_file") in SECRET_FIELDS:
        return REDACTED
    if isinstance(value, BaseModel):
        return {
            field: _plain(getattr(value, field), finfo, field)
            for field, finfo in type(value).model_fields.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and _is_duration(info):
        return format_duration(value)
    return value


def effective_yaml(config: Config) -> str:
    """The configuration in use, defaults included and secrets replaced by `<redacted>`."""
    return yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True)
