"""What a reload changes: two configurations compared, pure.

A reload swaps the running configuration for a new one. Most of it can change in a running
process (targets, credentials, HTTP settings, intervals, buckets); some of it cannot: the
state file is opened and locked once, and moving it would split a task list's counts between
two files. `compare` says which settings differ, which of them are refused, and which targets
are the same ones (so that what a target already found out, its project and its instances,
carries over instead of being looked up again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.config.schema import Config, TargetConfig

# Settings a running exporter cannot take from a new file, and why.
FIXED_SETTINGS = {
    "state_path": "the state file is opened and locked at start; moving it would split the "
    "counts between two files",
}


@dataclass(frozen=True)
class ConfigChanges:
    """The differences between the running configuration and a new one."""

    changed: tuple[str, ...] = ()  # top-level settings (or `http.x`, `metrics.x`) that differ
    refused: tuple[str, ...] = ()  # why the new configuration cannot be taken, if it cannot
    # Targets by their place in each file: (old index, new index) of those that are the same
    # target (same cloud, region, project, endpoints and instance rules; credentials aside).
    kept_targets: tuple[tuple[int, int], ...] = ()
    added_targets: tuple[int, ...] = ()  # new indexes
    removed_targets: tuple[int, ...] = ()  # old indexes

    @property
    def unchanged(self) -> bool:
        return not self.changed

    @property
    def exposition_changed(self) -> bool:
        """Whether the rendered families change: help texts name the poll interval, and the
        histograms' layout and labels follow `metrics`."""
        return any(c == "poll_interval" or c.startswith("metrics.") for c in self.changed)


def _dump(model: Any) -> Any:
    """A model as plain data; secrets compare by value (SecretStr does), never printed."""
    return model.model_dump() if model is not None else None


def _target_identity(tc: TargetConfig) -> Any:
    return tc.model_dump(exclude={"credentials"})


def compare(old: Config, new: Config) -> ConfigChanges:
    """What differs between `old` (running) and `new` (just read and validated)."""
    changed: list[str] = []
    for name in Config.model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if name in ("http", "metrics"):
            changed += [
                f"{name}.{field}"
                for field in type(a).model_fields
                if getattr(a, field) != getattr(b, field)
            ]
        elif name == "targets":
            if [_dump(t) for t in a] != [_dump(t) for t in b]:
                changed.append(name)
        elif name == "credentials":
            if _dump(a) != _dump(b):
                changed.append(name)
        elif a != b:
            changed.append(name)
    refused = tuple(
        f"{name} cannot change in a running exporter ({why}): restart it to use the new value"
        for name, why in FIXED_SETTINGS.items()
        if name in changed
    )
    old_ids = [_target_identity(t) for t in old.targets]
    kept: list[tuple[int, int]] = []
    added: list[int] = []
    taken: set[int] = set()
    for j, target in enumerate(new.targets):
        identity = _target_identity(target)
        match = next((i for i, o in enumerate(old_ids) if i not in taken and o == identity), None)
        if match is None:
            added.append(j)
        else:
            taken.add(match)
            kept.append((match, j))
    removed = tuple(i for i in range(len(old.targets)) if i not in taken)
    return ConfigChanges(tuple(changed), refused, tuple(kept), tuple(added), removed)
