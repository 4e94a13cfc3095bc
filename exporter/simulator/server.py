"""The simulated cloud over real HTTP: a DCS listener and a DMS listener sharing one world.

Both serve `/v2/{project_id}/instances/{instance_id}/tasks` like the real hosts do, each for
its own services; DCS also serves the task center `/v2/{project_id}/tasks`. Requests must be
signed. `/_sim/...` is an unsigned admin API for tests and demos (see `_admin`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from exporter.simulator.auth import AuthFailure, verify
from exporter.simulator.world import (
    Churn,
    Fault,
    Listener,
    Options,
    RequestRecord,
    SimTask,
    World,
    listener_of,
)

log = logging.getLogger(__name__)

_INSTANCE_TASKS = re.compile(r"^/v2/([^/]+)/instances/([^/]+)/tasks/?$")
_CENTER_TASKS = re.compile(r"^/v2/([^/]+)/tasks/?$")


class ApiAnswer(Exception):
    """An error answer in the cloud's shape."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _parse_window(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise ApiAnswer(400, "DCS.4800", f"Invalid {name}: format is yyyyMMddHHmmss") from None


def _int_param(query: dict[str, str], name: str, default: int, code: str) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ApiAnswer(400, code, f"Invalid request parameter: {name}") from None


def list_page(
    world: World, listener: Listener, tasks: list[SimTask], query: dict[str, str], center: bool
) -> dict[str, Any]:
    """One page of a task list under the world's current dialect options."""
    opts: Options = world.options
    if listener == "dcs":
        offset = _int_param(query, "offset", 0, "DCS.4800")
        limit = _int_param(query, "limit", 10, "DCS.4800")
        if offset < 0 or not 1 <= limit <= opts.dcs_max_limit:
            raise ApiAnswer(400, "DCS.4800", "Invalid request parameter: offset or limit")
        window_param = opts.dcs_window_param
        start = (
            None if window_param == "none" else _parse_window(query.get(window_param), window_param)
        )
        end = None if window_param == "none" else _parse_window(query.get("end_time"), "end_time")
        first = offset
    else:
        limit = _int_param(query, "limit", 10, "DMS.00400000")
        if not 1 <= limit <= opts.dms_max_limit:
            raise ApiAnswer(400, "DMS.00400000", "Invalid request parameter: limit")
        default_start = 0 if opts.dms_start == "0" else 1
        start_index = _int_param(query, "start", default_start, "DMS.00400000")
        if opts.dms_start == "0":
            if start_index < 0:
                raise ApiAnswer(400, "DMS.00400000", "Invalid request parameter: start")
            first = start_index
        elif opts.dms_start == "1":
            first = max(start_index, 1) - 1
        else:
            if start_index < 1:
                raise ApiAnswer(400, "DMS.00400000", "Invalid request parameter: start")
            first = start_index - 1
        start = _parse_window(query.get("begin_time"), "begin_time") if opts.dms_window else None
        end = _parse_window(query.get("end_time"), "end_time") if opts.dms_window else None
    selected = [
        t
        for t in tasks
        if (start is None or t.created_at >= start) and (end is None or t.created_at <= end + 1)
    ]
    page = selected[first : first + limit]
    return {
        "task_count": world.task_count_value(len(selected)),
        "tasks": [t.view(center=center) for t in page],
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SimHTTPServer
    error_content_type = "application/json"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sim " + format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, as a broken load balancer would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _handle(self, method: str) -> None:
        world = self.server.world
        parts = urlsplit(self.path)
        path, raw_query = parts.path, parts.query
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        body = self._body()
        if path.startswith("/_sim/"):
            self._admin(method, path, query, body)
            return
        status = 200
        access_key: str | None = None
        try:
            access_key = self._serve_api(method, path, raw_query, query, body)
        except ApiAnswer as answer:
            status = answer.status
            self._send_json(
                answer.status,
                {"error_code": answer.code, "error_msg": answer.message, "error_ext_msg": None},
                answer.headers,
            )
        except _Reset:
            status = 0
            self._reset()
        except _Sent as sent:
            status = sent.status
        finally:
            world.record(
                RequestRecord(
                    time.time(), self.server.listener, method, path, query, status, access_key
                )
            )

    def _serve_api(
        self, method: str, path: str, raw_query: str, query: dict[str, str], body: bytes
    ) -> str:
        world = self.server.world
        listener = self.server.listener
        m_inst = _INSTANCE_TASKS.match(path)
        m_center = _CENTER_TASKS.match(path) if listener == "dcs" else None
        if method != "GET" or not (m_inst or m_center):
            raise ApiAnswer(
                404,
                "APIG.0101",
                "The API does not exist or has not been published in the environment",
            )
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            access_key = verify(
                method,
                path,
                raw_query,
                headers,
                body,
                world.credentials,
                world.clock(),
                world.options.signature_max_skew,
            )
        except AuthFailure as failure:
            raise ApiAnswer(401, failure.code, failure.message) from None
        if m_inst:
            project_id, instance_id = m_inst.group(1), m_inst.group(2)
        else:
            assert m_center is not None
            project_id, instance_id = m_center.group(1), None
        latency, fault = world.take_fault(listener, project_id, instance_id)
        if latency:
            time.sleep(latency)
        if fault is not None:
            self._apply_fault(fault)
        with world.lock:
            if instance_id is not None:
                inst = world.instances.get(instance_id)
                if (
                    inst is None
                    or inst.project_id != project_id
                    or listener_of(inst.service) != listener
                ):
                    code = "DCS.4001" if listener == "dcs" else "DMS.00404022"
                    raise ApiAnswer(404, code, "The instance does not exist.")
                tasks = world.instance_tasks(instance_id)
            else:
                tasks = world.center_tasks(project_id)
            answer = list_page(world, listener, tasks, query, center=instance_id is None)
        self._send_json(200, answer)
        return access_key

    def _apply_fault(self, fault: Fault) -> None:
        if fault.kind == "reset":
            raise _Reset
        if fault.kind == "throttle":
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            raise ApiAnswer(
                429,
                "APIG.0308",
                "The throttling threshold has been reached: "
                "policy user over ratelimit,limit:5,time:1 second",
                headers,
            )
        if fault.kind == "flow_control":
            raise ApiAnswer(404, "DMS.10240407", "The request is too frequent.")
        if fault.kind == "not_found":
            raise ApiAnswer(404, "DCS.4001", "The instance does not exist.")
        if fault.kind == "http_error":
            raise ApiAnswer(
                fault.status,
                "SYS.5000" if fault.status >= 500 else "SYS.4000",
                "Internal service error." if fault.status >= 500 else "Bad request.",
            )
        if fault.kind == "malformed":
            self._send_json(200, None, raw=b'{"task_count": "3", "tasks": [{"id": "8abf6e1e')
            raise _Sent(200)

    # -- admin ----------------------------------------------------------------------------

    def _admin(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        """Unsigned control API: `GET /_sim/state`, `POST /_sim/instances`, `POST /_sim/tasks`,
        `POST /_sim/tasks/{id}`, `POST|DELETE /_sim/faults`, `POST /_sim/options`,
        `POST /_sim/churn`, `GET|DELETE /_sim/requests`."""
        world = self.server.world
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            self._send_json(400, {"error": "body is not JSON"})
            return
        try:
            result = admin_call(world, method, path, query, data)
        except (KeyError, TypeError, ValueError) as exc:
            self._send_json(400, {"error": f"{type(exc).__name__}: {exc}"})
            return
        if result is None:
            self._send_json(404, {"error": "no such admin call"})
        else:
            self._send_json(200, result)


class _Reset(Exception):
    pass


class _Sent(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _task_json(t: SimTask) -> dict[str, Any]:
    return {
        "id": t.id,
        "instance_id": t.instance_id,
        "project_id": t.project_id,
        "service": t.service,
        "name": t.name,
        "status": t.status,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    }


def admin_call(
    world: World, method: str, path: str, query: dict[str, str], data: dict[str, Any]
) -> Any:
    """The admin API, callable without HTTP too. Returns None for an unknown call."""
    if method == "GET" and path == "/_sim/state":
        with world.lock:
            world.advance()
            return {
                "instances": [vars(i) for i in world.instances.values()],
                "tasks": [_task_json(t) for t in world.tasks.values()],
                "options": vars(world.options),
                "faults": [dict(vars(f)) for f in world.faults],
                "churn": vars(world.churn) if world.churn else None,
            }
    if method == "POST" and path == "/_sim/instances":
        inst = world.add_instance(
            data["service"], data.get("name", ""), data.get("project_id", ""), data.get("id")
        )
        return vars(inst)
    if method == "DELETE" and path.startswith("/_sim/instances/"):
        world.remove_instance(path.rsplit("/", 1)[1])
        return {"ok": True}
    if method == "POST" and path == "/_sim/tasks":
        task = world.add_task(
            data.get("instance_id"),
            data["name"],
            data.get("status", "EXECUTING"),
            data.get("created_at"),
            data.get("updated_at"),
            project_id=data.get("project_id"),
            raw=data.get("raw"),
        )
        return _task_json(task)
    if method == "POST" and path.startswith("/_sim/tasks/"):
        task = world.set_status(path.rsplit("/", 1)[1], data["status"], data.get("at"))
        return _task_json(task)
    if method == "POST" and path == "/_sim/faults":
        fault = world.add_fault(Fault(**data))
        return {"id": fault.id}
    if method == "DELETE" and path == "/_sim/faults":
        world.clear_faults()
        return {"ok": True}
    if method == "POST" and path == "/_sim/options":
        with world.lock:
            for key, value in data.items():
                if not hasattr(world.options, key):
                    raise KeyError(key)
                setattr(world.options, key, value)
            return vars(world.options)
    if method == "POST" and path == "/_sim/churn":
        if data.get("enabled", True):
            world.start_churn(Churn(**{k: v for k, v in data.items() if k != "enabled"}))
        else:
            world.stop_churn()
        return {"ok": True}
    if path == "/_sim/requests":
        if method == "DELETE":
            with world.lock:
                world.requests.clear()
            return {"ok": True}
        return [vars(r) for r in world.requests_for(query.get("instance_id"))]
    return None


class _SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], world: World, listener: Listener) -> None:
        super().__init__(address, _Handler)
        self.world = world
        self.listener = listener


class Simulator:
    """Runs the DCS and DMS listeners of one world in background threads."""

    listeners: ClassVar[tuple[Listener, ...]] = ("dcs", "dms")

    def __init__(
        self, world: World, host: str = "127.0.0.1", dcs_port: int = 0, dms_port: int = 0
    ) -> None:
        self.world = world
        self.host = host
        self.servers = {
            "dcs": _SimHTTPServer((host, dcs_port), world, "dcs"),
            "dms": _SimHTTPServer((host, dms_port), world, "dms"),
        }
        self.threads = [
            threading.Thread(target=s.serve_forever, args=(0.05,), name=f"sim-{k}", daemon=True)
            for k, s in self.servers.items()
        ]

    def url(self, listener: Listener) -> str:
        port = self.servers[listener].server_address[1]
        return f"http://{self.host}:{port}"

    @property
    def dcs_url(self) -> str:
        return self.url("dcs")

    @property
    def dms_url(self) -> str:
        return self.url("dms")

    def start(self) -> Simulator:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        for s in self.servers.values():
            s.shutdown()
            s.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
