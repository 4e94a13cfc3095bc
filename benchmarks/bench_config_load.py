"""How long a big configuration takes to load and validate (issue 8: start in under a second).

Writes a file of N instances (spread over 10 targets, with `${VAR}` credentials and a name
each) and times `load_config` on it, best of a few runs, with libyaml's parser when PyYAML
has it (the default) and with the pure-Python one.

    python benchmarks/bench_config_load.py                  # 10,000 instances
    python benchmarks/bench_config_load.py --instances 50000 --runs 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.config import load_config, yamlevents  # noqa: E402

SERVICES = ("dcs", "kafka", "rabbitmq", "rocketmq")


def generate(instances: int, targets: int = 10) -> str:
    """A configuration of `instances` instances over `targets` targets."""
    lines = [
        "poll_interval: 60s",
        "lookback: 24h",
        "state_path: /tmp/bench-config.db",
        "credentials:",
        "  access_key: ${BENCH_AK}",
        "  secret_key: ${BENCH_SK}",
        "targets:",
    ]
    per_target = -(-instances // targets)
    for t in range(targets):
        lines += [
            f"  - region: region-{t}",
            f"    project_id: p{uuid.UUID(int=t).hex}",
            "    task_center: true",
            "    instances:",
        ]
        for i in range(t * per_target, min(instances, (t + 1) * per_target)):
            service = SERVICES[i % len(SERVICES)]
            lines.append(
                f"      - {{service: {service}, id: {uuid.UUID(int=i)}, name: {service}-{i}}}"
            )
    return "\n".join(lines) + "\n"


def best_of(path: Path, runs: int) -> float:
    env = {"BENCH_AK": "AKBENCH", "BENCH_SK": "bench-secret"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        loaded = load_config(path, env=env)
        times.append(time.perf_counter() - start)
    assert sum(len(t.instances) for t in loaded.targets) > 0
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yml"
        path.write_text(generate(args.instances))
        size = path.stat().st_size
        print(f"{args.instances:,} instances, {size / 1e6:.1f} MB, best of {args.runs}:")
        fast = best_of(path, args.runs)
        parser_name = getattr(yamlevents._Parser, "__name__", "?")
        print(f"  load_config ({parser_name}): {fast:.3f} s")
        if yamlevents._Parser is not yaml.SafeLoader:
            yamlevents._Parser = yaml.SafeLoader
            slow = best_of(path, max(1, args.runs // 2))
            print(f"  load_config (SafeLoader, pure Python): {slow:.3f} s")


if __name__ == "__main__":
    main()
