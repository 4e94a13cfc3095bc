"""One client connection of the HTTP server: its socket, buffers, deadline and TLS state.

Only the selector thread (`exporter.web.server`) touches it; a worker thread reads `closed`
to drop a request nobody waits for any more.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any


class Conn:
    """One client connection; only the selector thread touches it."""

    __slots__ = (
        "buf",
        "busy",
        "close_after",
        "closed",
        "deadline",
        "events",
        "out",
        "peer",
        "pending",
        "sock",
        "tls",
        "want",
    )

    def __init__(self, sock: socket.socket, peer: Any, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.deadline = deadline
        self.busy = False  # a worker has its request
        self.closed = False  # a worker seeing this drops the request: no one is waiting
        self.out: memoryview | None = None  # response bytes not yet sent
        self.pending: deque[bytes] = deque()  # the response's further pieces, sent in order
        self.close_after = False
        self.events = 0  # what the selector watches for
        self.tls = 0  # 0 plain, 1 TLS handshake under way, 2 TLS established
        self.want = 0  # TLS: a read that waits for room to write (EVENT_WRITE)

    @property
    def waiting(self) -> bool:
        """Idle between requests (nothing of the next one read): the cheapest to close."""
        return not self.busy and self.out is None and not self.buf
