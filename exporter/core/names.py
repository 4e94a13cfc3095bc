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

from exporter.core.tasks import Task

OTHER_NAME = "_other"


def fold_names(
    fetched: Sequence[Task], had: Iterable[str], limit: int
) -> tuple[Sequence[Task], frozenset[str]]:
    """The tasks, those of names past `limit` renamed `_other`; and the names folded.

    `had`: the names the task list already has (its counters', its remembered tasks', its
    last failures'), which keep their series whatever the limit.
    """
    known = set(had)
    known.discard(OTHER_NAME)
    names = {t.name for t in fetched}
    if len(known | names) <= limit:
        return fetched, frozenset()  # the usual case: nothing past the limit
    room = limit - len(known)
    folded: set[str] = set()
    for name in dict.fromkeys(t.name for t in fetched):  # in the order first seen
        if name in known or name == OTHER_NAME:
            continue
        if room > 0:
            known.add(name)
            room -= 1
        else:
            folded.add(name)
    if not folded:
        return fetched, frozenset()
    renamed = [replace(t, name=OTHER_NAME) if t.name in folded else t for t in fetched]
    return renamed, frozenset(folded)
