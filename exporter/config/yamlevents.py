"""Reading YAML from the parser's events: line marks, `${VAR}`, bounds, no surprises.

The file is read from the parser's events rather than with yaml.safe_load: one pass, in a
loop rather than recursion (so nesting is bounded, never a RecursionError or a C stack
overflow), counting every value an alias expands to (so an alias bomb is refused at once,
not after gigabytes), refusing duplicate keys (PyYAML keeps the last silently), expanding
${VAR} in place and recording the line of every key and item for the errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from exporter.config.base import Loc

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


class Fatal(Exception):
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
_MERGE = object()  # the `<<` key


@dataclass
class Document:
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
        raise Fatal(line, path, "unsupported YAML tag (only plain values, lists and mappings)")
    try:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, event.value))
    except (ValueError, yaml.YAMLError):  # e.g. an integer of more than 4,300 digits
        raise Fatal(line, path, "invalid value (a number too long?)") from None


class _Reader:
    """One pass over the parser's events, one method per kind of event."""

    def __init__(self, env: Mapping[str, str], expand: bool) -> None:
        self.env = env
        self.expand = expand  # `${VAR}` from `env`
        self.problems: list[tuple[int | None, Loc, str]] = []
        self.anchors: dict[str, tuple[Any, Marks, int]] = {}
        self.stack: list[_Node] = []
        self.total = 0
        self.result: tuple[Any, Marks] | None = None
        self.documents = 0

    def read(self, text: str) -> Document:
        parser = _Parser(text)
        try:
            while parser.check_event():
                self._event(parser.get_event())
        finally:
            parser.dispose()
        data, marks = self.result if self.result is not None else (None, None)
        return Document(data, marks, self.problems)

    def _event(self, event: Any) -> None:
        line = event.start_mark.line + 1
        path = self._path()
        if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
            self._place(*self._value(event, line, path), line)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            self._start(event, line, path)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            node = self._end()
            self._place(node.value, node.marks, node.size, node.line)
        elif isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise Fatal(line, (), "more than one YAML document (---) in the file")
        # stream start and end, document end: nothing to do

    def _path(self) -> Loc:
        """Where the next value goes: the path of the item or key it will be."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        return top.path if top.key is _NO_KEY else (*top.path, top.key)

    def _count(self, size: int, line: int, path: Loc) -> None:
        self.total += size
        if self.total > MAX_VALUES:
            raise Fatal(line, path, f"more than {MAX_VALUES:,} values (YAML aliases?)")

    def _value(
        self, event: yaml.ScalarEvent | yaml.AliasEvent, line: int, path: Loc
    ) -> tuple[Any, Marks, int]:
        """A scalar (with `${VAR}` expanded in values, never in keys) or an alias's value."""
        top = self.stack[-1] if self.stack else None
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise Fatal(line, path, f"alias *{event.anchor} is not defined before")
            value, marks, size = self.anchors[event.anchor]
        else:
            value, marks, size = _scalar(event, line, path), None, 1
            if (
                self.expand
                and isinstance(value, str)
                and "$" in value
                and (top is None or top.key is not _NO_KEY or isinstance(top.value, list))
            ):
                value = _expand(value, self.env, line, path, self.problems)
            if event.anchor is not None:
                self.anchors[event.anchor] = (value, None, 1)
        self._count(size, line, path)
        return value, marks, size

    def _start(
        self, event: yaml.MappingStartEvent | yaml.SequenceStartEvent, line: int, path: Loc
    ) -> None:
        is_map = isinstance(event, yaml.MappingStartEvent)
        if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
            raise Fatal(line, path, "unsupported YAML tag (only plain values, lists and mappings)")
        top = self.stack[-1] if self.stack else None
        if top is not None and not isinstance(top.value, list) and top.key is _NO_KEY:
            raise Fatal(line, path, "a key must be a plain value, not a list or mapping")
        if len(self.stack) >= MAX_DEPTH:
            raise Fatal(line, path, f"nested more than {MAX_DEPTH} levels deep")
        self.stack.append(
            _Node({} if is_map else [], {} if is_map else [], path, line, event.anchor)
        )
        self._count(1, line, path)

    def _end(self) -> _Node:
        """A mapping or sequence complete: its merges applied, its anchor recorded."""
        node = self.stack.pop()
        for merged, merged_marks in node.merges:  # explicit keys win, then in order
            for k, v in merged.items():
                if k not in node.value:
                    node.value[k] = v
                    node.marks[k] = merged_marks[k]
        if node.anchor is not None:
            self.anchors[node.anchor] = (node.value, node.marks, node.size)
        return node

    def _place(self, value: Any, marks: Marks, size: int, line: int) -> None:
        """A complete value (scalar, alias, mapping or sequence) into its parent."""
        if not self.stack:
            self.result = (value, marks)
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
            top.marks.append((line, marks))
            top.size += size
        elif top.key is _NO_KEY:
            self._key(top, value, line)
        elif top.merge:
            self._merge(top, value, marks, line)
            top.size += size
            top.key = _NO_KEY
        else:
            if top.key not in top.explicit:
                top.explicit.add(top.key)
                top.marks[top.key] = (top.key_line, marks)
                top.value[top.key] = value
            top.size += size
            top.key = _NO_KEY

    def _key(self, top: _Node, value: Any, line: int) -> None:
        if isinstance(value, list | dict):
            raise Fatal(line, top.path, "a key must be a plain value, not a list or mapping")
        if value is _MERGE:
            top.merge = True
        elif value in top.explicit:
            first = top.marks[value][0]
            self.problems.append(
                (line, (*top.path, value), f"duplicate key (also on line {first})")
            )
        top.key, top.key_line = value, line

    @staticmethod
    def _merge(top: _Node, value: Any, marks: Marks, line: int) -> None:
        """`<<: *anchor` or `<<: [*a, *b]`: mappings whose keys the node takes unless set."""
        items = value if isinstance(value, list) else [value]
        item_marks: Any = marks if isinstance(value, list) else [(line, marks)]
        for item, (_, m) in zip(items, item_marks, strict=True):
            if not isinstance(item, dict):
                raise Fatal(line, top.path, "<< must merge a mapping or a list of mappings")
            top.merges.append((item, m))
        top.merge = False


def read_yaml(text: str, env: Mapping[str, str], *, expand: bool = True) -> Document:
    """The single document in `text`, with marks and the problems found on the way
    (`${VAR}` expanded from `env` unless `expand` is false).

    Raises yaml.YAMLError for syntax errors, `Fatal` for files that are too deep, too large
    after alias expansion, or use features that are not plain data.
    """
    return _Reader(env, expand).read(text)


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
