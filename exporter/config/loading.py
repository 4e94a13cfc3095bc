"""Reading a configuration file: YAML with line marks, `${VAR}` expansion, errors as data.

Every problem in a file is reported at once, one line each, as `file:line: path: message`,
and no message ever quotes a value from the file: any of them might be a misplaced secret
(values under secret keys are scrubbed from the messages as a second line of defence).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError

from exporter.config.advice import service_hint, warnings_of
from exporter.config.base import Loc, format_path
from exporter.config.credentials import (
    CREDENTIAL_SOURCES,
    AkSkCredentials,
    EnvCredentials,
    MetadataCredentials,
    PasswordCredentials,
)
from exporter.config.schema import Config
from exporter.config.secrets import SECRET_FIELDS
from exporter.config.yamlevents import Document, Fatal, Marks, read_yaml


@dataclass(frozen=True)
class Problem:
    """One problem of a configuration file: where (file, 1-based line, key path) and what.

    A `warning` does not stop the exporter (see `exporter.config.advice`); it is written
    `file:line: path: warning: what`.
    """

    source: str
    line: int | None
    path: str
    message: str
    column: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        if self.line and self.column:
            where += f":{self.column}"
        what = f"warning: {self.message}" if self.severity == "warning" else self.message
        return f"{where}: {self.path}: {what}" if self.path else f"{where}: {what}"


class ConfigError(Exception):
    """A file that cannot be used; `problems` holds one line per problem, `details` the same
    problems as data."""

    def __init__(self, details: list[Problem]) -> None:
        self.details = details
        self.problems = [str(p) for p in details]
        super().__init__("\n".join(self.problems))


MAX_CONFIG_BYTES = 16 * 1024 * 1024


def _secret_values(node: Any) -> list[str]:
    """Values under secret keys anywhere in the file, longest first, to scrub from errors.

    Messages never quote values; this is the second line of defence, for keys (which are
    quoted) that turn out to be a pasted secret.
    """
    found: set[str] = set()
    stack = [node]
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:  # aliases share values
            continue
        seen.add(id(n))
        if isinstance(n, dict):
            for k, v in n.items():
                if k in SECRET_FIELDS and k != "access_key" and isinstance(v, str) and len(v) >= 4:
                    found.add(v)
            stack.extend(v for v in n.values() if isinstance(v, dict | list))
        elif isinstance(n, list):
            stack.extend(v for v in n if isinstance(v, dict | list))
    return sorted(found, key=len, reverse=True)


def line_of(marks: Marks, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the key or item at `loc`, or of its nearest parent in the file."""
    line = 1
    node: Any = marks
    for part in loc:
        in_map = isinstance(node, dict) and not isinstance(part, int) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_map or in_list):
            break
        line, node = node[part]
    return line


_CREDENTIAL_MODELS: dict[str, type[BaseModel]] = {
    "aksk": AkSkCredentials,
    "env": EnvCredentials,
    "metadata": MetadataCredentials,
    "password": PasswordCredentials,
}
_SHAPES = {
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "dict_type": "must be a mapping of keys to values",
    "list_type": "must be a list",
}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model validating the mapping at `loc` (pydantic's own loc, union tags included)."""
    tp: Any = Config
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    models = _models_in(tp)
    return models[0] if len(models) == 1 else None


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    if get_origin(tp) in (Annotated, Union, UnionType):
        return [m for arg in get_args(tp) for m in _models_in(arg)]
    return []


def _step(tp: Any, part: Any) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *meta = get_args(tp)
        if any(isinstance(m, Tag) and m.tag == part for m in meta):
            return inner  # the union's tag: the branch it names
        return _step(inner, part)
    if origin in (Union, UnionType):
        return next((t for t in (_step(a, part) for a in get_args(tp)) if t is not None), None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict and isinstance(part, str):
        return get_args(tp)[1]
    return None


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """`unknown key`, with the key it probably meant or the credential source it belongs to."""
    key = loc[-1]
    model = _model_at(loc[:-1])
    if model is None or not isinstance(key, str):
        return "unknown key"
    for source, other in _CREDENTIAL_MODELS.items():
        if model in _CREDENTIAL_MODELS.values() and key in other.model_fields:
            return f"unknown key: {key} belongs to source: {source}"
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.7)
    return f"unknown key: did you mean {close[0]}?" if close else "unknown key"


def _message(err: Mapping[str, Any], value: Any = None) -> str:
    """The message of a pydantic error, never with the value: any value might be a secret
    pasted into the wrong key (the line and the path say which value is meant). `value`, the
    raw value at the error, only chooses a hint naming a known value (`did you mean dcs?`)."""
    kind = err["type"]
    if kind == "literal_error" and (hint := _service_hint(err, value)):
        return f"{err['msg']}: {hint}"
    if kind == "extra_forbidden":
        return _unknown_key(tuple(err["loc"]))
    if kind == "missing":
        return "required key is missing"
    if kind in _SHAPES:
        return _SHAPES[kind]
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _service_hint(err: Mapping[str, Any], value: Any) -> str | None:
    loc = tuple(err["loc"])
    at_service = loc[-1:] == ("service",) or loc[-2:-1] == ("services",)
    return service_hint(value) if at_service else None


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    """The raw value at a cleaned path, or None."""
    for part in loc:
        in_map = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_map or in_list):
            return None
        data = data[part]
    return data


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The path in the file: without pydantic's union tags (the part right after a
    `credentials` key) and validator names."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue
        if part in CREDENTIAL_SOURCES and i > 0 and loc[i - 1] == "credentials":
            continue
        out.append(part)
    return tuple(out)


def _read(text: str, source: str, env: Mapping[str, str], *, expand: bool) -> Document:
    """The YAML document in `text`, or ConfigError for a file too large, not YAML, or not
    plain bounded data."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem(source, None, "", "the file is larger than 16 MiB")])
    try:
        return read_yaml(text, env, expand=expand)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError(
            [Problem(source, line, "", f"not valid YAML: {problem}", column)]
        ) from None
    except Fatal as exc:
        raise ConfigError([Problem(source, exc.line, format_path(exc.path), exc.message)]) from None


def read_yaml_document(text: str, source: str) -> tuple[Any, Marks]:
    """Another file's YAML (the web config), read as carefully as the configuration: one
    document, bounded, duplicate keys refused, no `${VAR}` expansion; ConfigError otherwise.
    `line_of(marks, loc)` then gives the line of a key."""
    doc = _read(text, source, {}, expand=False)
    if doc.problems:
        raise ConfigError(
            [Problem(source, line, format_path(loc), what) for line, loc, what in doc.problems]
        )
    return doc.data, doc.marks


def load_config_text(
    text: str, source: str = "config", env: Mapping[str, str] | None = None
) -> Config:
    """The configuration in `text`, or ConfigError with every problem found in it."""
    return check_config_text(text, source, env)[0]


def check_config_text(
    text: str, source: str = "config", env: Mapping[str, str] | None = None
) -> tuple[Config, list[Problem]]:
    """The configuration in `text` and its warnings, or ConfigError with every error."""
    env = os.environ if env is None else env

    def fail(line: int | None, path: str, message: str) -> ConfigError:
        return ConfigError([Problem(source, line, path, message)])

    doc = _read(text, source, env, expand=True)
    if doc.data is None:
        raise fail(None, "", "the file is empty")
    if not isinstance(doc.data, dict):
        raise fail(1, "(top level)", "must be a mapping of keys to values")

    found: list[tuple[int | None, Loc, str]] = list(doc.problems)
    config: Config | None = None
    try:
        config = Config.model_validate(doc.data, context={"env": env})
    except ValidationError as exc:
        reported = {loc for _, loc, _ in found}
        for err in exc.errors(include_url=False):
            loc = _clean_loc(tuple(err["loc"]))
            if loc not in reported:  # not again as invalid: reported as the unset variable
                found.append((None, loc, _message(err, _value_at(doc.data, loc))))
    if not found:
        assert config is not None
        warnings = [
            Problem(source, line_of(doc.marks, loc), format_path(loc), what, severity="warning")
            for loc, what in warnings_of(doc.data)
        ]
        return config, sorted(warnings, key=lambda p: p.line or 0)
    secrets = _secret_values(doc.data)
    details = []
    for line, loc, message in found:
        scrubbed = f"{format_path(loc)}\0{message}"
        for secret in secrets:
            scrubbed = scrubbed.replace(secret, "<redacted>")
        path, what = scrubbed.split("\0", 1)
        details.append(Problem(source, line or line_of(doc.marks, loc), path, what))
    details.sort(key=lambda p: p.line or 0)
    raise ConfigError(details)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    return check_config(path, env)[0]


def check_config(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[Config, list[Problem]]:
    """The configuration in the file and its warnings, or ConfigError with every error."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    f"cannot read the configuration file: {exc.strerror or exc}",
                )
            ]
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem(str(path), None, "", "the file is larger than 16 MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            [Problem(str(path), None, "", "the configuration file is not UTF-8 text")]
        ) from None
    return check_config_text(text, source=str(path), env=env)
