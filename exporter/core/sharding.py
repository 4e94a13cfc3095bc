"""Sharding: split the task lists between replicas by a stable hash, without coordination.

An instance's task list belongs to shard `sha256(instance_id) mod count`: every replica
computes the same answer, in every process and after every restart, so shards never overlap
and together cover everything. What exists once per configured target (its task center, its
discovery series) belongs to the shard its identity hashes to.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass


def bucket(key: str, count: int) -> int:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def owns(self, key: str) -> bool:
        return self.count == 1 or bucket(key, self.count) == self.index


UNSHARDED = Shard()


def parse_shard(index: str, count: int, hostname: str | None = None) -> Shard:
    """`--shard.index` and `--shard.count` to a Shard; `auto` takes a StatefulSet pod's
    ordinal from the end of the hostname (`huaweicloud-task-exporter-2` is shard 2)."""
    if count < 1:
        raise ValueError("--shard.count must be at least 1")
    if index == "auto":
        host = hostname if hostname is not None else socket.gethostname()
        m = re.search(r"-(\d+)$", host)
        if not m:
            raise ValueError(f"--shard.index=auto needs a hostname ending in -N (got {host!r})")
        value = int(m.group(1))
    else:
        try:
            value = int(index)
        except ValueError:
            raise ValueError(f"--shard.index must be a number or auto (got {index!r})") from None
    if not 0 <= value < count:
        raise ValueError(f"--shard.index must be between 0 and {count - 1} (got {value})")
    return Shard(value, count)
