"""Reading a configuration file: YAML with line marks, `${VAR}` expansion, errors as data.

Every problem in a file is reported at once, one line each, as `file:line: path: message`,
and no message ever quotes a value from the file: any of them might be a misplaced secret
(values under secret keys are scrubbed from the messages as a second line of defence).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError

from exporter.config.schema import (
    CREDENTIAL_SOURCES,
    AkSkCredentials,
    Config,
    EnvCredentials,
    Loc,
    MetadataCredentials,
    PasswordCredentials,
    format_path,
)
from exporter.config.secrets import SECRET_FIELDS


@dataclass(frozen=True)
class Problem:
    """One problem of a configuration file: where (file, 1-based line, key path) and what."""

    source: str
    line: int | None
    path: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        if self.line and self.column:
            where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """A file that cannot be used; `problems` holds one line per problem, `details` the same
    problems as data."""

    def __init__(self, details: list[Problem]) -> None:
        self.details = details
        self.problems = [str(p) for p in details]
        super().__init__("\n".join(self.problems))


# --- reading YAML ------------------------------------------------------------------------
#
# The file is read from the parser's events rather than with yaml.safe_load: one pass, in a
# loop rather than recursion (so nesting is bounded, never a RecursionError or a C stack
# overflow), counting every value an alias expands to (so an alias bomb is refused at once,
# not after gigabytes), refusing duplicate keys (PyYAML keeps the last silently), expanding
# ${VAR} in place and recording the line of every key and item for the errors.

MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 32
MAX_VALUES = 1_000_000  # after alias expansion; 10,000 instances are about 50,000

_Parser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ten times faster
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_STR_TAG = "tag:yaml.org,2002:str"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "timestamp")
)
_MAP_TAGS = frozenset({None, "!", "tag:yaml.org,2002:map"})
_SEQ_TAGS = frozenset({None, "!", "tag:yaml.org,2002:seq"})
_MERGE_TAG = "tag:yaml.org,2002:merge"

# Where each key and item is: a mapping's marks map its keys to (line, marks of the value), a
# sequence's list (line, marks) per item; a scalar has none.
Marks = dict[Any, tuple[int, Any]] | list[tuple[int, Any]] | None


class _Fatal(Exception):
    """A problem after which the rest of the file cannot be read."""

    def __init__(self, line: int | None, path: Loc, message: str) -> None:
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


class _Node:
    """A mapping or sequence being read, with its size (values it holds, itself included)."""

    __slots__ = (
        "anchor",
        "explicit",
        "key",
        "key_line",
        "line",
        "marks",
        "merge",
        "merges",
        "path",
        "size",
        "value",
    )

    def __init__(self, value: Any, marks: Any, path: Loc, line: int, anchor: str | None) -> None:
        self.value, self.marks, self.path, self.line, self.anchor = value, marks, path, line, anchor
        self.size = 1
        self.key: Any = _NO_KEY  # a mapping's key awaiting its value
        self.key_line = 0
        self.merge = False  # that key is `<<`
        self.merges: list[tuple[Any, Any]] = []
        self.explicit: set[Any] = set()


_NO_KEY = object()


@dataclass
class _Document:
    data: Any
    marks: Marks
    problems: list[tuple[int | None, Loc, str]]  # duplicate keys, unset variables


def _scalar(event: yaml.ScalarEvent, line: int, path: Loc) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
    if tag == _STR_TAG:
        return event.value
    if tag == _MERGE_TAG:
        return _MERGE
    if tag not in _SCALAR_TAGS:
        raise _Fatal(line, path, "unsupported YAML tag (only plain values, lists and mappings)")
    try:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, event.value))
    except (ValueError, yaml.YAMLError):  # e.g. an integer of more than 4,300 digits
        raise _Fatal(line, path, "invalid value (a number too long?)") from None


_MERGE = object()  # the `<<` key


def _read_yaml(text: str, env: Mapping[str, str], *, expand: bool = True) -> _Document:
    """The single document in `text`, with marks and the problems found on the way
    (`${VAR}` expanded from `env` unless `expand` is false).

    Raises yaml.YAMLError for syntax errors, _Fatal for files that are too deep, too large
    after alias expansion, or use features that are not plain data.
    """
    problems: list[tuple[int | None, Loc, str]] = []
    anchors: dict[str, tuple[Any, Marks, int]] = {}
    stack: list[_Node] = []
    total = 0
    result: tuple[Any, Marks] | None = None
    documents = 0
    parser = _Parser(text)
    try:
        while parser.check_event():
            event = parser.get_event()
            line = event.start_mark.line + 1
            top = stack[-1] if stack else None
            if top is None:
                path: Loc = ()
            elif isinstance(top.value, list):
                path = (*top.path, len(top.value))
            else:
                path = top.path if top.key is _NO_KEY else (*top.path, top.key)

            if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                if isinstance(event, yaml.AliasEvent):
                    if event.anchor not in anchors:
                        raise _Fatal(line, path, f"alias *{event.anchor} is not defined before")
                    value, marks, size = anchors[event.anchor]
                else:
                    value, marks, size = _scalar(event, line, path), None, 1
                    if (
                        expand
                        and isinstance(value, str)
                        and "$" in value
                        and (top is None or top.key is not _NO_KEY or isinstance(top.value, list))
                    ):
                        value = _expand(value, env, line, path, problems)
                    if event.anchor is not None:
                        anchors[event.anchor] = (value, None, 1)
                total += size
                if total > MAX_VALUES:
                    raise _Fatal(line, path, f"more than {MAX_VALUES:,} values (YAML aliases?)")
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                is_map = isinstance(event, yaml.MappingStartEvent)
                if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                    raise _Fatal(
                        line, path, "unsupported YAML tag (only plain values, lists and mappings)"
                    )
                if top is not None and not isinstance(top.value, list) and top.key is _NO_KEY:
                    raise _Fatal(line, path, "a key must be a plain value, not a list or mapping")
                if len(stack) >= MAX_DEPTH:
                    raise _Fatal(line, path, f"nested more than {MAX_DEPTH} levels deep")
                node = _Node({} if is_map else [], {} if is_map else [], path, line, event.anchor)
                stack.append(node)
                total += 1
                if total > MAX_VALUES:
                    raise _Fatal(line, path, f"more than {MAX_VALUES:,} values (YAML aliases?)")
                continue
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                node = stack.pop()
                for merged, merged_marks in node.merges:  # explicit keys win, then in order
                    for k, v in merged.items():
                        if k not in node.value:
                            node.value[k] = v
                            node.marks[k] = merged_marks[k]
                value, marks, size = node.value, node.marks, node.size
                if node.anchor is not None:
                    anchors[node.anchor] = (value, marks, size)
                line, path = node.line, node.path
                top = stack[-1] if stack else None
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _Fatal(line, (), "more than one YAML document (---) in the file")
                continue
            else:  # stream start and end, document end
                continue

            # A complete value (scalar, alias, mapping or sequence): place it in its parent.
            if top is None:
                result = (value, marks)
            elif isinstance(top.value, list):
                top.value.append(value)
                top.marks.append((line, marks))
                top.size += size
            elif top.key is _NO_KEY:  # a key
                if isinstance(value, list | dict):
                    raise _Fatal(
                        line, top.path, "a key must be a plain value, not a list or mapping"
                    )
                if value is _MERGE:
                    top.merge = True
                elif value in top.explicit:
                    first = top.marks[value][0]
                    problems.append(
                        (line, (*top.path, value), f"duplicate key (also on line {first})")
                    )
                top.key, top.key_line = value, line
            else:
                if top.merge:
                    items = value if isinstance(value, list) else [value]
                    item_marks: Any = marks if isinstance(value, list) else [(line, marks)]
                    for item, (_, m) in zip(items, item_marks, strict=True):
                        if not isinstance(item, dict):
                            raise _Fatal(
                                line, top.path, "<< must merge a mapping or a list of mappings"
                            )
                        top.merges.append((item, m))
                    top.merge = False
                elif top.key not in top.explicit:
                    top.explicit.add(top.key)
                    top.marks[top.key] = (top.key_line, marks)
                    top.value[top.key] = value
                top.size += size
                top.key = _NO_KEY
    finally:
        parser.dispose()
    data, marks = result if result is not None else (None, None)
    return _Document(data, marks, problems)


_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: str, env: Mapping[str, str], line: int, path: Loc, problems: list[Any]) -> str:
    """`${VAR}` and `${VAR:-default}` from the environment, `$$` for a dollar sign.

    An unset or empty variable without a default is a problem (the text is left as written);
    the message tells the two apart: an empty one usually means a secret mount is missing.
    """

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        found = env.get(name)
        if found:
            return found
        if default is not None:
            return default
        state = "is not set" if found is None else "is set but empty"
        problems.append((line, path, f"environment variable {name} {state}"))
        return m.group(0)

    return _VAR_RE.sub(repl, value)


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


def _line_of(marks: Marks, loc: tuple[Any, ...]) -> int:
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


def _message(err: Mapping[str, Any]) -> str:
    """The message of a pydantic error, never with the value: any value might be a secret
    pasted into the wrong key (the line and the path say which value is meant)."""
    kind = err["type"]
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


def load_config_text(
    text: str, source: str = "config", env: Mapping[str, str] | None = None
) -> Config:
    """The configuration in `text`, or ConfigError with every problem found in it."""
    env = os.environ if env is None else env

    def fail(line: int | None, path: str, message: str) -> ConfigError:
        return ConfigError([Problem(source, line, path, message)])

    if len(text) > MAX_CONFIG_BYTES:
        raise fail(None, "", "the file is larger than 16 MiB")
    try:
        doc = _read_yaml(text, env)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError(
            [Problem(source, line, "", f"not valid YAML: {problem}", column)]
        ) from None
    except _Fatal as exc:
        raise fail(exc.line, format_path(exc.path), exc.message) from None
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
                found.append((None, loc, _message(err)))
    if not found:
        assert config is not None
        return config
    secrets = _secret_values(doc.data)
    details = []
    for line, loc, message in found:
        scrubbed = f"{format_path(loc)}\0{message}"
        for secret in secrets:
            scrubbed = scrubbed.replace(secret, "<redacted>")
        path, what = scrubbed.split("\0", 1)
        details.append(Problem(source, line or _line_of(doc.marks, loc), path, what))
    details.sort(key=lambda p: p.line or 0)
    raise ConfigError(details)


def read_yaml_document(text: str, source: str) -> tuple[Any, Marks]:
    """Another file's YAML (the web config), read as carefully as the configuration: one
    document, bounded, duplicate keys refused, no `${VAR}` expansion; ConfigError otherwise.
    `line_of(marks, loc)` then gives the line of a key."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem(source, None, "", "the file is larger than 16 MiB")])
    try:
        doc = _read_yaml(text, {}, expand=False)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError(
            [Problem(source, line, "", f"not valid YAML: {problem}", column)]
        ) from None
    except _Fatal as exc:
        raise ConfigError([Problem(source, exc.line, format_path(exc.path), exc.message)]) from None
    if doc.problems:
        raise ConfigError(
            [Problem(source, line, format_path(loc), what) for line, loc, what in doc.problems]
        )
    return doc.data, doc.marks


line_of = _line_of


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
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
    return load_config_text(text, source=str(path), env=env)
