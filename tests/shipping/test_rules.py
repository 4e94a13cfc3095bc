"""The shipped Prometheus rules: valid, unit-tested alert by alert, documented in the runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
TESTS_DIR = ROOT / "deploy" / "prometheus" / "tests"
RUNBOOK = ROOT / "docs" / "runbook.md"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: run ./scripts/test, which installs Debian's prometheus"
    return path


def rule_files() -> list[Path]:
    files = sorted(RULES_DIR.glob("*.yml"))
    assert [f.name for f in files] == [
        "huaweicloud-task.rules.yml",
        "huaweicloud-task.stuck-overrides.yml",
        "huaweicloud-task.stuck-thresholds.yml",
    ]
    return files


def alerts() -> list[dict[str, Any]]:
    found = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [r for r in group["rules"] if "alert" in r]
    return found


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    run = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


# One promtool per file, so that the workers share them out.
RULE_TESTS = ("alerts.test.yml", "overrides.test.yml", "ratio.test.yml", "thresholds.test.yml")


def test_every_rule_test_file_is_run() -> None:
    assert [p.name for p in sorted(TESTS_DIR.glob("*.test.yml"))] == list(RULE_TESTS)


@pytest.mark.parametrize("name", RULE_TESTS)
def test_promtool_unit_tests_pass(name: str) -> None:
    run = subprocess.run(
        [promtool(), "test", "rules", name],
        capture_output=True,
        text=True,
        check=False,
        cwd=TESTS_DIR,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for path in TESTS_DIR.glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names <= fired, names - fired
    assert names <= silent, names - silent


def _anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the headings of a Markdown document."""
    return {
        re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#+\s+(.*)$", markdown, re.MULTILINE)
    }


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOK.read_text())
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, name
        notes = alert["annotations"]
        assert notes["summary"], name
        assert notes["description"], name
        url = notes["runbook_url"]
        assert url == f"docs/runbook.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/runbook.md has no section {name}"


def test_task_alerts_name_instance_task_and_status() -> None:
    by_name = {a["alert"]: a for a in alerts()}
    for name in ("HuaweiCloudTaskFailed", "HuaweiCloudTaskStuck"):
        text = by_name[name]["annotations"]["description"]
        for label in ("instance_name", "instance_id", "task_name", "project_id", "region"):
            assert f"$labels.{label}" in text, (name, label)
    assert "$labels.status" in by_name["HuaweiCloudTaskFailed"]["annotations"]["description"]
    assert (
        "CREATED, WAITING or EXECUTING"
        in by_name["HuaweiCloudTaskStuck"]["annotations"]["description"]
    )


@pytest.mark.parametrize(
    ("name", "info"),
    [
        ("HuaweiCloudTaskFailed", "huaweicloud_task_last_failure_info"),
        ("HuaweiCloudTaskStuck", "huaweicloud_task_oldest_unfinished_info"),
    ],
)
def test_task_alerts_read_their_context_only_in_annotations(name: str, info: str) -> None:
    """The info series may be missing (an older exporter): the firing must not depend on it."""
    alert = {a["alert"]: a for a in alerts()}[name]
    assert "_info" not in alert["expr"]
    assert set(alert["labels"]) == {"severity"}
    for key in ("summary", "description"):
        text = alert["annotations"][key]
        assert f"{info}{{" in text, (name, key)
        # The lookup names the alert's task list and task name, each label quoted by %q.
        for label in ("cloud_service", "region", "project_id", "instance_id", "task_name"):
            assert f"{label}=%q" in text, (name, key, label)
            assert f"$labels.{label}" in text, (name, key, label)


def test_overrides_are_empty_as_shipped_and_win_in_the_threshold() -> None:
    """The user's file starts empty, so that upgrading the shipped rules never overwrites a
    choice; the threshold reads it first."""
    doc = yaml.safe_load((RULES_DIR / "huaweicloud-task.stuck-overrides.yml").read_text())
    assert [g["rules"] for g in doc["groups"]] == [[]]
    records = {
        r["record"]: r["expr"]
        for path in rule_files()
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    threshold = records["huaweicloud_task:stuck_after_seconds"]
    order = [
        "huaweicloud_task:stuck_threshold_override_seconds",
        "huaweicloud_task:usual_duration_seconds",
        "huaweicloud_task:stuck_threshold_seconds)",
        "huaweicloud_task:stuck_threshold_default_seconds",
    ]
    assert [threshold.index(name) for name in order] == sorted(
        threshold.index(name) for name in order
    )


def test_every_rule_file_is_in_every_promtool_test_or_replaced_by_a_test_copy() -> None:
    """A test file that left out a shipped file would test other rules than those shipped."""
    shipped = {p.name for p in rule_files()}
    for path in TESTS_DIR.glob("*.test.yml"):
        listed = yaml.safe_load(path.read_text())["rule_files"]
        names = {Path(f).name for f in listed if f.startswith("../rules/")}
        local = [f for f in listed if not f.startswith("../rules/")]
        assert names | ({"huaweicloud-task.stuck-overrides.yml"} if local else set()) == shipped, (
            path.name
        )
