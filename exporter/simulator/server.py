"""The simulated cloud over real HTTP: DCS, DMS, IAM and ECS-metadata listeners sharing one
world.

DCS and DMS serve `/v2/{project_id}/instances/{instance_id}/tasks` like the real hosts do, each
for its own services, and `/v2/{project_id}/instances` (list instances); DCS also serves the
task center `/v2/{project_id}/tasks`. Those requests must be signed with AK/SK or carry an IAM
token (`X-Auth-Token`). IAM serves `POST /v3/auth/tokens` (password identity) and
`GET /v3/projects` and `GET /v3/auth/projects` (every project, sub-projects with their
region's project as parent); the metadata listener serves the ECS metadata token step and
`/openstack/latest/securitykey` (temporary credentials). `/_sim/...` is an unsigned admin API
for tests and demos on every listener (see `_admin`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import ssl
import struct
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from exporter.simulator.auth import AuthFailure, SignatureCheck, exporter_check, verify
from exporter.simulator.world import (
    AUTO,
    Churn,
    Fault,
    Listener,
    Options,
    RequestRecord,
    SimInstance,
    SimTask,
    World,
    format_expiry,
    listener_of,
)

log = logging.getLogger(__name__)

_INSTANCE_TASKS = re.compile(r"^/v2/([^/]+)/instances/([^/]+)/tasks/?$")
_CENTER_TASKS = re.compile(r"^/v2/([^/]+)/tasks/?$")
_LIST_INSTANCES = re.compile(r"^/v2/([^/]+)/instances/?$")

# DMS `engine` filter of the list-instances API -> the world's service.
_DMS_ENGINES = {"kafka": "kafka", "rabbitmq": "rabbitmq", "reliability": "rocketmq"}
_METADATA_TOKEN_MAX_TTL = 21600
_NO_AGENCY = (
    "There is no Cloud Service Agency attached to this ECS; "
    "bind an agency to get temporary credentials."
)


class ApiAnswer(Exception):
    """An error answer in the cloud's shape (the gateway's unless `body` is given)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.body = body


def _iam_error(status: int, code: str, message: str) -> ApiAnswer:
    return ApiAnswer(status, code, message, body={"error_msg": message, "error_code": code})


def _metadata_error(status: int, message: str) -> ApiAnswer:
    return ApiAnswer(
        status, str(status), message, body={"error": {"code": status, "message": message}}
    )


def _not_published() -> ApiAnswer:
    return ApiAnswer(
        404, "APIG.0101", "The API does not exist or has not been published in the environment"
    )


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
        first = offset if opts.dcs_offset else 0
    else:
        limit = _int_param(query, "limit", 10, "DMS.00400000")
        if not 1 <= limit <= opts.dms_max_limit:
            raise ApiAnswer(400, "DMS.00400000", "Invalid request parameter: limit")
        default_start = 0 if opts.dms_start == "0" else 1
        start_index = _int_param(query, "start", default_start, "DMS.00400000")
        if opts.dms_offset and "start" not in query and "offset" in query:
            first = _int_param(query, "offset", 0, "DMS.00400000")
            if first < 0:
                raise ApiAnswer(400, "DMS.00400000", "Invalid request parameter: offset")
        elif opts.dms_start == "0":
            if start_index < 0:
                raise ApiAnswer(400, "DMS.00400000", "Invalid request parameter: start")
            first = start_index
        elif opts.dms_start == "1":
            first = max(start_index, 1) - 1
        else:
            if start_index < 1:
                raise ApiAnswer(400, "DMS.00400000", "Invalid request parameter: start")
            first = start_index - 1
        name = opts.dms_window_param
        start = _parse_window(query.get(name), name) if opts.dms_window else None
        end = _parse_window(query.get("end_time"), "end_time") if opts.dms_window else None
    selected = [
        t
        for t in tasks
        if (start is None or t.created_at >= start) and (end is None or t.created_at <= end + 1)
    ]
    page = selected[first : first + limit]
    answer: dict[str, Any] = {
        "task_count": world.task_count_value(len(selected)),
        "tasks": [_renamed(t.view(center=center), opts.rename_task_fields) for t in page],
    }
    return _renamed(answer, opts.rename_answer_fields)


def _renamed(body: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """`body` with fields renamed (an empty new name drops the field): assumption breakers."""
    if not renames:
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        new = renames.get(key, key)
        if new:
            out[new] = value
    return out


def list_instances_page(
    world: World, listener: Listener, project_id: str, query: dict[str, str]
) -> dict[str, Any]:
    """One page of a list-instances answer (DCS, or DMS with its optional `engine` filter)."""
    opts: Options = world.options
    if listener == "dcs":
        code = "DCS.4800"
        services: list[str] = ["dcs"]
        max_limit = opts.dcs_list_max_limit
    else:
        code = "DMS.00400000"
        engine = query.get("engine") or None
        if engine is None:
            services = list(_DMS_ENGINES.values())
        elif engine in _DMS_ENGINES:
            services = [_DMS_ENGINES[engine]]
        else:
            raise ApiAnswer(400, code, "Invalid request parameter: engine")
        max_limit = opts.dms_list_max_limit
    offset = _int_param(query, "offset", 0, code)
    limit = _int_param(query, "limit", 10, code)
    if offset < 0 or not 1 <= limit <= max_limit:
        raise ApiAnswer(400, code, "Invalid request parameter: offset or limit")
    found: list[SimInstance] = world.list_instances(project_id, services)
    if listener == "dms" and found and offset >= len(found):
        raise ApiAnswer(400, "DMS.40050010", "The offset is out of range.")
    return {
        "instance_num": len(found),
        "instances": [i.listing() for i in found[offset : offset + limit]],
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SimHTTPServer
    error_content_type = "application/json"
    # Error answers (send_error) write the head and the body apart: without TCP_NODELAY,
    # Nagle's algorithm and the client's delayed ACK would add ~40 ms to them.
    disable_nagle_algorithm = True
    # The API request being answered: recorded in `world.requests` just before its answer is
    # written, so a client that has the answer always finds the record.
    _pending: RequestRecord | None = None
    _access_key: str | None = None  # set by a successful answer only

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
        content_type: str = "application/json;charset=UTF-8",
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode("utf-8")
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # The head and a body in one write, as a gateway sends a small answer (one TLS
        # record, one segment), not the head first and the body after it.
        head: list[bytes] | None = getattr(self, "_headers_buffer", None)
        if head is None:  # HTTP/0.9: no head at all
            head = []
        else:
            head.append(b"\r\n")
        if self.command != "HEAD":
            head.append(data)
        self.wfile.write(b"".join(head))
        head.clear()

    def _record(self, status: int) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.at = time.time()
            pending.status = status
            pending.access_key = self._access_key
            self.server.world.record(pending)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, as a broken load balancer would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, raw_query = parts.path, parts.query
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        body = self._body()
        if path.startswith("/_sim/"):
            self._admin(method, path, query, body)
            return
        status = 200
        listener = self.server.listener
        self._access_key = None
        self._pending = RequestRecord(0.0, listener, method, path, query, 0, None)
        try:
            if listener == "iam":
                self._serve_iam(method, path, raw_query, query, body)
            elif listener == "metadata":
                self._serve_metadata(method, path)
            else:
                self._serve_api(method, path, raw_query, query, body)
        except ApiAnswer as answer:
            status = answer.status
            error = (
                answer.body
                if answer.body is not None
                else {"error_code": answer.code, "error_msg": answer.message, "error_ext_msg": None}
            )
            self._send_json(answer.status, error, answer.headers)
        except _Reset:
            status = 0
            self._reset()
        except _Sent as sent:
            status = sent.status
        finally:
            self._record(status)  # when no answer was written: a reset (status 0)

    def _authenticate(
        self, method: str, path: str, raw_query: str, body: bytes, project_id: str | None
    ) -> str:
        """The caller's access key (AK/SK signature), or "token" (an IAM token in
        `X-Auth-Token`, which must be scoped to `project_id` when that is given)."""
        world = self.server.world
        headers = {k.lower(): v for k, v in self.headers.items()}
        token = headers.get("x-auth-token")
        if token is not None:
            found = world.valid_token(token.strip())
            if found is None:
                raise ApiAnswer(401, "APIG.0307", "The token must be updated.")
            if project_id is not None and found.project_id != project_id:
                raise ApiAnswer(
                    403, "APIG.0302", "The IAM user is not authorized to access the API."
                )
            return "token"
        with world.lock:
            credentials = dict(world.credentials)
        try:
            return verify(
                method,
                path,
                raw_query,
                headers,
                body,
                credentials,
                world.clock(),
                world.options.signature_max_skew,
                self.server.signature_check,
            )
        except AuthFailure as failure:
            raise ApiAnswer(401, failure.code, failure.message) from None

    def _serve_api(
        self, method: str, path: str, raw_query: str, query: dict[str, str], body: bytes
    ) -> None:
        world = self.server.world
        listener = self.server.listener
        m_inst = _INSTANCE_TASKS.match(path)
        m_center = _CENTER_TASKS.match(path) if listener == "dcs" else None
        m_list = _LIST_INSTANCES.match(path)
        matched = m_inst or m_center or m_list
        if method != "GET" or matched is None:
            raise _not_published()
        project_id = matched.group(1)
        access_key = self._authenticate(method, path, raw_query, body, project_id)
        if m_list:
            latency, fault = world.take_fault(listener, project_id, None, listing=True)
            if latency:
                time.sleep(latency)
            if fault is not None:
                self._apply_fault(fault)
            page = list_instances_page(world, listener, project_id, query)
            self._access_key = access_key
            self._send_json(200, page)
            return
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
        self._access_key = access_key
        self._send_json(200, answer)

    # -- IAM ------------------------------------------------------------------------------

    def _serve_iam(
        self, method: str, path: str, raw_query: str, query: dict[str, str], body: bytes
    ) -> None:
        """IAM: password tokens, and projects by name."""
        world = self.server.world
        route = path.rstrip("/")
        if method == "POST" and route == "/v3/auth/tokens":
            self._take_faults("")
            self._issue_token(body)
            return
        if method == "GET" and route == "/v3/auth/projects":
            access_key = self._authenticate(method, path, raw_query, body, None)
            if access_key != "token" and not world.options.iam_auth_projects_signed:
                raise _iam_error(
                    401, "IAM.0001", "The request you have made requires authentication."
                )
            self._take_faults("")
            listed = [
                {
                    "id": pid,
                    "name": pname,
                    "domain_id": world.domain_id,
                    "parent_id": parent,
                    "is_domain": False,
                    "enabled": True,
                    "description": "",
                    "links": {"self": f"{self._base_url()}/v3/projects/{pid}"},
                }
                for pname, pid, parent in world.project_listing()
            ]
            self._access_key = access_key
            self._send_json(
                200,
                {
                    "projects": listed,
                    "links": {"self": f"{self._base_url()}{path}", "previous": None, "next": None},
                },
            )
            return
        if method == "GET" and route == "/v3/projects":
            access_key = self._authenticate(method, path, raw_query, body, None)
            self._take_faults("")
            name = query.get("name")
            with world.lock:
                projects = [
                    {
                        "id": pid,
                        "name": pname,
                        "domain_id": world.domain_id,
                        "parent_id": world.domain_id,
                        "is_domain": False,
                        "enabled": True,
                        "description": "",
                        "links": {"self": f"{self._base_url()}/v3/projects/{pid}"},
                    }
                    for pname, pid in world.projects.items()
                    if name is None or pname == name
                ]
            self._access_key = access_key
            self._send_json(
                200,
                {
                    "projects": projects,
                    "links": {
                        "self": f"{self._base_url()}{self.path}",
                        "previous": None,
                        "next": None,
                    },
                },
            )
            return
        raise _not_published()

    def _issue_token(self, body: bytes) -> None:
        world = self.server.world
        try:
            data = json.loads(body)
            auth = data["auth"]
            identity = auth["identity"]
            if "password" not in identity["methods"]:
                raise ValueError("methods")
            user = identity["password"]["user"]
            user_name, password = user["name"], user["password"]
            domain = user["domain"]["name"]
            if "domain" in auth["scope"]:  # a domain-scoped token: lists projects, no more
                self._issue_domain_token(domain, user_name, password, auth["scope"]["domain"])
                return
            project = auth["scope"]["project"]
            scope_id, scope_name = project.get("id"), project.get("name")
            scope_domain = project.get("domain", {}).get("name")
            texts = (user_name, password, domain)
            scopes = (scope_id, scope_name, scope_domain)
            if (
                not all(isinstance(t, str) for t in texts)
                or not all(t is None or isinstance(t, str) for t in scopes)
                or not (scope_id or scope_name)
            ):
                raise ValueError("fields")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _iam_error(400, "IAM.0011", "Request body is invalid.") from None
        with world.lock:
            if world.iam_users.get((domain, user_name)) != password:
                raise _iam_error(401, "IAM.0004", "The username or password is wrong.")
            if scope_id:
                project_id: str | None = scope_id
                region = world.project_name(scope_id)
            else:
                region = scope_name
                project_id = world.projects.get(scope_name)
            if (
                project_id is None
                or region is None
                or (scope_domain is not None and scope_domain != domain)
            ):
                raise _iam_error(400, "IAM.0005", "The project does not exist.")
            token, expires_at = world.issue_token(domain, user_name, project_id)
            issued_at = world.tokens[token].issued_at
        domain_ref = {"id": world.domain_id, "name": domain}
        answer = {
            "token": {
                "expires_at": format_expiry(expires_at),
                "issued_at": format_expiry(issued_at),
                "methods": ["password"],
                "catalog": [],
                "project": {"id": project_id, "name": region, "domain": domain_ref},
                "user": {
                    "id": hashlib.sha256(f"{domain}/{user_name}".encode()).hexdigest()[:32],
                    "name": user_name,
                    "domain": domain_ref,
                    "password_expires_at": "",
                },
            }
        }
        self._send_json(201, answer, {"X-Subject-Token": token})

    def _issue_domain_token(self, domain: str, user_name: Any, password: Any, scope: Any) -> None:
        world = self.server.world
        if not (
            isinstance(user_name, str)
            and isinstance(password, str)
            and isinstance(scope, dict)
            and scope.get("name") == domain
        ):
            raise _iam_error(400, "IAM.0011", "Request body is invalid.")
        with world.lock:
            if world.iam_users.get((domain, user_name)) != password:
                raise _iam_error(401, "IAM.0004", "The username or password is wrong.")
            token, expires_at = world.issue_token(domain, user_name, "")
            issued_at = world.tokens[token].issued_at
        answer = {
            "token": {
                "expires_at": format_expiry(expires_at),
                "issued_at": format_expiry(issued_at),
                "methods": ["password"],
                "catalog": [],
                "domain": {"id": world.domain_id, "name": domain},
                "user": {"name": user_name, "domain": {"id": world.domain_id, "name": domain}},
            }
        }
        self._send_json(201, answer, {"X-Subject-Token": token})

    def _base_url(self) -> str:
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        return f"{scheme}://{self.headers.get('Host', 'localhost')}"

    # -- ECS metadata ---------------------------------------------------------------------

    def _serve_metadata(self, method: str, path: str) -> None:
        world = self.server.world
        opts = world.options
        route = path.rstrip("/")
        if method == "PUT" and route == "/meta-data/latest/api/token":
            self._take_faults("")
            if not opts.metadata_token_supported:
                raise _metadata_error(404, "Not Found")
            try:
                ttl = int(self.headers.get("X-Metadata-Token-Ttl-Seconds", ""))
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= _METADATA_TOKEN_MAX_TTL:
                raise _metadata_error(
                    400, "X-Metadata-Token-Ttl-Seconds must be between 1 and 21600"
                )
            token = world.issue_metadata_token(ttl)
            self._send_json(200, None, raw=token.encode("ascii"), content_type="text/plain")
            return
        if method != "GET" or route not in (
            "/openstack/latest/securitykey",
            "/openstack/latest/meta_data.json",
        ):
            raise _metadata_error(404, "Not Found")
        self._take_faults("")
        if opts.metadata_token_required and not world.metadata_token_valid(
            self.headers.get("X-Metadata-Token")
        ):
            raise _metadata_error(401, "Unauthorized: a valid X-Metadata-Token is required")
        if route == "/openstack/latest/meta_data.json":
            with world.lock:
                project_id = world.projects.get(world.region, "")
            self._send_json(
                200,
                {
                    "uuid": "5f1c3d2e-8a7b-4c6d-9e0f-1a2b3c4d5e6f",
                    "name": "ecs-sim",
                    "availability_zone": f"{world.region}a",
                    "region_id": world.region,
                    "project_id": project_id,
                    "meta": {},
                },
            )
            return
        if not opts.metadata_agency:
            raise _metadata_error(401, _NO_AGENCY)
        access, secret, security_token, expires_at = world.issue_temporary_credentials()
        self._send_json(
            200,
            {
                "credential": {
                    "access": access,
                    "secret": secret,
                    "securitytoken": security_token,
                    "expires_at": format_expiry(expires_at),
                }
            },
        )

    def _take_faults(self, project_id: str) -> None:
        """Faults for IAM and metadata calls (only those naming this listener match)."""
        latency, fault = self.server.world.take_fault(self.server.listener, project_id, None)
        if latency:
            time.sleep(latency)
        if fault is not None:
            self._apply_fault(fault)

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
        """Unsigned control API: `GET /_sim/state`, `POST /_sim/instances`,
        `POST|DELETE /_sim/instances/{id}`, `POST /_sim/tasks`, `POST /_sim/tasks/{id}`,
        `POST /_sim/history`, `POST|DELETE /_sim/faults`, `POST /_sim/options`,
        `POST /_sim/churn`, `GET|DELETE /_sim/requests`, `POST /_sim/iam/users`,
        `POST /_sim/projects`, `DELETE /_sim/projects/{name}`."""
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
        "user_name": t.user_name,
        "params": t.params,
        "details": t.details,
    }


def admin_call(
    world: World, method: str, path: str, query: dict[str, str], data: dict[str, Any]
) -> Any:
    """The admin API, callable without HTTP too. Returns None for an unknown call."""
    if method == "GET" and path == "/_sim/state":
        with world.lock:
            world.advance()
            return {
                "instances": [
                    {k: v for k, v in vars(i).items() if k != "raw"}
                    for i in world.instances.values()
                ],
                "tasks": [_task_json(t) for t in world.tasks.values()],
                "options": vars(world.options),
                "faults": [dict(vars(f)) for f in world.faults],
                "churn": vars(world.churn) if world.churn else None,
                "projects": dict(world.projects),
                "tokens_issued": world.tokens_issued,
                "metadata_issued": world.metadata_issued,
            }
    if method == "POST" and path == "/_sim/instances":
        inst = world.add_instance(
            data["service"],
            data.get("name", ""),
            data.get("project_id", ""),
            data.get("id"),
            status=data.get("status", "RUNNING"),
            tags=data.get("tags"),
            engine_version=data.get("engine_version"),
        )
        return vars(inst)
    if method == "POST" and path.startswith("/_sim/instances/"):
        inst = world.set_instance_status(path.rsplit("/", 1)[1], data["status"])
        return vars(inst)
    if method == "POST" and path == "/_sim/iam/users":
        world.add_iam_user(data["domain"], data["user"], data["password"])
        return {"ok": True}
    if method == "POST" and path == "/_sim/projects":
        world.add_project(data["name"], data["id"])
        return {"ok": True}
    if method == "DELETE" and path.startswith("/_sim/projects/"):
        world.remove_project(path.rsplit("/", 1)[1])
        return {"ok": True}
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
            user_name=data.get("user_name"),
            params=data.get("params", AUTO),
            details=data.get("details", AUTO),
        )
        return _task_json(task)
    if method == "POST" and path == "/_sim/history":
        added = world.add_history(
            data["instance_id"],
            float(data.get("days", 14)),
            float(data.get("per_day", 10)),
            p_failed=float(data.get("p_failed", 0.1)),
        )
        return {"added": len(added)}
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
    # socketserver's default backlog is 5: a client opening dozens of connections at once
    # would see SYNs dropped and retried seconds later, which no cloud endpoint does.
    request_queue_size = 1024
    handshake_timeout = 10.0

    def __init__(
        self,
        address: tuple[str, int],
        world: World,
        listener: Listener,
        tls: ssl.SSLContext | None = None,
        signature_check: SignatureCheck = exporter_check,
    ) -> None:
        super().__init__(address, _Handler)
        self.world = world
        self.listener = listener
        self.signature_check = signature_check
        self.tls = tls is not None
        if tls is not None:
            # The handshake happens in the request's thread (finish_request), so a slow or
            # refusing client never blocks the accept loop.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up (an exporter stopped or killed) is normal here, not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)

    def finish_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(self.handshake_timeout)
                request.do_handshake()
                request.settimeout(None)
            except OSError as exc:  # ssl.SSLError too: e.g. the client refused our certificate
                log.debug(
                    "sim %s: TLS handshake with %s failed: %s", self.listener, client_address, exc
                )
                return
        super().finish_request(request, client_address)


class Simulator:
    """Runs the DCS, DMS, IAM and metadata listeners of one world in background threads.

    With `tls=(certfile, keyfile)`, DCS, DMS and IAM serve HTTPS; the metadata listener is
    always plain HTTP, as on a real ECS.

    `signature_check` recomputes AK/SK signatures; without one, `default_signature_check`
    (the exporter's own signing code) is used. The test suite replaces that default with the
    official SDK's signer, so every simulator a test starts checks the exporter against it.
    """

    listeners: ClassVar[tuple[Listener, ...]] = ("dcs", "dms", "iam", "metadata")
    default_signature_check: ClassVar[SignatureCheck] = exporter_check

    def __init__(
        self,
        world: World,
        host: str = "127.0.0.1",
        dcs_port: int = 0,
        dms_port: int = 0,
        *,
        iam_port: int = 0,
        metadata_port: int = 0,
        tls: tuple[str, str] | None = None,
        signature_check: SignatureCheck | None = None,
    ) -> None:
        self.world = world
        self.host = host
        # Looked up on the class, so a plain function is not bound as a method.
        self.signature_check = signature_check or Simulator.default_signature_check
        check = self.signature_check
        context: ssl.SSLContext | None = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls[0], tls[1])
        self.tls = tls
        self.servers: dict[Listener, _SimHTTPServer] = {
            "dcs": _SimHTTPServer((host, dcs_port), world, "dcs", context, check),
            "dms": _SimHTTPServer((host, dms_port), world, "dms", context, check),
            "iam": _SimHTTPServer((host, iam_port), world, "iam", context, check),
            "metadata": _SimHTTPServer((host, metadata_port), world, "metadata", None, check),
        }
        self.threads = [
            threading.Thread(target=s.serve_forever, args=(0.05,), name=f"sim-{k}", daemon=True)
            for k, s in self.servers.items()
        ]

    def url(self, listener: Listener) -> str:
        server = self.servers[listener]
        scheme = "https" if server.tls else "http"
        return f"{scheme}://{self.host}:{server.server_address[1]}"

    @property
    def dcs_url(self) -> str:
        return self.url("dcs")

    @property
    def dms_url(self) -> str:
        return self.url("dms")

    @property
    def iam_url(self) -> str:
        return self.url("iam")

    @property
    def metadata_url(self) -> str:
        return self.url("metadata")

    def start(self) -> Simulator:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        # Shut the listeners down together: each takes up to a poll interval to notice.
        stoppers = [
            threading.Thread(target=s.shutdown, name=f"sim-stop-{k}", daemon=True)
            for k, s in self.servers.items()
        ]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for s in self.servers.values():
            s.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
