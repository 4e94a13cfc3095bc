"""The docker compose quickstart with its web config: the exporter serves TLS with the demo
certificate and asks for basic auth, Prometheus's scrape job has the matching CA and
password, the health check authenticates; and the very scrape job, run by a real Prometheus
against the exporter started with the very web config, gets `up == 1`."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from cryptography import x509

from exporter.web.webconfig import load_web_settings
from tests.conftest import ROOT, ExporterProcess

COMPOSE = ROOT / "deploy" / "docker-compose"
WEB = COMPOSE / "web"


def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def mounts(service: str) -> dict[str, Path]:
    """Container path -> file in the repository, for a service's bind mounts."""
    out = {}
    for volume in compose()["services"][service].get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("."):
            out[container] = (COMPOSE / host).resolve()
    return out


def in_repository(service: str, container_path: str) -> Path:
    """Where a path inside a service's container comes from in the repository."""
    for container, host in sorted(mounts(service).items(), key=lambda m: -len(m[0])):
        if container_path == container or container_path.startswith(container + "/"):
            return host / container_path[len(container) :].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted into {service}")


def prometheus_job() -> dict[str, Any]:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    return job  # type: ignore[no-any-return]


@pytest.mark.smoke
def test_the_exporter_runs_with_the_mounted_web_config() -> None:
    exporter = compose()["services"]["exporter"]
    (flag,) = [a for a in exporter["command"] if a.startswith("--web.config.file=")]
    web = in_repository("exporter", flag.split("=", 1)[1])
    settings = load_web_settings(web)
    assert settings.tls is not None
    assert set(settings.users) == {"prometheus"}


def test_prometheus_has_the_ca_and_the_password_the_exporter_takes() -> None:
    job = prometheus_job()
    assert job["scheme"] == "https"
    assert job["static_configs"][0]["targets"] == ["exporter:10418"]
    ca = in_repository("prometheus", job["tls_config"]["ca_file"])
    password = in_repository("prometheus", job["basic_auth"]["password_file"]).read_bytes()
    users = load_web_settings(WEB / "web.yml").users
    assert bcrypt.checkpw(password.strip(), users[job["basic_auth"]["username"]])
    # The CA signed the exporter's certificate, whose names include the scrape target's host.
    cert = x509.load_pem_x509_certificate((WEB / "server.pem").read_bytes())
    issuer = x509.load_pem_x509_certificate(ca.read_bytes())
    cert.verify_directly_issued_by(issuer)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "exporter" in names.get_values_for_type(x509.DNSName)
    # Demo certificates live long, but not forever: remake them (scripts/make-compose-certs)
    # a year before they expire.
    assert cert.not_valid_after_utc > datetime.now(timezone.utc) + timedelta(days=365)


def test_the_health_check_authenticates_over_tls() -> None:
    test = compose()["services"]["exporter"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3]
    assert "https://localhost:10418/healthz" in code
    assert "Authorization" in code
    for path in ("prometheus-password", "ca.pem"):
        assert path in code
    compile(code, "healthcheck", "exec")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_quickstarts_scrape_job_gets_up_1_from_the_quickstarts_exporter(
    tmp_path: Path,
) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: run ./scripts/test (installs Debian's prometheus)"
    exporter = ExporterProcess(["--demo", f"--web.config.file={WEB / 'web.yml'}"], env={}).start()
    try:
        assert exporter.port is not None
        job = prometheus_job()
        job["static_configs"] = [{"targets": [f"localhost:{exporter.port}"]}]
        job["tls_config"]["ca_file"] = str(
            in_repository("prometheus", job["tls_config"]["ca_file"])
        )
        job["basic_auth"]["password_file"] = str(
            in_repository("prometheus", job["basic_auth"]["password_file"])
        )
        config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        with (tmp_path / "prometheus.log").open("w") as log:
            prom = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 40
                result: list[Any] = []
                while time.monotonic() < deadline:
                    try:
                        url = f"http://127.0.0.1:{port}/api/v1/query?query=up"
                        with urllib.request.urlopen(url, timeout=5) as resp:
                            result = json.load(resp)["data"]["result"]
                    except OSError:
                        result = []
                    if result and result[0]["value"][1] == "1":
                        break
                    time.sleep(0.5)
                assert [r["value"][1] for r in result] == ["1"], (
                    tmp_path / "prometheus.log"
                ).read_text()[-2000:]
            finally:
                prom.terminate()
                prom.wait(10)
        # Without the password: refused.
        context = ssl.create_default_context(cafile=str(WEB / "ca.pem"))
        request = urllib.request.Request(f"https://localhost:{exporter.port}/metrics")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10, context=context)
        assert info.value.code == 401
        token = base64.b64encode(
            b"prometheus:" + (WEB / "prometheus-password").read_bytes().strip()
        )
        request.add_header("Authorization", "Basic " + token.decode())
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            assert b"huaweicloud_task_up" in resp.read()
    finally:
        exporter.stop()
