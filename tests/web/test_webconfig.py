"""The web config file (`--web.config.file`): the exporter-toolkit's keys and meaning, every
mistake reported as `file:line: path: what` without quoting a value, files checked at load."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization

from exporter.config import ConfigError
from exporter.web.webconfig import load_web_settings
from tests.certs import make_ca_and_server_cert, make_client_cert

# bcrypt at the lowest cost: these tests check the file, not the hashing.
HASH = bcrypt.hashpw(b"right-password", bcrypt.gensalt(4)).decode()


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_ca_and_server_cert(tmp_path, ["localhost"], ["127.0.0.1"])
    make_client_cert(tmp_path)
    return tmp_path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_web_settings(path)
    return info.value.problems


def write(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


@pytest.mark.smoke
def test_a_full_file_gives_a_tls_context_users_and_headers(pki: Path) -> None:
    path = write(
        pki,
        "tls_server_config:\n"
        "  cert_file: server.pem\n"  # relative to the web config's directory
        "  key_file: server-key.pem\n"
        "  min_version: TLS13\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {pki / 'client-ca.pem'}\n"
        "  client_allowed_sans: [scraper.example]\n"
        "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "    X-XSS-Protection: ''\n"  # blank: unset, as in the toolkit
        f"basic_auth_users:\n  prometheus: {HASH}\n",
    )
    settings = load_web_settings(path)
    assert settings.tls is not None
    assert settings.tls.minimum_version == ssl.TLSVersion.TLSv1_3
    assert settings.tls.verify_mode == ssl.CERT_REQUIRED
    assert settings.allowed_sans == frozenset({"scraper.example"})
    assert settings.users == {"prometheus": HASH.encode()}
    assert settings.headers == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )
    assert settings.files == (
        path,
        pki / "server.pem",
        pki / "server-key.pem",
        pki / "client-ca.pem",
    )


def test_an_empty_file_or_empty_tls_section_is_plain_http(tmp_path: Path) -> None:
    for text in ("", "tls_server_config: {}\n", f"basic_auth_users: {{a: '{HASH}'}}\n"):
        settings = load_web_settings(write(tmp_path, text))
        assert settings.tls is None


def test_unknown_keys_are_named_with_their_line_and_closest_key(pki: Path) -> None:
    path = write(
        pki,
        "tls_server_config:\n"
        "  cert_file: server.pem\n"
        "  key_file: server-key.pem\n"
        "  min_verison: TLS12\n"
        "basic_auth_user: {}\n",
    )
    assert problems(path) == [
        f"{path}:4: tls_server_config.min_verison: unknown key: did you mean min_version?",
        f"{path}:5: basic_auth_user: unknown key: did you mean basic_auth_users?",
    ]


def test_a_bad_hash_is_refused_by_user_without_quoting_it(tmp_path: Path) -> None:
    plain = "my-plain-password-pasted-here"
    path = write(
        tmp_path,
        f"basic_auth_users:\n  alice: {HASH}\n  bob: {plain}\n  carol: '{HASH[:-1]}'\n",
    )
    found = problems(path)
    assert [p.split(": ")[:2] for p in found] == [
        [f"{path}:3", "basic_auth_users.bob"],
        [f"{path}:4", "basic_auth_users.carol"],
    ]
    assert all("not a bcrypt hash" in p for p in found)
    assert not any(plain in p or HASH[:-1] in p for p in found)


def test_a_user_name_with_a_colon_can_never_log_in_and_is_refused(tmp_path: Path) -> None:
    (found,) = problems(write(tmp_path, f"basic_auth_users:\n  'a:b': {HASH}\n"))
    assert "basic_auth_users.a:b: a user name must be" in found


def test_missing_files_are_reported_for_the_key_that_names_them(tmp_path: Path) -> None:
    path = write(tmp_path, "tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n")
    assert problems(path) == [
        f"{path}:2: tls_server_config.cert_file: cannot read {tmp_path / 'nope.pem'}: "
        "No such file or directory",
        f"{path}:3: tls_server_config.key_file: cannot read {tmp_path / 'nope.key'}: "
        "No such file or directory",
    ]


def test_tls_without_a_key_file_is_refused(pki: Path) -> None:
    (found,) = problems(write(pki, "tls_server_config:\n  cert_file: server.pem\n"))
    assert found.endswith("tls_server_config.key_file: required when TLS is on")


def test_a_key_that_does_not_match_the_certificate_is_refused(pki: Path) -> None:
    path = write(pki, "tls_server_config:\n  cert_file: server.pem\n  key_file: client-key.pem\n")
    (found,) = problems(path)
    assert "tls_server_config.cert_file: cannot load the certificate with its key" in found


def test_an_encrypted_key_is_refused_instead_of_prompting(pki: Path) -> None:
    key = serialization.load_pem_private_key((pki / "server-key.pem").read_bytes(), None)
    (pki / "encrypted.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    path = write(pki, "tls_server_config:\n  cert_file: server.pem\n  key_file: encrypted.pem\n")
    (found,) = problems(path)
    assert "cannot load the certificate with its key" in found


def test_a_fifo_as_a_certificate_is_refused_at_once(pki: Path) -> None:
    os.mkfifo(pki / "fifo.pem")
    path = write(pki, "tls_server_config:\n  cert_file: fifo.pem\n  key_file: server-key.pem\n")
    (found,) = problems(path)
    assert found.endswith("not a regular file")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            "  min_version: TLS14\n",
            "tls_server_config.min_version: Input should be 'TLS10', 'TLS11', 'TLS12' or 'TLS13'",
        ),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "tls_server_config.min_version: is above max_version",
        ),
        (
            "  client_auth_type: RequireAnyClientCert\n",
            "tls_server_config.client_auth_type: certificates cannot be required without",
        ),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file: required with client_auth_type "
            "RequireAndVerifyClientCert",
        ),
        (
            "  client_ca_file: client-ca.pem\n",
            "tls_server_config.client_auth_type: client CAs are configured without",
        ),
        (
            "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: client-ca.pem\n"
            "  client_allowed_sans: [x]\n",
            "tls_server_config.client_allowed_sans: needs client_auth_type",
        ),
        (
            "  client_auth_type: Sometimes\n",
            "tls_server_config.client_auth_type: Input should be 'NoClientCert'",
        ),
        (
            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites: not supported",
        ),
        ("  cert: '-----BEGIN'\n", "tls_server_config.cert: inline certificates are not"),
    ],
)
def test_tls_settings_are_checked(pki: Path, lines: str, expected: str) -> None:
    path = write(
        pki, "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n" + lines
    )
    found = problems(path)
    assert any(expected in p for p in found), found


def test_min_version_tls13_is_what_the_context_allows(pki: Path) -> None:
    path = write(
        pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
        "  max_version: TLS12\n",
    )
    settings = load_web_settings(path)
    assert settings.tls is not None
    assert settings.tls.minimum_version == ssl.TLSVersion.TLSv1_2
    assert settings.tls.maximum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Server: me", "http_server_config.headers.Server: this header cannot be configured"),
        ("X-Frame-Options: allow", "headers.X-Frame-Options: must be deny or sameorigin"),
        ("X-Content-Type-Options: sniff", "headers.X-Content-Type-Options: must be nosniff"),
        ('Content-Security-Policy: "a\\r\\nSet-Cookie: x=1"', "no control characters"),
    ],
)
def test_headers_are_the_toolkits_only(tmp_path: Path, header: str, expected: str) -> None:
    found = problems(write(tmp_path, f"http_server_config:\n  headers:\n    {header}\n"))
    assert any(expected in p for p in found), found


def test_yaml_mistakes_have_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"basic_auth_users:\n  a: {HASH}\n  a: {HASH}\n")
    assert problems(path) == [f"{path}:3: basic_auth_users.a: duplicate key (also on line 2)"]
    path = write(tmp_path, "tls_server_config: [\n")
    (found,) = problems(path)
    assert found.startswith(f"{path}:2:")
    assert "not valid YAML" in found
    path = write(tmp_path, "- a list\n")
    assert problems(path) == [f"{path}:1: (top level): must be a mapping of keys to values"]


def test_a_missing_web_config_file_says_so(tmp_path: Path) -> None:
    (found,) = problems(tmp_path / "absent.yml")
    assert found == f"{tmp_path / 'absent.yml'}: cannot read the web config file: " + (
        "No such file or directory"
    )


@pytest.mark.parametrize(
    ("policy", "mode"),
    [
        ("NoClientCert", ssl.CERT_NONE),
        ("RequestClientCert", ssl.CERT_NONE),  # a certificate nothing would check: not asked
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ],
)
def test_client_auth_types_map_to_what_openssl_enforces(
    pki: Path, policy: str, mode: ssl.VerifyMode
) -> None:
    ca = "  client_ca_file: client-ca.pem\n" if "Verify" in policy else ""
    path = write(
        pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
        f"  client_auth_type: {policy}\n{ca}",
    )
    settings = load_web_settings(path)
    assert settings.tls is not None
    assert settings.tls.verify_mode == mode
    if ca:
        assert len(settings.tls.get_ca_certs()) == 1


def test_an_inline_client_ca_is_taken(pki: Path) -> None:
    pem = (pki / "client-ca.pem").read_text()
    inline = "\n".join("    " + line for line in pem.splitlines())
    path = write(
        pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca: |\n{inline}\n",
    )
    settings = load_web_settings(path)
    assert settings.tls is not None
    assert len(settings.tls.get_ca_certs()) == 1
