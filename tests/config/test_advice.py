"""`--check-config` on what users get wrong: warnings that keep exit code 0, better errors.

Unknown regions (with the closest known one), instance IDs that are not UUIDs, services by
another name (`redis`: did you mean dcs?), account-wide targets with keys that need a region.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, Problem, check_config_text, load_config_text
from exporter.config.regions import REGIONS, region_advice
from tests.conftest import SECRET_KEY, run_cli

pytestmark = pytest.mark.smoke

CREDS = f"credentials: {{access_key: AK, secret_key: {SECRET_KEY}}}\n"
UUID = "5560df16-cebf-4473-95c4-d1b573c16e79"


def target(region: str = "ap-southeast-1", cloud: str = "huaweicloud", inst: str = UUID) -> str:
    return (
        "targets:\n"
        f"  - region: {region}\n"
        f"    cloud: {cloud}\n"
        "    project_id: 0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b\n"
        "    instances:\n"
        f"      - {{service: dcs, id: {inst}}}\n"
    )


def warnings(text: str) -> list[Problem]:
    _, found = check_config_text(text, source="t.yml", env={})
    assert all(p.severity == "warning" for p in found)
    return found


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, source="t.yml", env={})
    return caught.value.problems


def test_a_valid_file_with_known_region_and_uuid_has_no_warning() -> None:
    assert warnings(CREDS + target()) == []


def test_an_unknown_region_is_a_warning_naming_the_closest_known_one() -> None:
    (w,) = warnings(CREDS + target(region="ap-southeast-7"))
    assert (w.line, w.path) == (3, "targets[0].region")
    assert str(w).startswith("t.yml:3: targets[0].region: warning: a region unknown to huaweicloud")
    assert "(closest known: ap-southeast-" in w.message
    # A typo of a real region gets that region.
    (w,) = warnings(CREDS + target(region="eu-west-110"))
    assert "(closest known: eu-west-101)" in w.message


def test_a_region_of_another_cloud_names_that_cloud() -> None:
    (w,) = warnings(CREDS + target(region="eu-de"))
    assert w.message == (
        "a region of cloud opentelekomcloud, not of huaweicloud: set cloud: opentelekomcloud"
    )
    assert warnings(CREDS + target(region="eu-de", cloud="opentelekomcloud")) == []


def test_every_region_in_the_table_is_known_to_its_cloud() -> None:
    for cloud, names in REGIONS.items():
        assert len(set(names)) == len(names), cloud
        for name in names:
            assert region_advice(cloud, name) is None


@pytest.mark.parametrize(
    ("instance_id", "fragment"),
    [
        ("i1", "DCS and DMS instance IDs are UUIDs"),
        ("8abf6e1e3b2d4f5a9c7e6d5b4a3f2e1d", "32 hex digits are a task or project ID"),
        ("redis-prod", "DCS and DMS instance IDs are UUIDs"),
    ],
)
def test_an_instance_id_that_is_not_a_uuid_is_a_warning(instance_id: str, fragment: str) -> None:
    (w,) = warnings(CREDS + target(inst=instance_id))
    assert (w.line, w.path) == (7, "targets[0].instances[0].id")
    assert w.message.startswith("does not look like an instance ID")
    assert fragment in w.message
    assert instance_id not in w.message


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("redis", "did you mean dcs? (Redis and Memcached instances are DCS)"),
        ("memcached", "did you mean dcs? (Redis and Memcached instances are DCS)"),
        ("Redis", "did you mean dcs? (Redis and Memcached instances are DCS)"),
        ("kafak", "did you mean kafka?"),
        ("rabbit", "did you mean rabbitmq?"),
        ("rocketqm", "did you mean rocketmq?"),
        ("dms", "DMS has three services: kafka, rabbitmq or rocketmq"),
    ],
)
def test_a_service_by_another_name_gets_the_one_meant(written: str, hint: str) -> None:
    text = (CREDS + target()).replace("service: dcs", f"service: {written}")
    (problem,) = errors(text)
    assert problem == (
        "t.yml:7: targets[0].instances[0].service: Input should be 'dcs', 'kafka', "
        f"'rabbitmq' or 'rocketmq': {hint}"
    )


def test_discover_services_get_the_hint_too_and_nonsense_gets_none() -> None:
    text = CREDS + "targets:\n  - region: eu-de\n    cloud: opentelekomcloud\n"
    (problem,) = errors(text + "    discover: {services: [kafka, redis]}\n")
    assert problem.endswith(
        "discover.services[1]: Input should be 'dcs', 'kafka', 'rabbitmq' "
        "or 'rocketmq': did you mean dcs? (Redis and Memcached instances are DCS)"
    )
    (problem,) = errors(text + "    discover: {services: [zzzzzz]}\n")
    assert problem.endswith("'rabbitmq' or 'rocketmq'")


def test_top_level_credentials_no_target_uses_are_fine() -> None:
    text = CREDS + target() + f"    credentials: {{access_key: AK2, secret_key: {SECRET_KEY}x}}\n"
    config, found = check_config_text(text, env={})
    assert found == []
    assert config.credentials is not None
    assert config.credentials_for(config.targets[0]) is config.targets[0].credentials


def test_account_wide_targets_refuse_what_needs_a_region() -> None:
    text = CREDS + (
        "targets:\n"
        "  - cloud: huaweicloud\n"
        "    project_id: 0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b\n"
        f"    instances: [{{service: dcs, id: {UUID}}}]\n"
        "  - region: eu-de\n"
        "    cloud: opentelekomcloud\n"
        "    task_center: true\n"
        "    regions: [eu-*]\n"
    )
    assert errors(text) == [
        "t.yml:4: targets[0].project_id: needs region: an account-wide target (without region) "
        "finds its projects and instances itself",
        "t.yml:5: targets[0].instances: needs region: an account-wide target (without region) "
        "finds its projects and instances itself; name the region",
        "t.yml:9: targets[1].regions: only for account-wide targets (without region)",
    ]


def test_a_region_pattern_matching_no_known_region_is_a_warning() -> None:
    text = CREDS + "targets:\n  - cloud: opentelekomcloud\n    regions: [eu-*, ap-*]\n"
    (w,) = warnings(text)
    assert str(w) == (
        "t.yml:4: targets[0].regions[1]: warning: matches no region known to opentelekomcloud"
    )


def test_account_wide_targets_take_password_credentials() -> None:
    text = (
        "credentials: {source: password, user: u, domain: d, password: p}\n"
        "targets:\n"
        "  - cloud: opentelekomcloud\n"
    )
    (tc,) = load_config_text(text, env={}).targets
    assert tc.account_wide


def test_account_wide_minimal_target_loads() -> None:
    config = load_config_text(CREDS + "targets:\n  - cloud: opentelekomcloud\n", env={})
    (tc,) = config.targets
    assert tc.account_wide
    assert tc.discovery is not None
    assert tc.discovery.services == [
        "dcs",
        "kafka",
        "rabbitmq",
        "rocketmq",
    ]
    assert tc.endpoint("iam") == "https://iam.eu-de.otc.t-systems.com"


def test_region_placeholder_in_an_endpoint_override() -> None:
    text = CREDS + (
        "targets:\n"
        "  - region: eu-de\n"
        "    task_center: true\n"
        "    endpoints: {dcs: 'https://dcs.{region}.internal.example'}\n"
    )
    (tc,) = load_config_text(text, env={}).targets
    assert tc.endpoint("dcs") == "https://dcs.eu-de.internal.example"
    assert tc.endpoint("dms") == "https://dms.eu-de.myhuaweicloud.com"


def test_check_config_prints_warnings_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(CREDS + target(region="eu-nl", inst="i1"))
    run = run_cli(f"--config.file={path}", "--check-config")
    assert run.rc == 0, run.stderr
    assert run.stderr.splitlines() == [
        f"{path}:3: targets[0].region: warning: a region of cloud opentelekomcloud, not of "
        "huaweicloud: set cloud: opentelekomcloud",
        f"{path}:7: targets[0].instances[0].id: warning: does not look like an instance ID: "
        "DCS and DMS instance IDs are UUIDs",
    ]
    assert run.stdout.strip() == "configuration OK: 1 target(s), 1 task list(s), 2 warning(s)"
    assert SECRET_KEY not in run.stdout + run.stderr


def test_check_config_counts_account_wide_targets(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(CREDS + "targets:\n  - cloud: huaweicloud\n")
    run = run_cli(f"--config.file={path}", "--check-config")
    assert run.rc == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.strip() == (
        "configuration OK: 1 target(s), 0 task list(s), "
        "1 account-wide (projects and instances found at start)"
    )
