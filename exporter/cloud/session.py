"""The HTTP clients of one configuration: the cloud's, the metadata service's, and the
cloud client and credential providers over them.

Opened at start and again by each reload that is taken (new HTTP settings, credentials,
proxy or CA file), and closed once the configuration they belong to is no longer in use.
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.request

import httpx

from exporter import __version__
from exporter.cloud.client import CloudClient
from exporter.cloud.providers import ProviderCache
from exporter.cloud.transport import LeanTransport
from exporter.config import Config
from exporter.telemetry.selfmetrics import SelfMetrics

METADATA_TIMEOUT = 5.0


def ssl_context(config: Config) -> ssl.SSLContext:
    """One TLS context for every client: building one loads the whole CA bundle."""
    settings = config.http
    if not settings.tls_verify:
        return httpx.create_ssl_context(verify=False)
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return httpx.create_ssl_context()


def _transport(config: Config, context: ssl.SSLContext) -> httpx.AsyncBaseTransport | None:
    """The lean transport, unless a proxy is configured or set in the environment
    (httpx's own transport knows proxies)."""
    if config.http.proxy is not None or any(
        k in ("http", "https", "all") for k in urllib.request.getproxies()
    ):
        return None
    settings = config.http
    return LeanTransport(
        context,
        max_idle_per_origin=settings.max_concurrency,
        max_body=settings.max_response_bytes,  # compressed or not, never more on the wire
    )


async def open_clients(
    config: Config, metrics: SelfMetrics
) -> tuple[contextlib.AsyncExitStack, CloudClient, ProviderCache]:
    """The HTTP clients and the cloud client of one configuration, open until the stack
    is closed (at the end of the run, or when a reload has replaced them)."""
    settings = config.http
    limits = httpx.Limits(
        max_connections=settings.max_concurrency * 2,
        max_keepalive_connections=settings.max_concurrency,
    )
    context = ssl_context(config)
    transport = _transport(config, context)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                limits=limits,
                headers={"User-Agent": f"huaweicloud-task-exporter/{__version__}"},
                follow_redirects=False,
                verify=context,
                proxy=settings.proxy,
                timeout=settings.timeout,
                transport=transport,
            )
        )
        # The metadata service is link-local: never through a proxy.
        metadata_http = await stack.enter_async_context(
            httpx.AsyncClient(
                trust_env=False,
                timeout=METADATA_TIMEOUT,
                transport=LeanTransport(context, max_idle_per_origin=2),
            )
        )
        client = CloudClient(http, settings, metrics, direct=transport)
        providers = ProviderCache(http, metadata_http, metrics=metrics, timeout=settings.timeout)
        return stack.pop_all(), client, providers
    raise AssertionError("unreachable")  # pragma: no cover - the stack returns or raises
