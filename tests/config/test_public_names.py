"""The public names of `exporter.config`, pinned: a move inside the package cannot drop one.

Callers import from `exporter.config` only; which of its modules holds a name is its own
business. Adding a name is a change to this list; removing one is a breaking change.
"""

from __future__ import annotations

import pytest

import exporter.config

pytestmark = pytest.mark.smoke

PUBLIC = {
    "AkSkCredentials",
    "AnyCredentials",
    "CLOUD_DOMAINS",
    "CREDENTIAL_SOURCES",
    "Cloud",
    "Config",
    "ConfigChanges",
    "ConfigError",
    "Credentials",
    "DEFAULT_BUCKETS",
    "DiscoverConfig",
    "ENV_AK",
    "ENV_SK",
    "ENV_TOKEN",
    "Endpoints",
    "EnvCredentials",
    "ExpectedDurations",
    "HttpSettings",
    "InstanceConfig",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_DURATION",
    "MAX_SECRET_FILE",
    "MAX_VALUES",
    "MetadataCredentials",
    "MetricsSettings",
    "PasswordCredentials",
    "Problem",
    "SECRET_FIELDS",
    "SERVICES",
    "Service",
    "TargetConfig",
    "check_config",
    "check_config_text",
    "compare",
    "effective_yaml",
    "format_duration",
    "format_path",
    "load_config",
    "load_config_text",
    "parse_duration",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(exporter.config.__all__) == PUBLIC


def test_every_public_name_is_there() -> None:
    missing = {name for name in PUBLIC if not hasattr(exporter.config, name)}
    assert not missing


def test_nothing_else_public_leaks_out() -> None:
    """Besides the submodules, nothing public that `__all__` does not name."""
    submodules = {
        "advice",
        "base",
        "changes",
        "credentials",
        "effective",
        "loading",
        "regions",
        "schema",
        "scopes",
        "secrets",
        "yamlevents",
    }
    extra = {
        name
        for name in vars(exporter.config)
        if not name.startswith("_") and name not in PUBLIC and name != "annotations"
    }
    assert extra <= submodules, extra - submodules
