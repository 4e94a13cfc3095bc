"""What a reload changes (`exporter.config.compare`): setting by setting, pure."""

from __future__ import annotations

import pytest

from exporter.config import Config, compare, load_config_text
from tests.conftest import SECRET_KEY

BASE = f"""\
poll_interval: 30s
state_path: /tmp/unused.db
credentials: {{access_key: AK, secret_key: {SECRET_KEY}}}
targets:
  - region: r1
    project_id: p1
    instances: [{{service: dcs, id: i1}}]
  - region: r2
    project_id: p2
    instances: [{{service: kafka, id: k1}}]
"""


def config(text: str = BASE) -> Config:
    return load_config_text(text, env={})


def test_the_same_file_changes_nothing() -> None:
    changes = compare(config(), config())
    assert changes.unchanged
    assert not changes.refused
    assert changes.kept_targets == ((0, 0), (1, 1))
    assert changes.added_targets == changes.removed_targets == ()


@pytest.mark.parametrize(
    ("old", "new", "changed", "exposition"),
    [
        ("poll_interval: 30s", "poll_interval: 1m", ("poll_interval",), True),
        ("poll_interval: 30s", "poll_interval: 30s\nhttp: {timeout: 3s}", ("http.timeout",), False),
        (
            "poll_interval: 30s",
            "poll_interval: 30s\nmetrics: {duration_buckets: [1, 2]}",
            ("metrics.duration_buckets",),
            True,
        ),
        (
            "poll_interval: 30s",
            "poll_interval: 30s\nlog_task_events: true",
            ("log_task_events",),
            False,
        ),
        (f"secret_key: {SECRET_KEY}", "secret_key: another-secret-value", ("credentials",), False),
    ],
)
def test_each_setting_is_named(
    old: str, new: str, changed: tuple[str, ...], exposition: bool
) -> None:
    changes = compare(config(), config(BASE.replace(old, new)))
    assert changes.changed == changed
    assert changes.exposition_changed is exposition
    assert not changes.refused
    assert changes.kept_targets == ((0, 0), (1, 1))  # the targets are the same ones


@pytest.mark.smoke
def test_the_state_path_cannot_change() -> None:
    changes = compare(config(), config(BASE.replace("/tmp/unused.db", "/tmp/other.db")))
    assert changes.changed == ("state_path",)
    assert len(changes.refused) == 1
    assert "state_path cannot change in a running exporter" in changes.refused[0]


def test_targets_are_matched_by_what_they_poll_not_by_place() -> None:
    swapped_and_added = BASE.replace(
        "  - region: r1\n    project_id: p1\n    instances: [{service: dcs, id: i1}]\n", ""
    ) + (
        "  - region: r1\n    project_id: p1\n    instances: [{service: dcs, id: i1}]\n"
        "  - region: r3\n    project_id: p3\n    instances: [{service: dcs, id: i3}]\n"
    )
    changes = compare(config(), config(swapped_and_added))
    assert changes.changed == ("targets",)
    assert changes.kept_targets == ((1, 0), (0, 1))
    assert changes.added_targets == (2,)
    assert changes.removed_targets == ()
    # A target whose instances change is another target (the old one goes, the new comes).
    one_more = BASE.replace(
        "[{service: kafka, id: k1}]", "[{service: kafka, id: k1}, {service: kafka, id: k2}]"
    )
    changes = compare(config(), config(one_more))
    assert changes.kept_targets == ((0, 0),)
    assert changes.added_targets == (1,)
    assert changes.removed_targets == (1,)


def test_a_target_with_other_credentials_is_the_same_target() -> None:
    own = BASE.replace(
        "    project_id: p2\n",
        f"    project_id: p2\n    credentials: {{access_key: AK2, secret_key: {SECRET_KEY}}}\n",
    )
    changes = compare(config(), config(own))
    assert changes.changed == ("targets",)
    assert changes.kept_targets == ((0, 0), (1, 1))
