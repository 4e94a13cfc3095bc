"""Expected durations, pure: the statistics, the bounds, the fleet pools and the fallback.

The quantiles are checked against the standard library's own (`statistics.quantiles` with
`method="inclusive"` is the same type-7 interpolation), on the log scale.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest

from exporter.core.counting import TaskListState, merge
from exporter.core.expectations import (
    MIN_RUNS,
    STATIC_DEFAULT,
    STUCK_FLOOR,
    Expectation,
    ExpectationBook,
    Sample,
    bound_window,
    expectation_of,
    stuck_threshold,
)
from exporter.core.tasks import Task
from tests.core.test_counting import CONFIG, NOW, _target

pytestmark = pytest.mark.smoke


def _oracle(durations: list[float], q: float) -> float:
    """Type-7 quantile of log1p(durations), back in seconds, by the standard library."""
    logs = [math.log1p(d) for d in durations]
    if q == 0.5:
        return math.expm1(statistics.median(logs))
    cuts = statistics.quantiles(logs, n=20, method="inclusive")
    return math.expm1(cuts[18])


def _runs(durations: list[float], name: str = "EXTEND", start: float = NOW - 86400) -> list[Sample]:
    return [Sample(f"{name}-{i}", name, start + 60 * i, d) for i, d in enumerate(durations)]


def test_skewed_durations_match_the_log_scale_oracle() -> None:
    rng = random.Random(16)
    durations = [rng.lognormvariate(math.log(300), 0.8) for _ in range(50)]
    e = expectation_of("EXTEND", durations)
    assert e is not None
    assert e.samples == 50
    assert e.p50 == pytest.approx(_oracle(durations, 0.5), abs=1e-3)
    assert e.p95 == pytest.approx(_oracle(durations, 0.95), abs=1e-3)
    assert e.p50 < statistics.mean(durations)  # skewed: the median sits below the mean


def test_skew_pulls_the_95th_percentile_geometrically_not_linearly() -> None:
    """18 runs of 10 s, one of 20 s, one of 50 minutes: p95 falls between the last two order
    statistics on the log scale (about 26 s), where linear interpolation would say 169 s."""
    e = expectation_of("modify", [10.0] * 18 + [20.0, 3000.0])
    assert e is not None
    assert e.p50 == 10.0
    assert 20.0 < e.p95 < 30.0
    assert e.p95 == pytest.approx(math.expm1(math.log(21) + 0.05 * math.log(3001 / 21)), abs=1e-3)


def test_ties_give_exactly_the_tied_value() -> None:
    e = expectation_of("BindEip", [12.0] * 7)
    assert e == Expectation("BindEip", 12.0, 12.0, 7)


def test_a_single_sample_is_its_own_median_and_95th_percentile() -> None:
    assert expectation_of("UpdatePort", [42.5]) == Expectation("UpdatePort", 42.5, 42.5, 1)
    assert expectation_of("UpdatePort", [0.0]) == Expectation("UpdatePort", 0.0, 0.0, 1)
    assert expectation_of("UpdatePort", []) is None


def test_outliers_among_the_history_do_not_move_the_expectation() -> None:
    """Two runs that hung for 10 hours (then succeeded) among 48 normal ones: the median and
    p95 stay with the normal runs; only beyond 5% of the window does p95 follow them."""
    rng = random.Random(3)
    normal = [rng.uniform(90.0, 130.0) for _ in range(48)]
    clean = expectation_of("EXTEND", normal)
    with_outliers = expectation_of("EXTEND", [*normal, 36000.0, 36000.0])
    assert clean is not None
    assert with_outliers is not None
    assert with_outliers.p50 == pytest.approx(clean.p50, rel=0.02)
    assert with_outliers.p95 <= 130.0
    many = expectation_of("EXTEND", [*normal[:45], *[36000.0] * 5])
    assert many is not None
    assert many.p95 > 1000.0


def test_the_window_keeps_the_most_recent_runs_each_once() -> None:
    runs = _runs([float(i) for i in range(10)])
    kept = bound_window([*runs, runs[9], runs[8]], 4, since=0.0)
    assert [s.task_id for s in kept] == ["EXTEND-6", "EXTEND-7", "EXTEND-8", "EXTEND-9"]
    # Ties in finish time are cut by task ID, the same in memory and in the state file.
    tied = [Sample(i, "X", 100.0, 1.0) for i in ("c", "a", "b")]
    assert [s.task_id for s in bound_window(tied, 2, 0.0)] == ["b", "c"]


def test_the_age_limit_drops_old_runs_as_time_passes() -> None:
    book = ExpectationBook(window=50, max_age=3600.0)
    runs = [Sample(f"r{i}", "EXTEND", NOW - 3000 + 600 * i, 100.0 + i) for i in range(4)]
    touched = book.add("a", "dcs", runs, NOW)
    assert touched == {("dcs", "EXTEND")}
    assert book.expectations("a")[0].samples == 4
    assert book.add("a", "dcs", [], NOW) == set()  # nothing aged: nothing changed
    assert book.add("a", "dcs", [], NOW + 1500)  # r0 and r1 are older than an hour now
    assert book.expectations("a")[0].samples == 2
    book.add("a", "dcs", [], NOW + 7200)
    assert book.expectations("a") == ()
    assert book.fleet() == {}


def test_the_book_window_bounds_each_task_list_and_name() -> None:
    book = ExpectationBook(window=5, max_age=30 * 86400.0)
    book.add("a", "dcs", _runs([1.0] * 8) + _runs([7.0] * 3, name="modify"), NOW)
    by_name = {e.name: e for e in book.expectations("a")}
    assert by_name["EXTEND"].samples == 5
    assert by_name["modify"] == Expectation("modify", 7.0, 7.0, 3)
    # The window slides: five slow runs replace the five fast ones.
    book.add("a", "dcs", _runs([100.0] * 5, start=NOW - 3600), NOW)
    slow = [Sample(f"slow{i}", "EXTEND", NOW - 60 + i, 100.0) for i in range(5)]
    book.add("a", "dcs", slow, NOW)
    assert {e.name: e for e in book.expectations("a")}["EXTEND"].p50 == 100.0


def test_the_fleet_is_every_task_lists_window_each_task_once() -> None:
    """A DCS task listed by its instance and by the task center is one run of the fleet;
    a task list that leaves takes its runs with it."""
    book = ExpectationBook(window=50, max_age=30 * 86400.0)
    shared = Sample("t1", "BindEip", NOW - 100, 20.0)
    book.add("instance:a", "dcs", [shared, Sample("t2", "BindEip", NOW - 90, 40.0)], NOW)
    book.add("center", "dcs", [shared], NOW)
    book.add("instance:b", "dcs", [Sample("t3", "BindEip", NOW - 80, 30.0)], NOW)
    book.add("kafka:c", "kafka", [Sample("t4", "BindEip", NOW - 80, 500.0)], NOW)
    fleet = book.fleet()
    assert fleet[("dcs", "BindEip")] == expectation_of("BindEip", [20.0, 40.0, 30.0])
    assert fleet[("kafka", "BindEip")] == Expectation("BindEip", 500.0, 500.0, 1)
    assert book.drop("instance:a") == {("dcs", "BindEip")}
    assert book.fleet([("dcs", "BindEip")])[("dcs", "BindEip")] == expectation_of(
        "BindEip", [20.0, 30.0]
    )  # t1 stays: the task center still lists it
    book.drop("center")
    book.drop("instance:b")
    assert book.fleet([("dcs", "BindEip")]) == {("dcs", "BindEip"): None}


def test_fallback_order_own_then_fleet_then_static_with_a_floor() -> None:
    own = Expectation("EXTEND", 3000.0, 4800.0, MIN_RUNS)
    thin = Expectation("EXTEND", 3000.0, 4800.0, MIN_RUNS - 1)
    fleet = Expectation("EXTEND", 600.0, 1200.0, 40)
    fast = Expectation("BindEip", 10.0, 30.0, 25)
    assert stuck_threshold(own, fleet).basis == "task_list"
    assert stuck_threshold(own, fleet).seconds == 3 * 4800.0
    assert stuck_threshold(thin, fleet).basis == "fleet"
    assert stuck_threshold(thin, fleet).seconds == 3 * 1200.0
    assert stuck_threshold(None, fleet).usual == fleet
    assert stuck_threshold(thin, None).basis == "default"
    assert stuck_threshold(thin, thin).seconds == STATIC_DEFAULT
    # A 30-second kind is not stuck at 90 s: the floor.
    assert stuck_threshold(fast, None).seconds == STUCK_FLOOR
    assert STUCK_FLOOR < 300  # and is stuck by 5 minutes


def test_merge_learns_from_successful_runs_only_the_baseline_too() -> None:
    """Every finished SUCCESS with both timestamps is a run, baseline included (an
    expectation is not a count); FAILED, CANCELLED and undated runs are not."""
    tasks = [
        Task("ok", "EXTEND", "SUCCESS", NOW - 900, NOW - 300, "", ""),
        Task("failed", "EXTEND", "FAILED", NOW - 900, NOW - 10, "", ""),
        Task("cancelled", "EXTEND", "CANCELLED", NOW - 900, NOW - 10, "", ""),
        Task("undated", "EXTEND", "SUCCESS", NOW - 900, None, "", ""),
        Task("running", "EXTEND", "EXECUTING", NOW - 900, None, "", ""),
    ]
    baseline = merge(
        _target(),
        TaskListState(None, None, None, {}, {}),
        tasks,
        since=NOW - 86400,
        now=NOW,
        poll_started=NOW - 1,
        config=CONFIG,
    )
    assert baseline.counted == 0
    assert baseline.commit.samples == [Sample("ok", "EXTEND", NOW - 300, 600.0)]
    # Seen again: not a new run.
    again = merge(
        _target(),
        baseline.state,
        tasks,
        since=NOW - 86400,
        now=NOW + 60,
        poll_started=NOW + 59,
        config=CONFIG,
    )
    assert again.commit.samples == []
