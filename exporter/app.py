"""Wires config → poller → state → snapshot → collector → HTTP together, and runs them."""

from __future__ import annotations

import asyncio
import logging
import signal

import httpx
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from exporter import __version__
from exporter.cloudapi import CloudClient
from exporter.config import Config
from exporter.logs import register_secret
from exporter.metrics import TaskCollector
from exporter.poller import Poller
from exporter.selfmetrics import SelfMetrics
from exporter.server import App, HttpServer
from exporter.snapshot import SnapshotStore
from exporter.state import StateStore
from exporter.targets import build_targets

log = logging.getLogger(__name__)


class Exporter:
    def __init__(self, config: Config) -> None:
        for secret in config.secrets():
            register_secret(secret)
        self.config = config
        self.targets = build_targets(config)
        self.store = StateStore(config.state_path, config.metrics.duration_buckets)
        if self.store.buckets_changed:
            log.warning("metrics.duration_buckets changed: the duration histograms start again")
        # `_created` series would double the exposition for no use here.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = SelfMetrics(self.registry)
        for target in self.targets:
            # Present at 0 from the start: a healthy exporter shows "no throttling", not nothing.
            self.metrics.api_throttled.labels(target.service, target.region)
        self.snapshots = SnapshotStore(
            self.targets,
            config.metrics.duration_buckets,
            config.metrics.duration_by_instance,
            config.poll_interval,
        )
        self.registry.register(TaskCollector(self.snapshots))

    def _http_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=self.config.http.max_concurrency * 2,
            max_keepalive_connections=self.config.http.max_concurrency,
        )
        return httpx.AsyncClient(
            limits=limits,
            headers={"User-Agent": f"huaweicloud-task-exporter/{__version__}"},
            follow_redirects=False,
        )

    def _poller(self, http: httpx.AsyncClient) -> Poller:
        client = CloudClient(http, self.config.http, self.metrics)
        poller = Poller(self.config, self.targets, self.store, client, self.snapshots, self.metrics)
        poller.restore()
        return poller

    async def once(self) -> bool:
        """Poll every target once; True when all polls succeeded."""
        async with self._http_client() as http:
            return await self._poller(http).poll_all_once()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, listen_address: str) -> None:
        """Serve until SIGTERM or SIGINT; polls in flight are cancelled (nothing half-counted)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with self._http_client() as http:
            poller = self._poller(http)
            server = HttpServer(
                App(self.registry, self.snapshots, poller.healthy, poller.ready),
                listen_address,
            )
            server.start()
            log.info(
                "listening",
                extra={
                    "fields": {
                        "address": listen_address,
                        "port": server.port,
                        "targets": len(self.targets),
                        "poll_interval": self.config.poll_interval,
                    }
                },
            )
            try:
                await poller.run(stop)
            finally:
                server.stop()
        log.info("stopped")

    def close(self) -> None:
        self.store.close()
