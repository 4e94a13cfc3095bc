"""Recorded answers through the reader, the counting and the exposition (tests/probe/replay.py).

The fixtures are the example answers of the API references (tests/fixtures/recordings/,
each manifest names its source): the exporter must read each as the documentation says,
and the probe's checks must pass on them. Scrubbed for a bug report, a recording must still
count the same.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from exporter.probe import checks as c
from exporter.probe.record import Scrubber, load_recording
from exporter.text import parse_timestamp
from tests.conftest import Metrics
from tests.probe.replay import replay

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"
SEEDS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def _recent(m: Metrics) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["cloud_service"], s.labels["task_name"], s.labels["status"]): s.value
        for s in m.find("huaweicloud_task_recent_tasks")
    }


def test_the_fixtures_are_there() -> None:
    assert set(SEEDS) >= {
        "seed-dcs-instance",
        "seed-dcs-task-center",
        "seed-dms-generic",
        "seed-kafka",
    }


@pytest.mark.parametrize("recording", SEEDS)
def test_every_recording_replays_each_task_once(recording: str) -> None:
    """Any recording dropped into tests/fixtures/recordings/ (a user's, from a bug report)
    replays without a request that was not recorded, and shows each task of its window once."""
    manifest, exchanges = load_recording(FIXTURES / recording)
    m = Metrics(replay(FIXTURES / recording))
    for entry in manifest["task_lists"]:
        bodies = [e["body"] for e in exchanges if e["seq"] in entry["requests"] and "body" in e]
        since = float(manifest["since"])
        ids = {
            str(t["id"])
            for t in c.raw_tasks(bodies)
            if "id" in t and (parse_timestamp(t.get("created_at")) or since) >= since
        }
        labels = {"cloud_service": entry["service"], "instance_id": entry["instance_id"]}
        assert m.total("huaweicloud_task_recent_tasks", **labels) == len(ids)


@pytest.mark.smoke
def test_dcs_instance_example_reads_as_documented() -> None:
    m = Metrics(replay(FIXTURES / "seed-dcs-instance"))
    assert _recent(m) == {("dcs", "EXTEND", "SUCCESS"): 1}
    assert m.one("huaweicloud_task_last_duration_seconds", task_name="EXTEND") == pytest.approx(
        3.509
    )
    # The first poll is the baseline: the finished task is remembered, not counted.
    assert m.one("huaweicloud_task_finished_total", task_name="EXTEND", status="SUCCESS") == 0
    assert m.one("huaweicloud_task_last_status", task_name="EXTEND", status="SUCCESS") == 1
    assert m.find("huaweicloud_task_recent_tasks")[0].labels["instance_id"] == (
        "5560df16-cebf-4473-95c4-d1b573c16e79"
    )


def test_task_center_example_reads_as_documented() -> None:
    m = Metrics(replay(FIXTURES / "seed-dcs-task-center"))
    assert _recent(m) == {
        ("dcs", "ChangeInstanceSpec", "SUCCESS"): 1,
        ("dcs", "dcsExportJob", "SUCCESS"): 1,
    }
    assert {s.labels["instance_id"] for s in m.find("huaweicloud_task_recent_tasks")} == {""}


def test_kafka_example_reads_as_documented() -> None:
    m = Metrics(replay(FIXTURES / "seed-kafka"))
    assert _recent(m) == {
        ("kafka", "modifyAutoTopic", "EXECUTING"): 1,
        ("kafka", "changeRetentionPolicy", "SUCCESS"): 1,
    }
    started = m.one(
        "huaweicloud_task_oldest_unfinished_start_timestamp_seconds", task_name="modifyAutoTopic"
    )
    assert started == pytest.approx(1589512791.046)  # 2020-05-15T03:19:51.046Z
    info = m.find("huaweicloud_task_oldest_unfinished_info", task_name="modifyAutoTopic")
    assert [(s.labels["user_name"], s.labels["change"]) for s in info] == [
        ("paas_dms", "auto topic true -> false")
    ]
    # DMS series start at 0 in its four final statuses.
    zeros = m.find("huaweicloud_task_finished_total", task_name="changeRetentionPolicy")
    assert {s.labels["status"] for s in zeros} == {"SUCCESS", "FAILED", "DELETED", "CANCELLED"}


def test_dms_generic_example_reads_as_documented() -> None:
    m = Metrics(replay(FIXTURES / "seed-dms-generic"))
    assert _recent(m) == {("rabbitmq", "bindInstancePublicIp", "SUCCESS"): 1}


@pytest.mark.parametrize("seed", SEEDS)
def test_every_check_passes_on_the_documented_examples(seed: str) -> None:
    manifest, exchanges = load_recording(FIXTURES / seed)
    bodies = [e["body"] for e in exchanges]
    entry = manifest["task_lists"][0]
    tasks = c.raw_tasks(bodies)
    found = [
        *c.answer_checks(seed, bodies),
        *c.task_field_checks(seed, entry["kind"], tasks),
        *c.status_checks(seed, "dcs" if entry["service"] == "dcs" else "dms", tasks),
    ]
    assert {x.verdict for x in found} == {"ok"}, [x for x in found if x.verdict != "ok"]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_scrubbed_recording_counts_the_same(seed: str, tmp_path: Path) -> None:
    """Scrubbed as `--probe.record` scrubs: the same series but for the IDs and names, and
    every 32-hex task ID still 32 hex digits, every UUID still a UUID."""
    scrubbed = tmp_path / seed
    shutil.copytree(FIXTURES / seed, scrubbed)
    scrubber = Scrubber()
    manifest, exchanges = load_recording(scrubbed)
    for exchange in exchanges:
        exchange["path"] = scrubber.path(exchange["path"])
        exchange["params"] = scrubber.params(exchange["params"])
        exchange["body"] = scrubber.body(exchange["body"])
        (scrubbed / f"{exchange['seq']:04d}.json").write_text(json.dumps(exchange))
    for entry in manifest["task_lists"]:
        for key in ("project_id", "instance_id"):
            if entry[key]:
                entry[key] = scrubber.p.identifier(entry[key])
    (scrubbed / "manifest.json").write_text(json.dumps(manifest))

    original, replayed = Metrics(replay(FIXTURES / seed)), Metrics(replay(scrubbed))
    assert _recent(replayed) == _recent(original)
    _, plain = load_recording(FIXTURES / seed)
    for old_exchange, new_exchange in zip(plain, exchanges, strict=True):
        for old, new in zip(
            old_exchange["body"]["tasks"], new_exchange["body"]["tasks"], strict=True
        ):
            assert new["id"] != old["id"]
            assert len(new["id"]) == len(old["id"]) == 32
            assert int(new["id"], 16) >= 0  # still hex
            assert (new["name"], new["status"], new["created_at"]) == (
                old["name"],
                old["status"],
                old["created_at"],
            )
            assert new["user_name"] != old["user_name"]
