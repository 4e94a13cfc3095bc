"""`--web.config.file`: the Prometheus exporter-toolkit's web configuration, in Python.

The same file as Go exporters take (`tls_server_config`, `http_server_config.headers`,
`basic_auth_users` with bcrypt hashes), validated like the main configuration: unknown keys
refused, every problem as `file:line: path: what`, no value ever quoted (a hash or a key path
could be pasted anywhere). Relative file names are relative to the web config's directory,
as in the toolkit. `WebSettings` is what the server uses: an `ssl.SSLContext` built and
checked at load time, the users and the response headers. `exporter.web.webwatch` re-reads
the files when they change.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from exporter.config import ConfigError, Problem, format_path
from exporter.config.loading import line_of, read_yaml_document
from exporter.telemetry.logs import register_secret

MAX_WEB_CONFIG_BYTES = 1024 * 1024
MAX_PEM_BYTES = 1024 * 1024  # a certificate chain, a key or a CA bundle
MAX_USERS = 1000
MAX_HEADER_VALUE = 4096
# `$2a$`, `$2b$` or `$2y$`, a two-digit cost, 22 characters of salt and 31 of hash.
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# The toolkit's own list: only these headers, and for two of them only these values.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
# Toolkit keys this exporter does not implement: named as such, not as unknown keys.
_UNSUPPORTED = {
    "cert": "inline certificates are not supported: use cert_file",
    "key": "inline keys are not supported: use key_file",
    "cipher_suites": "not supported: Python's ssl module takes OpenSSL's cipher names, "
    "not Go's; the defaults exclude weak ciphers",
    "curve_preferences": "not supported (OpenSSL's default curves are used)",
    "rate_limit": "not supported by this exporter",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _unsupported(key: str) -> Any:
    return Field(default=None, description=_UNSUPPORTED[key])


class TlsServerConfig(_Strict):
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: str | None = None
    client_ca: str | None = None  # PEM text, instead of client_ca_file
    client_allowed_sans: list[str] | None = None
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"
    prefer_server_cipher_suites: bool = True
    cert: Any = _unsupported("cert")
    key: Any = _unsupported("key")
    cipher_suites: Any = _unsupported("cipher_suites")
    curve_preferences: Any = _unsupported("curve_preferences")

    @field_validator("cert", "key", "cipher_suites", "curve_preferences", mode="before")
    @classmethod
    def _refuse(cls, value: Any, info: Any) -> Any:
        if value is not None:
            raise ValueError(_UNSUPPORTED[info.field_name])
        return value

    @property
    def enabled(self) -> bool:
        """TLS is on when any of its keys is set (as in the toolkit: `tls_server_config: {}`
        is plain HTTP)."""
        keys = {"cert_file", "key_file", "client_ca_file", "client_ca", "client_auth_type"}
        return bool(keys & self.model_fields_set)


class HttpServerConfig(_Strict):
    # Accepted for compatibility; the exporter speaks HTTP/1.1 only, so it never negotiates h2.
    http2: bool = True
    headers: dict[str, str] = {}


class WebConfig(_Strict):
    tls_server_config: TlsServerConfig = TlsServerConfig()
    http_server_config: HttpServerConfig = HttpServerConfig()
    basic_auth_users: dict[str, str] = {}
    rate_limit: Any = _unsupported("rate_limit")

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _refuse(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(_UNSUPPORTED["rate_limit"])
        return value


@dataclass(frozen=True)
class WebSettings:
    """The web configuration in force: what the server needs, ready to use.

    `tls` is None for plain HTTP; `users` empty when no authentication is required;
    `files` every file it was built from, for the watcher.
    """

    tls: ssl.SSLContext | None
    allowed_sans: frozenset[str] | None
    users: Mapping[str, bytes]
    headers: tuple[tuple[str, str], ...]
    files: tuple[Path, ...]
    digest: str


class _Problems:
    def __init__(self, source: str, marks: Any) -> None:
        self.source, self.marks = source, marks
        self.found: list[Problem] = []

    def add(self, loc: tuple[Any, ...], message: str) -> None:
        self.found.append(Problem(self.source, line_of(self.marks, loc), format_path(loc), message))


def read_regular_file(path: Path, limit: int) -> bytes:
    """A file's bytes, at most `limit`: only a regular file (a FIFO or a device would block or
    never end), opened without blocking. OSError or ValueError says why not."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"larger than {limit // 1024} KiB")
    return data


def _why(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


def _no_password() -> bytes:
    """An encrypted key would make OpenSSL prompt on the terminal: refuse it instead."""
    raise ValueError("the key is encrypted (a key file without a passphrase is needed)")


def _message(err: Mapping[str, Any], model: type[BaseModel] | None) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = err["loc"][-1]
        if model is not None and isinstance(key, str):
            close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.7)
            if close:
                return f"unknown key: did you mean {close[0]}?"
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping of keys to values"
    if kind == "list_type":
        return "must be a list"
    return str(err["msg"]).removeprefix("Value error, ")


def _model_of(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    models: dict[tuple[Any, ...], type[BaseModel]] = {
        (): WebConfig,
        ("tls_server_config",): TlsServerConfig,
        ("http_server_config",): HttpServerConfig,
    }
    return models.get(loc[:-1])


def parse_web_config(text: str, source: str) -> tuple[WebConfig, Any]:
    """The model of a web config file's text and the marks of its keys; ConfigError with
    every problem otherwise."""
    data, marks = read_yaml_document(text, source)
    if data is None:
        data = {}  # an empty file: plain HTTP, no authentication, as in the toolkit
    problems = _Problems(source, marks)
    if not isinstance(data, dict):
        problems.add((), "must be a mapping of keys to values")
        raise ConfigError(problems.found)
    _check_users(data.get("basic_auth_users"), problems)
    http = data.get("http_server_config")
    _check_headers(http.get("headers") if isinstance(http, dict) else None, problems)
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("[")))
            problems.add(loc, _message(err, _model_of(loc)))
        problems.found.sort(key=lambda p: p.line or 0)
        raise ConfigError(_scrubbed(problems.found, data)) from None
    tls = config.tls_server_config
    if tls.enabled:
        where = ("tls_server_config",)
        for key in ("cert_file", "key_file"):
            if not getattr(tls, key):
                problems.add((*where, key), "required when TLS is on")
        if tls.client_ca_file and tls.client_ca:
            problems.add((*where, "client_ca"), "give client_ca or client_ca_file, not both")
        has_ca = bool(tls.client_ca_file or tls.client_ca)
        if tls.client_auth_type in ("RequireAnyClientCert", "RequireClientCert"):
            problems.add(
                (*where, "client_auth_type"),
                "certificates cannot be required without being verified here (Python's ssl "
                "module): use RequireAndVerifyClientCert with client_ca_file",
            )
        elif tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
            if not has_ca:
                problems.add(
                    (*where, "client_ca_file"),
                    f"required with client_auth_type {tls.client_auth_type} (the system's "
                    "CAs would let any publicly trusted certificate in)",
                )
        elif has_ca and tls.client_auth_type == "NoClientCert":
            problems.add(
                (*where, "client_auth_type"),
                "client CAs are configured without a client auth policy "
                "(set RequireAndVerifyClientCert)",
            )
        if (
            tls.client_allowed_sans is not None
            and tls.client_auth_type != "RequireAndVerifyClientCert"
        ):
            problems.add(
                (*where, "client_allowed_sans"),
                "needs client_auth_type RequireAndVerifyClientCert",
            )
        if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
            problems.add((*where, "min_version"), "is above max_version")
    if problems.found:
        problems.found.sort(key=lambda p: p.line or 0)
        raise ConfigError(_scrubbed(problems.found, data))
    return config, marks


def _scrubbed(found: list[Problem], data: Any) -> list[Problem]:
    """Messages never quote values; as a second line of defence, a hash pasted where a user
    name belongs is cut out of the paths."""
    users = data.get("basic_auth_users") if isinstance(data, dict) else None
    hashes = [v for v in users.values() if isinstance(v, str) and len(v) >= 8] if users else []
    if not hashes or not isinstance(users, dict):
        return found
    out = []
    for p in found:
        path = p.path
        for h in hashes:
            path = path.replace(h, "<redacted>")
        out.append(Problem(p.source, p.line, path, p.message, p.column))
    return out


def _check_users(users: Any, problems: _Problems) -> None:
    """What the model cannot say about `basic_auth_users` (its shape is the model's)."""
    if not isinstance(users, dict):
        return
    if len(users) > MAX_USERS:
        problems.add(("basic_auth_users",), f"more than {MAX_USERS} users")
    for user, hashed in users.items():
        if not isinstance(user, str) or not isinstance(hashed, str):
            continue
        loc = ("basic_auth_users", user)
        if not user or ":" in user or _CONTROL.search(user) or len(user) > 256:
            problems.add(
                loc, "a user name must be 1 to 256 characters, without ':' or control characters"
            )
        if not _BCRYPT.match(hashed):
            problems.add(
                loc,
                "not a bcrypt hash ($2a$, $2b$ or $2y$, cost 04 to 31, 60 characters); make "
                "one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'",
            )


def _check_headers(headers: Any, problems: _Problems) -> None:
    if not isinstance(headers, dict):
        return
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        loc = ("http_server_config", "headers", name)
        if name not in HEADERS:
            problems.add(loc, "this header cannot be configured (only " + ", ".join(HEADERS) + ")")
            continue
        allowed = HEADERS[name]
        if value and allowed and value not in allowed:
            problems.add(loc, "must be " + " or ".join(allowed) + " (or empty: unset)")
        elif _CONTROL.search(value) or len(value) > MAX_HEADER_VALUE:
            problems.add(loc, f"at most {MAX_HEADER_VALUE} characters, no control characters")


def _resolve(base: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


def build_settings(config: WebConfig, marks: Any, source: str, base: Path) -> WebSettings:
    """What the server uses, with every file read and the TLS context built, so that a
    certificate that does not load is a problem now, not a failed handshake later."""
    problems = _Problems(source, marks)
    tls_config = config.tls_server_config
    files: list[Path] = []
    contents: list[bytes] = []

    def read(key: str) -> Path | None:
        name = getattr(tls_config, key)
        path = _resolve(base, name)
        files.append(path)
        try:
            contents.append(read_regular_file(path, MAX_PEM_BYTES))
        except (OSError, ValueError) as exc:
            problems.add(("tls_server_config", key), f"cannot read {path}: {_why(exc)}")
            return None
        return path

    context: ssl.SSLContext | None = None
    if tls_config.enabled:
        cert, key = read("cert_file"), read("key_file")
        ca = read("client_ca_file") if tls_config.client_ca_file else None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[tls_config.min_version]
        context.maximum_version = TLS_VERSIONS[tls_config.max_version]
        context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
        if tls_config.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        if cert is not None and key is not None:
            try:
                context.load_cert_chain(cert, key, password=_no_password)
            except (ssl.SSLError, OSError, ValueError) as exc:
                problems.add(
                    ("tls_server_config", "cert_file"),
                    f"cannot load the certificate with its key: {_why(exc)}",
                )
        mode = tls_config.client_auth_type
        if mode in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
            context.verify_mode = (
                ssl.CERT_REQUIRED if mode == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
            )
            key_name = "client_ca_file" if tls_config.client_ca_file else "client_ca"
            try:
                if ca is not None:
                    context.load_verify_locations(cafile=str(ca))
                elif tls_config.client_ca:
                    context.load_verify_locations(cadata=tls_config.client_ca)
                if not context.get_ca_certs():
                    raise ValueError("no CA certificate in it")
            except (ssl.SSLError, OSError, ValueError) as exc:
                if ca is not None or tls_config.client_ca:
                    problems.add(
                        ("tls_server_config", key_name), f"cannot load the CAs: {_why(exc)}"
                    )
        # RequestClientCert asks for a certificate it never checks: nothing would use it,
        # so no certificate is asked for (the same as NoClientCert here).
    if problems.found:
        raise ConfigError(problems.found)
    for hashed in config.basic_auth_users.values():
        register_secret(hashed)  # the log scrubber's second line of defence
    headers = tuple((k, v) for k, v in config.http_server_config.headers.items() if v)
    sans = tls_config.client_allowed_sans
    digest = hashlib.sha256(b"\0".join(contents)).hexdigest()
    return WebSettings(
        tls=context,
        allowed_sans=frozenset(sans) if sans is not None else None,
        users={u: h.encode("ascii") for u, h in config.basic_auth_users.items()},
        headers=headers,
        files=tuple(files),
        digest=digest,
    )


def load_web_settings(path: str | Path) -> WebSettings:
    """Read, validate and build a web config file; ConfigError with every problem otherwise."""
    path = Path(path)
    source = str(path)
    try:
        raw = read_regular_file(path, MAX_WEB_CONFIG_BYTES)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            [Problem(source, None, "", f"cannot read the web config file: {_why(exc)}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([Problem(source, None, "", "the web config is not UTF-8 text")]) from None
    config, marks = parse_web_config(text, source)
    settings = build_settings(config, marks, source, path.parent)
    digest = hashlib.sha256(raw + b"\0" + settings.digest.encode()).hexdigest()
    return WebSettings(
        tls=settings.tls,
        allowed_sans=settings.allowed_sans,
        users=settings.users,
        headers=settings.headers,
        files=(path, *settings.files),
        digest=digest,
    )


def files_digest(files: tuple[Path, ...]) -> str:
    """The digest `load_web_settings` gives for these files' current contents (first the web
    config, then the files it names), or "" when one cannot be read."""
    try:
        raw = read_regular_file(files[0], MAX_WEB_CONFIG_BYTES)
        contents = [read_regular_file(f, MAX_PEM_BYTES) for f in files[1:]]
    except (OSError, ValueError, IndexError):
        return ""
    inner = hashlib.sha256(b"\0".join(contents)).hexdigest()
    return hashlib.sha256(raw + b"\0" + inner.encode()).hexdigest()
