"""One credential provider per credentials and scope, shared by every target that uses it.

AK/SK and metadata keys are not tied to a project; an IAM token is, so password credentials
get one provider per IAM endpoint, region and project.
"""

from __future__ import annotations

from typing import Any

import httpx

from exporter.cloud.credentials import CredentialProvider, IamPassword, MetadataKeys, StaticKeys
from exporter.config import (
    AkSkCredentials,
    AnyCredentials,
    EnvCredentials,
    MetadataCredentials,
    PasswordCredentials,
    TargetConfig,
)
from exporter.telemetry.selfmetrics import SelfMetrics


class ProviderCache:
    """The credential provider of each (credentials, scope), made once."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata_http: httpx.AsyncClient,
        *,
        metrics: SelfMetrics | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.http = http
        self.metadata_http = metadata_http
        self.metrics = metrics  # IAM and metadata requests are counted like the others
        self.timeout = timeout
        self._cache: dict[tuple[Any, ...], CredentialProvider] = {}

    def get(self, creds: AnyCredentials, tc: TargetConfig) -> CredentialProvider:
        key: tuple[Any, ...]
        if isinstance(creds, PasswordCredentials):
            key = (id(creds), tc.endpoint("iam"), tc.region, tc.project_id)
        else:
            key = (id(creds),)
        provider = self._cache.get(key)
        if provider is None:
            provider = self._cache[key] = self._make(creds, tc)
        return provider

    def _make(self, creds: AnyCredentials, tc: TargetConfig) -> CredentialProvider:
        if isinstance(creds, AkSkCredentials | EnvCredentials):
            return StaticKeys(creds.access_key, creds.secret(), creds.token())
        if isinstance(creds, MetadataCredentials):
            return MetadataKeys(
                self.metadata_http,
                creds.url,
                metrics=self.metrics,
                timeout=self.timeout,
            )
        return IamPassword(
            self.http,
            tc.endpoint("iam"),
            creds.user,
            creds.domain,
            creds.secret(),
            tc.region or "",
            tc.project_id,
            metrics=self.metrics,
            timeout=self.timeout,
            domain_scoped=tc.account_wide,  # lists the projects; each gets its own token
        )
