"""Reloading the configuration of a running exporter: SIGHUP, `POST /-/reload`, the checksum
watch. Counts stay exact across a reload while tasks keep finishing; a refused file changes
nothing. What a reload changes, setting by setting, is tests/config/test_changes.py.
"""

from __future__ import annotations

import copy
import re
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator.world import Fault, SimInstance
from tests.conftest import (
    PROJECT,
    SECRET_KEY,
    ExporterProcess,
    Metrics,
    Sim,
    all_up,
    config_doc,
    instance_entry,
    write_config,
)

Start = Callable[..., ExporterProcess]
FINISHED = "huaweicloud_task_finished_total"
RELOAD_OK = "huaweicloud_task_config_last_reload_successful"
RELOAD_TIME = "huaweicloud_task_config_last_reload_success_timestamp_seconds"
NEW_KEY = "TESTACCESSKEY0000002"
NEW_SECRET = "second-secret-key-9a8b7c6d5e4f3a2b1c0d"


def _post(proc: ExporterProcess, path: str) -> tuple[int, str]:
    req = urllib.request.Request(proc.url + path, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _wait_log(proc: ExporterProcess, pattern: str, after: int = 0, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.lines[after:]:
            if re.search(pattern, line):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line {pattern!r}:\n" + "\n".join(proc.lines[-20:]))


def _counts(m: Metrics, instance_id: str) -> Counter[tuple[str, str]]:
    return Counter(
        {
            (s.labels["task_name"], s.labels["status"]): int(s.value)
            for s in m.find(FINISHED, instance_id=instance_id)
            if s.value
        }
    )


def _target(doc: dict[str, Any], instances: list[dict[str, str]]) -> dict[str, Any]:
    target: dict[str, Any] = copy.deepcopy(doc["targets"][0])
    target["instances"] = instances
    return target


def _finishing(sim: Sim, inst: SimInstance, start: float, n: int, step: float) -> Counter[Any]:
    """`n` tasks running now that finish one every `step` seconds from `start`."""
    truth: Counter[tuple[str, str]] = Counter()
    for k in range(n):
        status = "FAILED" if k % 3 == 0 else "SUCCESS"
        name = "modifyAutoTopic" if inst.service != "dcs" else "modify"
        sim.world.add_task(inst.id, name, "EXECUTING", start - 5, plan=[(start + k * step, status)])
        truth[(name, status)] += 1
    return truth


@pytest.mark.slow
def test_sighup_swaps_targets_credentials_and_interval_counting_each_task_once(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    w.add_credentials(NEW_KEY, NEW_SECRET)
    now = time.time()
    kept = [w.add_instance("dcs", "kept-redis", PROJECT), w.add_instance("kafka", "kept", PROJECT)]
    removed = w.add_instance("rocketmq", "removed", PROJECT)
    added = w.add_instance("dcs", "added-redis", PROJECT)
    for inst in (*kept, removed, added):
        w.add_task(inst.id, "modify", "SUCCESS", now - 600, now - 590)  # baseline: not counted
    doc = config_doc(sim, [instance_entry(w, i.id) for i in kept], state_path=tmp_path / "s.db")
    doc["targets"].append(_target(doc, [instance_entry(w, removed.id)]))
    cfg = write_config(tmp_path / "c.yml", doc)
    proc = exporters(cfg)
    proc.wait_for(lambda m: all_up(m, 3), what="three task lists up")

    # Every poll now spends a while in flight: the reload lands on polls half-way through.
    w.add_fault(Fault("latency", latency=0.3))
    start = time.time() + 0.5
    truth = {i.id: _finishing(sim, i, start, 8, 0.4) for i in (*kept, removed, added)}
    time.sleep(1.2)  # some finished before the reload, the others finish during and after it

    new = config_doc(sim, [instance_entry(w, i.id) for i in kept], state_path=tmp_path / "s.db")
    new["credentials"] = {"access_key": NEW_KEY, "secret_key": NEW_SECRET}
    new["poll_interval"] = "2s"
    new["metrics"] = {"duration_buckets": [1, 10, 100]}
    new["targets"].append(_target(new, [instance_entry(w, added.id)]))
    write_config(cfg, new)
    mark = len(proc.lines)
    proc.send(signal.SIGHUP)
    _wait_log(proc, "configuration reloaded", mark)
    swapped = time.time()

    def settled(m: Metrics) -> bool:
        return all(_counts(m, i.id) == truth[i.id] for i in kept) and all_up(m, 3)

    m = proc.wait_for(settled, timeout=30, what="every task of the kept lists counted")
    time.sleep(4.5)  # two more polls at the new interval: nothing is counted twice
    m = proc.scrape()
    for inst in kept:
        assert _counts(m, inst.id) == truth[inst.id]
    # The removed target's series are gone, the added one's are there (its first poll is
    # its baseline: what finished before it is not counted, nothing more than what finished).
    assert m.find("huaweicloud_task_up", instance_id=removed.id) == []
    assert m.find(FINISHED, instance_id=removed.id) == []
    assert m.one("huaweicloud_task_up", instance_id=added.id) == 1
    assert _counts(m, added.id) <= truth[added.id]
    # The new credentials are used, the new interval is the one the families describe.
    time.sleep(0.5)
    keys = {r.access_key for r in w.requests_for(kept[0].id, since=swapped + 1)}
    assert keys == {NEW_KEY}
    assert "every 2s" in m.families["huaweicloud_task_recent_tasks"].documentation
    bounds = {s.labels["le"] for s in m.find("huaweicloud_task_duration_seconds_bucket")}
    assert bounds == {"1.0", "10.0", "100.0", "+Inf"}  # the new buckets (histograms restart)
    assert m.one(RELOAD_OK) == 1
    assert proc.stop() == 0


@pytest.mark.slow
def test_a_refused_file_changes_nothing_by_signal_or_post(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    inst = w.add_instance("kafka", "events", PROJECT)
    doc = config_doc(sim, [instance_entry(w, inst.id)], state_path=tmp_path / "s.db")
    cfg = write_config(tmp_path / "c.yml", doc)
    proc = exporters(cfg)
    proc.wait_for(lambda m: all_up(m, 1), what="up")
    loaded_at = proc.scrape().one(RELOAD_TIME)
    good = cfg.read_text()

    other = w.add_instance("kafka", "other", PROJECT)
    with_other = copy.deepcopy(doc)
    with_other["targets"][0]["instances"].append(instance_entry(w, other.id))
    mistakes = {
        # Not YAML at all.
        "yaml": (good + "\n  bad: [indent\n", r"c\.yml:\d+(:\d+)?: not valid YAML"),
        # Valid YAML, but an unknown key and a value out of range (both reported).
        "schema": (
            good.replace("poll_interval: 1s", "poll_interval: 0s\npoll_intervall: 5s"),
            r"c\.yml:\d+: poll_interval: must be at least 1s",
        ),
        # Valid, but a setting a running exporter cannot change.
        "fixed": (
            write_config(
                tmp_path / "moved.yml", {**with_other, "state_path": "/tmp/x.db"}
            ).read_text(),
            r"state_path cannot change in a running exporter",
        ),
    }
    for kind, (text, expected) in mistakes.items():
        cfg.write_text(text)
        mark = len(proc.lines)
        proc.send(signal.SIGHUP)
        _wait_log(proc, "configuration not reloaded", mark)
        assert any(re.search(expected, line) for line in proc.lines[mark:]), kind
        m = proc.scrape()
        assert m.one(RELOAD_OK) == 0, kind
        assert m.one(RELOAD_TIME) == loaded_at, kind
        assert m.find("huaweicloud_task_up", instance_id=other.id) == [], kind
        assert all_up(m, 1), kind
    assert proc.proc is not None
    assert proc.proc.poll() is None  # SIGHUP never ends it
    assert re.search(r"c\.yml:\d+: poll_intervall: ", proc.output)  # the unknown key too

    # The same through POST /-/reload: 500 with every problem, then 200 once it is right.
    cfg.write_text(mistakes["schema"][0])
    status, body = _post(proc, "/-/reload")
    assert status == 500
    assert re.search(mistakes["schema"][1], body)
    assert "poll_intervall" in body
    assert proc.get("/-/reload")[0] == 405
    write_config(cfg, with_other)
    status, body = _post(proc, "/-/reload")
    assert status == 200, body
    m = proc.wait_for(lambda m: all_up(m, 2), what="the new instance up")
    assert m.one(RELOAD_OK) == 1
    assert m.one(RELOAD_TIME) > loaded_at
    # Unchanged: a no-op (nothing restarted, nothing logged as changed).
    mark = len(proc.lines)
    assert _post(proc, "/-/reload")[0] == 200
    _wait_log(proc, "configuration unchanged", mark)
    assert not any("task lists changed" in line for line in proc.lines[mark:])
    assert proc.stop() == 0


@pytest.mark.slow
def test_the_checksum_watch_reloads_a_changed_file(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    first = w.add_instance("dcs", "first", PROJECT)
    doc = config_doc(sim, [instance_entry(w, first.id)], state_path=tmp_path / "s.db")
    cfg = write_config(tmp_path / "c.yml", doc)
    proc = exporters(cfg, "--config.auto-reload-interval=1s")
    proc.wait_for(lambda m: all_up(m, 1), what="up")
    second = w.add_instance("dcs", "second", PROJECT)
    doc["targets"][0]["instances"].append(instance_entry(w, second.id))
    # A mounted ConfigMap is replaced by a rename: a new file under the same name.
    tmp = tmp_path / "c.yml.new"
    write_config(tmp, doc)
    tmp.replace(cfg)
    m = proc.wait_for(lambda m: all_up(m, 2), what="the second instance up")
    assert m.one(RELOAD_OK) == 1
    # A broken file is refused once (not every second), the good one stays in use.
    mark = len(proc.lines)
    cfg.write_text("targets: [\n")
    _wait_log(proc, "configuration not reloaded", mark)
    time.sleep(2.5)
    refusals = [line for line in proc.lines[mark:] if "configuration not reloaded" in line]
    assert len(refusals) == 1
    m = proc.scrape()
    assert m.one(RELOAD_OK) == 0
    assert all_up(m, 2)
    assert SECRET_KEY not in proc.output
    assert proc.stop() == 0
