"""The one runaway guard of every paged listing (task lists, instance lists).

A server that ignores the paging parameters, or a list that grows as fast as it is read,
would page for ever; each listing counts the pages it received and gives up past a bound,
with a message saying what to change.
"""

from __future__ import annotations

from exporter.cloud.client import ApiError


def check_pages(pages: int, max_pages: int, what: str) -> None:
    """Before asking for another page: an `ApiError` once `pages` reached `max_pages`."""
    if pages >= max_pages:
        raise ApiError(f"more than {max_pages} pages {what}")
