"""`--check-config`: valid files pass, broken ones give one line per problem and exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import SECRET_KEY, run_cli

# The CLI's config checks are quick and version-sensitive: run on every supported Python.
pytestmark = pytest.mark.smoke

GOOD = """\
poll_interval: 30s
lookback: 12h
state_path: /tmp/unused.db
credentials:
  access_key: AKEXAMPLE
  secret_key: ${TEST_SK}
targets:
  - region: ap-southeast-1
    project_id: 0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b
    task_center: true
    instances:
      - {service: dcs, id: 5560df16-cebf-4473-95c4-d1b573c16e79, name: redis-prod}
      - {service: kafka, id: 9b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e, name: events}
      - {service: rabbitmq, id: 2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f}
      - {service: rocketmq, id: 3d4e5f6a-7b8c-4d9e-8f1a-2b3c4d5e6f7a}
"""

TARGET = """\
targets:
  - region: ap-southeast-1
    project_id: p1
    instances:
      - {service: dcs, id: i1}
"""
NO_ENV_KEYS = {"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": ""}
CREDS = f"credentials: {{access_key: AK, secret_key: {SECRET_KEY}}}\n"

# (name, file text, [(line, path fragment, message fragment)])
BROKEN = [
    ("missing targets", CREDS, [(None, "targets", "required key is missing")]),
    (
        "unknown top-level key",
        CREDS + TARGET + "pol_interval: 10s\n",
        [(7, "pol_interval", "unknown key")],
    ),
    (
        "unknown nested key",
        CREDS + TARGET.replace("{service: dcs, id: i1}", "{service: dcs, id: i1, colour: red}"),
        [(6, "targets[0].instances[0].colour", "unknown key")],
    ),
    (
        "bad duration",
        CREDS + TARGET + "poll_interval: 10 parsecs\n",
        [(7, "poll_interval", "invalid duration")],
    ),
    (
        "bare number duration",
        CREDS + TARGET + "lookback: 3600\n",
        [(7, "lookback", "must be a duration string")],
    ),
    (
        "bad service name",
        CREDS + TARGET.replace("service: dcs", "service: redis"),
        [(6, "targets[0].instances[0].service", "'redis'")],
    ),
    (
        "unreadable secret file",
        "credentials: {access_key: AK, secret_key_file: /nonexistent/sk}\n" + TARGET,
        [(1, "credentials.secret_key_file", "cannot read")],
    ),
    (
        "secret file is a directory",
        "credentials: {access_key: AK, secret_key_file: /tmp}\n" + TARGET,
        [(1, "credentials.secret_key_file", "cannot read")],
    ),
    ("not YAML", "targets: [\n  - region: x\n    : : :\n", [(None, "", "not valid YAML")]),
    ("YAML but not a mapping", "- just\n- a list\n", [(1, "(top level)", "mapping")]),
    (
        "unset environment variable",
        "credentials:\n  access_key: AK\n  secret_key: ${NO_SUCH_VAR_XYZ}\n" + TARGET,
        [(3, "credentials.secret_key", "NO_SUCH_VAR_XYZ is not set")],
    ),
    ("no credentials anywhere", TARGET, [(None, "(top level)", "no credentials")]),
    (
        "both secret sources",
        f"credentials: {{access_key: AK, secret_key: {SECRET_KEY},\n"
        "  secret_key_file: /etc/hostname}\n" + TARGET,
        [(1, "credentials", "exactly one of secret_key and secret_key_file")],
    ),
    (
        "instance listed twice",
        CREDS + TARGET + "      - {service: kafka, id: i1}\n",
        [(3, "targets[0]", "listed twice")],
    ),
    (
        "bad endpoint URL",
        CREDS + TARGET + "    endpoints: {dcs: 'ftp://x'}\n",
        [(7, "targets[0].endpoints.dcs", "http(s) URL")],
    ),
    (
        "poll interval too short",
        CREDS + TARGET + "poll_interval: 500ms\n",
        [(None, "(top level)", "at least 1s")],
    ),
    ("empty file", "", [(None, "", "empty")]),
    (
        "unknown credential source",
        "credentials: {source: magic, access_key: AK}\n" + TARGET,
        [(1, "credentials", "source must be one of aksk, env, metadata, password")],
    ),
    (
        "password credentials without a password",
        "credentials: {source: password, user: u, domain: d}\n" + TARGET,
        [(1, "credentials", "exactly one of password and password_file")],
    ),
    (
        "bad discovery regex",
        CREDS + TARGET + "    discover: {name_regex: 'prod-('}\n",
        [(7, "targets[0].discover.name_regex", "invalid regular expression")],
    ),
    (
        "unknown cloud",
        CREDS + TARGET + "    cloud: aws\n",
        [(7, "targets[0].cloud", "'aws'")],
    ),
    (
        "unreadable CA bundle",
        CREDS + TARGET + "http: {ca_file: /nonexistent/ca.pem}\n",
        [(7, "http.ca_file", "cannot load CA certificates")],
    ),
    (
        "several problems at once",
        CREDS + TARGET.replace("service: dcs", "service: redis") + "poll_interval: soon\nfoo: 1\n",
        [
            (6, "service", "'redis'"),
            (7, "poll_interval", "invalid duration"),
            (8, "foo", "unknown key"),
        ],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_gives_one_line_per_problem_and_exit_2(
    tmp_path: Path, name: str, text: str, expected: list[tuple[int | None, str, str]]
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    run = run_cli(f"--config.file={path}", "--check-config", env=NO_ENV_KEYS)
    assert run.rc == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith(str(path))]
    assert len(lines) == len(expected), run.stderr
    for line, (lineno, where, what) in zip(lines, expected, strict=True):
        if lineno is not None:
            assert line.startswith(f"{path}:{lineno}: "), line
        assert where in line, line
        assert what in line, line
    assert SECRET_KEY not in run.stderr + run.stdout
    assert run.stderr.strip().endswith(f"{len(expected)} problem(s) in the configuration")


def test_valid_file_passes_and_env_vars_expand(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(GOOD)
    run = run_cli(f"--config.file={path}", "--check-config", env={"TEST_SK": "sk-from-env"})
    assert run.rc == 0, run.stderr
    assert "configuration OK: 1 target(s), 5 task list(s)" in run.stdout
    assert "sk-from-env" not in run.stdout + run.stderr


def test_secret_file_and_token_file_are_read(tmp_path: Path) -> None:
    (tmp_path / "sk").write_text("file-secret\n")
    (tmp_path / "token").write_text("file-token\n")
    path = tmp_path / "config.yml"
    path.write_text(
        textwrap.dedent(f"""\
        credentials:
          access_key: AK
          secret_key_file: {tmp_path / "sk"}
          security_token_file: {tmp_path / "token"}
        """)
        + TARGET
    )
    run = run_cli(f"--config.file={path}", "--check-config")
    assert run.rc == 0, run.stderr


def test_secret_never_echoed_even_when_its_value_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        f"credentials: {{access_key: AK, secret_key: {SECRET_KEY}, bogus: 1}}\n"
        + TARGET.replace("service: dcs", f"service: {SECRET_KEY}")
    )
    run = run_cli(f"--config.file={path}", "--check-config")
    assert run.rc == 2
    assert SECRET_KEY not in run.stderr + run.stdout


def test_missing_config_file_and_flags(tmp_path: Path) -> None:
    run = run_cli(f"--config.file={tmp_path / 'nope.yml'}", "--check-config")
    assert run.rc == 2
    assert "cannot read the configuration file" in run.stderr
    run = run_cli("--check-config")
    assert run.rc == 2
    assert "--config.file is required" in run.stderr
    run = run_cli("--demo", "--web.listen-address=nonsense")
    assert run.rc == 2
    assert "invalid listen address" in run.stderr


CREDENTIAL_EXAMPLES = {
    "aksk": "credentials: {access_key: AK, secret_key: sk-value}\n",
    "env (explicit)": "credentials: {source: env}\n",
    "env (implicit)": "",
    "metadata": "credentials: {source: metadata}\n",
    "password": "credentials: {source: password, user: u, domain: d, password: pw}\n",
}


@pytest.mark.parametrize("name", list(CREDENTIAL_EXAMPLES))
def test_every_credential_source_is_accepted(tmp_path: Path, name: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(CREDENTIAL_EXAMPLES[name] + TARGET.replace("    project_id: p1\n", ""))
    env = {"HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": "env-secret-value"}
    run = run_cli(f"--config.file={path}", "--check-config", env=env)
    assert run.rc == 0, run.stderr
    assert "env-secret-value" not in run.stdout + run.stderr


def test_env_credentials_missing_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("credentials: {source: env}\n" + TARGET)
    run = run_cli(
        f"--config.file={path}",
        "--check-config",
        env={"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": ""},
    )
    assert run.rc == 2
    assert "HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK not set" in run.stderr
