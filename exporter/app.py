"""Wires config → targets → poller → state → snapshot → exposition → HTTP, and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from exporter.aio import spawn, wait_stopped
from exporter.cloud.client import CloudClient
from exporter.cloud.providers import ProviderCache
from exporter.cloud.session import open_clients
from exporter.config import MAX_CONFIG_BYTES, Config, ConfigChanges, ConfigError, compare
from exporter.core.sharding import UNSHARDED, Shard
from exporter.exposition.families import TaskFamilies
from exporter.exposition.snapshot import SnapshotStore
from exporter.polling.account import (
    AnyTarget,
    adopt,
    build_all_targets,
    discovery_of,
    scopes_of,
)
from exporter.polling.poller import Poller
from exporter.polling.state import StateError, StateStore
from exporter.polling.targets import all_task_lists
from exporter.telemetry.logs import register_secret
from exporter.telemetry.selfmetrics import SelfMetrics
from exporter.web.metrics import MetricsApp
from exporter.web.routes import Router
from exporter.web.server import HttpServer
from exporter.web.webwatch import WebConfigWatcher

log = logging.getLogger(__name__)
YOUNG_GENERATION = 10_000  # objects allocated between collections of the youngest


class Exporter:
    poller: Poller  # the run's, from its start

    def __init__(
        self,
        config: Config,
        shard: Shard = UNSHARDED,
        reread: Callable[[], Config] | None = None,
        config_path: Path | None = None,
        in_memory: bool = False,
    ) -> None:
        self.shard = shard
        # How to read the configuration again (a reload), and the file the watch looks at.
        self.reread = reread
        self.config_path = config_path
        self._checksum = _checksum(config_path)
        self._reload_lock = asyncio.Lock()
        self.targets: list[AnyTarget] = []
        self._clients: contextlib.AsyncExitStack | None = None
        self._target_tasks: list[asyncio.Task[None]] = []
        self._stop: asyncio.Event | None = None
        for secret in config.secrets():
            register_secret(secret)
        self.config = config
        # in_memory: a copy of the state file's state, never written back (`--once` beside a
        # running exporter).
        expected = config.metrics.expected_durations
        self.store = StateStore(
            config.state_path,
            config.metrics.duration_buckets,
            in_memory,
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
        self.snapshots = _snapshot_store(config)
        self.metrics_app = MetricsApp(self.snapshots.exposition, self.registry)
        self.router: Router | None = None
        # The process's own exporter (the CLI): its heap is tuned once start-up is over.
        self.settle_heap = False
        _warn_tls(config)

    def _targets(
        self, config: Config, client: CloudClient, providers: ProviderCache
    ) -> list[AnyTarget]:
        targets = build_all_targets(config, providers, client)
        for scope in scopes_of(targets):
            for service in scope.services:
                # Present at 0 from the start: healthy means "no throttling".
                self.metrics.api_throttled.labels(service, scope.region)
        return targets

    @contextlib.asynccontextmanager
    async def _running(self, once: bool = False) -> AsyncIterator[tuple[Poller, list[AnyTarget]]]:
        """HTTP clients, credential providers, targets and the poller, for one run (`once`:
        every task list is polled right away, so its stored state only matters if that poll
        fails)."""
        self._clients, client, providers = await open_clients(self.config, self.metrics)
        try:
            self.targets = targets = self._targets(self.config, client, providers)
            poller = self.poller = Poller(
                self.config, self.store, client, self.snapshots, self.metrics
            )
            poller.defer_stored_state = once
            poller.restore_histograms_and_events()
            # Targets that need nothing from the cloud (project ID given, no discovery) give
            # their task lists at once; the others after their first refresh.
            self._apply(poller, targets)
            yield poller, targets
        finally:
            await self._clients.aclose()

    def _apply(self, poller: Poller, targets: list[AnyTarget]) -> None:
        poller.set_task_lists(all_task_lists(scopes_of(targets), self.shard))
        # Every shard lists the instances (each needs them to find its own); one reports them.
        self.snapshots.publish_discovery(*discovery_of(targets, self.shard.owns))

    async def _refresh_all(self, poller: Poller, targets: list[AnyTarget]) -> None:
        await asyncio.gather(*(s.refresh() for s in targets if s.needs_refresh))
        if targets is self.targets:  # a reload may have replaced them meanwhile
            self._apply(poller, targets)

    async def once(self) -> bool:
        """Read the targets, poll every task list once; True when everything succeeded."""
        async with self._running(once=True) as (poller, targets):
            await self._refresh_all(poller, targets)
            ok = await poller.poll_all_once()
            healthy = all(h.up for h in discovery_of(targets, self.shard.owns)[1])
            return ok and healthy

    def exposition(self) -> bytes:
        """The text format, as `/metrics` serves it."""
        return b"".join(self.snapshots.exposition.render(False)) + generate_latest(self.registry)

    async def _target_loop(self, target: AnyTarget, stop: asyncio.Event, now: bool = False) -> None:
        """Refresh a target: until its project is known, then every discovery interval
        (`now`: a target a reload added refreshes at once)."""
        while not stop.is_set():
            delay = 0.0 if now and target.needs_refresh else None
            if delay is None:
                delay = target.refresh_delay(self.config.poll_interval)
            if delay is None:
                return
            now = False
            if await wait_stopped(stop, delay):
                return
            await target.refresh()
            self.poller.note_activity()
            self._apply(self.poller, self.targets)

    def _start_target_loops(
        self, targets: list[AnyTarget], now: frozenset[int] = frozenset()
    ) -> None:
        """A loop per target; those in `now` (added by a reload) refresh at once."""
        assert self._stop is not None
        self._target_tasks = [
            spawn(self._target_loop(t, self._stop, i in now), f"target {t.owner_key}")
            for i, t in enumerate(targets)
        ]

    # -- reload ---------------------------------------------------------------------------

    async def reload(self) -> tuple[bool, list[str]]:
        """Read the configuration file again and take it if it is valid: (taken, problems).

        Everything is checked before anything changes; a refused file leaves the exporter
        running on the old configuration, and says why in the log and the metric.
        """
        async with self._reload_lock:
            if self.reread is None:
                return self._refused(["this exporter has no configuration file to read again"])
            checksum = _checksum(self.config_path)
            try:
                new = self.reread()
            except ConfigError as exc:
                return self._refused(exc.problems)
            changes = compare(self.config, new)
            if changes.refused:
                return self._refused(list(changes.refused))
            self._checksum = checksum
            if not changes.unchanged:
                try:
                    await self._swap(new, changes)
                except (StateError, OSError, ValueError) as exc:
                    return self._refused([f"cannot apply the configuration: {exc}"])
            self.metrics.config_reload_ok.set(1)
            self.metrics.config_reload_time.set_to_current_time()
            log.info(
                "configuration reloaded" if changes.changed else "configuration unchanged",
                extra={
                    "fields": {
                        "changed": ",".join(changes.changed) or "nothing",
                        "targets_added": len(changes.added_targets),
                        "targets_removed": len(changes.removed_targets),
                    }
                },
            )
            return True, []

    def _refused(self, problems: list[str]) -> tuple[bool, list[str]]:
        self.metrics.config_reload_ok.set(0)
        for problem in problems:
            log.error("reload refused", extra={"fields": {"problem": problem}})
        log.error(
            "configuration not reloaded: keeping the one in use",
            extra={"fields": {"problems": len(problems)}},
        )
        return False, problems

    async def _swap(self, new: Config, changes: ConfigChanges) -> None:
        """Take a validated configuration: new clients and targets, the same state store.

        Task lists in both keep their state (the store is the same), polls in flight are
        cancelled before their commit (they count nothing; the next poll reads their window
        again), removed task lists' series go, new ones start.
        """
        for secret in new.secrets():
            register_secret(secret)
        stack, client, providers = await open_clients(new, self.metrics)
        try:
            targets = self._targets(new, client, providers)
            for old_index, new_index in changes.kept_targets:
                adopt(targets[new_index], self.targets[old_index])
            poller = self.poller
            await poller.pause()
            for task in self._target_tasks:
                task.cancel()
            await asyncio.gather(*self._target_tasks, return_exceptions=True)
        except BaseException:
            await stack.aclose()
            raise
        # From here on nothing awaits until the poller runs again: the swap is atomic.
        try:
            if new.metrics.duration_buckets != self.config.metrics.duration_buckets:
                self.store.use_buckets(new.metrics.duration_buckets)
            if changes.exposition_changed:
                self._rebuild_snapshots(new)
        except BaseException:
            poller.resume()  # on the old configuration, as if nothing happened
            if self._stop is not None:
                self._start_target_loops(self.targets)
            await stack.aclose()
            raise
        old_clients, self._clients = self._clients, stack
        self.config = new
        self.targets = targets
        _warn_tls(new)
        poller.reconfigure(new, client, self.snapshots)
        self._apply(poller, targets)
        poller.resume()
        if self._stop is not None:
            self._start_target_loops(targets, frozenset(changes.added_targets))
        if old_clients is not None:
            await old_clients.aclose()

    def _rebuild_snapshots(self, config: Config) -> None:
        """A snapshot store with the new families (help texts, buckets, histogram labels),
        filled with what the old one shows, so no series of a kept task list has a gap."""
        old = self.snapshots.current
        snapshots = _snapshot_store(config)
        snapshots.update_histograms(self.store.load_histograms())
        snapshots.set_task_lists([s.task_list for s in old.task_lists])
        for snap in old.task_lists:
            snapshots.publish_task_list(snap)
        snapshots.publish_discovery(old.instances, old.discovery)
        self.snapshots = snapshots
        self.metrics_app.use(snapshots.exposition)
        if self.router is not None:
            self.router.snapshots = snapshots

    async def _watch(self, interval: float, stop: asyncio.Event) -> None:
        """Reload when the file's checksum changes (a mounted ConfigMap is replaced)."""
        while not await wait_stopped(stop, interval):
            checksum = _checksum(self.config_path)
            if checksum is not None and checksum != self._checksum:
                log.info("configuration file changed; reloading")
                ok, _ = await self.reload()
                if not ok:
                    self._checksum = checksum  # said once; retried when it changes again

    def reload_from_thread(self, loop: asyncio.AbstractEventLoop) -> tuple[bool, list[str]]:
        """`POST /-/reload`: run the reload in the event loop and wait for its outcome."""
        future = asyncio.run_coroutine_threadsafe(self.reload(), loop)
        return future.result(RELOAD_TIMEOUT)

    # -- serving --------------------------------------------------------------------------

    async def serve(
        self,
        listen_address: str,
        web: WebConfigWatcher | None = None,
        auto_reload: float | None = None,
    ) -> None:
        """Serve until SIGTERM or SIGINT; polls in flight are cancelled (nothing half-counted).

        SIGHUP reloads the configuration (never ends the process), and so does
        `POST /-/reload`; with `auto_reload`, so does a change of the file's checksum.
        """
        stop = self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Task[None]] = set()
        running = asyncio.Event()  # a SIGHUP before the run is set up waits for it

        async def reload_when_running() -> None:
            await running.wait()
            await self.reload()

        def on_hup() -> None:
            task = asyncio.create_task(reload_when_running())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        async with self._running() as (poller, targets):
            running.set()
            if self.settle_heap:
                settle_heap()

            def healthy() -> tuple[bool, str]:
                # A state file gone from under us needs a restart, however polls go.
                if self.store.broken is not None:
                    return False, self.store.broken
                return self.poller.healthy()

            self.router = Router(
                self.metrics_app,
                self.snapshots,
                healthy,
                poller.ready,
                reload=lambda: self.reload_from_thread(loop),
            )
            # Not ready until the first refresh has given its task lists: expected before the
            # server answers its first /readyz, or a probe landing in between finds no task
            # list, hence none unpolled, and calls it ready.
            needs_refresh = any(s.needs_refresh for s in targets)
            if needs_refresh:
                poller.expect_sources()
            server = HttpServer(self.router, listen_address, web_config=web)
            server.start()
            log.info(
                "listening",
                extra={
                    "fields": {
                        "address": listen_address,
                        "port": server.port,
                        "tls": web is not None and web.tls,
                        "sources": len(targets),
                        "poll_interval": self.config.poll_interval,
                    }
                },
            )
            run = spawn(poller.run(stop), "poller")
            watch = spawn(self._watch(auto_reload, stop), "config watch") if auto_reload else None
            try:
                if needs_refresh:
                    first = asyncio.create_task(self._refresh_all(poller, targets))
                    stopping = asyncio.create_task(stop.wait())
                    await asyncio.wait({first, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    first.cancel()
                    stopping.cancel()
                    poller.sources_arrived()
                if self.targets is targets:  # not already replaced by a reload meanwhile
                    self._start_target_loops(targets)
                await run
            finally:
                stop.set()
                for task in [*self._target_tasks, *reloads]:
                    task.cancel()
                await asyncio.gather(
                    run,
                    *self._target_tasks,
                    *reloads,
                    *([watch] if watch else []),
                    return_exceptions=True,
                )
                loop.remove_signal_handler(signal.SIGHUP)
                server.stop()
        log.info("stopped")

    def close(self) -> None:
        self.store.close()


RELOAD_TIMEOUT = 60.0


def settle_heap(collect: bool = True) -> None:
    """After start-up, keep the garbage collector off what start-up built to last.

    The states, snapshots and rendered lines of every task list are alive for the whole
    run; each full collection walked them all (0.3 s of CPU at 10,000 task lists, about once
    a minute). Frozen, they are still freed when their last reference goes (a quiet poll
    replaces its status lines), only no longer scanned. A young generation of 10,000
    objects rather than 700: the polls in flight are not promoted at every collection.
    Without `collect` (a `--once`, which ends within seconds), start-up's few cycles of
    garbage are frozen with the rest rather than sought at the cost of a full collection.
    """
    if collect:
        gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, older, oldest)


def _checksum(path: Path | None) -> str | None:
    """The file's SHA-256, None when it cannot be read (the reload then says why)."""
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            return hashlib.sha256(f.read(MAX_CONFIG_BYTES + 1)).hexdigest()
    except OSError:
        return None


def _snapshot_store(config: Config) -> SnapshotStore:
    families = TaskFamilies(config.poll_interval, config.metrics.duration_by_instance)
    return SnapshotStore(
        config.metrics.duration_buckets, config.metrics.duration_by_instance, families
    )


def _warn_tls(config: Config) -> None:
    if not config.http.tls_verify:
        log.warning(
            "TLS verification is off (http.tls_verify: false): the exporter "
            "cannot tell the real cloud endpoints from impostors"
        )
