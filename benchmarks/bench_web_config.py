"""What `--web.config.file` costs a scrape: plain HTTP against basic auth and TLS.

Runs the real HttpServer in this process with a fixed body the size of a 1,000-task-list
exposition (2.4 MiB by default), and scrapes it from a client process back to back over one
keep-alive connection (as Prometheus does), then with a new TLS connection per request (a
full handshake each time). Also prints what one remembered-credentials check costs and what
the first bcrypt check of a cost-10 hash costs.

    python benchmarks/bench_web_config.py
    python benchmarks/bench_web_config.py --requests 200 --body-mib 24
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import bcrypt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.web.auth import BasicAuth  # noqa: E402
from exporter.web.server import HttpServer  # noqa: E402
from exporter.web.webwatch import WebConfigWatcher  # noqa: E402
from tests.certs import make_ca_and_server_cert  # noqa: E402

PASSWORD = b"bench-password"

CLIENT = r"""
import http.client, json, ssl, sys, time
port, mode, n, ca, auth = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
headers = {"Authorization": auth} if auth else {}
context = ssl.create_default_context(cafile=ca) if mode.startswith("tls") else None
def connect():
    if context is None:
        return http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    return http.client.HTTPSConnection("localhost", int(port), timeout=30, context=context)
times = []
conn = connect()
for _ in range(n):
    if mode == "tls-new":
        conn.close()
        conn = connect()
    start = time.perf_counter()
    conn.request("GET", "/metrics", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    times.append(time.perf_counter() - start)
    assert resp.status == 200 and len(body) > 0, resp.status
print(json.dumps(times))
"""


def run(port: int, mode: str, n: int, ca: Path, auth: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port), mode, str(n), str(ca), auth],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def ms(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--body-mib", type=float, default=2.4)
    args = parser.parse_args()
    body = b"x" * int(args.body_mib * 1024 * 1024)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ca, _, _ = make_ca_and_server_cert(d, ["localhost"], ["127.0.0.1"])
        hashed = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(10)).decode()
        auth = "Basic " + base64.b64encode(b"prometheus:" + PASSWORD).decode()
        (d / "auth.yml").write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
        (d / "tls.yml").write_text(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
            f"basic_auth_users:\n  prometheus: {hashed}\n"
        )
        rows = []
        for label, web, mode, header in [
            ("plain HTTP", None, "plain", ""),
            ("basic auth", d / "auth.yml", "plain", auth),
            ("TLS + basic auth, keep-alive", d / "tls.yml", "tls", auth),
            ("TLS + basic auth, new connection", d / "tls.yml", "tls-new", auth),
        ]:
            watcher = WebConfigWatcher(web) if web is not None else None
            server = HttpServer(app, "127.0.0.1:0", web_config=watcher)
            server.start()
            try:
                run(server.port, mode, 3, ca, header)  # warm up (the first bcrypt included)
                times = run(server.port, mode, args.requests, ca, header)
            finally:
                server.stop()
            rows.append((label, ms(times, 0.5), ms(times, 0.99)))

    users = {"prometheus": bcrypt.hashpw(PASSWORD, bcrypt.gensalt(10))}
    checker = BasicAuth(users)
    started = time.perf_counter()
    checker.verify(auth)
    first = (time.perf_counter() - started) * 1000
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        checker.quick(auth)
    quick = (time.perf_counter() - started) / n * 1e6

    print(f"/metrics of {args.body_mib} MiB, {args.requests} requests each, one client process")
    print(f"{'':36} {'p50 ms':>8} {'p99 ms':>8}")
    for label, p50, p99 in rows:
        print(f"{label:36} {p50:8.1f} {p99:8.1f}")
    print(f"first check of a password (bcrypt, cost 10): {first:.0f} ms")
    print(f"a remembered password (digest, constant-time compare): {quick:.1f} µs")


if __name__ == "__main__":
    main()
