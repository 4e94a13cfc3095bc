"""How much one exporter replica needs, by fleet size: memory, CPU, poll and scrape times.

Runs the real exporter (a subprocess) against the simulator (in this process) with a
generated fleet of N instances, each with a day of task history and steady churn, and
samples the exporter from the outside: resident memory and CPU time from /proc, poll
durations and series counts from /metrics, scrape latency, state file size.

    python benchmarks/bench_fleet.py                       # 50, 200, 500 and 1000 instances
    python benchmarks/bench_fleet.py --sizes 200 --poll-interval 60s --measure 120

Figures vary with the machine; the README's sizing section quotes a run of this script.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.simulator import Churn, Simulator, World  # noqa: E402
from exporter.simulator.fleet import DEMO_ACCESS_KEY, DEMO_PROJECT, generated_world  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Result:
    instances: int
    ready_s: float
    rss_mib_peak: float
    rss_mib_end: float
    cpu_percent: float
    poll_p50_ms: float
    poll_max_ms: float
    scrape_ms: float
    series: int
    exposition_kib: float
    state_kib: float
    skipped: float
    all_up: bool


def _rss_and_cpu(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    return rss / 2**20, cpu


def _get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def start_exporter(config: Path, log: IO[str]) -> subprocess.Popen[bytes]:
    """The exporter as a daemon on a free loopback port (it logs the port), output to `log`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={config}",
            "--web.listen-address=127.0.0.1:0",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def busy_world(instances: int, secret: str) -> World:
    """A generated fleet, each instance with a day of history (one failure in ten), and
    steady churn from now on."""
    world = generated_world(instances, secret, seed=instances)
    now = time.time()
    for i, inst in enumerate(list(world.instances.values())):
        for j in range(10):
            created = now - 86000 + j * 8000 + i
            world.add_task(
                inst.id,
                "modify" if inst.service == "dcs" else "bindInstancePublicIp",
                "FAILED" if j == 3 else "SUCCESS",
                created,
                created + 30 + j,
            )
    world.start_churn(Churn(mean_interval=600.0, min_duration=2.0, max_duration=60.0))
    return world


def run(
    instances: int, poll_interval: str, measure: float, scrape_every: float, workdir: Path
) -> Result:
    secret = secrets.token_hex(20)
    world = busy_world(instances, secret)
    with Simulator(world) as sim:
        state = workdir / f"state-{instances}.db"
        config = {
            "poll_interval": poll_interval,
            "lookback": "24h",
            "state_path": str(state),
            "credentials": {"access_key": DEMO_ACCESS_KEY, "secret_key": secret},
            "http": {"requests_per_second": 1000, "burst": 100, "max_concurrency": 16},
            "targets": [
                {
                    "region": world.region,
                    "project_id": DEMO_PROJECT,
                    "task_center": True,
                    "endpoints": {"dcs": sim.dcs_url, "dms": sim.dms_url},
                    "instances": [
                        {"service": i.service, "id": i.id, "name": i.name}
                        for i in world.instances.values()
                    ],
                }
            ],
        }
        path = workdir / f"config-{instances}.yml"
        path.write_text(yaml.safe_dump(config))
        log = (workdir / f"exporter-{instances}.log").open("w")
        started = time.monotonic()
        proc = start_exporter(path, log)
        try:
            port = None
            while port is None and time.monotonic() - started < 60:
                time.sleep(0.1)
                m = re.search(r"msg=listening .*port=(\d+)", (workdir / log.name).read_text())
                port = int(m.group(1)) if m else None
            assert port is not None, "the exporter did not start"
            base = f"http://127.0.0.1:{port}"
            while _get(base + "/readyz")[0] != 200:
                if time.monotonic() - started > 300:
                    raise RuntimeError("not ready after 300s")
                time.sleep(0.2)
            ready = time.monotonic() - started
            rss_samples: list[float] = []
            scrape_ms: list[float] = []
            _, cpu0 = _rss_and_cpu(proc.pid)
            t0 = time.monotonic()
            body = b""
            next_scrape = t0
            while time.monotonic() - t0 < measure:
                rss, _ = _rss_and_cpu(proc.pid)
                rss_samples.append(rss)
                if time.monotonic() >= next_scrape:  # as often as Prometheus would scrape
                    s0 = time.monotonic()
                    _, body = _get(base + "/metrics")
                    scrape_ms.append((time.monotonic() - s0) * 1000)
                    next_scrape = s0 + scrape_every
                time.sleep(1.0)
            rss_end, cpu1 = _rss_and_cpu(proc.pid)
            elapsed = time.monotonic() - t0
            families = list(text_string_to_metric_families(body.decode()))
            samples = [s for f in families for s in f.samples]
            polls = [s.value for s in samples if s.name == "huaweicloud_task_poll_duration_seconds"]
            ups = [s.value for s in samples if s.name == "huaweicloud_task_up"]
            skipped = sum(
                s.value for s in samples if s.name == "huaweicloud_task_polls_skipped_total"
            )
            return Result(
                instances=instances,
                ready_s=ready,
                rss_mib_peak=max(rss_samples),
                rss_mib_end=rss_end,
                cpu_percent=100 * (cpu1 - cpu0) / elapsed,
                poll_p50_ms=1000 * statistics.median(polls),
                poll_max_ms=1000 * max(polls),
                scrape_ms=statistics.median(scrape_ms),
                series=len(samples),
                exposition_kib=len(body) / 1024,
                state_kib=sum(
                    p.stat().st_size
                    for p in workdir.glob(f"state-{instances}.db*")
                    if p.suffix != ".lock"
                )
                / 1024,
                skipped=skipped,
                all_up=len(ups) == instances + 1 and all(v == 1 for v in ups),
            )
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="50,200,500,1000")
    parser.add_argument("--poll-interval", default="15s")
    parser.add_argument("--measure", type=float, default=30.0, help="seconds of sampling")
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=15.0,
        help="seconds between scrapes of /metrics while sampling (as Prometheus would)",
    )
    args = parser.parse_args()
    print(
        f"poll_interval={args.poll_interval}, scrape every {args.scrape_interval:g}s, "
        f"{args.measure:.0f}s of sampling after the first poll round, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    header = (
        "instances",
        "ready s",
        "RSS peak MiB",
        "RSS end MiB",
        "CPU % (1 core)",
        "poll p50 ms",
        "poll max ms",
        "scrape ms",
        "series",
        "exposition KiB",
        "state KiB",
        "skipped",
        "all up",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            r = run(size, args.poll_interval, args.measure, args.scrape_interval, Path(tmp))
            row = (
                r.instances,
                f"{r.ready_s:.1f}",
                f"{r.rss_mib_peak:.0f}",
                f"{r.rss_mib_end:.0f}",
                f"{r.cpu_percent:.1f}",
                f"{r.poll_p50_ms:.0f}",
                f"{r.poll_max_ms:.0f}",
                f"{r.scrape_ms:.0f}",
                r.series,
                f"{r.exposition_kib:.0f}",
                f"{r.state_kib:.0f}",
                f"{r.skipped:.0f}",
                "yes" if r.all_up else "NO",
            )
            print("| " + " | ".join(str(c) for c in row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
