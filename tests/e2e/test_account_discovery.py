"""Account-wide discovery through the real exporter process and /metrics.

A target without `region` lists the account's projects in the simulator's IAM (three regions,
one sub-project, a system project), discovers and polls every instance of each project, and
follows projects appearing and disappearing; a region whose endpoints fail is down alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulator import Fault, Simulator, World
from exporter.simulator.world import Service
from tests.conftest import (
    ACCESS_KEY,
    PROJECT,
    REGION,
    ROOT,
    SECRET_KEY,
    ExporterProcess,
    Metrics,
    run_once,
    write_config,
)

# The world's own region project (PROJECT in ap-southeast-1), two more regions, a sub-project
# of the first and a system project that belongs to no region.
PROJECTS = {
    "eu-west-101": "1e4c2b3a4d5e4f60a7b8c9d0e1f2a3b4",
    "af-south-1": "2a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d",
    f"{REGION}_analytics": "3b1c2d3e4f5a4b6c8d7e9f0a1b2c3d4e",
    "MOS": "4c5d6e7f8a9b4c0d1e2f3a4b5c6d7e8f",
}
DISCOVERY_UP = "huaweicloud_task_discovery_up"
SERVICES: tuple[Service, ...] = ("dcs", "kafka", "rabbitmq", "rocketmq")


@pytest.fixture
def account() -> Iterator[tuple[World, Simulator]]:
    world = World(seed=7, region=REGION)
    world.add_credentials(ACCESS_KEY, SECRET_KEY)
    for name, project_id in PROJECTS.items():
        world.add_project(name, project_id)
    for project_id in (PROJECT, *PROJECTS.values()):
        for service in SERVICES:
            inst = world.add_instance(service, f"{service}-{project_id[:4]}", project_id)
            world.add_task(inst.id, "EXTEND" if service == "dcs" else "modifyAutoTopic", "SUCCESS")
    server = Simulator(world).start()
    try:
        yield world, server
    finally:
        server.stop()


def account_config(server: Simulator, tmp_path: Path, **target: Any) -> Path:
    doc = {
        "poll_interval": "1s",
        "state_path": str(tmp_path / "state.db"),
        "http": {"timeout": "2s", "retries": 0, "requests_per_second": 500, "burst": 500},
        "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
        "targets": [
            {
                "endpoints": {
                    "dcs": server.dcs_url,
                    "dms": server.dms_url,
                    "iam": server.iam_url,
                },
                **target,
            }
        ],
    }
    return write_config(tmp_path / "config.yml", doc)


def polled_projects(m: Metrics) -> dict[str, set[str]]:
    """project ID -> the instance IDs whose task lists are up."""
    found: dict[str, set[str]] = {}
    for s in m.find("huaweicloud_task_up"):
        if s.value == 1 and s.labels["instance_id"]:
            found.setdefault(s.labels["project_id"], set()).add(s.labels["instance_id"])
    return found


@pytest.mark.smoke
def test_every_instance_of_every_region_project_and_sub_project_is_polled(
    account: tuple[World, Simulator], tmp_path: Path
) -> None:
    world, server = account
    run = run_once(account_config(server, tmp_path, task_center=True))
    assert run.rc == 0, run.stderr[-3000:]
    m = Metrics(run.stdout)
    polled = polled_projects(m)
    expected = {
        pid: {i.id for i in world.list_instances(pid)}
        for name, pid in [(REGION, PROJECT), *PROJECTS.items()]
        if name != "MOS"
    }
    assert polled == expected
    # Each project is labelled with its own region: the sub-project with its parent's.
    regions = {s.labels["project_id"]: s.labels["region"] for s in m.find("huaweicloud_task_up")}
    assert regions[PROJECTS[f"{REGION}_analytics"]] == REGION
    assert regions[PROJECTS["eu-west-101"]] == "eu-west-101"
    assert PROJECTS["MOS"] not in regions
    # task_center: true on an account-wide target: the task center of every project.
    centers = {
        s.labels["project_id"]
        for s in m.find("huaweicloud_task_up", instance_id="")
        if s.value == 1
    }
    assert centers == set(expected)
    ups = m.find("huaweicloud_task_discovery_up")
    assert len(ups) == 4 * len(expected)
    assert all(s.value == 1 for s in ups)
    assert m.total("huaweicloud_task_recent_tasks", status="SUCCESS") >= 4 * len(expected)


def test_patterns_choose_regions_and_projects(
    account: tuple[World, Simulator], tmp_path: Path
) -> None:
    _, server = account
    cfg = account_config(
        server, tmp_path, regions=["ap-*", "af-*"], exclude_projects=["*_analytics"]
    )
    run = run_once(cfg)
    assert run.rc == 0, run.stderr[-3000:]
    assert set(polled_projects(Metrics(run.stdout))) == {PROJECT, PROJECTS["af-south-1"]}


def test_projects_come_and_go_and_a_failing_region_is_down_alone(
    account: tuple[World, Simulator],
    tmp_path: Path,
    exporters: Callable[..., ExporterProcess],
) -> None:
    world, server = account
    cfg = account_config(server, tmp_path, discover={"interval": "1s"})
    exporter = exporters(cfg)
    everything = {PROJECT, *(pid for name, pid in PROJECTS.items() if name != "MOS")}
    exporter.wait_for(lambda m: set(polled_projects(m)) == everything, what="every project")

    # A region opens (a project appears) and another closes (its project disappears).
    added = "5d6e7f8a9b0c4d1e2f3a4b5c6d7e8f9a"
    world.add_project("la-south-2", added)
    new = world.add_instance("kafka", "events-la", added)
    world.remove_project("af-south-1")
    gone = PROJECTS["af-south-1"]
    m = exporter.wait_for(
        lambda m: polled_projects(m).get(added) == {new.id} and gone not in polled_projects(m),
        what="the new region polled and the closed one gone",
    )
    assert not m.find("huaweicloud_task_up", project_id=gone)
    assert not m.find("huaweicloud_task_discovery_up", project_id=gone)
    assert not m.find("huaweicloud_task_instance_info", project_id=gone)
    assert m.one("huaweicloud_task_discovery_up", project_id=added, cloud_service="kafka") == 1

    # One region's endpoints fail: its projects (the sub-project too) are down, others go on.
    world.add_fault(Fault("http_error", status=503, region=REGION))
    failing = {PROJECT, PROJECTS[f"{REGION}_analytics"]}

    def region_down(m: Metrics) -> bool:
        down = {s.labels["project_id"] for s in m.find("huaweicloud_task_up") if s.value == 0}
        listing_down = {
            s.labels["project_id"] for s in m.find("huaweicloud_task_discovery_up") if s.value == 0
        }
        return down == failing and listing_down == failing

    m = exporter.wait_for(region_down, what="the failing region down alone")
    for project_id in everything - failing - {gone} | {added}:
        ups = m.find("huaweicloud_task_up", project_id=project_id)
        assert ups, project_id
        assert all(s.value == 1 for s in ups), project_id
    # The failing region's instances are kept (the last good listing) and still reported.
    assert {s.labels["instance_id"] for s in m.find("huaweicloud_task_up", project_id=PROJECT)}
    assert exporter.stop() == 0


def test_password_credentials_list_with_a_domain_token_and_poll_with_project_tokens(
    account: tuple[World, Simulator], tmp_path: Path
) -> None:
    world, server = account
    world.add_iam_user("acme", "monitoring", "pw-5b7c9d1e")
    cfg = account_config(server, tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    doc["credentials"] = {
        "source": "password",
        "user": "monitoring",
        "domain": "acme",
        "password": "pw-5b7c9d1e",
    }
    run = run_once(write_config(cfg, doc))
    assert run.rc == 0, run.stderr[-3000:]
    polled = polled_projects(Metrics(run.stdout))
    assert len(polled) == 4
    with world.lock:
        scopes = sorted(t.project_id for t in world.tokens.values())
    # One domain-scoped token lists the projects; each project is polled with its own.
    assert scopes == sorted(["", *polled])
    assert "pw-5b7c9d1e" not in run.stdout + run.stderr


def test_keys_iam_refuses_on_the_project_list_fall_back_to_the_domain_s_projects(
    account: tuple[World, Simulator], tmp_path: Path
) -> None:
    world, server = account
    world.options.iam_auth_projects_signed = False
    run = run_once(account_config(server, tmp_path))
    assert run.rc == 0, run.stderr[-3000:]
    assert len(polled_projects(Metrics(run.stdout))) == 4
    assert "listing the domain's projects" in run.stderr
    paths = [r.path for r in world.requests_for() if r.listener == "iam"]
    assert paths[:2] == ["/v3/auth/projects", "/v3/projects"]


def test_a_failing_project_listing_reports_discovery_down(
    account: tuple[World, Simulator], tmp_path: Path
) -> None:
    world, server = account
    world.add_fault(Fault("http_error", listener="iam", status=500))
    run = run_once(account_config(server, tmp_path))
    assert run.rc == 1
    m = Metrics(run.stdout)
    ups = m.find("huaweicloud_task_discovery_up")
    assert {s.labels["cloud_service"] for s in ups} == set(SERVICES)
    assert all(s.value == 0 and s.labels["region"] == "" for s in ups)
    assert "cannot list the account's projects" in run.stderr


def readme_minimal_config() -> str:
    """The first configuration in README.md's Configuration section, as written there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1]
    found = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert found, "the README's first configuration example is gone"
    return found.group(1)


def test_the_readme_three_line_configuration_runs_against_the_simulator(
    account: tuple[World, Simulator], tmp_path: Path
) -> None:
    world, server = account
    text = readme_minimal_config()
    assert len(text.splitlines()) == 3, text
    # Only the endpoints change, pointing the target at the simulator as every test does.
    endpoints = (
        f"    endpoints: {{dcs: '{server.dcs_url}', dms: '{server.dms_url}', "
        f"iam: '{server.iam_url}'}}\n"
    )
    (tmp_path / "config.yml").write_text(text + endpoints)
    env = {**os.environ, "HUAWEICLOUD_SDK_AK": ACCESS_KEY, "HUAWEICLOUD_SDK_SK": SECRET_KEY}
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file=config.yml", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # the default state_path is relative: kept out of the repository
        env={**env, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    polled = polled_projects(Metrics(proc.stdout))
    assert polled == {
        pid: {i.id for i in world.list_instances(pid)}
        for name, pid in [(REGION, PROJECT), *PROJECTS.items()]
        if name != "MOS"
    }
    assert (tmp_path / "huaweicloud-task-exporter.db").exists()


def test_shards_split_an_account_without_overlap(
    account: tuple[World, Simulator], tmp_path: Path
) -> None:
    _, server = account
    cfg = account_config(server, tmp_path, task_center=True)
    shards = []
    for index in (0, 1):
        doc = yaml.safe_load(cfg.read_text())
        doc["state_path"] = str(tmp_path / f"state-{index}.db")
        path = write_config(tmp_path / f"config-{index}.yml", doc)
        run = run_once(path, "--shard.count=2", f"--shard.index={index}")
        assert run.rc == 0, run.stderr[-3000:]
        shards.append(Metrics(run.stdout))
    lists = [
        {(s.labels["project_id"], s.labels["instance_id"]) for s in m.find("huaweicloud_task_up")}
        for m in shards
    ]
    assert not lists[0] & lists[1]
    assert len(lists[0] | lists[1]) == 4 * (4 + 1)  # four projects: four instances, a center
    listings = [
        {(s.labels["project_id"], s.labels["cloud_service"]) for s in m.find(DISCOVERY_UP)}
        for m in shards
    ]
    assert not listings[0] & listings[1]
    assert len(listings[0] | listings[1]) == 4 * 4
