"""What the expected durations cost: the book (`exporter.core.expectations`) at fleet scale.

In-process, no network: N task lists of 4 services, each with `--names` task names of a full
window of runs. Prints the time to load them (what a start does, from the state file's
rows), the time of one poll's new run (its window, the fleet pool's insertion, the task
list's and the fleet's quantiles, as the poller asks for them), of a quiet poll (no new
run), and the fleet's size.

    python benchmarks/bench_expectations.py                    # 1,000 and 10,000 task lists
    python benchmarks/bench_expectations.py --sizes 2000 --names 8
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from exporter.core.expectations import DEFAULT_WINDOW, ExpectationBook, Sample

SERVICES = ("dcs", "kafka", "rabbitmq", "rocketmq")
NOW = 1_800_000_000.0


def _rss() -> int:
    """Resident memory of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(size: int, names: int, polls: int) -> None:
    rng = random.Random(size)
    rows = {
        f"list-{i}": [
            Sample(f"{i}-{n}-{k}", f"task{n}", NOW - 86400 * rng.random() * 20, rng.uniform(5, 900))
            for n in range(names)
            for k in range(DEFAULT_WINDOW)
        ]
        for i in range(size)
    }
    rss = _rss()
    book = ExpectationBook()
    started = time.perf_counter()
    for i, (key, samples) in enumerate(rows.items()):
        book.add(key, SERVICES[i % 4], samples, NOW)
        book.expectations(key)
    load = time.perf_counter() - started
    memory = _rss() - rss
    keys = list(rows)
    new_run, quiet = [], []
    for p in range(polls):
        i = rng.randrange(size)
        run_ = Sample(f"new-{p}", f"task{rng.randrange(names)}", NOW + p, rng.uniform(5, 900))
        t0 = time.perf_counter()
        touched = book.add(keys[i], SERVICES[i % 4], [run_], NOW + p)
        book.expectations(keys[i])
        book.fleet(touched)
        new_run.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        book.add(keys[(i + 1) % size], SERVICES[(i + 1) % 4], [], NOW + p)
        book.expectations(keys[(i + 1) % size])
        quiet.append(time.perf_counter() - t0)
    pool = max(e.samples for e in book.fleet().values() if e is not None)
    print(
        f"{size:>6} task lists x {names} names x {DEFAULT_WINDOW} runs: load {load:.2f} s "
        f"({load / size * 1000:.2f} ms per task list), RSS +{memory / 2**20:.0f} MiB; "
        f"poll with a new run p50 {statistics.median(new_run) * 1e3:.3f} ms "
        f"p99 {sorted(new_run)[int(len(new_run) * 0.99)] * 1e3:.3f} ms; "
        f"quiet poll p50 {statistics.median(quiet) * 1e6:.1f} us; "
        f"largest fleet pool {pool} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--names", type=int, default=5)
    parser.add_argument("--polls", type=int, default=2000)
    args = parser.parse_args()
    for size in args.sizes:
        run(size, args.names, args.polls)


if __name__ == "__main__":
    main()
