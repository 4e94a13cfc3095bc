"""Task records as the exporter understands them, parsed leniently from the task list APIs.

The APIs are loosely specified (strings vs integers, null vs absent, open sets of names and
statuses), so parsing never raises on a single bad field: a task with an unreadable field is
kept with that field unknown, and only a task without an ID is dropped (it cannot be
deduplicated, so counting it would not be exact).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.core.change import summarize_change
from exporter.text import clean_text, parse_timestamp, shared

log = logging.getLogger(__name__)

UNFINISHED_STATUSES = frozenset({"CREATED", "WAITING", "EXECUTING"})
UNKNOWN_STATUS = "UNKNOWN"
# Final statuses whose counter and histogram series start at 0 for every task name seen on a
# task list, so that rate() and increase() see a task list's first success or failure (a
# series born at 1 shows no increase). DMS also reports DELETED and CANCELLED.
ZERO_INITIALIZED_STATUSES = {
    "dcs": ("SUCCESS", "FAILED"),
    "dms": ("SUCCESS", "FAILED", "DELETED", "CANCELLED"),
}
UNKNOWN_NAME = "unknown"
# Names and statuses become label values: longer ones are cut (ending in `…`).
MAX_LABEL_CHARS = 128
MAX_ID_CHARS = 128
MAX_USER_CHARS = 64
# A timestamp further ahead of this clock than this is not believed (and left unknown): a task
# dated 2999 would otherwise be the latest to finish for ever.
MAX_FUTURE_SKEW = 3600.0
# Nor is one before 2000 (the cloud did not exist): a task dated 1970 would otherwise fall
# before every window and be dropped unseen, never counted.
MIN_BELIEVABLE = 946_684_800.0


def normalize_status(value: Any) -> str:
    """Statuses are exported as they come (cleaned), upper-cased; a missing one is UNKNOWN."""
    if value is None:
        return UNKNOWN_STATUS
    text = clean_text(str(value), MAX_LABEL_CHARS).upper()
    return text or UNKNOWN_STATUS


def clean_id(value: str) -> str:
    """A task ID as given when it is plain text of a sane length, else a digest of it.

    A digest keeps distinct IDs distinct (deduplication must stay exact) where cleaning or
    cutting the text could make two of them equal.
    """
    text = value.strip()
    if len(text) <= MAX_ID_CHARS and clean_text(text, MAX_ID_CHARS) == text:
        return text
    digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"sha256:{digest[:40]}"


def _believable(ts: float | None, now: float) -> float | None:
    return ts if ts is not None and MIN_BELIEVABLE <= ts <= now + MAX_FUTURE_SKEW else None


def is_finished(status: str) -> bool:
    """Finished means final: the known final statuses and any unknown one that is not unfinished.

    A task whose status is missing altogether is neither finished nor unfinished: it is
    shown in the task gauges but never counted, since a later poll may give the real status.
    """
    return status != UNKNOWN_STATUS and status not in UNFINISHED_STATUSES


def is_unfinished(status: str) -> bool:
    return status in UNFINISHED_STATUSES


@dataclass(frozen=True, slots=True)
class Task:
    """One background task as read from a task list page."""

    id: str
    name: str
    status: str
    created_at: float | None
    updated_at: float | None
    # Who started the task, and what it changes (see `exporter.core.change`): "" when unknown.
    user_name: str = ""
    change: str = ""
    # It had a creation date, too far in the past or future to believe (taken as unknown).
    date_absurd: bool = False


def parse_task(raw: Any, now: float | None = None) -> Task | None:
    """One task object from a page, or None when it has no usable ID.

    Every string is cleaned here, where it enters (see `clean_text`), and timestamps in the
    future beyond `MAX_FUTURE_SKEW` of `now`, or before 2000, are taken as unknown.
    """
    if now is None:
        now = time.time()
    if not isinstance(raw, Mapping):
        return None
    task_id = raw.get("id")
    if isinstance(task_id, int | float) and not isinstance(task_id, bool):
        task_id = str(task_id)
    if not isinstance(task_id, str) or not task_id.strip():
        return None
    name = raw.get("name")
    name_text = clean_text(str(name), MAX_LABEL_CHARS) if isinstance(name, str | int) else ""
    user = raw.get("user_name")
    created = parse_timestamp(raw.get("created_at"))
    believed = _believable(created, now)
    return Task(
        id=clean_id(task_id),
        name=shared(name_text or UNKNOWN_NAME),
        status=shared(normalize_status(raw.get("status"))),
        created_at=believed,
        updated_at=_believable(parse_timestamp(raw.get("updated_at")), now),
        user_name=shared(clean_text(user, MAX_USER_CHARS)) if isinstance(user, str) else "",
        change=shared(summarize_change(name_text, raw.get("details"), raw.get("params"))),
        date_absurd=created is not None and believed is None,
    )


def parse_task_count(value: Any) -> int | None:
    """`task_count` is documented as a string and seen as an integer: accept both."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_page(body: Any, now: float | None = None) -> tuple[list[Task], int, int | None]:
    """A page body: its tasks, how many raw entries it held, and `task_count` if readable.

    The raw entry count matters for paging: a page of ten entries of which one had no ID is
    still a full page.
    """
    if not isinstance(body, Mapping):
        raise ValueError("response body is not a JSON object")
    raw_tasks = body.get("tasks")
    if raw_tasks is None:
        raw_tasks = []
    if not isinstance(raw_tasks, list):
        raise ValueError("'tasks' is not a list")
    if now is None:
        now = time.time()
    tasks: list[Task] = []
    for raw in raw_tasks:
        task = parse_task(raw, now)
        if task is None:
            log.warning("skipping a task entry without a usable id")
            continue
        tasks.append(task)
    return tasks, len(raw_tasks), parse_task_count(body.get("task_count"))
