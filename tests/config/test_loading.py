"""Configuration: valid files load, broken ones give every problem at once, as data
(file, line, path, message) and as `--check-config` lines with exit code 2.

Most tests call the loader in-process; a few run the CLI for the exit codes and output.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from exporter.config import (
    MAX_CONFIG_BYTES,
    Config,
    ConfigError,
    Problem,
    load_config,
    load_config_text,
    yamlevents,
)
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
# A plausible secret key (40 characters), pasted where it does not belong.
PASTED = "Zq8vR2mXw7LpT4bYc9NfK3hJd6GsA1eUo5iWtQyV"


def problems(text: str, env: dict[str, str] | None = None) -> list[Problem]:
    """The problems of a broken file (fails the test when it loads)."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, source="t.yml", env=env or {})
    assert [str(p) for p in caught.value.details] == caught.value.problems
    for p in caught.value.details:
        assert p.source == "t.yml"
    return caught.value.details


def only(text: str, env: dict[str, str] | None = None) -> Problem:
    found = problems(text, env)
    assert len(found) == 1, found
    return found[0]


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
        [(6, "targets[0].instances[0].service", "'dcs', 'kafka', 'rabbitmq' or 'rocketmq'")],
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
        [(7, "targets[0].instances[1]", "already listed at targets[0].instances[0]")],
    ),
    (
        "bad endpoint URL",
        CREDS + TARGET + "    endpoints: {dcs: 'ftp://x'}\n",
        [(7, "targets[0].endpoints.dcs", "http(s) URL")],
    ),
    (
        "poll interval too short",
        CREDS + TARGET + "poll_interval: 500ms\n",
        [(7, "poll_interval", "at least 1s")],
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
        [(7, "targets[0].cloud", "'huaweicloud', 'huaweicloud-eu' or 'opentelekomcloud'")],
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
            (6, "service", "'dcs'"),
            (7, "poll_interval", "invalid duration"),
            (8, "foo", "unknown key"),
        ],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_gives_one_problem_each_with_line_and_path(
    name: str, text: str, expected: list[tuple[int | None, str, str]]
) -> None:
    found = problems(text, env=NO_ENV_KEYS)
    assert len(found) == len(expected), found
    for problem, (lineno, where, what) in zip(found, expected, strict=True):
        if lineno is not None:
            assert problem.line == lineno, problem
        assert where in problem.path, problem
        assert what in problem.message, problem
        assert SECRET_KEY not in str(problem)


def test_check_config_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(BROKEN[-1][1])
    run = run_cli(f"--config.file={path}", "--check-config", env=NO_ENV_KEYS, process=True)
    assert run.rc == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [
        f"{path}:6: targets[0].instances[0].service: Input should be 'dcs', 'kafka', "
        "'rabbitmq' or 'rocketmq': did you mean dcs? (Redis and Memcached instances are DCS)",
        f"{path}:7: poll_interval: invalid duration: use a number and a unit (ms, s, m, h, d, w)",
        f"{path}:8: foo: unknown key",
        "3 problem(s) in the configuration",
    ]
    assert SECRET_KEY not in run.stderr + run.stdout


def test_valid_file_passes_and_env_vars_expand(tmp_path: Path) -> None:
    config = load_config_text(GOOD, env={"TEST_SK": "sk-from-env"})
    creds = config.credentials
    assert creds is not None
    assert creds.source == "aksk"
    assert creds.secret() == "sk-from-env"
    assert config.poll_interval == 30
    assert config.lookback == 12 * 3600
    path = tmp_path / "config.yml"
    path.write_text(GOOD)
    run = run_cli(f"--config.file={path}", "--check-config", env={"TEST_SK": "sk-from-env"})
    assert run.rc == 0, run.stderr
    assert "configuration OK: 1 target(s), 5 task list(s)" in run.stdout
    assert "sk-from-env" not in run.stdout + run.stderr


def test_secret_file_and_token_file_are_read(tmp_path: Path) -> None:
    (tmp_path / "sk").write_text("file-secret\n")
    (tmp_path / "token").write_text("file-token\n")
    text = (
        textwrap.dedent(f"""\
        credentials:
          access_key: AK
          secret_key_file: {tmp_path / "sk"}
          security_token_file: {tmp_path / "token"}
        """)
        + TARGET
    )
    creds = load_config_text(text, env={}).credentials
    assert creds is not None
    assert creds.source == "aksk"
    assert (creds.secret(), creds.token()) == ("file-secret", "file-token")


def test_secret_never_echoed_even_when_its_value_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        f"credentials: {{access_key: AK, secret_key: {SECRET_KEY}, bogus: 1}}\n"
        + TARGET.replace("service: dcs", f"service: {SECRET_KEY}")
    )
    run = run_cli(f"--config.file={path}", "--check-config")
    assert run.rc == 2
    assert "bogus: unknown key" in run.stderr
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
def test_every_credential_source_is_accepted(name: str) -> None:
    text = CREDENTIAL_EXAMPLES[name] + TARGET.replace("    project_id: p1\n", "")
    env = {"HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": "env-secret-value"}
    config = load_config_text(text, env=env)
    creds = config.credentials_for(config.targets[0])
    expected = "aksk" if name == "aksk" else name.split(maxsplit=1)[0]
    assert creds.source == expected
    if expected == "env":
        assert (creds.access_key, creds.secret()) == ("ENVAK", "env-secret-value")  # type: ignore[union-attr]


def test_env_credentials_missing_is_an_error() -> None:
    problem = only("credentials: {source: env}\n" + TARGET, env=NO_ENV_KEYS)
    assert problem.path == "credentials"
    assert "HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK not set" in problem.message


# --- issue 10: where and what ------------------------------------------------------------


def test_credential_key_named_after_a_source_is_reported_at_its_own_line() -> None:
    text = "credentials:\n  access_key: A\n  secret_key: S\n  password: P\n" + TARGET
    problem = only(text)
    assert (problem.line, problem.path) == (4, "credentials.password")
    assert problem.message == "unknown key: password belongs to source: password"
    assert str(problem) == (
        "t.yml:4: credentials.password: unknown key: password belongs to source: password"
    )
    # The same inside a target, and with keys named like the other sources.
    text = CREDS + TARGET + "    credentials: {source: password, user: u, domain: d,\n"
    text += "                  password: p, env: 1, metadata: 2}\n"
    found = problems(text)
    assert [(p.line, p.path) for p in found] == [
        (8, "targets[0].credentials.env"),
        (8, "targets[0].credentials.metadata"),
    ]


def test_cross_field_checks_come_with_the_field_errors_at_their_keys() -> None:
    text = CREDS + "foo: 1\npoll_interval: 0s\n" + TARGET
    found = problems(text)
    assert [(p.line, p.path, p.message) for p in found] == [
        (2, "foo", "unknown key"),
        (3, "poll_interval", "must be at least 1s"),
    ]
    # Checks between fields: at the key the file sets, with the other errors.
    text = CREDS + "poll_interval: 2h\nlookback: 1h\nhttp: {retries: many}\n" + TARGET
    found = problems(text)
    assert [(p.line, p.path, p.message) for p in found] == [
        (3, "lookback", "must be at least poll_interval (2h)"),
        (
            4,
            "http.retries",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
    ]
    problem = only(CREDS + "poll_interval: 2d\n" + TARGET)
    assert (problem.line, problem.path) == (2, "poll_interval")
    assert problem.message == "must not be above lookback (24h by default)"
    problem = only(CREDS + "http: {timeout: 5s,\n  backoff_initial: 1m}\n" + TARGET)
    assert (problem.line, problem.path) == (3, "http.backoff_initial")
    # An instance configured twice, across targets, next to an error in another target;
    # the same ID in another project is another instance.
    text = CREDS + textwrap.dedent("""\
        targets:
          - region: ap-southeast-1
            project_id: p1
            instances:
              - {service: dcs, id: i1}
          - region: ap-southeast-1
            project_id: p1
            cloud: aws
            instances:
              - {service: dcs, id: i2}
              - {service: kafka, id: i1}
          - region: ap-southeast-1
            project_id: p2
            instances:
              - {service: dcs, id: i1}
        """)
    found = problems(text)
    assert [(p.line, p.path) for p in found] == [
        (9, "targets[1].cloud"),
        (12, "targets[1].instances[1]"),
    ]
    assert found[1].message == "this instance is already listed at targets[0].instances[0]"
    # No credentials: reported with the other errors too.
    found = problems("foo: 1\n" + TARGET)
    assert [(p.line, p.path) for p in found] == [(1, "foo"), (1, "(top level)")]


def test_task_center_configured_twice_is_reported_at_the_second() -> None:
    text = CREDS + "targets:\n" + "  - {region: r1, project_id: p1, task_center: true}\n" * 2
    problem = only(text)
    assert (problem.line, problem.path) == (4, "targets[1].task_center")


def test_secret_file_path_is_never_echoed(tmp_path: Path) -> None:
    text = f"credentials: {{access_key: AK, secret_key_file: {PASTED}}}\n" + TARGET
    problem = only(text)
    assert problem.path == "credentials.secret_key_file"
    assert problem.message == "cannot read the file: No such file or directory"
    contents: list[tuple[bytes, str]] = [
        (b"", "the file is empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * 100_000, "larger than 64 KiB"),
    ]
    for content, why in contents:
        secret = tmp_path / f"{PASTED}-{len(content)}"
        secret.write_bytes(content)
        text = f"credentials: {{access_key: AK, secret_key_file: {secret}}}\n" + TARGET
        problem = only(text)
        assert why in problem.message
        assert PASTED not in str(problem)
    problem = only(CREDS + TARGET + f"http: {{ca_file: /{PASTED}}}\n")
    assert problem.message == "cannot load CA certificates: No such file or directory"


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    text = CREDS + "poll_interval: 30s\n" + TARGET + "poll_interval: 1m\n"
    problem = only(text)
    assert (problem.line, problem.path) == (8, "poll_interval")
    assert problem.message == "duplicate key (also on line 2)"
    problem = only(CREDS + TARGET.replace("id: i1}", "id: i1, id: i2}"))
    assert (problem.line, problem.path) == (6, "targets[0].instances[0].id")


def test_empty_environment_variable_is_called_empty() -> None:
    text = "credentials: {access_key: AK, secret_key: '${MY_SK}'}\n" + TARGET
    assert only(text, env={"MY_SK": ""}).message == "environment variable MY_SK is set but empty"
    assert only(text, env={}).message == "environment variable MY_SK is not set"
    text = "credentials: {access_key: AK, secret_key: '${MY_SK:-fallback}'}\n" + TARGET
    creds = load_config_text(text, env={"MY_SK": ""}).credentials
    assert creds is not None
    assert creds.source == "aksk"
    assert creds.secret() == "fallback"


def test_misspelled_key_gets_the_closest_known_key() -> None:
    text = CREDS + "poll_intervall: 30s\n" + TARGET.replace("instances:", "instance:")
    found = problems(text)
    assert [(p.line, p.path, p.message) for p in found] == [
        (2, "poll_intervall", "unknown key: did you mean poll_interval?"),
        (6, "targets[0].instance", "unknown key: did you mean instances?"),
    ]
    problem = only(CREDS + TARGET + "http: {time_out: 5s}\n")
    assert problem.message == "unknown key: did you mean timeout?"
    assert only(CREDS + TARGET + "colour: red\n").message == "unknown key"


@pytest.mark.parametrize(
    "placement",
    [
        "poll_interval: {v}\n",
        "lookback: '{v}s'\n",
        "state_path: ''\nhttp: {{proxy: '{v}'}}\n",
        "metrics: {{duration_buckets: ['{v}']}}\n",
        "TARGET.region",
        "TARGET.service",
        "TARGET.id",
        "TARGET.cloud",
    ],
)
def test_values_are_never_echoed(tmp_path: Path, placement: str) -> None:
    """A secret pasted into the wrong key, while the real one comes from a file."""
    (tmp_path / "sk").write_text("the-real-secret\n")
    text = f"credentials: {{access_key: AK, secret_key_file: {tmp_path / 'sk'}}}\n"
    target = TARGET
    if placement.startswith("TARGET."):
        key = placement.split(".")[1]
        target = {
            "region": TARGET.replace("ap-southeast-1", PASTED),
            "service": TARGET.replace("service: dcs", f"service: {PASTED}"),
            "id": TARGET.replace("id: i1", f"id: '{PASTED}!'"),
            "cloud": TARGET + f"    cloud: {PASTED}\n",
        }[key]
    else:
        text += placement.format(v=PASTED)
    found = problems(text + target)
    assert found
    for problem in found:
        assert PASTED not in str(problem)
        assert PASTED.lower() not in str(problem).lower()


def test_check_config_never_prints_a_pasted_secret(tmp_path: Path) -> None:
    (tmp_path / "sk").write_text("the-real-secret\n")
    path = tmp_path / "config.yml"
    path.write_text(
        f"credentials: {{access_key: AK, secret_key_file: {tmp_path / 'sk'}}}\n"
        f"poll_interval: {PASTED}\n" + TARGET.replace("ap-southeast-1", PASTED)
    )
    run = run_cli(f"--config.file={path}", "--check-config")
    assert run.rc == 2, run.stderr
    assert "2 problem(s)" in run.stderr
    assert PASTED not in run.stderr + run.stdout


# --- issue 10 item 7: hostile files ------------------------------------------------------


@pytest.mark.parametrize("style", ["flow", "block", "long flow"])
def test_deep_nesting_is_a_clean_error(style: str) -> None:
    depth = 5000 if style == "flow" else 2000  # block: its indentation grows fast
    if style == "flow":
        nested = "[" * depth + "]" * depth
    elif style == "long flow":
        nested = "[" * 200_000
    else:
        nested = "".join(f"\n{'  ' * (i + 1)}k{i}:" for i in range(depth)) + " 1"
    problem = only(CREDS + TARGET + "x: " + nested + "\n")
    assert problem.line == (7 if style != "block" else 7 + 32)  # where it gets too deep
    assert "nest" in problem.message


def test_moderate_nesting_reaches_the_depth_bound() -> None:
    """Below libyaml's own bound (1,000): the reader's bound, the same for both parsers."""
    nested = "[" * 40 + "]" * 40
    for parser in (yamlevents._Parser, yaml.SafeLoader):
        original = yamlevents._Parser
        yamlevents._Parser = parser
        try:
            problem = only(CREDS + TARGET + "x: " + nested + "\n")
        finally:
            yamlevents._Parser = original
        assert problem.message == "nested more than 32 levels deep"


def test_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """Billion laughs: nine aliases of nine aliases... of "lol", nine levels deep.

    Run as a process (bounded by a timeout) since a loader without bounds would take minutes
    and gigabytes.
    """
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yml"
    path.write_text(CREDS + TARGET + "\n".join(lines) + "\n")
    run = run_cli(f"--config.file={path}", "--check-config", timeout=30)
    assert run.rc == 2, run.stderr
    assert "more than 1,000,000 values (YAML aliases?)" in run.stderr
    assert "Traceback" not in run.stderr


def test_aliases_and_merge_keys_still_work() -> None:
    text = textwrap.dedent("""\
        credentials: &keys {access_key: AK, secret_key: sk}
        targets:
          - &base
            region: ap-southeast-1
            project_id: p1
            credentials: *keys
            instances: [{service: dcs, id: i1}]
          - <<: *base
            project_id: p2
          - <<: [*base]
            project_id: p3
            instances: []
            task_center: true
        """)
    config = load_config_text(text, env={})
    assert [t.project_id for t in config.targets] == ["p1", "p2", "p3"]
    assert [len(t.instances) for t in config.targets] == [1, 1, 0]
    assert config.targets[1].credentials == config.credentials


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "a: [1, 2.5, -3, 0x1f, 1:30, .inf, true, no, ~, '', 2001-12-14, '007', \"x\\ty\"]\n"
        "b: {? c : d, 'e f': g}\nh: |\n  block\n  text\n",
        "s: >-\n  folded\n  text\nt: !!str 12\nu: !!int '12'\n",
    ],
)
def test_reader_gives_the_same_data_as_pyyaml(text: str) -> None:
    assert yamlevents.read_yaml(text, env={"TEST_SK": "x"}).data == yaml.safe_load(
        text.replace("${TEST_SK}", "x")
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("credentials: !!set {a: 1}\n", "unsupported YAML tag"),
        ("credentials: !!binary aGk=\n", "unsupported YAML tag"),
        ("credentials: !custom x\n", "unsupported YAML tag"),
        ("credentials: *nowhere\n", "alias *nowhere is not defined before"),
        ("credentials: {[a]: 1}\n", "a key must be a plain value"),
        ("---\na: 1\n---\nb: 2\n", "more than one YAML document"),
        ("x: " + "1" * 5000 + "\n", "invalid value"),
    ],
)
def test_yaml_beyond_plain_data_is_refused(text: str, message: str) -> None:
    assert message in only(text + TARGET if not text.startswith("---") else text).message


@pytest.mark.parametrize("value", ["''", "' '", "/", ".", "..", "/var/lib/.."])
def test_state_path_must_name_a_file(value: str) -> None:
    problem = only(CREDS + TARGET + f"state_path: {value}\n")
    assert (problem.line, problem.path) == (7, "state_path")
    assert "must be the path of a file" in problem.message


@pytest.mark.parametrize("key", ["poll_interval", "lookback", "catchup_max", "http.timeout"])
@pytest.mark.parametrize("value", ["9" * 400 + "s", "1e400s", "367d", "1000000000s"])
def test_durations_are_finite_and_bounded(key: str, value: str) -> None:
    line = f"http: {{{key[5:]}: {value}}}\n" if key.startswith("http.") else f"{key}: {value}\n"
    found = problems(CREDS + TARGET + line)
    assert (found[0].line, found[0].path) == (7, key)
    assert found[0].message in (
        "durations must be at most 366d",
        "invalid duration: use a number and a unit (ms, s, m, h, d, w)",  # 1e400s
    )
    if value != "1e400s":
        assert found[0].message == "durations must be at most 366d"


def test_longest_duration_is_accepted() -> None:
    config = load_config_text(CREDS + TARGET + "lookback: 366d\ncatchup_max: 52w\n", env={})
    assert config.retention == 366 * 86400


@pytest.mark.parametrize(
    ("buckets", "message"),
    [
        ("[5, .nan, 60]", "finite"),
        ("[5, .inf]", "finite"),
        ("[.NaN]", "finite"),
        ("[-1, 5]", "positive"),
        ("[0, 5]", "positive"),
        ("[5, 5]", "strictly increasing"),
        ("[60, 5]", "strictly increasing"),
        ("[]", "at least 1"),
    ],
)
def test_duration_buckets_are_finite_positive_increasing(buckets: str, message: str) -> None:
    problem = only(CREDS + TARGET + f"metrics: {{duration_buckets: {buckets}}}\n")
    assert (problem.line, problem.path) == (7, "metrics.duration_buckets")
    assert message in problem.message


def test_expected_durations_defaults_and_bounds() -> None:
    config = load_config_text(CREDS + TARGET)
    expected = config.metrics.expected_durations
    assert (expected.window, expected.max_age, expected.history) == (50, 30 * 86400.0, 30 * 86400.0)
    config = load_config_text(
        CREDS + TARGET + "metrics: {expected_durations: {window: 20, max_age: 8w, history: 0s}}\n"
    )
    assert config.metrics.expected_durations.model_dump() == {
        "window": 20,
        "max_age": 8 * 604800.0,
        "history": 0.0,
    }
    for setting, path, message in [
        ("{window: 0}", "metrics.expected_durations.window", "greater than or equal to 1"),
        ("{max_age: 0s, history: 0s}", "metrics.expected_durations.max_age", "at least 1s"),
        ("{history: 40d}", "metrics.expected_durations.history", "must not be above max_age"),
        ("{max_age: 7d}", "metrics.expected_durations.max_age", "must be at least history"),
        ("{windows: 5}", "metrics.expected_durations.windows", "did you mean window?"),
    ]:
        problem = only(CREDS + TARGET + f"metrics: {{expected_durations: {setting}}}\n")
        assert (problem.line, problem.path) == (7, path), setting
        assert message in problem.message, (setting, problem.message)


def test_file_size_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    with path.open("w") as f:
        f.write(CREDS + TARGET)
        f.write("# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}: the file is larger than 16 MiB"]


# --- issue 8: big configurations ---------------------------------------------------------


def test_ten_thousand_instances_load_with_lines_for_errors() -> None:
    """Correctness at scale (the time is measured by benchmarks/bench_config_load.py)."""
    rows = [f"      - {{service: kafka, id: k{i}, name: n{i}}}\n" for i in range(10_000)]
    text = CREDS + TARGET + "".join(rows)
    config = load_config_text(text, env={})
    assert isinstance(config, Config)
    assert len(config.targets[0].instances) == 10_001
    broken = text.replace("id: k9876,", "id: k9876, colour: red,")
    problem = only(broken)
    assert (problem.line, problem.path) == (6 + 9877, "targets[0].instances[9877].colour")
