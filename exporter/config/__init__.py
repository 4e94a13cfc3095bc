"""The configuration: schema (`schema`), reading a file (`loading`), secrets (`secrets`).

Everything the rest of the exporter uses is re-exported here, so callers import from
`exporter.config` and never need to know which of the three modules holds a name.
"""

from __future__ import annotations

from exporter.config.loading import (
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_VALUES,
    ConfigError,
    Problem,
    load_config,
    load_config_text,
)
from exporter.config.schema import (
    CLOUD_DOMAINS,
    CREDENTIAL_SOURCES,
    DEFAULT_BUCKETS,
    MAX_DURATION,
    SERVICES,
    AkSkCredentials,
    AnyCredentials,
    Cloud,
    Config,
    Credentials,
    DiscoverConfig,
    Endpoints,
    EnvCredentials,
    HttpSettings,
    InstanceConfig,
    MetadataCredentials,
    MetricsSettings,
    PasswordCredentials,
    Service,
    TargetConfig,
    format_duration,
    format_path,
    parse_duration,
)
from exporter.config.secrets import ENV_AK, ENV_SK, ENV_TOKEN, MAX_SECRET_FILE, SECRET_FIELDS

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
    "ConfigError",
    "Credentials",
    "DiscoverConfig",
    "Endpoints",
    "EnvCredentials",
    "HttpSettings",
    "InstanceConfig",
    "MetadataCredentials",
    "MetricsSettings",
    "PasswordCredentials",
    "Problem",
    "Service",
    "TargetConfig",
    "format_duration",
    "format_path",
    "load_config",
    "load_config_text",
    "parse_duration",
]
