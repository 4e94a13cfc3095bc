"""Fleet scale side by side: poll CPU, /metrics against prometheus_client, memory, --once.

For each fleet size, in one run on one machine:
- the simulator runs in another process (generated fleet, 8 finished tasks per task list,
  a fixed latency on every task-list request);
- `--once` twice on one state file: the first takes the baselines, the second is all quiet
  polls; wall time against the bound task lists x latency / max_concurrency;
- the exporter as a daemon: after its first round, a window without scrapes gives the CPU
  per quiet task-list poll (CPU time / task-list requests) and the CPU share of polling;
- then back-to-back scrapes of `/metrics` (p50, p99; also with gzip) next to
  `prometheus_client.generate_latest` rendering the very same series in this process;
- series count, exposition size, RSS, every target up, polls skipped.

    python benchmarks/bench_scale.py                        # 1,000 and 10,000 task lists
    python benchmarks/bench_scale.py --sizes 1000 --window 30

Figures vary with the machine; the README's sizing section and the fleet-scale issue's
closing note quote runs of this script.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.simulator import Simulator  # noqa: E402
from exporter.simulator.fleet import DEMO_ACCESS_KEY, DEMO_PROJECT, generated_world  # noqa: E402
from exporter.simulator.world import Fault  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
TASKS_PER_LIST = 8


def serve_simulator(
    size: int, latency: float, out: Path, concurrency: int, interval: str, tasks: int
) -> None:
    """The simulator's process: build the fleet, write the exporter's config, serve."""
    secret = secrets.token_hex(20)
    world = generated_world(size, secret, seed=size)
    now = time.time()
    spacing = 72000 / tasks  # every task within the 24h lookback
    for i, inst in enumerate(list(world.instances.values())):
        for j in range(tasks):
            created = now - 80000 + j * spacing + i % 1000
            world.add_task(
                inst.id,
                "modify" if inst.service == "dcs" else "restart",
                "SUCCESS",
                created,
                created + 30 + j,
            )
    if latency:
        world.add_fault(Fault(kind="latency", latency=latency))
    sim = Simulator(world).start()
    config = {
        "poll_interval": interval,
        "lookback": "24h",
        "state_path": str(out.with_suffix(".db")),
        "credentials": {"access_key": DEMO_ACCESS_KEY, "secret_key": secret},
        "http": {"requests_per_second": 1000, "burst": 100, "max_concurrency": concurrency},
        "targets": [
            {
                "region": world.region,
                "project_id": DEMO_PROJECT,
                "endpoints": {"dcs": sim.dcs_url, "dms": sim.dms_url},
                "instances": [
                    {"service": i.service, "id": i.id, "name": i.name}
                    for i in world.instances.values()
                ],
            }
        ],
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config))
    tmp.rename(out)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    sim.stop()


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _rss_mib(pid: int) -> tuple[float, float]:
    """Current and peak resident memory."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _get(url: str, gzip_ok: bool = False, timeout: float = 60) -> tuple[int, bytes]:
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback
        return resp.status, resp.read()


def _once(config: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and exit code of one `--once` (output discarded)."""
    started = time.monotonic()
    with config.with_suffix(".once.log").open("w") as log:  # the reason, should it fail
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", f"--config.file={config}", "--once"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


class _Parsed(Collector):
    """The families of a scraped exposition, for prometheus_client to render again."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


@dataclass
class Row:
    size: int
    once_first_s: float
    once_quiet_s: float
    once_quiet_cpu_s: float
    bound_s: float
    cpu_ms_per_poll: float
    polls_per_s: float
    poll_cpu_percent: float
    scrape_p50_ms: float
    scrape_p99_ms: float
    gzip_p50_ms: float
    client_p50_ms: float
    cpu_ms_per_scrape: float
    series: int
    mib: float
    rss_mib: float
    rss_polling_mib: float
    rss_peak_mib: float
    all_up: bool
    skipped: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(size: int, args: argparse.Namespace, workdir: Path) -> Row:
    config = workdir / f"config-{size}.yml"
    sim = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-simulator",
            str(size),
            "--latency",
            str(args.latency),
            "--out",
            str(config),
            "--concurrency",
            str(args.concurrency),
            "--poll-interval",
            args.poll_interval,
            "--tasks-per-list",
            str(args.tasks_per_list),
        ],
        cwd=ROOT,
    )
    try:
        while not config.exists():
            if sim.poll() is not None:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.1)
        bound = size * args.latency / args.concurrency
        first, _, rc1 = _once(config)
        quiet, quiet_cpu, rc2 = _once(config)
        if rc1 or rc2:
            failed = [
                line
                for line in config.with_suffix(".once.log").read_text().splitlines()
                if "level=warn" in line or "level=error" in line
            ]
            raise RuntimeError(f"--once failed ({rc1}, {rc2}): " + "\n".join(failed[:5]))
        return _daemon(size, config, workdir, args, first, quiet, quiet_cpu, bound)
    finally:
        sim.terminate()
        sim.wait(30)


def _samples(body: bytes) -> list[Any]:
    return [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]


def _daemon(
    size: int,
    config: Path,
    workdir: Path,
    args: argparse.Namespace,
    first: float,
    quiet: float,
    quiet_cpu: float,
    bound: float,
) -> Row:
    log = (workdir / f"exporter-{size}.log").open("w")
    proc = subprocess.Popen(
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
    try:
        started = time.monotonic()
        port = None
        while port is None:
            if time.monotonic() - started > 120 or proc.poll() is not None:
                raise RuntimeError("the exporter did not start")
            time.sleep(0.1)
            m = re.search(r"msg=listening .*port=(\d+)", (workdir / log.name).read_text())
            port = int(m.group(1)) if m else None
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if _get(base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - started > 600:
                raise RuntimeError("not ready after 600s")
            time.sleep(0.5)

        def requests() -> float:
            return sum(
                float(s.value)
                for s in _samples(
                    _get(base + "/metrics?name[]=huaweicloud_task_api_requests_total")[1]
                )
            )

        # Polling alone: no scrapes in the window, but the two that count requests.
        r0, c0, t0 = requests(), _proc_cpu(proc.pid), time.monotonic()
        time.sleep(args.window)
        r1, c1, t1 = requests(), _proc_cpu(proc.pid), time.monotonic()
        rss_polling, _ = _rss_mib(proc.pid)
        polls = r1 - r0
        # Scrapes back to back.
        plain: list[float] = []
        body = b""
        c2 = _proc_cpu(proc.pid)
        for _ in range(args.scrapes):
            s0 = time.monotonic()
            _, body = _get(base + "/metrics")
            plain.append((time.monotonic() - s0) * 1000)
        c3 = _proc_cpu(proc.pid)
        gz = []
        for _ in range(args.scrapes):
            s0 = time.monotonic()
            _get(base + "/metrics", gzip_ok=True)
            gz.append((time.monotonic() - s0) * 1000)
        rss, peak = _rss_mib(proc.pid)
        families = list(text_string_to_metric_families(body.decode()))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Parsed(families))
        client = []
        for _ in range(args.scrapes):
            s0 = time.monotonic()
            generate_latest(registry)
            client.append((time.monotonic() - s0) * 1000)
        samples = [s for f in families for s in f.samples]
        ups = [s.value for s in samples if s.name == "huaweicloud_task_up"]
        skipped = sum(s.value for s in samples if s.name == "huaweicloud_task_polls_skipped_total")
        return Row(
            size=size,
            once_first_s=first,
            once_quiet_s=quiet,
            once_quiet_cpu_s=quiet_cpu,
            bound_s=bound,
            cpu_ms_per_poll=1000 * (c1 - c0) / polls if polls else float("nan"),
            polls_per_s=polls / (t1 - t0),
            poll_cpu_percent=100 * (c1 - c0) / (t1 - t0),
            scrape_p50_ms=statistics.median(plain),
            scrape_p99_ms=_percentile(plain, 0.99),
            gzip_p50_ms=statistics.median(gz),
            client_p50_ms=statistics.median(client),
            cpu_ms_per_scrape=1000 * (c3 - c2) / args.scrapes,
            series=len(samples),
            mib=len(body) / 2**20,
            rss_mib=rss,
            rss_polling_mib=rss_polling,
            rss_peak_mib=peak,
            all_up=len(ups) == size and all(v == 1 for v in ups),
            skipped=skipped,
        )
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per task-list request")
    parser.add_argument("--concurrency", type=int, default=64, help="http.max_concurrency")
    parser.add_argument("--poll-interval", default="60s")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of polling measured")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument(
        "--tasks-per-list",
        type=int,
        default=TASKS_PER_LIST,
        help=f"finished tasks in each task list's window (default {TASKS_PER_LIST})",
    )
    parser.add_argument("--serve-simulator", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_simulator is not None:
        serve_simulator(
            args.serve_simulator,
            args.latency,
            args.out,
            args.concurrency,
            args.poll_interval,
            args.tasks_per_list,
        )
        return 0
    print(
        f"latency {args.latency * 1000:.0f} ms, max_concurrency {args.concurrency}, "
        f"poll_interval {args.poll_interval}, {args.window:.0f}s polling window, "
        f"{args.scrapes} scrapes, {args.tasks_per_list} tasks per list; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    header = (
        "task lists",
        "--once first s",
        "--once quiet s",
        "--once quiet CPU s",
        "bound s",
        "quiet/bound",
        "CPU ms/quiet poll",
        "polls/s",
        "polling CPU %",
        "/metrics p50 ms",
        "p99 ms",
        "gzip p50 ms",
        "generate_latest p50 ms",
        "ratio",
        "CPU ms/scrape",
        "series",
        "MiB",
        "RSS polling MiB",
        "RSS after scrapes MiB",
        "RSS peak MiB",
        "all up",
        "skipped",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            r = run(size, args, Path(tmp))
            cells = (
                r.size,
                f"{r.once_first_s:.1f}",
                f"{r.once_quiet_s:.1f}",
                f"{r.once_quiet_cpu_s:.1f}",
                f"{r.bound_s:.2f}",
                f"{r.once_quiet_s / r.bound_s:.1f}",
                f"{r.cpu_ms_per_poll:.2f}",
                f"{r.polls_per_s:.1f}",
                f"{r.poll_cpu_percent:.1f}",
                f"{r.scrape_p50_ms:.0f}",
                f"{r.scrape_p99_ms:.0f}",
                f"{r.gzip_p50_ms:.0f}",
                f"{r.client_p50_ms:.0f}",
                f"{r.scrape_p50_ms / r.client_p50_ms:.3f}",
                f"{r.cpu_ms_per_scrape:.0f}",
                r.series,
                f"{r.mib:.1f}",
                f"{r.rss_polling_mib:.0f}",
                f"{r.rss_mib:.0f}",
                f"{r.rss_peak_mib:.0f}",
                "yes" if r.all_up else "NO",
                f"{r.skipped:.0f}",
            )
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
