"""Many concurrent scrapers against one exporter: are they served, and do polls keep up?

Runs the real exporter (a subprocess) against the simulator (in this process) with a
generated fleet of N task lists, waits until every list was polled once, then runs C
concurrent keep-alive scrapers of /metrics back to back for S seconds from another process
(so their work competes neither with the simulator nor with this process's bookkeeping),
and prints requests done, connection errors, scrape latency and the exporter's skipped
poll slots before and after.

    python benchmarks/bench_scrapers.py                     # 1000 task lists, 200 scrapers, 30 s
    python benchmarks/bench_scrapers.py --task-lists 200 --scrapers 50 --seconds 60

Each scraper sends what Prometheus sends (OpenMetrics preferred, gzip) and gives up on a
scrape after --scrape-timeout seconds (Prometheus's default scrape_timeout is 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_fleet import _get, _rss_and_cpu, busy_world, start_exporter  # noqa: E402

from exporter.simulator import Simulator  # noqa: E402
from exporter.simulator.fleet import DEMO_ACCESS_KEY, DEMO_PROJECT  # noqa: E402

ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


# -- the load (a child process) ------------------------------------------------------------


async def _scrape_once(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
) -> tuple[int, bool]:
    """One GET /metrics on an open connection: (status, whether the server keeps it open)."""
    writer.write(
        f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nAccept: {ACCEPT}\r\n"
        "Accept-Encoding: gzip\r\nUser-Agent: bench-scrapers\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    keep = headers.get("connection", "").lower() != "close" and lines[0].startswith("HTTP/1.1")
    return status, keep


async def _scraper(
    host: str,
    port: int,
    until: float,
    timeout: float,
    latencies: list[tuple[int, float]],
    errors: Counter[str],
) -> None:
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            # One timeout for the connect and the scrape, as Prometheus's scrape_timeout.
            left = timeout - (time.monotonic() - started)
            status, keep = await asyncio.wait_for(_scrape_once(*conn, host), left)
            latencies.append((status, time.monotonic() - started))
            if status != 200:
                errors[f"HTTP {status}"] += 1
            if not keep:
                conn[1].close()
                conn = None
        except TimeoutError:
            errors["timeout"] += 1
        except ConnectionRefusedError:
            errors["refused"] += 1
        except ConnectionResetError:
            errors["reset"] += 1
        except (asyncio.IncompleteReadError, OSError, ValueError) as exc:
            errors[type(exc).__name__] += 1
        else:
            continue
        if conn is not None:
            conn[1].close()
            conn = None
        await asyncio.sleep(0.1)  # as a client would before trying again


async def _load(host: str, port: int, scrapers: int, seconds: float, timeout: float) -> None:
    latencies: list[tuple[int, float]] = []
    errors: Counter[str] = Counter()
    until = time.monotonic() + seconds
    await asyncio.gather(
        *(_scraper(host, port, until, timeout, latencies, errors) for _ in range(scrapers))
    )
    print(json.dumps({"latencies": latencies, "errors": dict(errors)}))


# -- the exporter and the fleet ----------------------------------------------------------------


def _skipped(base: str) -> float | None:
    deadline = time.monotonic() + 120
    status, body = _get(base + "/metrics", timeout=60)
    while status != 200 and time.monotonic() < deadline:  # the load's backlog drains
        time.sleep(1)
        status, body = _get(base + "/metrics", timeout=60)
    if status != 200:
        return None
    return sum(
        s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
        if s.name == "huaweicloud_task_polls_skipped_total"
    )


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    instances = args.task_lists - 1  # and the task center
    secret = secrets.token_hex(20)
    world = busy_world(instances, secret)
    with Simulator(world) as sim:
        config = {
            "poll_interval": args.poll_interval,
            "lookback": "24h",
            "state_path": str(workdir / "state.db"),
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
        path = workdir / "config.yml"
        path.write_text(yaml.safe_dump(config))
        log_path = workdir / "exporter.log"
        started = time.monotonic()
        with log_path.open("w") as log:
            proc = start_exporter(path, log)
            try:
                return _measure(args, proc, log_path, started)
            finally:
                proc.terminate()
                proc.wait(30)


def _measure(
    args: argparse.Namespace, proc: subprocess.Popen[bytes], log_path: Path, started: float
) -> dict[str, Any]:
    port = None
    while port is None and time.monotonic() - started < 60:
        time.sleep(0.1)
        m = re.search(r"msg=listening .*port=(\d+)", log_path.read_text())
        port = int(m.group(1)) if m else None
    if port is None:
        raise RuntimeError("the exporter did not start:\n" + log_path.read_text()[-2000:])
    base = f"http://127.0.0.1:{port}"
    while _get(base + "/readyz")[0] != 200:
        if time.monotonic() - started > 600:
            raise RuntimeError("not ready after 600s")
        time.sleep(0.5)
    time.sleep(5)  # the first round's backlog of polls settles
    skipped_before = _skipped(base)
    _, cpu0 = _rss_and_cpu(proc.pid)
    t0 = time.monotonic()
    load = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            f"127.0.0.1:{port}",
            f"--scrapers={args.scrapers}",
            f"--seconds={args.seconds}",
            f"--scrape-timeout={args.scrape_timeout}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - t0
    rss, cpu1 = _rss_and_cpu(proc.pid)
    skipped_after = _skipped(base)
    result: dict[str, Any] = json.loads(load.stdout)
    result.update(
        skipped_before=skipped_before,
        skipped_after=skipped_after,
        cpu_percent=100 * (cpu1 - cpu0) / elapsed,
        rss_mib=rss,
    )
    return result


def _quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--task-lists", type=int, default=1000)
    parser.add_argument("--scrapers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--poll-interval", default="15s")
    parser.add_argument("--scrape-timeout", type=float, default=10.0)
    parser.add_argument("--load", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        host, _, port = args.load.rpartition(":")
        asyncio.run(_load(host, int(port), args.scrapers, args.seconds, args.scrape_timeout))
        return 0
    print(
        f"{args.task_lists} task lists, poll_interval={args.poll_interval}, "
        f"{args.scrapers} concurrent scrapers back to back for {args.seconds:g}s "
        f"(scrape timeout {args.scrape_timeout:g}s), Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-scrapers-") as tmp:
        r = run(args, Path(tmp))
    answered = sorted(t for _, t in r["latencies"])
    ok = sorted(t for status, t in r["latencies"] if status == 200)
    errors: dict[str, int] = r["errors"]
    connection_errors = sum(n for kind, n in errors.items() if not kind.startswith("HTTP "))
    print(f"requests done:        {len(answered)} ({len(answered) / args.seconds:.1f}/s)")
    print(f"  of which 200 OK:    {len(ok)} ({len(ok) / args.seconds:.1f}/s)")
    print(f"connection errors:    {connection_errors} {errors or ''}")
    print(
        f"scrape latency p50:   {1000 * _quantile(answered, 0.50):.0f} ms "
        f"(200 OK only: {1000 * _quantile(ok, 0.50):.0f} ms)"
    )
    print(
        f"scrape latency p99:   {1000 * _quantile(answered, 0.99):.0f} ms "
        f"(200 OK only: {1000 * _quantile(ok, 0.99):.0f} ms)"
    )
    print(f"polls skipped before: {r['skipped_before']}")
    print(f"polls skipped after:  {r['skipped_after']}")
    print(f"exporter CPU:         {r['cpu_percent']:.0f}% of one core, RSS {r['rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
