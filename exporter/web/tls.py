"""TLS on the selector server's non-blocking sockets: one handshake step at a time.

The server never blocks on a client: a handshake step that needs more bytes from the client
(or room to send) returns what to wait for, and the server's header deadline, which runs from
the connection's start, covers the handshake, so a client stalling it is cut off like one
trickling its request head.
"""

from __future__ import annotations

import selectors
import socket
import ssl

TLS_CHUNK = 64 * 1024  # bytes per send: a few records, retried whole when it must wait


def wrap(context: ssl.SSLContext | None, sock: socket.socket) -> socket.socket:
    """The accepted socket as the server's end of a TLS connection (the handshake not yet
    begun), or as it is without a context; OSError, the socket closed, when that fails."""
    if context is None:
        return sock
    try:
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        sock.close()
        raise OSError("cannot start TLS") from exc


def handshake(sock: ssl.SSLSocket) -> int | None:
    """One step: None when done, the selector events to wait for, or -1 when it failed
    (a wrong certificate, a plain-HTTP client, a closed connection)."""
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return selectors.EVENT_READ
    except ssl.SSLWantWriteError:
        return selectors.EVENT_WRITE
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return -1
    return None


def peer_sans_allowed(sock: ssl.SSLSocket, allowed: frozenset[str]) -> bool:
    """Whether the client's (verified) certificate has one of the allowed subject alternative
    names (DNS, IP address, e-mail or URI), as `client_allowed_sans` means in the toolkit."""
    cert = sock.getpeercert()
    if not cert:
        return False
    names = cert.get("subjectAltName", ())
    return any(isinstance(n, tuple) and len(n) == 2 and str(n[1]) in allowed for n in names)


def raw_peek(sock: socket.socket) -> bytes:
    """One byte waiting on the socket itself, without reading it (b"" at its end): for TLS,
    on the encrypted stream, as the TLS layer does not peek."""
    return socket.socket.recv(sock, 1, socket.MSG_PEEK)
