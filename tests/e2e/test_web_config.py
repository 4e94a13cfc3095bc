"""`--web.config.file` end to end: the exporter as a process polling the simulator, scraped by
a real Prometheus (Debian's) over TLS with basic auth, and its landing page in Chromium.

One Prometheus runs three jobs against the same exporter: the right CA and credentials
(`up == 1`), no credentials (401), and a CA that did not sign the certificate (the handshake
fails). A certificate replaced on disk is then served to new connections without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bcrypt
import pytest
import yaml

from tests.certs import make_ca_and_server_cert
from tests.conftest import (
    ROOT,
    ExporterProcess,
    Sim,
    config_doc,
    instance_entry,
    run_cli,
    write_config,
)

if TYPE_CHECKING:
    from playwright.sync_api import HttpCredentials, Page, Response

Start = Callable[..., ExporterProcess]
PASSWORD = "e2e-scrape-password-5b2c"
CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _protected_exporter(sim: Sim, tmp_path: Path, exporters: Start) -> tuple[ExporterProcess, Path]:
    """An exporter polling one simulated Redis, behind TLS and basic auth."""
    pki = tmp_path / "pki"
    make_ca_and_server_cert(pki, ["localhost"], ["127.0.0.1"])
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    web = pki / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    redis = sim.world.add_instance("dcs", "redis-prod")
    doc = config_doc(sim, [instance_entry(sim.world, redis.id)], state_path=tmp_path / "s.db")
    proc = exporters(write_config(tmp_path / "c.yml", doc), f"--web.config.file={web}")
    return proc, pki


def _https(port: int, path: str, ca: Path, password: str | None = PASSWORD) -> tuple[int, bytes]:
    request = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
    if password is not None:
        token = base64.b64encode(f"prometheus:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _fingerprint(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return hashlib.sha256(der).hexdigest()


class Prometheus:
    def __init__(self, workdir: Path, scrape_configs: list[dict[str, Any]]) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: run ./scripts/test (installs Debian's prometheus)"
        self.port = _free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": scrape_configs,
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)

    def targets(self) -> dict[str, dict[str, Any]]:
        """Active targets by job, once Prometheus answers."""
        try:
            active = self.api("targets")["data"]["activeTargets"]
        except OSError:
            return {}
        return {t["labels"]["job"]: t for t in active}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], Prometheus]]:
    started: list[Prometheus] = []

    def start(scrape_configs: list[dict[str, Any]]) -> Prometheus:
        prom = Prometheus(tmp_path / "prometheus", scrape_configs)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.slow
def test_prometheus_scrapes_over_tls_with_basic_auth_and_a_rotated_certificate(
    sim: Sim,
    tmp_path: Path,
    exporters: Start,
    prometheus: Callable[[list[dict[str, Any]]], Prometheus],
) -> None:
    exporter, pki = _protected_exporter(sim, tmp_path, exporters)
    assert exporter.port is not None
    port = exporter.port
    (pki / "password").write_text(PASSWORD)
    other_ca, _, _ = make_ca_and_server_cert(tmp_path / "other", ["localhost"], ["127.0.0.1"])
    target = {"targets": [f"127.0.0.1:{port}"]}
    auth = {"username": "prometheus", "password_file": str(pki / "password")}
    prom = prometheus(
        [
            {
                "job_name": "protected",
                "scheme": "https",
                "basic_auth": auth,
                "tls_config": {"ca_file": str(pki / "ca.pem")},
                "static_configs": [target],
            },
            {
                "job_name": "no-credentials",
                "scheme": "https",
                "tls_config": {"ca_file": str(pki / "ca.pem")},
                "static_configs": [target],
            },
            {
                "job_name": "wrong-ca",
                "scheme": "https",
                "basic_auth": auth,
                "tls_config": {"ca_file": str(other_ca)},
                "static_configs": [target],
            },
        ]
    )

    def scraped() -> bool:
        found = prom.targets()
        never = "0001-01-01T00:00:00Z"
        return len(found) == 3 and all(t["lastScrape"] != never for t in found.values())

    _until(scraped, 30, "a scrape of every job:\n" + prom.log_path.read_text()[-1500:])
    _until(lambda: prom.targets()["protected"]["health"] == "up", 15, "the protected job up")
    targets = prom.targets()
    assert targets["no-credentials"]["health"] == "down"
    assert "401" in targets["no-credentials"]["lastError"]
    assert targets["wrong-ca"]["health"] == "down"
    assert "certificate" in targets["wrong-ca"]["lastError"]
    up = prom.api("query", query='up{job="protected"}')["data"]["result"]
    assert [r["value"][1] for r in up] == ["1"]
    # The exporter's task metrics, read through Prometheus, so they came through TLS and auth.
    polled = prom.api("query", query='huaweicloud_task_up{job="protected"}')["data"]["result"]
    assert [r["value"][1] for r in polled] == ["1"]
    # Outside Prometheus too: no credentials, no metrics.
    status, body = _https(port, "/metrics", pki / "ca.pem", password=None)
    assert status == 401
    assert b"huaweicloud_task" not in body

    # A new certificate (and key) replaces the old one on disk: new connections get it, with
    # no restart.
    before = _fingerprint(port)
    new_ca, new_cert, new_key = make_ca_and_server_cert(
        tmp_path / "renewed", ["localhost"], ["127.0.0.1"]
    )
    (pki / "server.pem").write_bytes(new_cert.read_bytes())
    (pki / "server-key.pem").write_bytes(new_key.read_bytes())
    _until(lambda: _fingerprint(port) != before, 10, "the renewed certificate being served")
    assert (
        _fingerprint(port)
        == hashlib.sha256(ssl.PEM_cert_to_DER_cert(new_cert.read_text())).hexdigest()
    )
    assert exporter.proc is not None
    assert exporter.proc.poll() is None  # the same process
    assert _https(port, "/metrics", new_ca)[0] == 200
    assert "web config reloaded" in exporter.output
    web = (pki / "web.yml").read_text()
    hashed = web.split("prometheus: ", 1)[1].strip()
    assert hashed.startswith("$2b$")
    for secret in (PASSWORD, hashed):
        assert secret not in exporter.output


def _settled_content(page: Page) -> str:
    """The page's HTML once Chromium has stopped navigating (to its error page here)."""
    from playwright.sync_api import Error as PlaywrightError  # noqa: PLC0415

    deadline = time.monotonic() + 10
    while True:
        try:
            return page.content()
        except PlaywrightError:
            assert time.monotonic() < deadline, "the page never settled"
            time.sleep(0.2)


@pytest.mark.slow
def test_the_landing_page_in_chromium_asks_for_credentials_and_shows_nothing_before(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    assert CHROMIUM.exists(), "chromium not found: run ./scripts/test (scripts/install-chromium)"
    exporter, pki = _protected_exporter(sim, tmp_path, exporters)
    url = f"https://localhost:{exporter.port}/"
    port = exporter.port or 0
    _until(lambda: b"redis-prod" in _https(port, "/", pki / "ca.pem")[1], 20, "a poll")
    # Playwright loads here, not at every pytest worker's collection.
    from playwright.sync_api import Error as PlaywrightError  # noqa: PLC0415
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            # Without credentials, and with wrong ones: the exporter challenges, Chromium has
            # nothing (more) to answer with, and the page shows nothing of the exporter.
            wrong: HttpCredentials = {"username": "prometheus", "password": "not-it"}
            for credentials in (None, wrong):
                context = browser.new_context(
                    ignore_https_errors=True, http_credentials=credentials
                )
                page = context.new_page()
                answers: list[Response] = []

                def keep(r: Response, into: list[Response] = answers) -> None:
                    into.append(r)

                page.on("response", keep)
                failed: list[str] = []
                try:  # Chromium gives up on the credentials, or shows the 401 it got
                    response = page.goto(url)
                except PlaywrightError as exc:
                    failed.append(str(exc))
                else:
                    assert response is not None
                    assert response.status == 401
                assert all("ERR_INVALID_AUTH_CREDENTIALS" in f for f in failed)
                assert answers
                assert {r.status for r in answers} == {401}
                assert all(r.headers["www-authenticate"].startswith("Basic ") for r in answers)
                assert all(r.url == url for r in answers)
                shown = _settled_content(page)
                assert "redis-prod" not in shown
                assert "Huawei Cloud" not in shown
                context.close()
            # With them: the page, its targets table naming the instance.
            context = browser.new_context(
                ignore_https_errors=True,
                http_credentials={"username": "prometheus", "password": PASSWORD},
            )
            page = context.new_page()
            response = page.goto(url)
            assert response is not None
            assert response.status == 200
            assert page.locator("h1").inner_text() == "Huawei Cloud task exporter"
            assert "redis-prod" in page.locator("#targets").inner_text()
            shots = Path(os.environ.get("TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "landing-page-with-basic-auth.png"))
            context.close()
        finally:
            browser.close()


def test_a_broken_web_config_stops_the_exporter_at_start_with_every_problem(
    tmp_path: Path,
) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing-key.pem\n"
        f"basic_auth_users:\n  alice: {hashed}\n  bob: plain-text-password\n"
    )
    run = run_cli("--demo", f"--web.config.file={web}", "--check-config")
    assert run.rc == 2
    lines = run.stderr.splitlines()
    assert f"{web}:6: basic_auth_users.bob: not a bcrypt hash" in lines[0]
    assert lines[-1] == "1 problem(s) in the configuration"
    assert "plain-text-password" not in run.stderr
    assert hashed not in run.stderr
    # Once the file is right, the missing files are what is left, then a valid file passes.
    web.write_text(web.read_text().replace("plain-text-password", hashed))
    run = run_cli("--demo", f"--web.config.file={web}", "--check-config")
    assert run.rc == 2
    assert f"{web}:2: tls_server_config.cert_file: cannot read" in run.stderr
    make_ca_and_server_cert(tmp_path, ["localhost"], [])
    web.write_text(
        web.read_text().replace("missing.pem", "server.pem").replace("missing-key", "server-key")
    )
    run = run_cli("--demo", f"--web.config.file={web}", "--check-config")
    assert run.rc == 0, run.stderr
