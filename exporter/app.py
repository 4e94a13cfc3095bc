"""Wires config → targets → poller → state → snapshot → exposition → HTTP, and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import urllib.request
from collections.abc import AsyncIterator

import httpx
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from exporter import __version__
from exporter.aio import spawn, wait_stopped
from exporter.cloud.client import CloudClient
from exporter.cloud.providers import ProviderCache
from exporter.cloud.transport import LeanTransport
from exporter.config import Config
from exporter.core.sharding import UNSHARDED, Shard
from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore
from exporter.polling.poller import Poller
from exporter.polling.state import StateStore
from exporter.polling.targets import Target, all_task_lists, build_targets
from exporter.telemetry.logs import register_secret
from exporter.telemetry.selfmetrics import SelfMetrics
from exporter.web.metrics import MetricsApp
from exporter.web.routes import Router
from exporter.web.server import HttpServer

log = logging.getLogger(__name__)

METADATA_TIMEOUT = 5.0


class Exporter:
    def __init__(self, config: Config, shard: Shard = UNSHARDED) -> None:
        self.shard = shard
        for secret in config.secrets():
            register_secret(secret)
        self.config = config
        expected = config.metrics.expected_durations
        self.store = StateStore(
            config.state_path,
            config.metrics.duration_buckets,
            sample_window=expected.window,
            sample_max_age=expected.max_age,
        )
        if self.store.buckets_changed:
            log.warning("metrics.duration_buckets changed: the duration histograms start again")
        # `_created` series would double the exposition for no use here.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = SelfMetrics(self.registry)
        self.metrics.shard_info.labels(str(shard.index), str(shard.count)).set(1)
        self.families = TaskFamilies(config.poll_interval, config.metrics.duration_by_instance)
        self.snapshots = SnapshotStore(
            config.metrics.duration_buckets, config.metrics.duration_by_instance, self.families
        )
        self.metrics_app = MetricsApp(self.snapshots.exposition, self.registry)
        if not config.http.tls_verify:
            log.warning(
                "TLS verification is off (http.tls_verify: false): the exporter "
                "cannot tell the real cloud endpoints from impostors"
            )

    def _ssl_context(self) -> ssl.SSLContext:
        """One TLS context for every client: building one loads the whole CA bundle."""
        settings = self.config.http
        if not settings.tls_verify:
            return httpx.create_ssl_context(verify=False)
        if settings.ca_file is not None:
            return ssl.create_default_context(cafile=str(settings.ca_file))
        return httpx.create_ssl_context()

    def _transport(self, context: ssl.SSLContext) -> httpx.AsyncBaseTransport | None:
        """The lean transport, unless a proxy is configured or set in the environment
        (httpx's own transport knows proxies)."""
        if self.config.http.proxy is not None or any(
            k in ("http", "https", "all") for k in urllib.request.getproxies()
        ):
            return None
        settings = self.config.http
        return LeanTransport(
            context,
            max_idle_per_origin=settings.max_concurrency,
            max_body=settings.max_response_bytes,  # compressed or not, never more on the wire
        )

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[tuple[Poller, list[Target]]]:
        """HTTP clients, credential providers, targets and the poller, for one run."""
        settings = self.config.http
        limits = httpx.Limits(
            max_connections=settings.max_concurrency * 2,
            max_keepalive_connections=settings.max_concurrency,
        )
        context = self._ssl_context()
        transport = self._transport(context)
        async with (
            httpx.AsyncClient(
                limits=limits,
                headers={"User-Agent": f"huaweicloud-task-exporter/{__version__}"},
                follow_redirects=False,
                verify=context,
                proxy=settings.proxy,
                timeout=settings.timeout,
                transport=transport,
            ) as http,
            # The metadata service is link-local: never through a proxy.
            httpx.AsyncClient(
                trust_env=False,
                timeout=METADATA_TIMEOUT,
                transport=LeanTransport(context, max_idle_per_origin=2),
            ) as metadata_http,
        ):
            client = CloudClient(http, settings, self.metrics, direct=transport)
            providers = ProviderCache(
                http, metadata_http, metrics=self.metrics, timeout=settings.timeout
            )
            targets = build_targets(self.config, providers, client)
            poller = Poller(self.config, self.store, client, self.snapshots, self.metrics)
            poller.restore_histograms_and_events()
            # Sources that need nothing from the cloud (project ID given, no discovery) give
            # their task lists at once; the others after their first refresh.
            self._apply(poller, targets)
            for target in targets:
                for service in target.services:
                    # Present at 0 from the start: healthy means "no throttling".
                    self.metrics.api_throttled.labels(service, target.region)
            yield poller, targets

    def _apply(self, poller: Poller, targets: list[Target]) -> None:
        poller.set_task_lists(all_task_lists(targets, self.shard))
        owned = self._owned(targets)
        self.snapshots.publish_discovery(
            [i for s in owned for i in s.instance_infos()],
            [h for s in owned for h in s.discovery_health()],
        )

    def _owned(self, targets: list[Target]) -> list[Target]:
        """The targets whose discovery this shard reports.

        Every shard lists the instances (each needs them to find its own); one reports them.
        """
        return [s for s in targets if self.shard.owns(s.owner_key)]

    async def _refresh_all(self, poller: Poller, targets: list[Target]) -> None:
        await asyncio.gather(*(s.refresh() for s in targets if s.needs_refresh))
        self._apply(poller, targets)

    async def once(self) -> bool:
        """Read the targets, poll every task list once; True when everything succeeded."""
        async with self._running() as (poller, targets):
            await self._refresh_all(poller, targets)
            ok = await poller.poll_all_once()
            healthy = all(h.up for s in self._owned(targets) for h in s.discovery_health())
            return ok and healthy

    def exposition(self) -> bytes:
        """The text format, as `/metrics` serves it."""
        return b"".join(self.snapshots.exposition.render(False)) + generate_latest(self.registry)

    async def _target_loop(
        self, target: Target, poller: Poller, targets: list[Target], stop: asyncio.Event
    ) -> None:
        """Refresh a target: until its project is known, then every discovery interval."""
        while not stop.is_set():
            if target.project_id is None:
                delay = self.config.poll_interval
            elif target.config.discover is not None:
                delay = target.config.discover.interval
            else:
                return
            if await wait_stopped(stop, delay):
                return
            await target.refresh()
            poller.note_activity()
            self._apply(poller, targets)

    async def serve(self, listen_address: str) -> None:
        """Serve until SIGTERM or SIGINT; polls in flight are cancelled (nothing half-counted)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with self._running() as (poller, targets):

            def healthy() -> tuple[bool, str]:
                # A state file gone from under us needs a restart, however polls go.
                if self.store.broken is not None:
                    return False, self.store.broken
                return poller.healthy()

            server = HttpServer(
                Router(self.metrics_app, self.snapshots, healthy, poller.ready), listen_address
            )
            server.start()
            log.info(
                "listening",
                extra={
                    "fields": {
                        "address": listen_address,
                        "port": server.port,
                        "sources": len(targets),
                        "poll_interval": self.config.poll_interval,
                    }
                },
            )
            run = spawn(poller.run(stop), "poller")
            tasks: list[asyncio.Task[None]] = []
            try:
                if any(s.needs_refresh for s in targets):
                    poller.expect_sources()
                    first = asyncio.create_task(self._refresh_all(poller, targets))
                    stopping = asyncio.create_task(stop.wait())
                    await asyncio.wait({first, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    first.cancel()
                    stopping.cancel()
                    poller.sources_arrived()
                tasks = [
                    spawn(self._target_loop(s, poller, targets, stop), f"target {s.owner_key}")
                    for s in targets
                ]
                await run
            finally:
                stop.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(run, *tasks, return_exceptions=True)
                server.stop()
        log.info("stopped")

    def close(self) -> None:
        self.store.close()
