"""The probe's report: readable text by default, JSON for tools (`--probe.format=json`).

Both say, per check, what was looked at, the verdict and what was seen; the last lines (or
`failed`) name every assumption that does not hold. Nothing secret is in either: the checks
hold what the answers said (cleaned and cut), never a request's credentials.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

from exporter.probe.run import ProbeResult

LABELS = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def failed_names(result: ProbeResult) -> list[str]:
    return [f"{x.subject}: {x.name}" for x in result.failed]


def render_json(result: ProbeResult) -> str:
    doc = {
        "ok": not result.failed,
        "requests": result.requests,
        "verdicts": dict(Counter(x.verdict for x in result.checks)),
        "failed": failed_names(result),
        "checks": [asdict(x) for x in result.checks],
    }
    return json.dumps(doc, indent=2) + "\n"


def render_text(result: ProbeResult) -> str:
    counts = Counter(x.verdict for x in result.checks)
    head = ", ".join(
        f"{counts[v]} {LABELS[v]}" for v in ("ok", "warn", "fail", "skip") if counts[v]
    )
    lines = [f"probe: {len(result.checks)} checks ({head}), {result.requests} requests", ""]
    width = max((len(x.name) for x in result.checks), default=0)
    subject = None
    for x in result.checks:
        if x.subject != subject:
            if subject is not None:
                lines.append("")
            subject = x.subject
            lines.append(subject)
        lines.append(f"  {LABELS[x.verdict]:<4}  {x.name:<{width}}  {x.saw}")
    lines.append("")
    if result.failed:
        lines.append(f"{len(result.failed)} check(s) failed:")
        lines.extend(f"  {name}" for name in failed_names(result))
    else:
        lines.append("every assumption the exporter makes holds")
    return "\n".join(lines) + "\n"
