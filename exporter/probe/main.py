"""`--probe` from the command line: run it, print the report, say where the recording is."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from exporter.config import Config
from exporter.probe.report import render_json, render_text
from exporter.probe.run import run_probe
from exporter.stdout import write_stdout

log = logging.getLogger("exporter.probe")


def probe_main(config: Config, fmt: str, record: str | None) -> int:
    """0 when every assumption holds, 1 when one does not (the report names it)."""
    directory = Path(record) if record else None
    try:
        result = asyncio.run(run_probe(config, directory))
    except OSError as exc:  # the recording directory
        log.error(f"cannot write the recording to {record}: {exc.strerror or exc}")
        return 1
    write_stdout(render_json(result) if fmt == "json" else render_text(result))
    if directory is not None:
        log.info(
            "recording written: attach it to a bug report",
            extra={"fields": {"directory": str(directory)}},
        )
    return 1 if result.failed else 0
