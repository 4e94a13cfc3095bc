"""The probe's checks, in-process: each verdict from answers built to hold or break it."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.probe import checks as c
from exporter.probe.checks import Exchange
from exporter.text import parse_timestamp

pytestmark = pytest.mark.smoke


def _task(i: int, **fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": f"t{i}",
        "name": "EXTEND",
        "user_name": "alice",
        "user_id": "u",
        "status": "SUCCESS",
        "created_at": f"2026-12-01T07:{30 - i:02d}:00.000Z",
        "updated_at": f"2026-12-01T07:{31 - i:02d}:00.000Z",
    }
    for key, value in fields.items():
        if value is None:
            task.pop(key, None)
        else:
            task[key] = value
    return task


def _page(*ids: int, **fields: Any) -> Exchange:
    return Exchange(
        1, "paging", "kafka", "r", "/p", {}, body={"tasks": [_task(i, **fields) for i in ids]}
    )


def _by_name(found: list[c.Check]) -> dict[str, c.Check]:
    return {x.name: x for x in found}


def test_the_answer_needs_a_list_of_tasks() -> None:
    assert (
        _by_name(c.answer_checks("s", [{"tasks": [], "task_count": 0}]))["answer.tasks"].verdict
        == "ok"
    )
    missing = _by_name(c.answer_checks("s", [{"task_count": "0"}]))
    assert missing["answer.tasks"].verdict == "fail"
    assert "absent in 1" in missing["answer.tasks"].saw
    assert _by_name(c.answer_checks("s", [{"tasks": {}}]))["answer.tasks"].verdict == "fail"
    null = _by_name(c.answer_checks("s", [{"tasks": None, "task_count": 0}]))["answer.tasks"]
    assert null.verdict == "warn"  # read as no task
    assert _by_name(c.answer_checks("s", [[]]))["answer.tasks"].verdict == "fail"


@pytest.mark.parametrize(
    ("counts", "verdict", "variant"),
    [
        (["3"], "ok", "string"),
        ([3], "ok", "number"),
        ([3, "3"], "ok", "number+string"),
        ([None], "warn", "absent"),
        (["three"], "warn", "unreadable string"),
        ([True], "warn", "boolean"),
    ],
)
def test_task_count_is_a_number_or_a_string(counts: list[Any], verdict: str, variant: str) -> None:
    found = _by_name(c.answer_checks("s", [{"tasks": [], "task_count": n} for n in counts]))
    check = found["answer.task_count"]
    assert (check.verdict, check.found["task_count"]) == (verdict, variant)


def test_unknown_top_level_fields_are_named() -> None:
    found = _by_name(c.answer_checks("s", [{"tasks": [], "task_count": 0, "jobs": []}]))
    assert found["answer.unknown_fields"].found == {"fields": ["jobs"]}


def test_every_field_read_holds_in_the_documented_shape() -> None:
    found = c.task_field_checks("s", "instance", [_task(1), _task(2, details=None)])
    assert {x.verdict for x in found} == {"ok"}
    assert {x.name for x in found} >= {f"task.{f}" for f in c.TASK_FIELDS}


def test_a_renamed_field_fails_and_its_new_name_is_shown() -> None:
    tasks = [_task(1, created_at=None, create_time="2026-12-01T07:00:00Z")]
    found = _by_name(c.task_field_checks("s", "instance", tasks))
    assert found["task.created_at"].verdict == "fail"
    assert "missing in 1 of 1" in found["task.created_at"].saw
    assert found["task.unknown_fields"].found == {"fields": ["create_time"]}
    assert found["task.unknown_fields"].verdict == "warn"


def test_wrong_types_and_unreadable_timestamps_fail() -> None:
    found = _by_name(
        c.task_field_checks(
            "s", "instance", [_task(1, status=3, updated_at="yesterday", details="x")]
        )
    )
    assert found["task.status"].verdict == "fail"
    assert found["task.updated_at"].verdict == "fail"
    assert "not a timestamp" in found["task.updated_at"].saw
    assert found["task.details"].verdict == "fail"
    assert found["task.id"].verdict == "ok"


def test_task_center_fields_are_known_there_only() -> None:
    task = _task(1, job_id="j", error_code=None)
    assert "task.unknown_fields" not in _by_name(c.task_field_checks("s", "task_center", [task]))
    assert _by_name(c.task_field_checks("s", "instance", [task]))["task.unknown_fields"].found == {
        "fields": ["job_id"]
    }


def test_params_that_are_not_json_are_worth_a_warning() -> None:
    found = _by_name(c.task_field_checks("s", "instance", [_task(1, params="a=b")]))
    assert found["task.params"].verdict == "ok"
    assert found["task.params_json"].verdict == "warn"


def test_no_task_no_shape() -> None:
    assert [x.verdict for x in c.task_field_checks("s", "instance", [])] == ["skip"]


def test_statuses_never_seen_before_fail_per_family() -> None:
    dms = [_task(1, status="CANCELLED"), _task(2, status="DELETED"), _task(3, status="executing")]
    assert _by_name(c.status_checks("s", "dms", dms))["statuses"].verdict == "ok"
    dcs = _by_name(c.status_checks("s", "dcs", [_task(1, status="CANCELLED"), _task(2)]))
    assert dcs["statuses"].verdict == "fail"
    assert dcs["statuses"].found["unknown"] == ["CANCELLED"]
    assert dcs["task_names"].found == {"task_names": {"EXTEND": 2}}


LISTED = ["t0", "t1", "t2"]


def test_dcs_offset() -> None:
    assert c.dcs_paging_check("s", LISTED, _page(1)).found == {"offset": "0-based"}
    ignored = c.dcs_paging_check("s", LISTED, _page(0))
    assert (ignored.verdict, ignored.found) == ("fail", {"offset": "ignored"})
    assert c.dcs_paging_check("s", ["t0"], None).verdict == "skip"


@pytest.mark.parametrize(
    ("refused", "one", "two", "verdict", "start"),
    [
        (False, 1, 2, "ok", "0"),
        (False, 0, 1, "ok", "1"),
        (True, 0, 1, "ok", "1-strict"),
        (False, 0, 0, "fail", "ignored"),
    ],
)
def test_dms_start(refused: bool, one: int, two: int, verdict: str, start: str) -> None:
    found = c.dms_paging_checks("s", LISTED, refused, {1: _page(one), 2: _page(two)}, _page(0))
    paging = _by_name(found)["paging"]
    assert (paging.verdict, paging.found) == (verdict, {"start": start})
    assert _by_name(found)["paging.offset"].found == {"offset": "ignored"}


def test_dms_offset_honoured() -> None:
    found = c.dms_paging_checks("s", LISTED, False, {1: _page(1), 2: _page(2)}, _page(1))
    assert _by_name(found)["paging.offset"].found == {"offset": "honoured"}


AFTER = parse_timestamp("2026-12-01T08:00:00Z")  # after every task of `_task`


def test_the_window_must_be_honoured_under_the_name_the_exporter_sends() -> None:
    empty = Exchange(1, "window", "dcs", "r", "/p", {}, body={"tasks": []})
    full = _page(0)  # a task created before AFTER: the window was not applied
    ok = c.window_check("s", "start_time", AFTER, {"start_time": empty, "begin_time": full})
    assert (ok.verdict, ok.found["honoured"], ok.found["ignored"]) == (
        "ok",
        ["start_time"],
        ["begin_time"],
    )
    other = c.window_check("s", "start_time", AFTER, {"start_time": full, "begin_time": empty})
    assert (other.verdict, other.found["honoured"]) == ("fail", ["begin_time"])
    none = c.window_check("s", "begin_time", AFTER, {"start_time": full, "begin_time": full})
    assert (none.verdict, none.found["honoured"]) == ("fail", [])
    assert c.window_check("s", "begin_time", None, {}).verdict == "skip"


def test_throttling_is_a_warning_and_latency_a_figure() -> None:
    exchanges = [Exchange(i, "read", "dcs", "r", "/p", {}, latency=i / 10) for i in range(1, 4)]
    found = _by_name(c.request_checks("s", exchanges, 2.0))
    assert found["throttling"].verdict == "warn"
    assert found["latency"].found["max_seconds"] == pytest.approx(0.3)
    assert _by_name(c.request_checks("s", exchanges, 0.0))["throttling"].verdict == "ok"
