"""`python -m exporter.simulator`: run the simulated cloud on its own.

`--print-config` prints an exporter configuration for a simulator started with the same
options, and exits: `python -m exporter.simulator --print-config > sim.yml`, then
`python -m exporter.simulator &` and `huaweicloud-task-exporter --config.file=sim.yml` is a
complete local setup.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from exporter.simulator.fleet import (
    DEMO_ACCESS_KEY,
    demo_config_text,
    demo_world,
    generated_world,
)
from exporter.simulator.server import Simulator

# The default secret key: fixed, so that a config printed by one run matches a simulator
# started by another. It guards nothing (the admin API under /_sim/ is unsigned anyway).
SIMULATOR_SECRET_KEY = "simulator-secret-key-not-a-secret-0001"  # noqa: S105 (see above)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--dcs-port", type=int, default=18080)
    parser.add_argument("--dms-port", type=int, default=18081)
    parser.add_argument("--iam-port", type=int, default=18082)
    parser.add_argument("--metadata-port", type=int, default=18083)
    parser.add_argument(
        "--tls-cert", default=None, help="PEM certificate: serve DCS, DMS and IAM over HTTPS"
    )
    parser.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    parser.add_argument(
        "--fleet", default="demo", help="'demo', or a number of generated instances"
    )
    parser.add_argument(
        "--secret-key",
        default=SIMULATOR_SECRET_KEY,
        help="secret key the simulator accepts (default: a fixed one, as in --print-config)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print an exporter config for a simulator with these options on stdout, and exit",
    )
    parser.add_argument("--poll-interval", default="15s")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.print_config and 0 in (args.dcs_port, args.dms_port):
        parser.error("--print-config needs fixed --dcs-port and --dms-port (0 picks one at start)")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    secret = args.secret_key
    world = demo_world(secret) if args.fleet == "demo" else generated_world(int(args.fleet), secret)
    host = "127.0.0.1" if args.listen in ("0.0.0.0", "::") else args.listen  # noqa: S104
    if args.print_config:
        # The fleet is deterministic (seeded), so a later run serves the same instances.
        scheme = "https" if tls else "http"
        sys.stdout.write(
            demo_config_text(
                world,
                f"{scheme}://{host}:{args.dcs_port}",
                f"{scheme}://{host}:{args.dms_port}",
                DEMO_ACCESS_KEY,
                secret,
                args.poll_interval,
                state_path="./sim-state.db",
            )
        )
        return 0
    sim = Simulator(
        world,
        args.listen,
        args.dcs_port,
        args.dms_port,
        iam_port=args.iam_port,
        metadata_port=args.metadata_port,
        tls=tls,
    ).start()
    print(
        f"simulator: DCS at {sim.dcs_url}, DMS at {sim.dms_url}, IAM at {sim.iam_url}, "
        f"metadata at {sim.metadata_url}; admin API under /_sim/",
        file=sys.stderr,
        flush=True,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
