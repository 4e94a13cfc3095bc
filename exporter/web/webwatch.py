"""The web config in force, re-read when its files change (a rotated certificate included).

As the exporter-toolkit does, a change takes effect without a restart: new connections get
the new certificate, every request the new users and headers. The files are checked every
second by their status (inode, size, modification time) and every 30 seconds by content,
so a rewrite that keeps all three is still seen. A file that does not load keeps the last
good configuration, with one log line per problem (once per version of the files). Turning
TLS on or off needs a restart: a running server does not change protocol under its clients.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from exporter.config import ConfigError
from exporter.web.auth import CHALLENGE, BasicAuth, Verdict
from exporter.web.http import Request, response_head
from exporter.web.webconfig import files_digest, load_web_settings

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
CONTENT_INTERVAL = 30.0

_Status = tuple[tuple[int, int, int] | None, ...]


def _status(files: tuple[Path, ...]) -> _Status:
    out: list[tuple[int, int, int] | None] = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class WebConfigWatcher:
    """Holds the `WebSettings` in force (`current`) and its `BasicAuth` (`auth`, None without
    users); `check()` reloads them when the files changed. Raises ConfigError at start."""

    def __init__(self, path: str | Path, interval: float = CHECK_INTERVAL) -> None:
        self.path = Path(path)
        self.interval = interval
        self.current = load_web_settings(self.path)
        self.auth = BasicAuth(self.current.users) if self.current.users else None
        self.reloads = 0
        self._status = _status(self.current.files)
        self._last_content_check = time.monotonic()
        self._failed_digest = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tls(self) -> bool:
        return self.current.tls is not None

    def check(self, force_content: bool = False) -> bool:
        """Reload when the files changed; True when new settings are in force."""
        status = _status(self.current.files)
        now = time.monotonic()
        due = force_content or now - self._last_content_check >= CONTENT_INTERVAL
        if status == self._status and not due:
            return False
        self._status = status
        self._last_content_check = now
        digest = files_digest(self.current.files)
        if digest and digest == self.current.digest:
            return False
        if digest and digest == self._failed_digest:
            return False  # the same broken files: said already
        try:
            new = load_web_settings(self.path)
        except ConfigError as exc:
            self._failed_digest = digest
            for problem in exc.problems:
                log.warning(
                    "web config not reloaded, the last good one stays in force: %s", problem
                )
            return False
        if (new.tls is None) != (self.current.tls is None):
            self._failed_digest = digest
            log.error(
                "web config not reloaded: turning TLS on or off needs a restart; "
                "the last good one stays in force"
            )
            return False
        self._failed_digest = ""
        if new.users != self.current.users:
            self.auth = BasicAuth(new.users) if new.users else None
        self.current = new
        self._status = _status(new.files)
        self.reloads += 1
        log.info(
            "web config reloaded",
            extra={
                "fields": {"tls": new.tls is not None, "users": len(new.users)},
            },
        )
        return True

    def authenticate(self, request: Request, verify: bool = False) -> Verdict:
        """ALLOW, DENY, or VERIFY when only bcrypt can tell (then again with `verify`)."""
        auth = self.auth
        if auth is None:
            return Verdict.ALLOW
        values = [v for n, v in request.headers if n == "authorization"]
        header = values[0] if len(values) == 1 else None
        if verify:
            return Verdict.ALLOW if auth.verify(header) else Verdict.DENY
        return auth.quick(header)

    def unauthorized(self, request: Request, idle: int) -> list[bytes]:
        """The 401 that asks for credentials (a browser then shows its login prompt)."""
        body = b"Unauthorized\n"
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("WWW-Authenticate", CHALLENGE),
        ]
        headers += self.extra_headers(headers)
        head = response_head("401 Unauthorized", headers, len(body), request.keep_alive, idle)
        return [head] if request.method == "HEAD" else [head, body]

    def extra_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The configured response headers the app did not set itself (as in the toolkit,
        where the handler's own header wins)."""
        taken = {n.lower() for n, _ in headers}
        return [(n, v) for n, v in self.current.headers if n.lower() not in taken]

    def start(self) -> None:
        """Check in a thread of its own, so the server never waits on a file."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="http-webconfig", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                log.exception("web config: the check failed")
