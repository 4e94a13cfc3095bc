"""Failure context over the simulator: the last failure and the oldest unfinished task of
each name as info series, with task ID, user and change; a newer failure replaces the
series; a restart neither loses nor invents them; a secret in a task's params goes nowhere."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import (
    PROJECT,
    ExporterProcess,
    Metrics,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    write_config,
)

Start = Callable[..., ExporterProcess]
SECRET = "Param-Secret-4b9f1e77c2d8"


def _context(m: Metrics, family: str, instance_id: str) -> list[dict[str, str]]:
    return [
        {k: s.labels[k] for k in ("task_name", "task_id", "user_name", "change")}
        for s in m.find(family, instance_id=instance_id)
        if s.value == 1
    ]


def test_failure_and_running_context_replaced_kept_and_never_secret(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    now = time.time()
    inst = w.add_instance("dcs", "redis-prod", PROJECT)
    old = w.add_task(
        inst.id,
        "EXTEND",
        "FAILED",
        now - 600,
        now - 590,
        user_name="bob",
        details={"old_capacity": "1", "new_capacity": "2"},
    )
    doc = config_doc(sim, [instance_entry(w, inst.id)], state_path=tmp_path / "s.db")
    cfg = write_config(tmp_path / "c.yml", doc)
    proc = exporters(cfg, "--log.level=debug", "--log.task-events")
    m = proc.wait_for(lambda m: all_up(m, 1), what="first poll")
    # A failure already there at the first poll is context too (it is not counted).
    assert _context(m, "huaweicloud_task_last_failure_info", inst.id) == [
        {"task_name": "EXTEND", "task_id": old.id, "user_name": "bob", "change": "capacity 1 -> 2"}
    ]

    new = w.add_task(
        inst.id,
        "EXTEND",
        "FAILED",
        time.time() - 20,
        time.time() - 2,
        user_name="alice",
        details={
            "old_capacity": "0.125",
            "new_capacity": "0.25",
            "old_resource_spec_code": "redis.single.xu1.tiny.125",
            "new_resource_spec_code": "redis.single.xu1.tiny.256",
            "password": SECRET,
        },
        params={"new_password": SECRET, "old_capacity": SECRET},
    )
    running = w.add_task(
        inst.id,
        "AddReplica",
        "EXECUTING",
        time.time() - 30,
        user_name="carol",
        details={"old_replica_num": "1", "new_replica_num": "2"},
    )
    m = proc.wait_for(
        lambda m: (
            m.total("huaweicloud_task_finished_total", status="FAILED") == 1
            and bool(_context(m, "huaweicloud_task_oldest_unfinished_info", inst.id))
        ),
        what="the new failure counted and the running task seen",
    )
    failure = {
        "task_name": "EXTEND",
        "task_id": new.id,
        "user_name": "alice",
        "change": "capacity 0.125 -> 0.25, spec redis.single.xu1.tiny.125 -> "
        "redis.single.xu1.tiny.256",
    }
    oldest = {
        "task_name": "AddReplica",
        "task_id": running.id,
        "user_name": "carol",
        "change": "replicas 1 -> 2",
    }
    # One series per task list and name: the newer failure replaced the older one.
    assert _context(m, "huaweicloud_task_last_failure_info", inst.id) == [failure]
    assert _context(m, "huaweicloud_task_oldest_unfinished_info", inst.id) == [oldest]
    started = m.one(
        "huaweicloud_task_oldest_unfinished_start_timestamp_seconds",
        instance_id=inst.id,
        task_name="AddReplica",
    )
    assert abs(started - running.created_at) < 0.01

    _, _, page = proc.get("/")
    text = page.decode()
    assert new.id in text
    assert "alice" in text
    assert "capacity 0.125 -&gt; 0.25" in text
    assert "carol" in text

    # A restart neither loses nor invents context: the same series before its first poll
    # is over and after it.
    proc.stop(signal.SIGKILL)
    before_kill, first_run = m, proc
    proc = exporters(cfg, "--log.level=debug", "--log.task-events")
    m = proc.wait_for(lambda m: all_up(m, 1), what="first poll after the restart")
    for family in ("huaweicloud_task_last_failure_info", "huaweicloud_task_oldest_unfinished_info"):
        assert _context(m, family, inst.id) == _context(before_kill, family, inst.id)

    # The running task fails: it becomes the last failure of its own name.
    w.set_status(running.id, "FAILED")
    m = proc.wait_for(
        lambda m: len(_context(m, "huaweicloud_task_last_failure_info", inst.id)) == 2,
        what="the second failure's context",
    )
    assert not _context(m, "huaweicloud_task_oldest_unfinished_info", inst.id)
    assert {"task_name": "AddReplica", "task_id": running.id, "user_name": "carol"}.items() <= (
        next(
            c
            for c in _context(m, "huaweicloud_task_last_failure_info", inst.id)
            if c["task_name"] == "AddReplica"
        ).items()
    )
    _, _, page = proc.get("/")
    everything = [m.text, before_kill.text, page.decode(), first_run.output, proc.output]
    assert any("task event" in line and new.id in line for line in everything)
    for where in everything:
        assert SECRET not in where
