"""`--once` of two (or more) checkouts, side by side against one simulator: A/B of a change.

One `--once` on a 2-CPU VM varies by tens of percent from one minute to the next, more than
most changes move it, so a single run (as in bench_hotpath.py) cannot tell a regression from
noise. This script starts bench_hotpath.py's simulator once (its own process, N DCS
instances, 8 tasks each, a fixed latency, two endpoints, TLS with a private CA unless
--plain), gives every checkout its own config and state file, runs one first `--once` per
checkout (baselines), then --runs rounds of quiet `--once` runs, alternating the order of
the checkouts from one round to the next so drift hits them alike. It prints per checkout
the median and minimum wall time, the median CPU time (`os.wait4`) and the exit codes.

A checkout is a directory (a clone or a worktree) or a git revision of this repository,
checked out for the run in a temporary worktree:

    python benchmarks/bench_once_ab.py HEAD~3 .            # before and after a change
    python benchmarks/bench_once_ab.py . --runs 15         # one checkout, more runs
    python benchmarks/bench_once_ab.py HEAD . --profile /tmp/once   # py-spy of one quiet run each

Each checkout runs under this interpreter (`python -m exporter` from inside it), so both run
with the same dependencies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_hotpath import CONCURRENCY, _config, start_simulator  # noqa: E402

from tests.certs import make_ca_and_server_cert  # noqa: E402


def once(checkout: Path, config: Path, profile: Path | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and exit code of one `--once` run from inside `checkout`."""
    cmd = [sys.executable, "-m", "exporter", f"--config.file={config}", "--once"]
    if profile is not None:
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=Path(sys.executable).parent)
        if spy is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        cmd = [spy, "record", "--native", "-r", "200", "-f", "raw", "-o", str(profile), "--"]
        cmd += [sys.executable, "-m", "exporter", f"--config.file={config}", "--once"]
    # Bytecode caches as a user has them: a benchmark must not run with them switched off.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("PYTHONPATH", None)
    started = time.monotonic()
    with config.with_suffix(".log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=checkout, stdout=subprocess.DEVNULL, stderr=log, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    return (
        time.monotonic() - started,
        usage.ru_utime + usage.ru_stime,
        os.waitstatus_to_exitcode(status),
    )


def checkout_of(ref: str, scratch: Path) -> tuple[Path, bool]:
    """A directory for `ref`, and whether it is a temporary worktree to remove afterwards."""
    path = Path(ref)
    if (path / "exporter" / "__init__.py").exists():
        return path.resolve(), False
    tree = scratch / f"rev-{len(list(scratch.iterdir()))}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), ref],
        check=True,
    )
    return tree, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", help="directories or git revisions")
    parser.add_argument("--runs", type=int, default=7, help="quiet runs per checkout")
    parser.add_argument("--size", type=int, default=1000, help="task lists")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of one quiet run each")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-once-ab-"))
    trees: list[Path] = []
    sim = None
    try:
        (scratch / "trees").mkdir()
        checkouts = []
        for ref in args.checkouts:
            path, temporary = checkout_of(ref, scratch / "trees")
            checkouts.append((ref, path))
            if temporary:
                trees.append(path)
        ca = tls_dir = None
        if not args.plain:
            tls_dir = scratch / "pki"
            ca, _, _ = make_ca_and_server_cert(tls_dir, ["localhost"], ["127.0.0.1"])
        sim, info = start_simulator(args.size, args.latency, scratch / "sim.json", tls_dir)
        configs = {}
        print(
            f"{args.size} task lists, {args.latency * 1000:.0f} ms latency, "
            f"{'HTTP' if args.plain else 'TLS'}, "
            f"bound {args.size * args.latency / CONCURRENCY:.2f} s"
        )
        for n, (ref, path) in enumerate(checkouts):
            workdir = scratch / f"c{n}"
            workdir.mkdir()
            configs[ref] = _config(info, workdir, "60s", ca)
            wall, cpu, rc = once(path, configs[ref])
            print(f"{ref}: first --once {wall:.2f} s ({cpu:.2f} s CPU), exit {rc}", flush=True)
        results: dict[str, list[tuple[float, float, int]]] = {ref: [] for ref, _ in checkouts}
        for r in range(args.runs):
            for ref, path in checkouts if r % 2 == 0 else checkouts[::-1]:
                results[ref].append(once(path, configs[ref]))
        for ref, runs in results.items():
            walls = [w for w, _, _ in runs]
            print(
                f"{ref}: quiet --once median {statistics.median(walls):.3f} s, "
                f"min {min(walls):.3f} s, "
                f"CPU median {statistics.median(c for _, c, _ in runs):.3f} s, "
                f"exit codes {sorted({rc for _, _, rc in runs})}, {len(runs)} runs"
            )
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for n, (ref, path) in enumerate(checkouts):
                out = args.profile / f"once-{n}.txt"
                once(path, configs[ref], out)
                print(f"{ref}: profile in {out}")
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(30)
        for tree in trees:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
            )
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
