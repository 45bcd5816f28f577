# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""One HTTP(S) GET under a total deadline: the probes' (health, readiness, deploy gate, proxy check) only GET.

``timeout`` bounds the whole answer, connect, TLS handshake, request, headers and body, not each socket read: before
every connect, handshake step and read the socket gets the time left, so a server that trickles its answer a byte at
a time fails the probe when the deadline passes ("no complete answer within N s") instead of holding it for minutes.
The body is read up to ``body_limit`` bytes (64 KiB by default); what comes after is not waited for.

Standard library only, and nothing of the collection's: ``_nginx`` (itself standard library only), ``_deploy``,
``_probes`` and ``_tls_expiry`` import it, and the probe runner of roles/healthcheck runs it on hosts.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import time
import typing as t
import urllib.parse
from dataclasses import dataclass

BODY_LIMIT = 1 << 16
REDIRECTS = (301, 302, 303, 307, 308)


class ProbeFailed(Exception):
    """No answer: one line saying why (refused, no complete answer within N s, a TLS error...)."""


class Deadline:
    """The time left until ``timeout`` seconds after it was made; TimeoutError once none is left."""

    def __init__(self, timeout: float, clock: t.Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self.at = clock() + timeout
        self.phase = "connecting"

    def left(self) -> float:
        left = self.at - self.clock()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def expired(self) -> str:
        return f"no complete answer within {self.timeout:g} s ({self.phase})"


class _DeadlineReader(io.RawIOBase):
    """A socket's bytes, each read given only the time left (what http.client reads the answer through)."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        self.sock.settimeout(self.deadline.left())
        return self.sock.recv_into(buffer)


class _ResponseSource:
    """What http.client.HTTPResponse takes as its socket: only ``makefile`` is used."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self.sock = sock
        self.deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self.sock, self.deadline))


@dataclass
class Answer:
    status: int
    body: bytes
    headers: http.client.HTTPMessage
    elapsed: float  # seconds


def connect(address: str, port: int, deadline: Deadline, context: ssl.SSLContext | None = None,
            server_name: str | None = None) -> socket.socket:
    """A TCP connection (and the TLS handshake with ``context``), each step given the time left of ``deadline``."""
    sock = socket.create_connection((address, port), timeout=deadline.left())
    if context is None:
        return sock
    deadline.phase = "in the TLS handshake"
    try:
        tls = context.wrap_socket(sock, server_hostname=server_name or address, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        tls.settimeout(0)  # each step of the handshake waits below, for the time left only
        wait: tuple[list[socket.socket], list[socket.socket]]
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                wait = ([tls], [])
            except ssl.SSLWantWriteError:
                wait = ([], [tls])
            if not any(select.select(*wait, [], deadline.left())[:2]):
                raise TimeoutError("deadline passed")
    except BaseException:
        tls.close()
        raise
    return tls


def get(address: str, port: int, path: str = "/", *, timeout: float, headers: t.Mapping[str, str] | None = None,
        context: ssl.SSLContext | None = None, server_name: str | None = None, body_limit: int = BODY_LIMIT,
        deadline: Deadline | None = None) -> Answer:
    """GET ``path`` from ``address``:``port`` (TLS with ``context``, SNI ``server_name``), all within ``timeout`` s.

    ``headers`` should hold ``Host`` when it is not ``address:port``. Raises ProbeFailed (one line) when there is
    no complete answer; any HTTP status is an answer."""
    deadline = deadline or Deadline(timeout)
    started = deadline.clock()
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in path):
        raise ProbeFailed(f"the path {path!r} has a space or a control character; percent-encode it")
    sent = {"Host": f"{address}:{port}", "User-Agent": "lifeboat-probe", "Accept-Encoding": "identity",
            "Connection": "close", **(headers or {})}
    request = f"GET {path or '/'} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in sent.items())
    sock: socket.socket | None = None
    try:
        deadline.phase = "connecting"
        sock = connect(address, port, deadline, context, server_name)
        deadline.phase = "sending the request"
        sock.settimeout(deadline.left())
        sock.sendall((request + "\r\n").encode("latin-1"))
        deadline.phase = "waiting for the headers"
        response = http.client.HTTPResponse(_ResponseSource(sock, deadline), method="GET")  # type: ignore[arg-type]
        try:
            response.begin()
            deadline.phase = "reading the body"
            body = response.read(body_limit)
        finally:
            response.close()
    except TimeoutError:  # socket.timeout is TimeoutError (3.10+); the deadline's own too
        raise ProbeFailed(deadline.expired()) from None
    except ssl.SSLCertVerificationError as exc:
        raise ProbeFailed(f"certificate does not verify: {exc.verify_message}") from None
    except (OSError, http.client.HTTPException, UnicodeError, ValueError) as exc:
        if isinstance(exc, socket.timeout):  # Python 3.9: socket.timeout is no TimeoutError yet
            raise ProbeFailed(deadline.expired()) from None
        reason = exc.strerror if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) else None
        raise ProbeFailed(reason or str(exc) or type(exc).__name__) from None  # "Connection refused", no [Errno 111]
    finally:
        if sock is not None:
            sock.close()
    return Answer(response.status, body, response.msg, deadline.clock() - started)


def get_url(url: str, *, timeout: float, headers: t.Mapping[str, str] | None = None,
            context: ssl.SSLContext | None = None, body_limit: int = BODY_LIMIT, redirects: int = 5) -> Answer:
    """GET an http:// or https:// URL (``context`` for https; default: verify against the system's trust), following
    up to ``redirects`` redirects, all of it within one deadline of ``timeout`` s. Proxies are not used."""
    deadline = Deadline(timeout)
    while True:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProbeFailed("the URL is no http:// or https:// URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ProbeFailed(str(exc)) from None
        tls = (context or ssl.create_default_context()) if parts.scheme == "https" else None
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        answer = get(parts.hostname, port, path, timeout=timeout, context=tls, server_name=parts.hostname,
                     headers={"Host": host if parts.port is None else f"{host}:{parts.port}", **(headers or {})},
                     body_limit=body_limit, deadline=deadline)
        location = answer.headers.get("Location")
        if answer.status not in REDIRECTS or not location or redirects <= 0:
            return answer
        redirects -= 1
        target = urllib.parse.urljoin(url, location)
        if urllib.parse.urlsplit(target).netloc != parts.netloc:  # credentials go to the URL's own server only
            headers = {name: value for name, value in (headers or {}).items() if name.lower() != "authorization"}
        url = target
