"""The HTTP server with a web config, over real sockets: TLS with a non-blocking handshake,
basic auth on every path, the configured headers, and the files re-read when they change."""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from exporter.web.server import HttpServer
from exporter.web.webwatch import WebConfigWatcher
from tests.certs import make_ca_and_server_cert, make_client_cert

PASSWORD = "scrape-pw-41d9"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
AUTH = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()}
PATHS = ["/", "/metrics", "/healthz", "/readyz", "/nowhere", "/metrics?name[]=x"]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"{environ['PATH_INFO']} {environ['wsgi.url_scheme']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def web_yaml(directory: Path, *, tls: bool = True, extra_tls: str = "", users: bool = True) -> Path:
    text = ""
    if tls:
        text += "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
        text += extra_tls
    text += "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    if users:
        text += f"basic_auth_users:\n  prometheus: {HASH}\n"
    path = directory / "web.yml"
    path.write_text(text)
    return path


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_ca_and_server_cert(tmp_path, ["localhost"], ["127.0.0.1"])
    return tmp_path


@pytest.fixture
def serve() -> Iterator[Callable[..., HttpServer]]:
    servers: list[HttpServer] = []

    def start(web: Path, interval: float = 0.1, **options: Any) -> HttpServer:
        server = HttpServer(
            app, "127.0.0.1:0", web_config=WebConfigWatcher(web, interval=interval), **options
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def get(
    port: int, path: str, context: ssl.SSLContext | None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def served_fingerprint(port: int) -> str:
    """The SHA-256 of the certificate the server presents to a new connection."""
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


@pytest.mark.smoke
def test_every_path_asks_for_credentials_and_takes_the_right_ones(
    pki: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(web_yaml(pki))
    context = client_context(pki / "ca.pem")
    for path in PATHS:
        status, headers, body = get(server.port, path, context)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Basic ")
        assert headers["X-Frame-Options"] == "deny"
        assert body == b"Unauthorized\n"
        wrong = {"Authorization": "Basic " + base64.b64encode(b"prometheus:nope").decode()}
        assert get(server.port, path, context, wrong)[0] == 401
        status, headers, body = get(server.port, path, context, AUTH)
        assert status == 200, path
        assert body.endswith(b" https\n")
        assert headers["X-Frame-Options"] == "deny"


def test_basic_auth_without_tls_and_head_requests(
    tmp_path: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(web_yaml(tmp_path, tls=False))
    assert get(server.port, "/metrics", None)[0] == 401
    status, _, body = get(server.port, "/metrics", None, AUTH)
    assert (status, body) == (200, b"/metrics http\n")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("HEAD", "/healthz")
    resp = conn.getresponse()
    assert resp.status == 401
    assert resp.read() == b""
    conn.close()


def test_a_keep_alive_connection_survives_a_401(
    pki: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(web_yaml(pki))
    conn = http.client.HTTPSConnection(
        "127.0.0.1", server.port, timeout=10, context=client_context(pki / "ca.pem")
    )
    conn.request("GET", "/")
    first = conn.getresponse()
    first.read()
    assert first.status == 401
    conn.request("GET", "/", headers=AUTH)  # the browser's retry, on the same connection
    second = conn.getresponse()
    assert (second.status, second.read()) == (200, b"/ https\n")
    conn.close()


def test_a_client_trusting_another_ca_fails_the_handshake(
    pki: Path, tmp_path: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(web_yaml(pki))
    other_ca, _, _ = make_ca_and_server_cert(tmp_path / "other", ["localhost"], [])
    with pytest.raises(ssl.SSLCertVerificationError):
        get(server.port, "/", client_context(other_ca), AUTH)
    assert get(server.port, "/", client_context(pki / "ca.pem"), AUTH)[0] == 200


def test_a_stalled_handshake_is_cut_off_and_holds_nothing(
    pki: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(web_yaml(pki), header_timeout=0.5)
    context = client_context(pki / "ca.pem")
    # A client that connects and says nothing, and one that sends half a ClientHello.
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    half = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    started = time.monotonic()
    # Meanwhile others are served at once.
    for _ in range(5):
        assert get(server.port, "/healthz", context, AUTH)[0] == 200
    assert time.monotonic() - started < 2
    for sock in (silent, half):
        assert sock.recv(100) == b""  # closed by the server
    assert time.monotonic() - started < 3
    silent.close()
    half.close()


def test_a_plain_http_client_on_the_tls_port_is_dropped(
    pki: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(web_yaml(pki))
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        get(server.port, "/", None, AUTH)
    assert get(server.port, "/", client_context(pki / "ca.pem"), AUTH)[0] == 200


def test_a_large_response_arrives_whole_over_tls(pki: Path) -> None:
    big = bytes(range(256)) * 40_000  # 10 MiB, many TLS records and partial writes

    def large(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [big[: len(big) // 2], big[len(big) // 2 :]]

    server = HttpServer(large, "127.0.0.1:0", web_config=WebConfigWatcher(web_yaml(pki)))
    server.start()
    try:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", server.port, timeout=20, context=client_context(pki / "ca.pem")
        )
        conn.request("GET", "/metrics", headers=AUTH)
        resp = conn.getresponse()
        time.sleep(0.3)  # let the server fill the socket and wait for room
        assert resp.read() == big
        conn.close()
    finally:
        server.stop()


def test_a_rotated_certificate_is_served_to_new_connections_without_a_restart(
    pki: Path, tmp_path: Path, serve: Callable[..., HttpServer]
) -> None:
    server = serve(web_yaml(pki))
    before = served_fingerprint(server.port)
    kept = http.client.HTTPSConnection(
        "127.0.0.1", server.port, timeout=10, context=client_context(pki / "ca.pem")
    )
    kept.request("GET", "/", headers=AUTH)
    assert kept.getresponse().read() == b"/ https\n"
    # A new CA and certificate replace the files in place (as cert-manager renews them).
    new_ca, new_cert, new_key = make_ca_and_server_cert(
        tmp_path / "new", ["localhost"], ["127.0.0.1"]
    )
    (pki / "server.pem").write_bytes(new_cert.read_bytes())
    (pki / "server-key.pem").write_bytes(new_key.read_bytes())
    deadline = time.monotonic() + 10
    while served_fingerprint(server.port) == before:
        assert time.monotonic() < deadline, "the new certificate was never served"
        time.sleep(0.1)
    expected = hashlib.sha256(ssl.PEM_cert_to_DER_cert(new_cert.read_text())).hexdigest()
    assert served_fingerprint(server.port) == expected
    assert get(server.port, "/", client_context(new_ca), AUTH)[0] == 200
    # The connection opened before keeps its session.
    kept.request("GET", "/healthz", headers=AUTH)
    assert kept.getresponse().read() == b"/healthz https\n"
    kept.close()


def test_a_broken_web_config_keeps_the_last_good_one_with_a_log_line(
    pki: Path, serve: Callable[..., HttpServer], caplog: pytest.LogCaptureFixture
) -> None:
    path = web_yaml(pki)
    server = serve(path)
    watcher = server.web
    assert watcher is not None
    context = client_context(pki / "ca.pem")
    caplog.set_level(logging.WARNING, logger="exporter.web.webwatch")
    path.write_text(path.read_text() + "  mallory: not-a-hash\nbogus_key: 1\n")
    deadline = time.monotonic() + 10
    while not caplog.records:
        assert time.monotonic() < deadline, "no log line about the broken file"
        time.sleep(0.05)
    time.sleep(0.2)
    messages = [r.getMessage() for r in caplog.records]
    assert any("basic_auth_users.mallory: not a bcrypt hash" in m for m in messages)
    assert any("bogus_key: unknown key" in m for m in messages)
    assert all(HASH not in m for m in messages)
    assert all("last good one stays in force" in m for m in messages)
    assert get(server.port, "/", context)[0] == 401
    assert get(server.port, "/", context, AUTH)[0] == 200
    # Said once for that version of the file, not every second.
    count = len(caplog.records)
    time.sleep(0.5)
    assert len(caplog.records) == count
    # Fixed: the new users apply at once, on the same server.
    other = bcrypt.hashpw(b"second-pw", bcrypt.gensalt(4)).decode()
    path.write_text(web_yaml(pki).read_text() + f"  second: {other}\n")
    second = {"Authorization": "Basic " + base64.b64encode(b"second:second-pw").decode()}
    deadline = time.monotonic() + 10
    while get(server.port, "/", context, second)[0] != 200:
        assert time.monotonic() < deadline, "the fixed file was never used"
        time.sleep(0.1)
    assert watcher.reloads == 1


def test_turning_tls_off_needs_a_restart(
    pki: Path, serve: Callable[..., HttpServer], caplog: pytest.LogCaptureFixture
) -> None:
    path = web_yaml(pki)
    server = serve(path)
    caplog.set_level(logging.ERROR, logger="exporter.web.webwatch")
    web_yaml(pki, tls=False)
    deadline = time.monotonic() + 10
    while not caplog.records:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "turning TLS on or off needs a restart" in caplog.records[0].getMessage()
    assert get(server.port, "/", client_context(pki / "ca.pem"), AUTH)[0] == 200


def test_client_certificates_when_required(
    pki: Path, tmp_path: Path, serve: Callable[..., HttpServer]
) -> None:
    client_ca, cert, key = make_client_cert(tmp_path / "clients", san="scraper.example")
    _, stranger_cert, stranger_key = make_client_cert(tmp_path / "strangers", san="scraper.example")
    _, wrong_san_cert, wrong_san_key = make_client_cert(tmp_path / "clients2", san="other.example")
    extra = (
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {client_ca}\n"
        "  client_allowed_sans: [scraper.example]\n"
    )
    server = serve(web_yaml(pki, extra_tls=extra, users=False))
    ca = pki / "ca.pem"
    assert get(server.port, "/metrics", client_context(ca, cert, key))[0] == 200
    for context in (
        client_context(ca),  # no certificate
        client_context(ca, stranger_cert, stranger_key),  # signed by another CA
    ):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(server.port, "/metrics", context)
    # Verified, but not one of the allowed names: closed after the handshake.
    (tmp_path / "clients2" / "client-ca.pem").write_bytes(client_ca.read_bytes())
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        get(server.port, "/metrics", client_context(ca, wrong_san_cert, wrong_san_key))


def test_a_new_password_is_checked_off_the_scrape_lane(
    pki: Path, serve: Callable[..., HttpServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scrape with remembered credentials is answered while bcrypt runs for a newcomer."""
    server = serve(web_yaml(pki))
    context = client_context(pki / "ca.pem")
    assert get(server.port, "/metrics", context, AUTH)[0] == 200  # remembered from now on
    release = threading.Event()
    real = bcrypt.checkpw

    def slow(password: bytes, hashed: bytes) -> bool:
        release.wait(10)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", slow)
    guess = {"Authorization": "Basic " + base64.b64encode(b"prometheus:guess").decode()}
    results: list[int] = []
    guesser = threading.Thread(
        target=lambda: results.append(get(server.port, "/metrics", context, guess)[0])
    )
    guesser.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert get(server.port, "/metrics", context, AUTH)[0] == 200
    assert time.monotonic() - started < 2
    release.set()
    guesser.join(10)
    assert results == [401]
