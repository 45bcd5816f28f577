# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Health probes that speak the databases' own protocols, and a readiness gate for an HTTP endpoint.

Each probe returns ``(ok, detail)``: ``detail`` is one line that says what answered, or why nothing did, and never
holds a password. The healthcheck role's runner (``lifeboat healthcheck``, _healthcheck.py) calls them by probe type;
the cloudflare_tunnel role's gate (and the deploy gate) waits with ``wait_ready``.

- PostgreSQL: connect and ``SELECT 1`` (psycopg 3, the library's own PgConnection);
- MongoDB: the ``ping`` command (pymongo, the library's own MongoConnection);
- Redis: ``AUTH`` when a password is given, then ``PING``, in plain RESP over a socket (no library needed);
- database_expect: the data expectations of ``_expectations`` (tables or collections, indexes, counts), read only.
"""

from __future__ import annotations

import importlib
import socket
import time
import typing as t

from . import _http_probe
from ._common import CannotConnect, LifeboatError, read_secret_file


def _reason(exc: LifeboatError) -> str:
    """The cause of a failure; of a connection failure without the server's name, which the probe gives its own way."""
    return exc.reason if isinstance(exc, CannotConnect) else str(exc)


def _password(settings: dict[str, t.Any]) -> str | None:
    if settings.get("password_file"):
        return read_secret_file(settings["password_file"], "password")
    return settings.get("password") or None


def probe_postgresql(settings: dict[str, t.Any], timeout: float) -> tuple[bool, str]:
    """Connect and run SELECT 1. Settings: host (or a socket directory), port, user, database, password(_file),
    ssl_mode."""
    from ._postgres import PgConnection  # pylint: disable=import-outside-toplevel  # psycopg only when probed

    where = f"PostgreSQL {settings.get('host', 'localhost')}:{settings.get('port', 5432)}"
    try:
        connection = PgConnection.from_options(
            host=settings.get("host"), port=settings.get("port"), user=settings.get("user"),
            password=_password(settings), database=settings.get("database") or "postgres",
            ssl_mode=settings.get("ssl_mode"), connect_timeout=max(1, int(timeout)))
        with connection.connect() as conn:
            value = conn.execute("SELECT 1").fetchone()
    except LifeboatError as exc:
        return False, f"{where}: {_reason(exc)}"
    if not value or value[0] != 1:
        return False, f"{where}: SELECT 1 answered {value!r}"
    return True, f"{where}: SELECT 1 ok"


def probe_mongodb(settings: dict[str, t.Any], timeout: float) -> tuple[bool, str]:
    """The ping command. Settings: host, port, user, password(_file), auth_database, tls."""
    from ._mongo import MongoConnection  # pylint: disable=import-outside-toplevel  # pymongo only when probed

    where = f"MongoDB {settings.get('host', 'localhost')}:{settings.get('port', 27017)}"
    try:
        connection = MongoConnection.from_options(
            host=settings.get("host"), port=settings.get("port"), user=settings.get("user"),
            password=_password(settings), auth_database=settings.get("auth_database") or "admin",
            tls=bool(settings.get("tls")), connect_timeout=max(1, int(timeout)))
        connection.client().close()  # client() runs the ping
    except LifeboatError as exc:
        return False, f"{where}: {_reason(exc)}"
    return True, f"{where}: ping ok"


# A database_expect probe's settings that are connection options, by the library's names; the rest are expectations.
EXPECT_CONNECTION = {"host": "login_host", "port": "login_port", "user": "login_user", "password": "login_password",
                     "password_file": "login_password_file", "ssl_mode": "ssl_mode", "auth_database": "login_database",
                     "tls": "tls", "container": "container"}
EXPECT_OTHER = ("name", "type", "engine", "timeout")


def expectations_library() -> t.Any:
    """The data expectations library, loaded when a probe needs it (it pulls in every engine's code)."""
    return importlib.import_module(f"{__package__}._expectations")


def expect_settings(settings: dict[str, t.Any]) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """A database_expect probe's (connection, expectations); one-line LifeboatError for a setting it cannot take."""
    library = expectations_library()
    if settings.get("create_missing_indexes"):
        raise LifeboatError("create_missing_indexes is for the database_expect module: a probe only reads")
    sources = importlib.import_module(f"{__package__}._sources")
    if settings.get("engine") not in sources.DATABASES:
        raise LifeboatError(f"engine must be one of: {', '.join(sources.DATABASES)}, not {settings.get('engine')!r}")
    source = sources.get(settings["engine"])
    for setting, option in EXPECT_CONNECTION.items():
        if settings.get(setting) and option not in source.connection_options():
            raise LifeboatError(f"{setting} is no setting of a {source.label} database_expect probe; remove it")
    expectations = {name: value for name, value in settings.items()
                    if name in library.EXPECTATIONS_OPTIONS and name != "create_missing_indexes"}
    unknown = sorted(set(settings) - set(expectations) - set(EXPECT_CONNECTION) - set(EXPECT_OTHER)
                     - {"create_missing_indexes"})
    if unknown:
        raise LifeboatError(f"unknown setting {unknown[0]} of a database_expect probe")
    library.parse(expectations)
    connection = {EXPECT_CONNECTION[name]: value for name, value in settings.items()
                  if name in EXPECT_CONNECTION and value is not None}
    return connection, expectations


def probe_database_expect(settings: dict[str, t.Any], timeout: float) -> tuple[bool, str]:
    """The data expectations hold (nothing is created). Settings: engine, the expectations (database, present,
    indexes, min_counts, baseline_manifest, max_drop_percent) and the connection (host, port, user,
    password(_file), ssl_mode, auth_database, tls, container)."""
    engine = settings.get("engine")
    place = (f"container {settings['container']}" if settings.get("container")
             else f"{settings.get('host', 'localhost')}:{settings.get('port') or 'default port'}")
    where = f"{engine} {place}/{settings.get('database')}"
    try:
        connection, expectations = expect_settings(settings)
        connection["connect_timeout"] = max(1, int(timeout))
        result = expectations_library().check_expectations(engine, connection, expectations, dry_run=True)
    except LifeboatError as exc:
        return False, f"{where}: {_reason(exc)}"
    if not result.ok:
        return False, f"{where}: {'; '.join(result.failures)}"[:1000]
    counted = f", {len(result.counts)} counted" if result.counts else ""
    return True, f"{where}: data expectations hold{counted}"


def _resp_command(*parts: str) -> bytes:
    return f"*{len(parts)}\r\n".encode() + b"".join(
        f"${len(part.encode())}\r\n".encode() + part.encode() + b"\r\n" for part in parts)


def _resp_line(stream: t.BinaryIO) -> str:
    line = stream.readline(4096)
    if not line:
        raise ConnectionError("the server closed the connection")
    return line.decode("utf-8", "replace").rstrip("\r\n")


def probe_redis(settings: dict[str, t.Any], timeout: float) -> tuple[bool, str]:
    """AUTH (when a password is given; with ``user`` for an ACL user) and PING, expecting +PONG."""
    where = f"Redis {settings.get('host', '127.0.0.1')}:{settings.get('port', 6379)}"
    try:
        password = _password(settings)
        with socket.create_connection((settings.get("host", "127.0.0.1"), int(settings.get("port", 6379))),
                                      timeout=timeout) as sock, sock.makefile("rb") as stream:
            if password:
                user = [settings["user"]] if settings.get("user") else []
                sock.sendall(_resp_command("AUTH", *user, password))
                answer = _resp_line(stream)
                if not answer.startswith("+OK"):
                    return False, f"{where}: AUTH refused: {answer.lstrip('-')[:200]}"
            sock.sendall(_resp_command("PING"))
            answer = _resp_line(stream)
    except LifeboatError as exc:
        return False, f"{where}: {exc}"
    except OSError as exc:  # refused, timed out, reset: socket.timeout and ConnectionError are OSErrors
        return False, f"{where}: {exc.strerror or exc}"
    if answer != "+PONG":
        return False, f"{where}: PING answered {answer.lstrip('-+')[:200]!r}"
    return True, f"{where}: PONG"


def http_status(url: str, timeout: float) -> tuple[int | None, str]:
    """(HTTP status or None, one line) of a GET of ``url``: its whole answer (body up to 64 KiB) within ``timeout``
    s, redirects followed."""
    try:
        answer = _http_probe.get_url(url, timeout=timeout, headers={"User-Agent": "lifeboat-ready"})
    except _http_probe.ProbeFailed as exc:
        return None, str(exc)
    return answer.status, f"HTTP {answer.status}"


def wait_ready(url: str, timeout: float, interval: float = 1.0, expect_status: t.Collection[int] = (200,),
               clock: t.Callable[[], float] = time.monotonic) -> dict[str, t.Any]:
    """Poll ``url`` until it answers one of ``expect_status``; LifeboatError (one line) after ``timeout`` s.

    The endpoint's answers in between (a 503 while cloudflared has no connection yet, a refused connection while
    it starts) are counted and the last one named in the failure."""
    started = clock()
    attempts = 0
    while True:
        attempts += 1
        status, detail = http_status(url, min(max(interval, 1.0), 10.0))
        elapsed = clock() - started
        if status in expect_status:
            return {"url": url, "status": status, "attempts": attempts, "elapsed": round(elapsed, 3)}
        if elapsed + interval > timeout:
            raise LifeboatError(
                f"{url} was not ready within {timeout:g} s: {attempts} tries, the last answered {detail}, "
                f"expected HTTP {', '.join(map(str, sorted(expect_status)))}")
        time.sleep(interval)
