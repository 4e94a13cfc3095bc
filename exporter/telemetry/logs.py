"""Logging set-up: logfmt or JSON lines on stderr, with secrets scrubbed from every line.

Code never logs secrets on purpose; the scrubber is the last line of defence for what an
exception text or a server's error message might carry.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

EVENTS_LOGGER = "exporter.events"
_secrets: set[str] = set()
_lock = threading.Lock()
REDACTED = "<redacted>"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


# Shorter values are not scrubbed: replacing every occurrence of a short password such as
# `wrong` would mangle ordinary words in cloud messages ("The username or password is wrong.").
# Such a password is still kept out of the output the way every secret is first: no code puts
# a secret into a message or a field, and the config's error messages never echo values.
MIN_SECRET_CHARS = 8


def register_secret(value: str | None) -> None:
    """Scrub this value from all log output and error texts from now on.

    Only values long enough to be told apart from ordinary text (`MIN_SECRET_CHARS`).
    """
    if value and len(value) >= MIN_SECRET_CHARS:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.msecs):03d}Z"
        fields: dict[str, object] = {
            "ts": ts,
            "level": record.levelname.lower().replace("warning", "warn"),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        if self.fmt == "json":
            line = json.dumps(fields, default=str)
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        return scrub(line)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # httpx logs every request at INFO with full URLs; keep it for debug runs only.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # The task event log is opt-in (log_task_events) and always written when on.
    logging.getLogger(EVENTS_LOGGER).setLevel(logging.INFO)
