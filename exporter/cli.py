"""Command line: Prometheus-style flags, `--demo`, `--once`, `--check-config`,
`--print-config` and `--probe`.

Exit codes: 0 success; 1 a runtime failure (state file, port, a target failing in `--once`,
a check failing in `--probe`); 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from exporter import __version__
from exporter.aio import run
from exporter.app import Exporter, settle_heap
from exporter.config import (
    Config,
    ConfigError,
    Problem,
    check_config,
    effective_yaml,
    load_config,
    load_config_text,
    parse_duration,
)
from exporter.core.sharding import parse_shard
from exporter.polling.state import StateError, StateInUse
from exporter.stdout import write_stdout
from exporter.telemetry.logs import LEVELS, setup_logging
from exporter.web.http import parse_listen_address
from exporter.web.webwatch import WebConfigWatcher

DEFAULT_PORT = 10418
log = logging.getLogger("exporter")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="huaweicloud-task-exporter",
        description="Prometheus exporter for the background tasks of Huawei Cloud DCS and "
        "DMS (Kafka, RabbitMQ, RocketMQ) instances.",
    )
    p.add_argument(
        "--config.file", dest="config_file", metavar="PATH", help="YAML configuration file"
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=f":{DEFAULT_PORT}",
        metavar="[HOST]:PORT",
        help=f"address for /metrics, / and /healthz (default :{DEFAULT_PORT})",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="TLS and basic authentication: the Prometheus exporter-toolkit's web config "
        "file, re-read when it changes",
    )
    p.add_argument("--log.level", dest="log_level", choices=list(LEVELS), default="info")
    p.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"], default="logfmt")
    p.add_argument(
        "--log.task-events",
        dest="log_task_events",
        action="store_true",
        help="log one line per task when first seen unfinished and when counted "
        "(as the config key log_task_events)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--once",
        action="store_true",
        help="poll every target once, print the metrics on stdout and exit "
        "(non-zero when a target failed)",
    )
    mode.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    mode.add_argument(
        "--probe",
        action="store_true",
        help="read a little of every target (GETs only), check every assumption the "
        "exporter makes of the answers, report and exit (1 when one does not hold)",
    )
    p.add_argument(
        "--probe.format",
        dest="probe_format",
        choices=["text", "json"],
        default="text",
        help="the probe's report on stdout (default text)",
    )
    p.add_argument(
        "--probe.record",
        dest="probe_record",
        metavar="DIR",
        help="write the answers the probe read to DIR, identifiers replaced by pseudonyms",
    )
    mode.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration (defaults filled in, secrets redacted) as "
        "YAML and exit",
    )
    p.add_argument(
        "--config.auto-reload-interval",
        dest="auto_reload",
        default=None,
        metavar="DURATION",
        help="re-read the configuration file when its checksum changes, checked this often "
        "(e.g. 30s; off by default). SIGHUP and POST /-/reload reload it at any time",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="poll a simulated cloud started in-process (no account needed)",
    )
    p.add_argument(
        "--shard.index",
        dest="shard_index",
        default="0",
        metavar="N|auto",
        help="this replica's shard, from 0; 'auto' takes a StatefulSet pod's ordinal "
        "from the hostname (default 0)",
    )
    p.add_argument(
        "--shard.count",
        dest="shard_count",
        type=int,
        default=1,
        metavar="N",
        help="how many shards split the task lists (default 1: no sharding)",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _load(args: argparse.Namespace) -> tuple[Config, list[Problem], object | None]:
    if args.demo:
        from exporter.demo import Demo  # noqa: PLC0415 - the simulator loads only when asked for

        demo = Demo()
        return load_config_text(demo.config_text, source="demo"), [], demo
    config, warnings = check_config(args.config_file)
    return config, warnings, None


class _Process:
    """What `main` tells `entry` of the run that just ended."""

    one_shot_done = False  # a `--once` wrote its output: the process may end at once
    owned = False  # `entry` runs `main`: the process is ours (its collector, its exit)


def entry() -> None:
    """The console script and `python -m exporter`: `main()`, then the process ends.

    After a `--once` it ends without tearing the interpreter down: by then the output is
    written and the state file closed, and freeing a fleet's worth of objects one by one
    is a twentieth of a one-shot run's time (0.08 s of 1.6 s at 1,000 task lists).
    """
    _Process.owned = True
    code = main()
    if _Process.one_shot_done:
        logging.shutdown()
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to flush to
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if args.demo and args.config_file:
        parser.error("--demo and --config.file exclude each other")
    if not args.demo and not args.config_file:
        parser.error("--config.file is required (or --demo to try the exporter)")
    try:
        parse_listen_address(args.listen_address)
        shard = parse_shard(args.shard_index, args.shard_count)
        auto_reload = parse_duration(args.auto_reload) if args.auto_reload else None
    except ValueError as exc:
        parser.error(str(exc))
    if auto_reload is not None and (args.demo or auto_reload < 1):
        parser.error("--config.auto-reload-interval needs --config.file and at least 1s")

    def reread() -> Config:
        """The file read again for a reload, with the same flags applied."""
        config = load_config(args.config_file)
        if args.log_task_events:
            config = config.model_copy(update={"log_task_events": True})
        return config

    try:
        web = WebConfigWatcher(args.web_config_file) if args.web_config_file else None
        config, warnings, demo = _load(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in the configuration", file=sys.stderr)
        return 2
    if args.log_task_events:
        config = config.model_copy(update={"log_task_events": True})
    if args.print_config:
        write_stdout(effective_yaml(config))
        return 0
    if args.check_config:
        for warning in warnings:
            print(warning, file=sys.stderr)
        lists = sum(len(t.instances) + int(t.task_center) for t in config.targets)
        found = sum(t.account_wide for t in config.targets)
        print(
            f"configuration OK: {len(config.targets)} target(s), {lists} task list(s)"
            + (f", {found} account-wide (projects and instances found at start)" if found else "")
            + (f", {len(warnings)} warning(s)" if warnings else "")
        )
        return 0
    for warning in warnings:
        log.warning(f"configuration: {warning}")

    if args.probe:
        from exporter.probe.main import probe_main  # noqa: PLC0415 - loaded only when asked for

        try:
            return probe_main(config, args.probe_format, args.probe_record)
        finally:
            if demo is not None:
                demo.close()  # type: ignore[attr-defined]
    if args.probe_record:
        parser.error("--probe.record goes with --probe")

    path = Path(args.config_file) if args.config_file else None
    if args.once and _Process.owned:
        # Before the state is read: a one-shot run's 80 young collections and its full one
        # would only walk what lives until the end of the process.
        settle_heap(collect=False)
    try:
        try:
            exporter = Exporter(config, shard, reread if path else None, path)
        except StateInUse:
            if not args.once:
                raise
            # Beside a running exporter: poll into a copy of its state, write nothing.
            log.info(
                "the state file is in use by a running exporter: polling into an in-memory "
                "copy of its state; nothing is written to the file"
            )
            exporter = Exporter(config, shard, in_memory=True)
    except StateError as exc:
        log.error(str(exc))
        return 1
    try:
        if demo is not None:
            log.info("demo mode: polling a simulated cloud; no account is used")
        if shard.count > 1:
            log.info("sharding", extra={"fields": {"shard": shard.index, "of": shard.count}})
        if args.once:
            ok = run(exporter.once())
            write_stdout(exporter.exposition())
            _Process.one_shot_done = True
            return 0 if ok else 1
        exporter.settle_heap = True
        try:
            run(exporter.serve(args.listen_address, web, auto_reload))
        except OSError as exc:
            log.error(f"cannot listen on {args.listen_address}: {exc.strerror or exc}")
            return 1
        return 0
    finally:
        exporter.close()
        if demo is not None:
            demo.close()  # type: ignore[attr-defined]
