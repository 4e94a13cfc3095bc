"""The WSGI types the web layer shares, and its plain-text answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

# When the server had the whole request (time.monotonic()): what it asks for may be that old.
RECEIVED = "exporter.received"


def plain_text(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode("utf-8")
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
