"""What a task was changing, in a few words: `capacity 0.125 -> 0.25, spec a -> b`.

The task APIs describe a task's change in DCS `details` (an object) and in `params` (a JSON
document inside a string, DCS and DMS). Both are free-form and may carry anything, secrets
included (a password change, an access key), and the summary ends up in label values, logs
and the landing page. So nothing is shown unless it is asked for here: only the fields listed
below are read, each with the kind of value it must hold (a number, a code such as a
specification or an engine mode, a boolean), and a value that is not plainly of that kind is
left out. A secret never appears, even one placed in a field that is read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from exporter.text import clean_text, json_depth

MAX_CHANGE_CHARS = 120
# `params` is a JSON document inside a string; the documented ones are a few hundred bytes.
MAX_PARAMS_CHARS = 16_384
MAX_PARAMS_DEPTH = 8

Kind = Literal["number", "code", "bool"]

_NUMBER_TEXT = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,9})?")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Integers beyond this are not believable counts or sizes (and `str()` of a huge one is slow).
_MAX_INT = 10**15


@dataclass(frozen=True, slots=True)
class Pair:
    """A before/after pair of fields: shown as `label old -> new` when they differ."""

    label: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    kind: Kind


@dataclass(frozen=True, slots=True)
class Single:
    """One field shown as `label value` (`only_true`: a flag shown only when it is set)."""

    label: str
    key: str
    kind: Kind
    only_true: bool = False


# The fields read, from DCS `details` (DetailsBody in the API references) and from `params`
# alike (a field name means the same in both): the documented DMS examples (modifyAutoTopic,
# changeRetentionPolicy, bindInstancePublicIp) and the fields of the DMS change-specification
# requests (storage, brokers, partitions, bandwidth, product), shown as `new_*`. Addresses,
# IDs, account, group and node names are not read: they say where, not what changed.
FIELDS: tuple[Pair | Single, ...] = (
    Pair("capacity", ("old_capacity",), ("new_capacity",), "number"),
    Pair(
        "spec",
        ("old_resource_spec_code", "old_spec_code", "old_flavor_id"),
        ("new_resource_spec_code", "new_spec_code", "new_flavor_id"),
        "code",
    ),
    Pair("cache mode", ("old_cache_mode",), ("new_cache_mode",), "code"),
    Pair("cache type", ("old_cache_type",), ("new_cache_type",), "code"),
    Pair("replicas", ("old_replica_num",), ("new_replica_num",), "number"),
    # Not in the documented DetailsBody (a cluster's shards are in its spec code), read in
    # case the API adds it, as a number only.
    Pair("shards", ("old_shard_num",), ("new_shard_num",), "number"),
    Pair("port", ("old_port",), ("new_port",), "number"),
    Pair("auto topic", ("old_auto_status",), ("new_auto_status",), "bool"),
    Pair(
        "retention policy",
        ("origin_retention_policy", "old_retention_policy"),
        ("new_retention_policy",),
        "code",
    ),
    Pair("product", ("old_product_id",), ("new_product_id",), "code"),
    Pair("bandwidth", ("old_specification",), ("new_specification",), "code"),
    Pair("storage", ("old_storage_space",), ("new_storage_space",), "number"),
    Pair("brokers", ("old_broker_num",), ("new_broker_num",), "number"),
    Pair("partitions", ("old_partition_num",), ("new_partition_num",), "number"),
    Single("operation", "oper_type", "code"),
    Single("public access", "enable_public_ip", "bool"),
    Single("ssl", "enable_ssl", "bool"),
    Single("billing mode only", "is_only_adjust_charging", "bool", only_true=True),
)


def _number(value: Any) -> str | None:
    """A number in one spelling (`0.50`, `0.5` and 0.5 all read `0.5`), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if -_MAX_INT < value < _MAX_INT else None
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= _MAX_INT:
            return None
        text = f"{value:.9f}".rstrip("0").rstrip(".")
        return text if _NUMBER_TEXT.fullmatch(text) else None
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        return _number(int(value) if value.lstrip("-").isdigit() else float(value))
    return None


def _value(value: Any, kind: Kind) -> str | None:
    """The value as shown, or None when it is not plainly of its field's kind."""
    if kind == "number":
        return _number(value)
    if kind == "bool":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value in ("true", "false"):
            return value
        return None
    if isinstance(value, str) and _CODE.fullmatch(value):
        return value
    return _number(value)


def _first(doc: Mapping[str, Any], keys: tuple[str, ...], kind: Kind) -> str | None:
    for key in keys:
        shown = _value(doc.get(key), kind)
        if shown is not None:
            return shown
    return None


def _as_object(value: Any) -> Mapping[str, Any] | None:
    """`details` or `params` as an object: given as one, or as a (bounded) JSON string."""
    if isinstance(value, Mapping):
        return value
    if not isinstance(value, str) or not value or len(value) > MAX_PARAMS_CHARS:
        return None
    text = value.strip()
    if not text.startswith("{"):
        return None
    try:
        if json_depth(text.encode("utf-8", errors="surrogatepass")) > MAX_PARAMS_DEPTH:
            return None
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


# Every key any field reads: a document with none of them (most are) costs one set test.
CHANGE_KEYS = frozenset(
    k for f in FIELDS for k in ((*f.old, *f.new) if isinstance(f, Pair) else (f.key,))
)


def _parts(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    present = CHANGE_KEYS.intersection(doc)
    if not present:
        return parts
    for field in FIELDS:
        if isinstance(field, Pair):
            if present.isdisjoint(field.new):
                continue  # nothing to change to: skipped below anyway, without the reads
        elif field.key not in present:
            continue
        if isinstance(field, Pair):
            old = _first(doc, field.old, field.kind)
            new = _first(doc, field.new, field.kind)
            if new is None or new == old:
                continue  # nothing changes, or nothing readable to change to
            parts.append((field.label, f"{old} -> {new}" if old is not None else f"-> {new}"))
        else:
            shown = _value(doc.get(field.key), field.kind)
            if shown is None or (field.only_true and shown != "true"):
                continue
            parts.append((field.label, "" if field.only_true else shown))
    return parts


def summarize_change(task_name: str, details: Any, params: Any) -> str:
    """A short summary of what a task changes, from allow-listed fields only ("" if none).

    `task_name` is accepted so that rules may depend on it; the documented fields mean the
    same whatever the task, so none does yet. Never raises, whatever `details` and `params`
    hold.
    """
    del task_name
    seen: set[str] = set()
    shown: list[str] = []
    for value in (details, params):
        doc = _as_object(value)
        if doc is None:
            continue
        for label, text in _parts(doc):
            if label in seen:
                continue  # `details` and `params` may both say it: once is enough
            seen.add(label)
            shown.append(f"{label} {text}" if text else label)
    return clean_text(", ".join(shown), MAX_CHANGE_CHARS)


__all__ = ["MAX_CHANGE_CHARS", "summarize_change"]
