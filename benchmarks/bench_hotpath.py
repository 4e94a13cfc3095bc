"""The poll hot path side by side: the official SDK, the exporter's `--once` and its daemon.

In one run, over HTTP/1.1 keep-alive and then over TLS (a private CA), against the simulator
in its own process (N DCS instances, 8 finished tasks each, a fixed latency per request,
served on two endpoints, half the lists each, `http: {requests_per_second: 1000, burst: 100,
max_concurrency: 64}`):

- the official SDK (`huaweicloudsdkdcs`), one list after the other (over the first
  --sdk-sequential lists, scaled to N) and with 64 threads (every list): wall and CPU;
- the exporter's `--once` on a fresh state file (baselines), then --once-runs times again
  (quiet polls): wall and CPU, start-up included, the median against the bound
  N x latency / 64;
- the exporter as a daemon polling N lists at 100 polls/s, then every 60 s: CPU per quiet
  poll (CPU time over a window / task-list requests in it) and the share of a core;
- on the 60 s daemon: `/metrics` back to back next to `prometheus_client.generate_latest`
  rendering the very same series, then 200 concurrent keep-alive scrapers
  (benchmarks/bench_scrapers.py's load) for --scrape-seconds; RSS.

    python benchmarks/bench_hotpath.py                       # 1,000 task lists, HTTP and TLS
    python benchmarks/bench_hotpath.py --size 10000 --transports tls --sdk-sequential 0
    python benchmarks/bench_hotpath.py --profile /tmp/prof   # py-spy raw profiles of the daemon

Figures vary with the machine; the README's sizing section quotes runs of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkdcs.v2 import DcsClient, ListBackgroundTaskRequest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scale import _once, _Parsed, _proc_cpu, _rss_mib  # noqa: E402

from exporter.simulator import Simulator  # noqa: E402
from exporter.simulator.fleet import DEMO_ACCESS_KEY, DEMO_PROJECT, DEMO_REGION  # noqa: E402
from exporter.simulator.world import Fault, World  # noqa: E402
from tests.certs import make_ca_and_server_cert  # noqa: E402

TASKS_PER_LIST = 8
CONCURRENCY = 64
ENDPOINTS = 2


# -- the simulator's process -------------------------------------------------------------------


def serve(size: int, latency: float, out: Path, tls_dir: Path | None) -> None:
    """Build a DCS fleet, serve it (HTTPS with `tls_dir`'s certificate), describe it in `out`."""
    secret = secrets.token_hex(20)
    world = World(seed=size, region=DEMO_REGION)
    world.add_credentials(DEMO_ACCESS_KEY, secret)
    now = time.time()
    for i in range(size):
        inst = world.add_instance("dcs", f"inst-{i:05d}", DEMO_PROJECT)
        for j in range(TASKS_PER_LIST):
            created = now - 80000 + j * 9000 + i % 1000
            world.add_task(inst.id, "modify", "SUCCESS", created, created + 30 + j)
    if latency:
        world.add_fault(Fault(kind="latency", latency=latency))
    tls = (str(tls_dir / "server.pem"), str(tls_dir / "server-key.pem")) if tls_dir else None
    # Two endpoints (as two regions would be), half the lists each: the exporter gives one
    # endpoint at most half of http.max_concurrency, the SDK script's threads share both.
    sims = [Simulator(world, tls=tls).start() for _ in range(ENDPOINTS)]
    instances = list(world.instances.values())
    info = {
        "secret": secret,
        "endpoints": [
            {
                "url": sim.dcs_url,
                "instances": [{"id": i.id, "name": i.name} for i in instances[n::ENDPOINTS]],
            }
            for n, sim in enumerate(sims)
        ],
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.rename(out)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for sim in sims:
        sim.stop()


def start_simulator(
    size: int, latency: float, info_path: Path, tls_dir: Path | None
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """`serve` in a process of its own, once it has described its fleet in `info_path`."""
    sim = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(size), "--latency", str(latency)]
        + ["--out", str(info_path)]
        + (["--tls-dir", str(tls_dir)] if tls_dir else []),
        cwd=ROOT,
    )
    try:
        while not info_path.exists():
            if sim.poll() is not None:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.1)
        info: dict[str, Any] = json.loads(info_path.read_text())
    except BaseException:
        sim.terminate()
        raise
    return sim, info


def _config(info: dict[str, Any], workdir: Path, interval: str, ca: Path | None) -> Path:
    http: dict[str, Any] = {
        "requests_per_second": 1000,
        "burst": 100,
        "max_concurrency": CONCURRENCY,
    }
    if ca is not None:
        http["ca_file"] = str(ca)
    doc = {
        "poll_interval": interval,
        "lookback": "24h",
        # One state file per transport: the TLS run's first `--once` is a first poll too.
        "state_path": str(workdir / f"state-{'tls' if ca else 'http'}-{interval}.db"),
        "credentials": {"access_key": DEMO_ACCESS_KEY, "secret_key": info["secret"]},
        "http": http,
        "targets": [
            {
                "region": DEMO_REGION,
                "project_id": DEMO_PROJECT,
                "endpoints": {"dcs": e["url"], "dms": e["url"]},
                "instances": [
                    {"service": "dcs", "id": i["id"], "name": i["name"]} for i in e["instances"]
                ],
            }
            for e in info["endpoints"]
        ],
    }
    path = workdir / f"config-{'tls' if ca else 'http'}-{interval}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


# -- the official SDK --------------------------------------------------------------------------


def _sdk_client(info: dict[str, Any], url: str, ca: Path | None) -> Any:
    config = HttpConfig.get_default_config()
    if ca is not None:
        config.ssl_ca_cert = str(ca)
    return (
        DcsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(DEMO_ACCESS_KEY, info["secret"], DEMO_PROJECT))
        .with_endpoints([url])
        .build()
    )


def _sdk_list(client: Any, instance_id: str, start: str) -> int:
    """One whole task list through the SDK, paged as a careful script would."""
    offset, seen = 0, 0
    while True:
        reply = client.list_background_task(
            ListBackgroundTaskRequest(
                instance_id=instance_id, offset=offset, limit=100, start_time=start
            )
        )
        tasks = reply.tasks or []
        seen += len(tasks)
        if len(tasks) < 100:
            return seen
        offset += len(tasks)


def sdk_runs(
    info: dict[str, Any], ca: Path | None, sequential: int
) -> tuple[float | None, float, float]:
    """(sequential wall scaled to every list, 64-thread wall, 64-thread CPU per list)."""
    start = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() - 86400))
    # Every list with its endpoint, the endpoints taking turns.
    ids = [(e["url"], i["id"]) for e in info["endpoints"] for i in e["instances"]]
    ids.sort(key=lambda pair: pair[1])
    local = threading.local()

    def one(pair: tuple[str, str]) -> int:
        url, instance_id = pair
        clients = local.__dict__.setdefault("clients", {})
        client = clients.get(url)
        if client is None:
            client = clients[url] = _sdk_client(info, url, ca)
        return _sdk_list(client, instance_id, start)

    seq = None
    if sequential:
        t0 = time.monotonic()
        for pair in ids[:sequential]:
            one(pair)
        seq = (time.monotonic() - t0) * len(ids) / min(sequential, len(ids))
    cpu0, t0 = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        found = sum(pool.map(one, ids))
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    if found != len(ids) * TASKS_PER_LIST:
        raise RuntimeError(f"the SDK read {found} tasks, not {len(ids) * TASKS_PER_LIST}")
    return seq, wall, cpu / len(ids)


# -- the exporter --------------------------------------------------------------------------------


def _get(url: str, gzip_ok: bool = False) -> tuple[int, bytes]:
    req = urllib.request.Request(  # noqa: S310 - loopback
        url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback
        return resp.status, resp.read()


def _requests(base: str) -> float:
    _, body = _get(base + "/metrics?name[]=huaweicloud_task_api_requests_total")
    return sum(
        float(s.value) for f in text_string_to_metric_families(body.decode()) for s in f.samples
    )


class Daemon:
    def __init__(self, config: Path, workdir: Path) -> None:
        self.log_path = workdir / f"{config.stem}.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                f"--config.file={config}",
                "--web.listen-address=127.0.0.1:0",
            ],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        port = None
        while port is None:
            if time.monotonic() - started > 60 or self.proc.poll() is not None:
                raise RuntimeError("the exporter did not start: " + self.log_path.read_text())
            time.sleep(0.1)
            m = re.search(r"msg=listening .*port=(\d+)", self.log_path.read_text())
            port = int(m.group(1)) if m else None
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if _get(self.base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - started > 600:
                raise RuntimeError("not ready after 600s")
            time.sleep(0.5)
        time.sleep(2)  # the first round's stragglers

    def quiet_polls(self, window: float, profile: Path | None) -> tuple[float, float]:
        """CPU ms per task-list request and % of a core, over `window` seconds unscraped."""
        spy = None
        # py-spy from PATH or beside this interpreter (a venv's bin, not on PATH).
        py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=Path(sys.executable).parent)
        if profile is not None and py_spy:
            spy = subprocess.Popen(
                [
                    *(py_spy, "record", "-r", "200", "-f", "raw", "-o", str(profile)),
                    *("-d", str(int(window)), "--pid", str(self.proc.pid)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        r0, c0, t0 = _requests(self.base), _proc_cpu(self.proc.pid), time.monotonic()
        time.sleep(window)
        r1, c1, t1 = _requests(self.base), _proc_cpu(self.proc.pid), time.monotonic()
        if spy is not None:
            spy.wait(60)
        polls = r1 - r0
        return 1000 * (c1 - c0) / max(polls, 1), 100 * (c1 - c0) / (t1 - t0)

    def scrapes(self, n: int) -> tuple[float, float, float, int]:
        """/metrics p50, gzip p50, generate_latest p50 on the same series (ms), series."""
        plain, gz, client = [], [], []
        body = b""
        for _ in range(n):
            s0 = time.monotonic()
            body = _get(self.base + "/metrics")[1]
            plain.append(time.monotonic() - s0)
        for _ in range(n):
            s0 = time.monotonic()
            _get(self.base + "/metrics", gzip_ok=True)
            gz.append(time.monotonic() - s0)
        families = list(text_string_to_metric_families(body.decode()))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Parsed(families))
        for _ in range(n):
            s0 = time.monotonic()
            generate_latest(registry)
            client.append(time.monotonic() - s0)
        series = sum(len(f.samples) for f in families)
        med = statistics.median
        return 1000 * med(plain), 1000 * med(gz), 1000 * med(client), series

    def scrapers(self, count: int, seconds: float) -> dict[str, Any]:
        load = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "bench_scrapers.py"),
                f"--load=127.0.0.1:{self.port}",
                f"--scrapers={count}",
                f"--seconds={seconds}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result: dict[str, Any] = json.loads(load.stdout)
        return result

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def _skipped(base: str) -> float:
    body = _get(base + "/metrics?name[]=huaweicloud_task_polls_skipped_total")[1]
    return sum(s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples)


def run(transport: str, args: argparse.Namespace, workdir: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    ca = None
    tls_dir = None
    if transport == "tls":
        tls_dir = workdir / "pki"
        ca, _, _ = make_ca_and_server_cert(tls_dir, ["localhost"], ["127.0.0.1"])
    sim, info = start_simulator(args.size, args.latency, workdir / f"sim-{transport}.json", tls_dir)
    try:
        bound = args.size * args.latency / CONCURRENCY
        if args.sdk:
            seq, wall, cpu = sdk_runs(info, ca, args.sdk_sequential)
            if seq is not None:
                out.append(("SDK sequential s", f"{seq:.1f}"))
            out.append(("SDK 64 threads s", f"{wall:.2f}"))
            out.append(("SDK 64 threads CPU ms/list", f"{1000 * cpu:.2f}"))
        once_config = _config(info, workdir, "60s", ca)
        first, first_cpu, rc1 = _once(once_config)
        # The median of several: one run on a small VM varies by tens of percent from one
        # minute to the next (benchmarks/bench_once_ab.py compares checkouts that way).
        runs = [_once(once_config) for _ in range(args.once_runs)]
        quiet = statistics.median(w for w, _, _ in runs)
        quiet_cpu = statistics.median(c for _, c, _ in runs)
        rc2 = ",".join(sorted({str(rc) for _, _, rc in runs}))
        # Not 0: some task list was not polled (at 10,000 lists the simulator's pace leaves
        # polls waiting past the interval for a slot); the daemon figures still follow.
        out.append(("--once exit codes (first, quiet)", f"{rc1}, {rc2}"))
        out.append(("--once first s (CPU s)", f"{first:.2f} ({first_cpu:.2f})"))
        out.append(
            (
                f"--once quiet s (CPU s), median of {len(runs)} (min)",
                f"{quiet:.2f} ({quiet_cpu:.2f}) ({min(w for w, _, _ in runs):.2f})",
            )
        )
        out.append(("bound s", f"{bound:.2f}"))
        if args.sdk:
            out.append(("SDK 64 threads / --once quiet", f"{wall / quiet:.2f}"))
        fast = f"{max(1, round(args.size / 100))}s"
        for interval in (fast, "60s") if args.fast_daemon else ("60s",):
            daemon = Daemon(_config(info, workdir, interval, ca), workdir)
            try:
                profile = None
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    profile = args.profile / f"daemon-{transport}-{args.size}-{interval}.txt"
                ms, share = daemon.quiet_polls(args.window, profile)
                rate = "100 polls/s" if interval == fast else "every 60 s"
                out.append((f"CPU ms/quiet poll, {rate}", f"{ms:.3f}"))
                out.append((f"polling CPU % of a core, {rate}", f"{share:.1f}"))
                if interval == "60s":
                    rss_polling, _ = _rss_mib(daemon.proc.pid)
                    p50, gz50, client50, series = daemon.scrapes(args.scrapes)
                    out.append(("series", str(series)))
                    out.append(("/metrics p50 ms (gzip)", f"{p50:.1f} ({gz50:.1f})"))
                    out.append(("generate_latest p50 ms", f"{client50:.0f}"))
                    out.append(("render ratio", f"{p50 / client50:.3f}"))
                    if args.scrapers:
                        load = daemon.scrapers(args.scrapers, args.scrape_seconds)
                        times = sorted(t for _, t in load["latencies"])
                        ok = sum(1 for s, _ in load["latencies"] if s == 200)
                        out.append(
                            (
                                f"{args.scrapers} scrapers: done, 200 OK, errors",
                                f"{len(times)}, {ok}, {load['errors'] or 0}",
                            )
                        )
                        out.append(
                            (
                                f"{args.scrapers} scrapers p50 / p99 ms",
                                f"{1000 * times[len(times) // 2]:.0f} / "
                                f"{1000 * times[int(len(times) * 0.99)]:.0f}",
                            )
                        )
                    rss, peak = _rss_mib(daemon.proc.pid)
                    out.append(
                        (
                            "RSS polling / after scrapes / peak MiB",
                            f"{rss_polling:.0f} / {rss:.0f} / {peak:.0f}",
                        )
                    )
                    out.append(("polls skipped", f"{_skipped(daemon.base):.0f}"))
            finally:
                daemon.stop()
    finally:
        sim.terminate()
        sim.wait(30)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=1000, help="task lists (DCS instances)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--transports", default="http,tls")
    parser.add_argument("--no-sdk", dest="sdk", action="store_false")
    parser.add_argument(
        "--sdk-sequential", type=int, default=100, help="lists read one by one (scaled to all)"
    )
    parser.add_argument(
        "--no-fast-daemon",
        dest="fast_daemon",
        action="store_false",
        help="skip the daemon at 100 polls/s (it waits one interval, size/100 s, to be ready)",
    )
    parser.add_argument("--once-runs", type=int, default=5, help="quiet --once runs (median)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of polling measured")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--scrapers", type=int, default=200)
    parser.add_argument("--scrape-seconds", type=float, default=10.0)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw output directory")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.latency, args.out, args.tls_dir)
        return 0
    print(
        f"{args.size} task lists, latency {args.latency * 1000:.0f} ms, max_concurrency "
        f"{CONCURRENCY}, {args.window:.0f}s polling windows; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as tmp:
        results = {t: run(t, args, Path(tmp)) for t in args.transports.split(",")}
    names = [k for k, _ in next(iter(results.values()))]
    print("| figure | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for i, name in enumerate(names):
        print(f"| {name} | " + " | ".join(r[i][1] for r in results.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
