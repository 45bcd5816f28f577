# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Where a PostgreSQL server is and how to log in: the connection every PostgreSQL part shares (dumps, restores,
checks, probes), apart from the dump and restore code so a probe carries only this.
"""

from __future__ import annotations

import typing as t
import urllib.parse
from dataclasses import dataclass, field

from ._clients import HOST, ContainerClient, HostClient
from ._common import CannotConnect, LifeboatError, child_env, one_line, read_secret_file, redact, register_secret

Client = t.Union[HostClient, ContainerClient]


def _psycopg() -> t.Any:
    try:
        import psycopg  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LifeboatError(
            "the Python library psycopg (version 3) is needed on the host that runs this; "
            "install python3-psycopg (Debian/Ubuntu) or 'pip install psycopg[binary]'"
        ) from exc
    return psycopg


@dataclass
class PgConnection:
    """Where to connect; the password is kept apart so it can only ever reach a child's environment."""

    params: dict[str, str] = field(default_factory=dict)
    password: str | None = None
    place: Client = HOST  # where the client tools that use this connection run

    @classmethod
    def from_options(
        cls,
        *,
        uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        password_file: str | None = None,
        unix_socket: str | None = None,
        database: str | None = None,
        ssl_mode: str | None = None,
        ssl_ca_cert: str | None = None,
        ssl_cert: str | None = None,
        ssl_key: str | None = None,
        connect_timeout: int | None = 10,
        place: Client = HOST,
    ) -> PgConnection:
        if uri and (host or user or unix_socket):
            raise LifeboatError("give either login_uri or login_host/login_user/login_unix_socket, not both")
        if password and password_file:
            raise LifeboatError("give either login_password or login_password_file, not both")
        params: dict[str, str] = {}
        if uri:
            try:
                params = {k: str(v) for k, v in _psycopg().conninfo.conninfo_to_dict(uri).items()}
            except Exception as exc:  # the library's parse errors vary by version
                raise LifeboatError("login_uri is not a valid PostgreSQL URI or connection string") from exc
            password = params.pop("password", None) or password
            if "sslpassword" in params:
                raise LifeboatError(
                    "login_uri carries sslpassword, which would show on the tools' command line; "
                    "use a client key without a passphrase, readable only by its owner"
                )
        for key, value in (
            ("host", unix_socket or host),
            ("port", port),
            ("user", user),
            ("dbname", database),
            ("sslmode", ssl_mode),
            ("sslrootcert", ssl_ca_cert),
            ("sslcert", ssl_cert),
            ("sslkey", ssl_key),
            ("connect_timeout", connect_timeout),
        ):
            if value not in (None, ""):
                params[key] = str(value)
        if password_file:
            password = read_secret_file(password_file, "password")
        params.setdefault("application_name", "lifeboat.ops")
        if password:
            register_secret(password, urllib.parse.quote(password, safe=""))
        return cls(params, password, place)

    @property
    def database(self) -> str | None:
        return self.params.get("dbname")

    def for_database(self, name: str) -> PgConnection:
        return PgConnection({**self.params, "dbname": name}, self.password, self.place)

    def conninfo(self) -> str:
        """libpq connection string without the password: safe on a command line."""
        return _psycopg().conninfo.make_conninfo(**self.params)

    def describe(self) -> str:
        return f"{self.server()}/{self.params.get('dbname', '')}"

    def server(self) -> str:
        return f"{self.params.get('host', 'the local socket')}:{self.params.get('port', 5432)}"

    def env(self) -> dict[str, str]:
        return child_env({"PGPASSWORD": self.password} if self.password else None)

    def connect(self, autocommit: bool = True) -> t.Any:
        psycopg = _psycopg()
        try:
            return psycopg.connect(self.conninfo(), password=self.password, autocommit=autocommit)
        except psycopg.Error as exc:
            raise CannotConnect(f"PostgreSQL at {self.describe()}", _one_line(exc)) from exc


def _one_line(exc: BaseException) -> str:
    """A driver error as one_line, from the line that gives the reason: libpq repeats "connection to server ...
    failed:" before it."""
    lines = [line for line in redact(str(exc)).splitlines() if line.strip()]
    for line in lines:
        if "FATAL" in line or "error" in line.lower() or "refused" in line or "timeout" in line:
            return one_line(line)
    return one_line(lines[-1] if lines else exc)


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'
