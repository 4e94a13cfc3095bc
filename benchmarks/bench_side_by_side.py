"""CPU per quiet poll of two checkouts side by side: the same simulator, the same windows.

On a shared 2-CPU VM the speed drifts by ±15 % over minutes, so one run after the other
cannot tell a 5 % change. Here a baseline checkout (say `git worktree add /tmp/base HEAD~1`)
and this one poll the same simulated fleet at once, and each window's ratio compares them
under the same conditions. Two identical checkouts give about 0.98 to 1.0.

    python benchmarks/bench_side_by_side.py --baseline /tmp/base
    python benchmarks/bench_side_by_side.py --baseline /tmp/base --size 10000 --interval 60s

Each daemon runs `python -m exporter` from its checkout (the one on `sys.path` first), with
a state file of its own; the figures are CPU time over a window (from /proc) divided by the
task-list requests in it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LATENCY = 0.05  # seconds per request, as in bench_hotpath
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_hotpath import _config, _requests, start_simulator  # noqa: E402
from bench_scale import _proc_cpu  # noqa: E402

from tests.certs import make_ca_and_server_cert  # noqa: E402


def _daemon(checkout: Path, config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "exporter"),
                *(f"--config.file={config}", "--web.listen-address=127.0.0.1:0"),
            ],
            cwd=checkout,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    started = time.monotonic()
    while True:
        m = re.search(r"msg=listening .*port=(\d+)", log.read_text())
        if m:
            return proc, f"http://127.0.0.1:{m.group(1)}"
        if proc.poll() is not None or time.monotonic() - started > 120:
            raise RuntimeError(f"{checkout}: the exporter did not start: {log.read_text()}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, required=True, help="the checkout to compare")
    parser.add_argument("--size", type=int, default=1000, help="task lists")
    parser.add_argument("--interval", default="10s", help="poll interval")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--window", type=float, default=15.0, help="seconds per window")
    parser.add_argument("--warm", type=float, default=None, help="seconds before measuring")
    parser.add_argument("--plain", action="store_true", help="HTTP instead of TLS")
    args = parser.parse_args()
    seconds = float(args.interval.rstrip("s"))
    warm = args.warm if args.warm is not None else 3 * seconds
    with tempfile.TemporaryDirectory(prefix="bench-side-") as tmp:
        work = Path(tmp)
        ca = None
        if not args.plain:
            ca, _, _ = make_ca_and_server_cert(work / "pki", ["localhost"], ["127.0.0.1"])
        sim, info = start_simulator(
            args.size, LATENCY, work / "sim.json", None if args.plain else work / "pki"
        )
        daemons: list[tuple[str, subprocess.Popen[bytes], str]] = []
        try:
            for name, checkout in (("baseline", args.baseline.resolve()), ("this", ROOT)):
                own = work / name
                own.mkdir()
                config = _config(info, own, args.interval, ca)
                proc, base = _daemon(checkout, config, own / "exporter.log")
                daemons.append((name, proc, base))
            print(
                f"{args.size} task lists every {args.interval}, {'HTTP' if args.plain else 'TLS'}"
                f"; baseline {args.baseline}; warming up {warm:.0f}s",
                flush=True,
            )
            time.sleep(warm)
            ratios = []
            print("| window | baseline ms/poll | this ms/poll | this / baseline |")
            print("|---|---|---|---|")
            for i in range(args.windows):
                r0 = [_requests(b) for _, _, b in daemons]
                c0 = [_proc_cpu(p.pid) for _, p, _ in daemons]
                time.sleep(args.window)
                r1 = [_requests(b) for _, _, b in daemons]
                c1 = [_proc_cpu(p.pid) for _, p, _ in daemons]
                ms = [1000 * (c1[k] - c0[k]) / max(1.0, r1[k] - r0[k]) for k in range(2)]
                ratios.append(ms[1] / ms[0])
                print(f"| {i} | {ms[0]:.3f} | {ms[1]:.3f} | {ratios[-1]:.3f} |", flush=True)
            print(f"median this / baseline: {statistics.median(ratios):.3f}")
        finally:
            for _, proc, _ in daemons:
                proc.terminate()
                proc.wait(60)
            sim.terminate()
            sim.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
