"""The probe's report, text and JSON, from checks made up here; and its flags documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.cli import build_parser
from exporter.probe.checks import Check
from exporter.probe.report import render_json, render_text
from exporter.probe.run import ProbeResult

pytestmark = pytest.mark.smoke

ROOT = Path(__file__).resolve().parent.parent.parent
RESULT = ProbeResult(
    checks=[
        Check("targets[0] project", "project", "ok", "configured"),
        Check("targets[0] kafka instance i1", "paging", "ok", "start is 1-based", {"start": "1"}),
        Check("targets[0] kafka instance i1", "window", "fail", "honoured under no name"),
        Check("targets[0] kafka instance i1", "task.unknown_fields", "warn", "fields: x"),
    ],
    requests=7,
)


def test_json_names_what_fails_and_keeps_what_was_found() -> None:
    doc = json.loads(render_json(RESULT))
    assert doc["ok"] is False
    assert doc["failed"] == ["targets[0] kafka instance i1: window"]
    assert doc["requests"] == 7
    assert doc["verdicts"] == {"ok": 2, "fail": 1, "warn": 1}
    assert doc["checks"][1] == {
        "subject": "targets[0] kafka instance i1",
        "name": "paging",
        "verdict": "ok",
        "saw": "start is 1-based",
        "found": {"start": "1"},
    }


def test_text_groups_by_subject_and_ends_with_the_failures() -> None:
    lines = render_text(RESULT).splitlines()
    assert lines[0] == "probe: 4 checks (2 ok, 1 warn, 1 FAIL), 7 requests"
    assert "targets[0] kafka instance i1" in lines
    assert "  FAIL  window               honoured under no name" in lines
    assert lines[-2:] == ["1 check(s) failed:", "  targets[0] kafka instance i1: window"]
    passing = ProbeResult(checks=RESULT.checks[:2], requests=2)
    assert render_text(passing).splitlines()[-1] == "every assumption the exporter makes holds"
    assert json.loads(render_json(passing))["ok"] is True


def test_the_readme_documents_every_probe_flag() -> None:
    readme = (ROOT / "README.md").read_text()
    flags = [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--probe")
    ]
    assert flags == ["--probe", "--probe.format", "--probe.record"]
    for flag in flags:
        assert f"| `{flag}` |" in readme, flag
