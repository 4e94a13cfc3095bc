"""The example Alertmanager configuration: valid for amtool, and routing every shipped alert
where its comment says (the end-to-end run is tests/e2e/test_alertmanager.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

ALERTMANAGER_DIR = ROOT / "deploy" / "alertmanager"
CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "huaweicloud-task.rules.yml"

# Where each shipped alert goes: failures and stuck tasks to the people who run the instances,
# the exporter's own trouble to its operators, its absence to a pager, slowness to tickets.
EXPECTED_RECEIVER = {
    "HuaweiCloudTaskFailed": "tasks-chat",
    "HuaweiCloudTaskStuck": "tasks-chat",
    "HuaweiCloudTaskSlowerThanUsual": "tasks-tickets",
    "HuaweiCloudTaskTargetDown": "tasks-operators",
    "HuaweiCloudTaskDiscoveryDown": "tasks-operators",
    "HuaweiCloudTaskApiThrottled": "tasks-operators",
    "HuaweiCloudTaskFailureRatioHigh": "tasks-operators",
    "HuaweiCloudTaskExporterDown": "tasks-pager",
    "HuaweiCloudTaskExporterAbsent": "tasks-pager",
}


def amtool() -> str:
    path = shutil.which("amtool")
    assert path, "amtool not found: run ./scripts/test (installs prometheus-alertmanager)"
    return path


def shipped_alerts() -> dict[str, str]:
    """Alert name to severity, from the shipped rules."""
    doc = yaml.safe_load(RULES.read_text())
    return {
        r["alert"]: r["labels"]["severity"]
        for g in doc["groups"]
        for r in g["rules"]
        if "alert" in r
    }


def test_amtool_check_config_passes_with_its_template() -> None:
    run = subprocess.run(
        [amtool(), "check-config", str(CONFIG)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 templates" in run.stdout, run.stdout


def test_every_shipped_alert_is_routed() -> None:
    assert set(EXPECTED_RECEIVER) == set(shipped_alerts())


@pytest.mark.parametrize("alertname", sorted(EXPECTED_RECEIVER))
def test_route_of(alertname: str) -> None:
    severity = shipped_alerts()[alertname]
    run = subprocess.run(
        [
            amtool(),
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"alertname={alertname}",
            f"severity={severity}",
            "cloud_service=dcs",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == EXPECTED_RECEIVER[alertname]


def test_template_parses_and_executes() -> None:
    """amtool renders with its own example data (no alerts): the templates must parse and
    execute; what they say is asserted on a real notification, end to end."""
    run = subprocess.run(
        [
            amtool(),
            "template",
            "render",
            f"--template.glob={ALERTMANAGER_DIR / 'templates' / '*.tmpl'}",
            '--template.text={{ template "huaweicloud_task.title" . }}|'
            '{{ template "huaweicloud_task.runbook_base" . }}',
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    title, base = run.stdout.strip().split("|", 1)
    assert title.startswith("[")
    assert "]" in title
    assert base.startswith("https://")
    assert base.endswith("/")
