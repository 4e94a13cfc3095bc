"""Ready-made worlds: the demo fleet, and generated fleets for tests and benchmarks."""

from __future__ import annotations

import time

import yaml

from exporter.simulator.world import Churn, Service, World

DEMO_PROJECT = "0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b"
DEMO_REGION = "ap-southeast-1"
DEMO_ACCESS_KEY = "DEMOACCESSKEY0000001"

DEMO_INSTANCES: tuple[tuple[Service, str, str], ...] = (
    ("dcs", "5560df16-cebf-4473-95c4-d1b573c16e79", "redis-prod"),
    ("dcs", "7a8b6c1d-0e2f-4a3b-9c4d-5e6f7a8b9c0d", "redis-sessions"),
    ("kafka", "9b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", "events"),
    ("rabbitmq", "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", "orders"),
    ("rocketmq", "3d4e5f6a-7b8c-4d9e-8f1a-2b3c4d5e6f7a", "payments"),
)


def demo_world(secret_key: str, seed: int = 7, now: float | None = None) -> World:
    """A small fleet of all four services with weeks of history, a stuck task, and churn.

    Scripted tasks finish a few seconds after start, so the second poll already counts a
    success and a failure: every metric family has samples within seconds. Every task
    carries a user and, where its kind has one, `details`/`params` (see `World.add_task`).
    """
    now = time.time() if now is None else now
    world = World(seed=seed, region=DEMO_REGION)
    world.add_credentials(DEMO_ACCESS_KEY, secret_key)
    ids = {}
    for service, instance_id, name in DEMO_INSTANCES:
        inst = world.add_instance(service, name, DEMO_PROJECT, instance_id)
        ids[name] = inst.id
        names = {
            "dcs": ("modify", "AddWhitelist", "BindEip", "EXTEND"),
            "kafka": ("modifyAutoTopic", "changeRetentionPolicy", "kafkaConfigModify"),
        }.get(service, ("bindInstancePublicIp", "unbindInstancePublicIp"))
        for i in range(8):
            created = now - 3600 * (11 - i) - 137 * i
            status = "FAILED" if i == 3 else "SUCCESS"
            world.add_task(
                inst.id, names[i % len(names)], status, created, created + 20 + 40 * (i % 3)
            )
        # Two weeks of successful runs too, for the expected durations to learn from
        # (no failures: the demo's failures are the scripted ones).
        world.add_history(inst.id, days=14, per_day=6, p_failed=0.0)
    world.add_task(ids["redis-prod"], "EXTEND", "EXECUTING", now - 3 * 3600, user_name="bob")
    world.add_task(None, "dcsExportJob", "SUCCESS", now - 7200, now - 7000, project_id=DEMO_PROJECT)
    world.add_task(
        ids["events"],
        "kafkaConfigModify",
        "EXECUTING",
        now - 20,
        plan=[(now + 4, "FAILED")],
        user_name="carol",
    )
    # A resize that fails within seconds: the failure context (who, what) of the demo.
    world.add_task(
        ids["redis-sessions"],
        "EXTEND",
        "EXECUTING",
        now - 30,
        plan=[(now + 5, "FAILED")],
        user_name="alice",
    )
    world.add_task(
        ids["redis-sessions"], "modify", "EXECUTING", now - 5, plan=[(now + 3, "SUCCESS")]
    )
    world.add_task(
        ids["orders"],
        "bindInstancePublicIp",
        "CREATED",
        now - 1,
        plan=[(now + 1, "EXECUTING"), (now + 6, "SUCCESS")],
    )
    world.start_churn(
        Churn(mean_interval=20.0, min_duration=2.0, max_duration=30.0, p_failed=0.2, p_stuck=0.02)
    )
    return world


def generated_world(
    instances: int,
    secret_key: str,
    access_key: str = DEMO_ACCESS_KEY,
    seed: int = 1,
    project_id: str = DEMO_PROJECT,
) -> World:
    """A fleet of `instances` spread over the four services (for sharding and load)."""
    world = World(seed=seed, region=DEMO_REGION)
    world.add_credentials(access_key, secret_key)
    services: tuple[Service, ...] = ("dcs", "kafka", "rabbitmq", "rocketmq")
    for i in range(instances):
        world.add_instance(services[i % 4], f"inst-{i:04d}", project_id)
    return world


def demo_config_text(
    world: World,
    dcs_url: str,
    dms_url: str,
    access_key: str,
    secret_key: str,
    poll_interval: str,
    state_path: str,
) -> str:
    """An exporter configuration for every instance of `world`, plus its task center."""
    projects: dict[str, list[dict[str, str]]] = {}
    with world.lock:
        for inst in world.instances.values():
            projects.setdefault(inst.project_id, []).append(
                {"service": inst.service, "id": inst.id, "name": inst.name}
            )
    doc = {
        "poll_interval": poll_interval,
        "lookback": "24h",
        "overlap": "1m",
        "state_path": state_path,
        "credentials": {"access_key": access_key, "secret_key": secret_key},
        "http": {"requests_per_second": 50, "burst": 50},
        "targets": [
            {
                "region": world.region,
                "project_id": project,
                "endpoints": {"dcs": dcs_url, "dms": dms_url},
                "task_center": True,
                "instances": instances,
            }
            for project, instances in sorted(projects.items())
        ],
    }
    return "# generated for the simulator\n" + yaml.safe_dump(doc, sort_keys=False)
