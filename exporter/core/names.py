"""Bounding the task names of a task list: the cloud decides them, the exporter must not
let it decide the number of series.

A task list keeps at most `metrics.max_task_names_per_list` distinct task names; a task of
any further name is counted under the reserved name `_other` (so every total stays exact),
and the names so folded are counted, for a gauge and a warning. The names a task list
already has (in its counters, its remembered tasks, its last failures) always keep their
series, so a name never moves between its own series and `_other` while the list is full.
Pure: no I/O, tested in tests/core/test_names.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from exporter.core.tasks import Task

if TYPE_CHECKING:
    from exporter.core.counting import TaskListState

OTHER_NAME = "_other"


def known_names(state: TaskListState) -> set[str]:
    """The names a task list has series of (or would have, for its remembered tasks)."""
    names = {name for name, _ in state.finished}
    names.update(t.name for t in state.tasks.values())
    names.update(state.failures)
    names.discard(OTHER_NAME)
    return names


def fold_names(
    fetched: Sequence[Task], state: TaskListState, limit: int
) -> tuple[Sequence[Task], frozenset[str]]:
    """The tasks, those of names past `limit` renamed `_other`; and the names folded."""
    known = known_names(state)
    names = {t.name for t in fetched}
    if len(known | names) <= limit:
        return fetched, frozenset()  # the usual case: nothing past the limit
    room = limit - len(known)
    folded: set[str] = set()
    for name in _first_seen(t.name for t in fetched):
        if name in known or name == OTHER_NAME:
            continue
        if room > 0:
            known.add(name)
            room -= 1
        else:
            folded.add(name)
    if not folded:
        return fetched, frozenset()
    return [replace(t, name=OTHER_NAME) if t.name in folded else t for t in fetched], frozenset(
        folded
    )


def folds_already(state: TaskListState) -> bool:
    """Whether the task list already has an `_other` (its folding was said before)."""
    return any(name == OTHER_NAME for name, _ in state.finished) or any(
        t.name == OTHER_NAME for t in state.tasks.values()
    )


def _first_seen(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
