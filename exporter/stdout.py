"""Output for the one-shot commands (`--once`, `--print-config`, `--probe`), written whole.

Under `PYTHONUNBUFFERED` (set in many container images) `sys.stdout.buffer` is the raw file,
whose `write` may take only part of the bytes: a pipe holding 64 KiB takes what fits while a
slow reader catches up, and the text layer above it drops the rest without a word. Everything
a one-shot command prints goes through here, which writes until every byte is taken. A leaf:
it imports nothing of the exporter.
"""

from __future__ import annotations

import select
import sys


def write_stdout(data: bytes | str) -> None:
    """Every byte on stdout, as it is (a redirected text stream gets it decoded).

    A non-blocking pipe (a parent may leave it so) is waited on until it drains.
    """
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(data if isinstance(data, str) else data.decode("utf-8"))
        sys.stdout.flush()
        return
    sys.stdout.flush()
    view = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
    while view:
        try:
            written = buffer.write(view)
        except BlockingIOError as exc:
            written = exc.characters_written
        if not written:  # None or 0: a non-blocking pipe is full
            select.select([], [buffer], [])
            continue
        view = view[written:]
    buffer.flush()
