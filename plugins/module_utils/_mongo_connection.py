# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Where a MongoDB server is and how to log in: the connection every MongoDB part shares (dumps, restores, checks,
probes), apart from the dump and restore code so a probe carries only this.
"""

from __future__ import annotations

import json
import typing as t
import urllib.parse
from dataclasses import dataclass

from ._clients import HOST, ContainerClient, HostClient
from ._common import CannotConnect, LifeboatError, PrivateDir, one_line, read_secret_file, register_secret

Client = t.Union[HostClient, ContainerClient]


def _pymongo() -> t.Any:
    try:
        import pymongo  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LifeboatError(
            "the Python library pymongo is needed on the host that runs this; "
            "install python3-pymongo (Debian/Ubuntu) or 'pip install pymongo'"
        ) from exc
    return pymongo


@dataclass
class MongoConnection:
    """A full connection string (credentials included) that only reaches pymongo and 0600 files."""

    uri: str
    display: str
    timeout_seconds: int = 10
    place: Client = HOST  # where the tools that use this connection run

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
        auth_database: str | None = None,
        auth_mechanism: str | None = None,
        tls: bool = False,
        tls_ca_file: str | None = None,
        tls_certificate_key_file: str | None = None,
        tls_allow_invalid_certificates: bool = False,
        connect_timeout: int = 10,
        place: Client = HOST,
    ) -> MongoConnection:
        if uri and (host or user):
            raise LifeboatError("give either login_uri or login_host/login_user, not both")
        if password and password_file:
            raise LifeboatError("give either login_password or login_password_file, not both")
        if password_file:
            password = read_secret_file(password_file, "password")

        # Percent-encode everything: pymongo and the Go driver of the tools disagree on what '+' means.
        def quote(value: str) -> str:
            return urllib.parse.quote(value, safe="")

        if uri:
            scheme, userinfo, hosts, path, query_string = _split_uri(uri)
            name, has_password, encoded = userinfo.partition(":")
            if password and (has_password or not name):
                raise LifeboatError("login_password needs a login_uri with a user name and no password in it")
            user = urllib.parse.unquote(name) or None
            if has_password:
                password = urllib.parse.unquote(encoded)
        else:
            scheme, hosts, path, query_string = "mongodb", f"{host or 'localhost'}:{port or 27017}", "/", ""
        credentials = ""
        if user:
            credentials = f"{quote(user)}:{quote(password)}@" if password is not None else f"{quote(user)}@"
        query = dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True))
        extra = {
            "authSource": auth_database if credentials and "authSource" not in query else None,
            "authMechanism": auth_mechanism,
            "tls": "true" if tls else None,
            "tlsCAFile": tls_ca_file,
            "tlsCertificateKeyFile": tls_certificate_key_file,
            "tlsInsecure": "true" if tls_allow_invalid_certificates else None,
        }
        query.update({key: value for key, value in extra.items() if value})
        full = f"{scheme}://{credentials}{hosts}{path or '/'}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        # Every spelling the password may take in a message (tools echo their connection string).
        register_secret(password, quote(password or ""), urllib.parse.quote_plus(password or ""))
        try:
            _pymongo().uri_parser.parse_uri(full, validate=True, warn=False)
        except Exception as exc:  # pymongo raises several types for a bad URI
            raise LifeboatError(f"the MongoDB connection string is not valid: {one_line(exc)}") from exc
        return cls(uri=full, display=hosts, timeout_seconds=connect_timeout, place=place)

    def client(self) -> t.Any:
        pymongo = _pymongo()
        client = pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=self.timeout_seconds * 1000, connectTimeoutMS=self.timeout_seconds * 1000
        )
        try:
            client.admin.command("ping")
        except pymongo.errors.PyMongoError as exc:
            client.close()
            raise CannotConnect(f"MongoDB at {self.display}", _one_line(exc)) from exc
        return client

    def tool_command(self, argv: list[str], private: PrivateDir) -> tuple[list[str], dict[str, str] | None]:
        """A tool's argv (and environment) with ``--config=`` a file holding the connection string, on no disk:
        an anonymous file in memory that no SIGKILL leaves behind, or in a container a pipe (it holds the
        URL-encoded password); only the tool inherits it."""
        # A JSON string is a valid YAML double-quoted scalar: any character in the URI is safe.
        return self.place.command(argv, secret_option=("--config", f"uri: {json.dumps(self.uri)}\n"), private=private)

    def tool(self, name: str, tools_dir: str | None) -> str:
        return self.place.find(name, [tools_dir])


def _split_uri(uri: str) -> tuple[str, str, str, str, str]:
    """(scheme, userinfo, hosts, path, query) of a mongodb:// URI, splitting the authority by itself.

    The user information ends at the last '@' before the first '/' or '?', so an '@' in a query value
    (a tlsCAFile path, say) never moves the password into the query.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("mongodb", "mongodb+srv"):
        raise LifeboatError("login_uri must start with mongodb:// or mongodb+srv://")
    end = min((index for index in (rest.find("/"), rest.find("?")) if index >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, _at, hosts = authority.rpartition("@")
    if "@" in tail.partition("?")[0]:
        raise LifeboatError(
            "login_uri has an '@' after its first '/': percent-encode '/', '@' and ':' in the user name and password"
        )
    path, _sep, query = tail.partition("?")
    if not hosts:
        raise LifeboatError("login_uri names no host")
    return scheme, userinfo, hosts, path, query


def _one_line(exc: BaseException) -> str:
    """A driver error as one_line, without the topology and raw server reply pymongo appends to its message."""
    text = str(exc).split(", Timeout:", maxsplit=1)[0].split(", full error:", maxsplit=1)[0]
    return one_line(text or type(exc).__name__)[:300]
