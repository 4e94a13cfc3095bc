"""`--print-config`: the effective configuration, defaults filled in, no secret, reads back."""

from __future__ import annotations

from pathlib import Path

import yaml

from exporter.config import effective_yaml, load_config, load_config_text
from tests.conftest import SECRET_KEY, run_cli

TOKEN = "session-token-7d1e2f3a4b5c6d7e8f9a0b1c"
PASSWORD = "iam-password-5e4d3c2b1a"
TEXT = f"""\
state_path: /tmp/unused.db
credentials: {{access_key: AKPRINTED0000000001, secret_key: {SECRET_KEY}, security_token: {TOKEN}}}
targets:
  - region: r1
    project_id: p1
    instances: [{{service: dcs, id: i1}}]
  - region: r2
    project_id: p2
    credentials: {{source: password, user: u, domain: d, password: {PASSWORD}}}
    discover: {{services: [kafka]}}
"""


def test_print_config_shows_the_defaults_and_no_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(TEXT)
    run = run_cli(f"--config.file={cfg}", "--print-config", process=True)
    assert run.rc == 0, run.stderr
    for secret in (SECRET_KEY, TOKEN, PASSWORD, "AKPRINTED0000000001"):
        assert secret not in run.stdout + run.stderr
    doc = yaml.safe_load(run.stdout)
    assert doc["poll_interval"] == "1m"  # a default, spelled as a file spells it
    assert doc["http"]["backoff_initial"] == "500ms"
    assert doc["metrics"]["duration_buckets"][0] == 5.0
    assert doc["credentials"]["secret_key"] == "<redacted>"
    assert doc["targets"][1]["credentials"]["password"] == "<redacted>"
    assert doc["targets"][1]["discover"]["interval"] == "10m"


def test_the_printed_configuration_reads_back_the_same() -> None:
    config = load_config_text(TEXT, env={})
    printed = effective_yaml(config).replace("<redacted>", "x")
    again = load_config_text(printed, env={})
    assert again.poll_interval == config.poll_interval
    assert again.http == config.http
    assert again.metrics == config.metrics
    assert [t.discover for t in again.targets] == [t.discover for t in config.targets]


def test_secret_files_are_not_quoted_either(tmp_path: Path) -> None:
    """A secret pasted into a `*_file` key is the path: never printed, as the loader never
    quotes it back."""
    secret = tmp_path / "sk"
    secret.write_text(SECRET_KEY)
    cfg = tmp_path / "c.yml"
    cfg.write_text(TEXT.replace(f"secret_key: {SECRET_KEY}", f"secret_key_file: {secret}"))
    printed = effective_yaml(load_config(cfg, env={}))
    assert SECRET_KEY not in printed
    assert str(secret) not in printed
    assert yaml.safe_load(printed)["credentials"]["secret_key_file"] == "<redacted>"
