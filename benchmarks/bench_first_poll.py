"""The first poll (every task list's baseline) in CPU per task, and the memory it leaves.

The simulator serves a generated fleet from another process (so its CPU is not counted),
with `--tasks` finished tasks in each task list's window, DCS and DMS names and change
details as the simulator makes them; this process runs one `Exporter.once()`, as `--once`
does, and prints its CPU time per task and its peak RSS. Profile it with py-spy:

    python benchmarks/bench_first_poll.py --lists 1000 --tasks 100
    py-spy record -r 200 -f raw -o /tmp/first.txt -- python benchmarks/bench_first_poll.py

Figures vary with the machine; the README's sizing section quotes a run of this script.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.app import Exporter  # noqa: E402
from exporter.config import load_config  # noqa: E402
from exporter.simulator import Simulator  # noqa: E402
from exporter.simulator.fleet import DEMO_ACCESS_KEY, demo_config_text, generated_world  # noqa: E402

DCS_NAMES = ("modify", "EXTEND", "RESTART", "BindEip")
DMS_NAMES = ("modifyAutoTopic", "changeRetentionPolicy", "restart", "bindInstancePublicIp")


def serve(lists: int, tasks: int, secret: str, config: Path) -> None:
    """The simulator's process: the fleet, its tasks, the exporter's configuration."""
    world = generated_world(lists, secret, seed=lists)
    now = time.time()
    for inst in list(world.instances.values()):
        names = DCS_NAMES if inst.service == "dcs" else DMS_NAMES
        for j in range(tasks):
            created = now - 80000 + j * (72000 / tasks)
            status = "FAILED" if j % 5 == 0 else "SUCCESS"
            world.add_task(inst.id, names[j % 4], status, created, created + 30 + j)
    sim = Simulator(world).start()
    text = demo_config_text(
        world,
        sim.dcs_url,
        sim.dms_url,
        DEMO_ACCESS_KEY,
        secret,
        "1h",
        str(config.with_suffix(".db")),
    )
    doc = yaml.safe_load(text)
    doc["http"] = {"requests_per_second": 1000, "burst": 1000, "max_concurrency": 16}
    doc["http"]["timeout"] = "60s"
    for target in doc["targets"]:
        target["task_center"] = False  # the instance lists only: one task list per instance
    partial = config.with_suffix(".partial")
    partial.write_text(yaml.safe_dump(doc))
    partial.replace(config)
    while True:
        time.sleep(3600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lists", type=int, default=1000, help="task lists (instances)")
    parser.add_argument("--tasks", type=int, default=100, help="finished tasks per task list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yml"
        sim = multiprocessing.Process(
            target=serve, args=(args.lists, args.tasks, secrets.token_hex(20), config), daemon=True
        )
        sim.start()
        while not config.exists():
            time.sleep(0.1)
        exporter = Exporter(load_config(config))
        try:
            cpu, wall = time.process_time(), time.monotonic()
            ok = asyncio.run(exporter.once())
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        finally:
            exporter.close()
            sim.kill()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = args.lists * args.tasks
    print(
        f"{args.lists} task lists x {args.tasks} tasks: all up {ok}, CPU {cpu:.2f} s "
        f"({cpu / total * 1e6:.1f} µs per task), wall {wall:.1f} s, peak RSS {peak:.0f} MiB"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
