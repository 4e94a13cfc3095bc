"""The configuration: a leaf package that imports nothing else of the exporter.

The file's schema (`schema`), its building blocks (`base`: strict models, cross-field checks,
durations), the credential sources (`credentials`), reading a file (`loading`, over the YAML
events of `yamlevents`), secrets (`secrets`), each cloud's regions (`regions`), account-wide
targets' keys and patterns (`scopes`), the warnings and hints of `--check-config` (`advice`),
what a reload changes (`changes`) and the effective configuration as YAML (`effective`).
Everything the rest of the exporter uses is
re-exported here (and pinned by tests/config/test_public_names.py), so callers import from
`exporter.config` and never need to know which module holds a name.
"""

from __future__ import annotations

from exporter.config.base import (
    MAX_DURATION,
    SERVICES,
    Service,
    format_duration,
    format_path,
    parse_duration,
)
from exporter.config.changes import ConfigChanges, compare
from exporter.config.credentials import (
    CREDENTIAL_SOURCES,
    AkSkCredentials,
    AnyCredentials,
    Credentials,
    EnvCredentials,
    MetadataCredentials,
    PasswordCredentials,
)
from exporter.config.effective import effective_yaml
from exporter.config.loading import (
    MAX_CONFIG_BYTES,
    ConfigError,
    Problem,
    check_config,
    check_config_text,
    load_config,
    load_config_text,
)
from exporter.config.schema import (
    CLOUD_DOMAINS,
    DEFAULT_BUCKETS,
    Cloud,
    Config,
    DiscoverConfig,
    Endpoints,
    ExpectedDurations,
    HttpSettings,
    InstanceConfig,
    MetricsSettings,
    TargetConfig,
)
from exporter.config.secrets import ENV_AK, ENV_SK, ENV_TOKEN, MAX_SECRET_FILE, SECRET_FIELDS
from exporter.config.yamlevents import MAX_DEPTH, MAX_VALUES

__all__ = [
    "CLOUD_DOMAINS",
    "CREDENTIAL_SOURCES",
    "DEFAULT_BUCKETS",
    "ENV_AK",
    "ENV_SK",
    "ENV_TOKEN",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_DURATION",
    "MAX_SECRET_FILE",
    "MAX_VALUES",
    "SECRET_FIELDS",
    "SERVICES",
    "AkSkCredentials",
    "AnyCredentials",
    "Cloud",
    "Config",
    "ConfigChanges",
    "ConfigError",
    "Credentials",
    "DiscoverConfig",
    "Endpoints",
    "EnvCredentials",
    "ExpectedDurations",
    "HttpSettings",
    "InstanceConfig",
    "MetadataCredentials",
    "MetricsSettings",
    "PasswordCredentials",
    "Problem",
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
]
