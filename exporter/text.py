"""Hostile text made safe: strings cleaned and cut, JSON bounded in depth, timestamps read
leniently.

Everything from the network is hostile: a string may carry lone surrogates (which SQLite and
UTF-8 refuse), control characters or a megabyte of text that would end up in a label; deep
JSON can exhaust the parser's stack. Task records, change summaries, listings and replies all
read their values through here. A leaf: it imports nothing of the exporter.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

MAX_JSON_DEPTH = 32

_SURROGATES = re.compile("[\ud800-\udfff]")
_SPACES = re.compile("[\t\n\r\u2028\u2029]+")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
TRUNCATED = "…"


def clean_text(value: str, limit: int) -> str:
    """A cloud string made safe to store, log and export.

    Lone surrogates become U+FFFD, line breaks and tabs a space, other control characters
    go, and text beyond `limit` characters is cut, ending in `…` to say so.
    """
    if value.isascii() and value.isprintable() and len(value) <= limit:
        return value.strip()  # the usual case: nothing to replace or cut (no regex pass)
    text = _SURROGATES.sub("\ufffd", value)
    text = _CONTROLS.sub("", _SPACES.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + TRUNCATED
    return text


# Strings many tasks repeat (names, statuses, users, change summaries), kept once: at a
# hundred thousand remembered tasks, a copy of each per task is tens of MiB. Bounded: when
# full it starts again (strings already shared stay shared).
_SHARED: dict[str, str] = {}
MAX_SHARED = 65_536


def shared(value: str) -> str:
    """`value`, or the equal string already in use: one copy of each repeated string."""
    found = _SHARED.get(value)
    if found is not None:
        return found
    if len(_SHARED) >= MAX_SHARED:
        _SHARED.clear()
    _SHARED[value] = value
    return value


# Nesting depth by bracket: +1 for `[` and `{`, -1 for `]` and `}`, once strings are removed.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deeply a JSON document nests (0 for a scalar), without parsing it."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


class TooDeep(ValueError):
    """Valid JSON perhaps, but nested deeper than any answer of the APIs."""


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON document no deeper than `max_depth`; ValueError when it is not one."""
    # Fewer opening brackets than the bound (strings included): no need to walk the nesting.
    if body.count(b"[") + body.count(b"{") > max_depth and json_depth(body) > max_depth:
        raise TooDeep(f"the answer's JSON nests deeper than {max_depth} levels")
    return json.loads(body)


# The APIs' timestamps (tasks, IAM tokens, metadata keys): read leniently, UTC by default.
_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: Any) -> float | None:
    """Parse the APIs' `2020-06-17T07:38:42.503Z` (and close variants) to epoch seconds.

    A timestamp without a zone is taken as UTC, as the APIs document UTC everywhere.
    Anything unreadable gives None rather than an exception.
    """
    if not isinstance(value, str):
        return None
    m = _TS_RE.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        tz = timezone.utc
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            offset_min = int(digits[:2]) * 60 + int(digits[2:])
            tz = timezone(sign * timedelta(minutes=offset_min))
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz
        )
    except ValueError:
        return None
    ts = dt.timestamp()
    if frac:
        ts += int(frac) / 10 ** len(frac)
    return ts
