"""The exporter's own metrics, kept apart from the task metrics (`exporter.exposition`).

These are ordinary prometheus_client instruments: they describe this process (requests it
made, polls it skipped), not the cloud, so they do not survive a restart and need not.
"""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__

PREFIX = "huaweicloud_task_"


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.api_requests = Counter(
            PREFIX + "api_requests",
            "HTTP requests made to the cloud APIs, by HTTP status code "
            "('error' when no answer came: timeout, reset, refused).",
            ["cloud_service", "region", "code"],
            registry=registry,
        )
        self.api_request_duration = Histogram(
            PREFIX + "api_request_duration_seconds",
            "Time the cloud APIs took to answer one HTTP request.",
            ["cloud_service", "region"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.api_throttled = Counter(
            PREFIX + "api_throttled_requests",
            "Requests the cloud refused for flow control (HTTP 429 APIG.0308 or DMS.10240407).",
            ["cloud_service", "region"],
            registry=registry,
        )
        self.polls_skipped = Counter(
            PREFIX + "polls_skipped",
            "Scheduled polls skipped because the previous poll of the same target ran past "
            "its next slot.",
            registry=registry,
        )
        self.state_commit_duration = Histogram(
            PREFIX + "state_commit_duration_seconds",
            "Time taken to commit one poll's results to the state file.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=registry,
        )
        self.config_reload_ok = Gauge(
            PREFIX + "config_last_reload_successful",
            "1 when the last reload of the configuration file (SIGHUP, POST /-/reload or the "
            "checksum watch) was taken, 0 when it was refused and the old one kept running.",
            registry=registry,
        )
        self.config_reload_ok.set(1)
        self.config_reload_time = Gauge(
            PREFIX + "config_last_reload_success_timestamp_seconds",
            "When the configuration in use was loaded (at start, or by the last reload taken).",
            registry=registry,
        )
        self.config_reload_time.set_to_current_time()
        self.state_commit_failures = Counter(
            PREFIX + "state_commit_failures",
            "Polls whose results could not be written to the state file (disk full, I/O "
            "error, file replaced): nothing of such a poll is counted until a later one is "
            "written.",
            registry=registry,
        )
        self.tasks_date_ignored = Counter(
            PREFIX + "tasks_date_ignored",
            "Tasks whose creation date was absurd (before 2000 or in the future) and taken as "
            "unknown: they are counted when first seen finished, without a duration.",
            ["cloud_service", "region"],
            registry=registry,
        )
        self.shard_info = Gauge(
            PREFIX + "shard_info",
            "Always 1: which shard of how many this replica is (--shard.index, --shard.count); "
            "it polls the task lists whose instance ID hashes to its index.",
            ["shard", "shard_count"],
            registry=registry,
        )
        build = Gauge(
            PREFIX + "build_info",
            "Always 1; the version of the exporter and of the Python running it.",
            ["version", "python_version"],
            registry=registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
