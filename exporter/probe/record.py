"""Recordings: the answers the probe read, safe to hand over with a bug report.

One JSON file per request (`NNNN.json`: the request's path and parameters, the answer or
the error) and a `manifest.json` naming the task lists read and the window they were read
from, so that the tests can replay the reader's own requests (tests/probe/replay.py).

Everything that could identify an account is replaced by a pseudonym: identifiers (project,
instance, task, job, user, domain and address IDs), user names, instance names, addresses
(IPs, hostnames, URLs) and any free text. A pseudonym keeps the original's shape (a UUID stays
a UUID, 32 hex digits stay 32 hex digits, an IPv4 address stays one), and the same original
always gives the same pseudonym within a recording (a keyed digest, with a key drawn per
recording and never written), so that paging and de-duplication still make sense while two
recordings cannot be linked. Kept as they are: timestamps, statuses, task names, numbers,
booleans, error codes, engines and the documented change fields that say what a task does
(capacities, spec codes, modes, ports). Anything else is free text, and replaced: a value
is kept only when it is known to be harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporter.core.change import CHANGE_KEYS
from exporter.probe.checks import Exchange
from exporter.text import json_depth

FORMAT = "huaweicloud-task-exporter recording"
VERSION = 1
MAX_PARAMS_CHARS = 16_384
MAX_PARAMS_DEPTH = 32  # as deep as an answer may nest (exporter.text)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{16,64}")
_DIGITS = re.compile(r"[0-9]{1,40}")
_NUMBER = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,9})?")
_WINDOW = re.compile(r"[0-9]{14}")  # yyyyMMddHHmmss
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?\s*(?:Z|[+-]\d{2}:?\d{2})?"
)
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]{0,15}://")
_HOST = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}\.?(?::[0-9]{1,5})?")
_STATUS = re.compile(r"[A-Za-z][A-Za-z_]{0,63}")  # a word, in any case

# Values kept as they are, by key: they say what and when, never who or where.
KEEP_STATUS = frozenset({"status", "instance_status"})
KEEP_TIMES = frozenset({"created_at", "updated_at", "schedule_at", "expires_at", "issued_at"})
# The fields that say what a task changes (`exporter.core.change` reads them: replayed, a
# recording summarises the change as the answer did), and the codes that say what kind.
KEEP_CODES = CHANGE_KEYS | frozenset(
    {
        "engine",
        "engine_version",
        "error_code",
        "replica_az",
        "spec_code",
        "cache_mode",
        "charging_mode",
        "type",
    }
)
# Where `name` is a task's name (kept); elsewhere a name is someone's (an instance's, a
# project's, a configuration item's) and replaced.
TASK_CONTAINERS = frozenset({"tasks", "jobs"})
USER_KEYS = frozenset({"user_name", "user", "account_name", "username"})


def _is_id_key(key: str) -> bool:
    return key == "id" or key.endswith(("_id", "Id", "_ids")) or key in {"domain", "job"}


class Pseudonyms:
    """Stable, shape-keeping pseudonyms for one recording (a fresh key each)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)
        self._ids: dict[str, str] = {}

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def identifier(self, value: str) -> str:
        """An ID of the same shape; every ID of a recording shares one mapping, so the task
        center's copy of a task and its instance list's copy stay the same task."""
        found = self._ids.get(value)
        if found is not None:
            return found
        d = self._digest("id", value)
        if _UUID.fullmatch(value):
            text = str(uuid.UUID(bytes=d[:16], version=4))
            out = text.upper() if value.isupper() else text
        elif _DIGITS.fullmatch(value):
            out = "".join(str(b % 10) for b in (d * 2)[: len(value)])
        elif _HEX.fullmatch(value):
            text = (d.hex() * 2)[: len(value)]
            out = text.upper() if value.isupper() else text
        else:
            out = f"id-{d[:6].hex()}"
        self._ids[value] = out
        return out

    def text(self, kind: str, value: str) -> str:
        return f"{kind}-{self._digest(kind, value)[:4].hex()}"

    def address(self, value: str) -> str:
        d = self._digest("ip", value)
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return self.text("text", value)
        if ip.version == 4:
            return f"198.{18 + d[0] % 2}.{d[1]}.{1 + d[2] % 254}"  # the benchmarking range
        return f"2001:db8::{d[0]:02x}{d[1]:02x}:{d[2]:02x}{d[3]:02x}"  # the documentation range

    def host(self, value: str) -> str:
        return f"host-{self._digest('host', value.lower())[:4].hex()}.invalid"

    def url(self, value: str) -> str:
        scheme = value.split("://", 1)[0].lower()
        return f"{scheme}://{self.host(value)}/"

    # -- values by what they look like --------------------------------------------------

    def free(self, value: str, kind: str = "text") -> str:
        """A string whose key says nothing: kept only when it is plainly harmless."""
        stripped = value.strip()
        if stripped == "" or stripped.lower() in ("true", "false", "null", "none"):
            return value
        if _NUMBER.fullmatch(stripped) and not (len(stripped) > 12 and stripped.isdigit()):
            return value
        if _TIMESTAMP.fullmatch(stripped) or _WINDOW.fullmatch(stripped):
            return value
        if _UUID.fullmatch(stripped) or _HEX.fullmatch(stripped) or _DIGITS.fullmatch(stripped):
            return self.identifier(stripped)
        if _is_ip(stripped):
            return self.address(stripped)
        if _URL.match(stripped):
            return self.url(stripped)
        if _HOST.fullmatch(stripped):
            return self.host(stripped)
        return self.text(kind, value)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class Scrubber:
    """Replaces what identifies an account in answers, paths and parameters."""

    def __init__(self, pseudonyms: Pseudonyms | None = None) -> None:
        self.p = pseudonyms or Pseudonyms()

    def path(self, path: str) -> str:
        """Each segment that looks like an ID replaced (`/v2/{project}/instances/{id}/tasks`)."""
        out: list[str] = []
        for segment in path.split("/"):
            after = out[-1] if out else ""
            # `/v2/{project_id}/...` and `.../instances/{instance_id}/...`: IDs by position,
            # whatever they look like; elsewhere anything shaped like one.
            by_position = after in ("v1", "v2", "instances") and segment != "instances"
            shaped = _UUID.fullmatch(segment) or _HEX.fullmatch(segment)
            if segment and (by_position or shaped or _DIGITS.fullmatch(segment)):
                out.append(self.p.identifier(segment))
            elif segment and not re.fullmatch(r"[a-z0-9_-]{1,40}", segment):
                out.append(self.p.text("segment", segment))
            else:
                out.append(segment)
        return "/".join(out)

    def params(self, params: Mapping[str, str]) -> dict[str, str]:
        """Paging, limits, windows and engines kept; a project name (IAM) keeps its region."""
        out: dict[str, str] = {}
        for key, value in params.items():
            if key in ("offset", "start", "limit", "engine") or key.endswith("_time"):
                out[key] = value if _CODE.fullmatch(value) else self.p.text("text", value)
            elif key == "name":
                out[key] = self._project_name(value)
            else:
                out[key] = self.value(key, value, "")
        return out

    def _project_name(self, value: str) -> str:
        """A region name is no secret (`ap-southeast-1`); a sub-project's own name is."""
        region, sep, rest = value.partition("_")
        region_text = region if re.fullmatch(r"[a-z]{2,}(?:-[a-z0-9]+){1,4}", region) else ""
        if not region_text:
            return self.p.text("project", value)
        return region_text + (sep + self.p.text("project", rest) if sep else "")

    def body(self, body: Any) -> Any:
        return self.value("", body, "")

    def value(self, key: str, value: Any, container: str) -> Any:
        """`value` found under `key`, in a list or object found under `container`."""
        if isinstance(value, Mapping):
            return {
                self._key(str(k)): self.value(str(k), v, key or container) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(key, v, key) for v in value]
        if not isinstance(value, str):
            return value  # numbers, booleans, null: never identifying
        if key == "name":
            if container in TASK_CONTAINERS:
                return value  # a task name
            if container == "projects":
                return self._project_name(value)
            return self.p.text("name", value)
        if key in KEEP_STATUS:
            return value if _STATUS.fullmatch(value) else self.p.text("status", value)
        if key in KEEP_TIMES:
            return value if _TIMESTAMP.fullmatch(value.strip()) else self.p.text("text", value)
        if key in KEEP_CODES:
            return value if _CODE.fullmatch(value) else self.p.text("text", value)
        if key in USER_KEYS:
            return self.p.text("user", value)
        if key == "params":
            return self._params(value)
        if _is_id_key(key):
            return self.p.identifier(value) if value else value
        return self.p.free(value)

    def _key(self, key: str) -> str:
        """Field names are the schema's, kept; one shaped like an ID or address is not."""
        if _UUID.fullmatch(key) or _HEX.fullmatch(key) or (_DIGITS.fullmatch(key) and len(key) > 6):
            return self.p.identifier(key)
        return self.p.address(key) if _is_ip(key) else key

    def _params(self, value: str) -> str:
        """`params` is JSON inside a string: scrubbed inside, written back as JSON."""
        if len(value) <= MAX_PARAMS_CHARS and json_depth(value.encode()) <= MAX_PARAMS_DEPTH:
            try:
                doc = json.loads(value)
            except (ValueError, RecursionError):
                doc = None
            if isinstance(doc, dict | list):
                return json.dumps(self.value("", doc, "params"), separators=(",", ":"))
        return self.p.text("text", value)


class Recorder:
    """Writes each exchange to `directory` as it happens, scrubbed, and the manifest at the
    end. The directory is created if needed; files of an older recording are replaced."""

    def __init__(self, directory: Path, scrubber: Scrubber | None = None) -> None:
        self.directory = directory
        self.scrubber = scrubber or Scrubber()
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("[0-9][0-9][0-9][0-9].json"):
            old.unlink()
        self.files: list[str] = []

    def write(self, exchange: Exchange) -> None:
        s = self.scrubber
        doc: dict[str, Any] = {
            "seq": exchange.seq,
            "purpose": exchange.purpose,
            "service": exchange.service,
            "region": exchange.region,
            "method": "GET",
            "path": s.path(exchange.path),
            "params": s.params(exchange.params),
            "latency_seconds": round(exchange.latency, 4),
        }
        if exchange.ok:
            doc["status"] = 200
            doc["body"] = s.body(exchange.body)
        else:
            doc["status"] = exchange.status
            doc["error"] = {
                "code": s.value("error_code", exchange.code, "") if exchange.code else None,
                "throttled": exchange.throttled,
                "message": s.p.text("text", exchange.error or ""),
            }
        name = f"{exchange.seq:04d}.json"
        (self.directory / name).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        self.files.append(name)

    def task_list(
        self, service: str, kind: str, region: str, project_id: str, instance_id: str
    ) -> dict[str, str]:
        """A task list as the manifest names it: its IDs replaced like the answers'."""
        p = self.scrubber.p
        return {
            "service": service,
            "kind": kind,
            "region": region,
            "project_id": p.identifier(project_id) if project_id else "",
            "instance_id": p.identifier(instance_id) if instance_id else "",
        }

    def finish(self, manifest: dict[str, Any]) -> None:
        doc = {"format": FORMAT, "version": VERSION, "files": self.files, **manifest}
        text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        (self.directory / "manifest.json").write_text(text)


def load_recording(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A recording's manifest and its exchanges, in order (for replays and readers)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{directory} is not a recording of this exporter")
    exchanges = [json.loads((directory / name).read_text()) for name in manifest["files"]]
    return manifest, exchanges
