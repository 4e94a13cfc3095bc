"""Sharding: three shards over a fleet of 200 instances cover it exactly, keep their sets
through a restart, and count exactly, each for its own instances."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from exporter.core.sharding import Shard, bucket, parse_shard
from exporter.simulator import Churn, Simulator
from exporter.simulator.fleet import DEMO_PROJECT, generated_world
from exporter.simulator.world import CENTER_NAMES
from tests.conftest import ACCESS_KEY, SECRET_KEY, ExporterProcess, Metrics

SHARDS = 3
FLEET = 200


def test_shard_index_from_a_statefulset_hostname() -> None:
    assert parse_shard("auto", 3, hostname="huaweicloud-task-exporter-2") == Shard(2, 3)
    assert parse_shard("1", 3) == Shard(1, 3)
    for bad in ("3", "-1", "x"):
        with pytest.raises(ValueError, match=r"--shard\.index"):
            parse_shard(bad, 3)
    with pytest.raises(ValueError, match="ending in -N"):
        parse_shard("auto", 3, hostname="exporter")
    # The hash is stable across processes (not Python's randomised hash()).
    assert bucket("5560df16-cebf-4473-95c4-d1b573c16e79", 3) == 2


@pytest.fixture
def fleet() -> Iterator[Simulator]:
    world = generated_world(FLEET, SECRET_KEY, access_key=ACCESS_KEY, seed=11)
    with Simulator(world) as sim:
        yield sim


def _instance_ups(m: Metrics) -> dict[str, float]:
    return {
        s.labels["instance_id"]: s.value
        for s in m.find("huaweicloud_task_up")
        if s.labels["instance_id"]
    }


def _served(m: Metrics) -> dict[tuple[str, str, str], int]:
    return {
        (s.labels["instance_id"], s.labels["task_name"], s.labels["status"]): int(s.value)
        for s in m.find("huaweicloud_task_finished_total")
        if s.value
    }


@pytest.mark.slow
def test_three_shards_cover_the_fleet_exactly_and_count_exactly(
    fleet: Simulator, tmp_path: Path
) -> None:
    w = fleet.world
    everything = set(w.instances)
    procs: list[ExporterProcess] = []
    configs: list[Path] = []
    for i in range(SHARDS):
        doc = {
            "poll_interval": "3s",
            "overlap": "1m",
            "state_path": str(tmp_path / f"s{i}.db"),
            "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
            "http": {"timeout": "5s", "requests_per_second": 500, "burst": 500},
            "targets": [
                {
                    "region": w.region,
                    "project_id": DEMO_PROJECT,
                    "task_center": True,
                    "endpoints": {"dcs": fleet.dcs_url, "dms": fleet.dms_url},
                    "discover": {"interval": "30s"},
                }
            ],
        }
        path = tmp_path / f"c{i}.yml"
        path.write_text(yaml.safe_dump(doc))
        configs.append(path)

    def start(i: int) -> ExporterProcess:
        return ExporterProcess(
            [f"--config.file={configs[i]}", f"--shard.index={i}", f"--shard.count={SHARDS}"]
        ).start()

    def settled(proc: ExporterProcess) -> Metrics:
        """Ready (sources read, every task list polled once), then every task list up."""
        deadline = time.monotonic() + 40
        while proc.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, "shard not ready:\n" + proc.output[-2000:]
            time.sleep(0.2)
        return proc.wait_for(
            lambda m: bool(_instance_ups(m)) and all(_instance_ups(m).values()),
            timeout=20,
            what="every task list of the shard up",
        )

    try:
        procs = [start(i) for i in range(SHARDS)]
        scrapes = [settled(p) for p in procs]
        sets = [set(_instance_ups(m)) for m in scrapes]
        assert set().union(*sets) == everything
        for a in range(SHARDS):
            for b in range(a + 1, SHARDS):
                assert not sets[a] & sets[b], (a, b)
            # Roughly a third each (a hash, not a round robin).
            assert FLEET / SHARDS / 2 < len(sets[a]) < FLEET / SHARDS * 2
            assert (
                scrapes[a].value(
                    "huaweicloud_task_shard_info", shard=str(a), shard_count=str(SHARDS)
                )
                == 1
            )
        # The task center and the discovery series belong to one shard, the same one.
        centers = [
            i for i, m in enumerate(scrapes) if m.find("huaweicloud_task_up", instance_id="")
        ]
        discoverers = [i for i, m in enumerate(scrapes) if m.find("huaweicloud_task_discovery_up")]
        assert len(centers) == 1
        assert discoverers == centers
        owner = centers[0]
        info = {
            s.labels["instance_id"] for s in scrapes[owner].find("huaweicloud_task_instance_info")
        }
        assert info == everything

        # Tasks start and finish everywhere; a shard is killed and comes back meanwhile.
        w.start_churn(
            Churn(mean_interval=40.0, min_duration=0.5, max_duration=3.0, p_failed=0.3, p_stuck=0.0)
        )
        time.sleep(4)
        victim = (owner + 1) % SHARDS
        procs[victim].stop(signal.SIGKILL)
        time.sleep(2)
        procs[victim] = start(victim)
        got = set(_instance_ups(settled(procs[victim])))
        assert got == sets[victim], procs[victim].output[-6000:]  # same set
        time.sleep(3)
        w.stop_churn()
        time.sleep(4)  # every started task has finished (durations are at most 3s)

        with w.lock:
            finished = [
                t for t in w.tasks.values() if t.status not in ("CREATED", "WAITING", "EXECUTING")
            ]
        assert len(finished) > 20
        for i, proc in enumerate(procs):
            truth: Counter[tuple[str, str, str]] = Counter()
            for t in finished:
                if t.instance_id in sets[i]:
                    truth[(t.instance_id, t.name, t.status)] += 1
                if i == owner and t.service == "dcs":
                    truth[("", CENTER_NAMES.get(t.name, t.name), t.status)] += 1

            expected = dict(truth)
            proc.wait_for(
                lambda m, expected=expected: _served(m) == expected,  # type: ignore[misc]
                timeout=30,
                what=f"shard {i} counting exactly",
            )
    finally:
        for proc in procs:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop()
