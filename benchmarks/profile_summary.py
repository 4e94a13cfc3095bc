"""Aggregate a py-spy raw profile (`py-spy record -f raw`) by frame: where the time goes.

    python benchmarks/profile_summary.py /tmp/prof.txt [--top 25] [--thread MainThread]

Prints the share of samples in which each function is on the stack (inclusive) and at its
top (self), functions named `file:function`.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:)]+)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "/exporter/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{m.group('func')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default=None, help="only stacks whose first frame has this")
    parser.add_argument(
        "--idle",
        default="EpollSelector.select,HttpServer._work,SimpleQueue.get,Condition.wait",
        help="leaf functions that are waiting, not working (left out)",
    )
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    idle_leaves = [name for name in args.idle.split(",") if name]
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if args.thread and args.thread not in frames[0]:
            continue
        n = int(count_text)
        names = [_name(f) for f in frames[1:]] or ["(none)"]
        if any(names[-1].endswith(":" + idle) for idle in idle_leaves):
            continue
        total += n
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
    print(f"{total} samples at work (waits left out)")
    print("inclusive %  self %  function")
    for name, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:10.1f}  {100 * own[name] / total:6.1f}  {name}")
    print("\ntop self")
    for name, n in own.most_common(args.top):
        print(f"{100 * n / total:6.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
