# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by the modules, and their translation into library requests.

Plain dicts and functions: connection options are declared once per engine (like community.postgresql's
postgres_common_argument_spec), never per module.
"""

from __future__ import annotations

import typing as t

from . import _catalog, _mongo, _postgres, _signing
from ._archive import ArchiveOptions, resolve_archive
from ._clients import ContainerClient, HostClient, client_for
from ._common import LifeboatError
from ._manifest import default_job
from ._mongo import MongoConnection
from ._pipeline import COMPRESSIONS, Decryption, Encryption
from ._postgres import PgConnection

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def _login_spec() -> dict[str, t.Any]:
    """What both engines take to connect and log in."""
    return {
        "login_uri": {"type": "str", "no_log": True},
        "login_host": {"type": "str", "aliases": ["host"]},
        "login_port": {"type": "int", "aliases": ["port"]},
        "login_user": {"type": "str", "aliases": ["user"]},
        "login_password": {"type": "str", "no_log": True},
        "login_password_file": {"type": "path", "no_log": False},
        "connect_timeout": {"type": "int", "default": 10},
    }


def postgres_connection_spec() -> dict[str, t.Any]:
    return {
        **_login_spec(),
        "login_unix_socket": {"type": "path"},
        # Where the clients run: this host (unset), or the database server's own container (name or id).
        "container": {"type": "str"},
        "ssl_mode": {"type": "str", "choices": SSL_MODES},
        "ssl_ca_cert": {"type": "path"},
        "ssl_cert": {"type": "path"},
        "ssl_key": {"type": "path", "no_log": False},
        "pg_bin_dir": {"type": "path"},
    }


def mongodb_connection_spec() -> dict[str, t.Any]:
    return {
        **_login_spec(),
        "login_database": {"type": "str", "default": "admin"},
        "auth_mechanism": {"type": "str", "choices": ["SCRAM-SHA-1", "SCRAM-SHA-256", "MONGODB-X509", "PLAIN"]},
        "tls": {"type": "bool", "default": False},
        "tls_ca_file": {"type": "path"},
        "tls_certificate_key_file": {"type": "path", "no_log": False},
        "tls_allow_invalid_certificates": {"type": "bool", "default": False},
        "tools_dir": {"type": "path"},
        "container": {"type": "str"},
    }


# How a restore module is told its archive (with restore_archive_spec's options).
RESTORE_ARCHIVE_RULES: dict[str, t.Any] = {
    "mutually_exclusive": [["archive", "destination"]],
    "required_one_of": [["archive", "destination"]],
    "required_together": [["destination", "job"]],
}

CONNECTION_EXCLUSIVE = [
    ["login_uri", "login_host"],
    ["login_uri", "login_user"],
    ["login_password", "login_password_file"],
]


def dump_archive_spec() -> dict[str, t.Any]:
    return {
        "destination": {"type": "path", "required": True},
        "job": {"type": "str"},
        "compression": {"type": "str", "default": "zstd", "choices": list(COMPRESSIONS)},
        "compression_level": {"type": "int"},
        "encryption_recipients": {"type": "list", "elements": "str", "default": []},
        "encryption_recipients_files": {"type": "list", "elements": "path", "default": []},
        "encryption_passphrase_file": {"type": "path", "no_log": False},
        "signing_key_file": {"type": "path", "no_log": False},
    }


def decryption_spec() -> dict[str, t.Any]:
    """How archives are decrypted, and whose signature they must carry: the options :func:`decryption` and
    :func:`trust` read."""
    return {
        "age_identity_files": {"type": "list", "elements": "path", "default": [], "no_log": False},
        "age_passphrase_file": {"type": "path", "no_log": False},
        **trust_spec(),
    }


def trust_spec() -> dict[str, t.Any]:
    return {
        "trusted_signers": {"type": "list", "elements": "str", "default": []},
        "allow_unsigned": {"type": "bool", "default": False},
        # The key this host signs with: its public half is trusted when trusted_signers is empty.
        "signing_key_file": {"type": "path", "no_log": False},
    }


def restore_archive_spec() -> dict[str, t.Any]:
    """The archive a restore reads: ``archive``, or the one :func:`restore_archive` chooses from a destination."""
    return {
        "archive": {"type": "path"},
        "destination": {"type": "path"},
        "job": {"type": "str"},
        "select": {"type": "str", "default": "newest_verified", "choices": list(_catalog.RESTORE_SELECTIONS)},
        **decryption_spec(),
        "overwrite": {"type": "bool", "default": False},
        "safety_dump_dir": {"type": "path"},
    }


def mongorestore_parallel_spec() -> dict[str, t.Any]:
    """How many collections mongorestore restores at a time, and how many inserters each gets (mongodb_restore,
    the restore role)."""
    return {
        "parallel_collections": {"type": "int", "default": _mongo.RESTORE_PARALLEL_COLLECTIONS},
        "insertion_workers_per_collection": {"type": "int", "default": _mongo.RESTORE_INSERTION_WORKERS},
    }


class ChosenArchive(t.NamedTuple):
    path: str
    note: str | None  # a warning: the path given was the archive's manifest
    reason: str | None  # why this archive, when it was chosen from a destination


def restore_archive(params: dict[str, t.Any]) -> ChosenArchive:
    """The archive a restore module reads: the one given, or the one the catalog chooses from a destination."""
    if params.get("archive"):
        path, note = resolve_archive(params["archive"])
        return ChosenArchive(path, note, None)
    if not params.get("job"):  # a job given as null passes the module's required_together
        raise LifeboatError("give job with destination: the job whose archive to restore")
    archive, reason = _catalog.choose_for_restore(params["destination"], params["job"],
                                                  params.get("select") or "newest_verified")
    return ChosenArchive(archive.path, None, reason)


def place(params: dict[str, t.Any]) -> HostClient | ContainerClient:
    """Where the job's clients run: the container it names, or this host."""
    return client_for(params.get("container"))


def _container_defaults(params: dict[str, t.Any], place: HostClient | ContainerClient,
                        names: dict[str, str]) -> dict[str, t.Any]:
    """Login options a container defines for itself (the official images' variables), where none are given."""
    if not isinstance(place, ContainerClient) or params.get("login_uri"):
        return {}
    environment = place.environment
    defaults: dict[str, t.Any] = {}
    if not params.get("login_host") and not params.get("login_unix_socket"):
        if place.address is None:
            raise LifeboatError(f"{place.where} has no network address this host can reach; give login_host")
        defaults["login_host"] = place.address
    if not params.get("login_user"):
        defaults["login_user"] = environment.get(names["user"]) or names["default_user"]
    if not params.get("login_password") and not params.get("login_password_file") and environment.get(names["password"]):
        defaults["login_password"] = environment[names["password"]]
    return defaults


PG_CONTAINER_ENV = {"user": "POSTGRES_USER", "password": "POSTGRES_PASSWORD", "default_user": "postgres"}


def pg_connection(params: dict[str, t.Any], database: str | None,
                  where: HostClient | ContainerClient | None = None) -> PgConnection:
    where = where or place(params)
    params = {**params, **_container_defaults(params, where, PG_CONTAINER_ENV)}
    return PgConnection.from_options(
        uri=params.get("login_uri"),
        host=params.get("login_host"),
        port=params.get("login_port"),
        user=params.get("login_user"),
        password=params.get("login_password"),
        password_file=params.get("login_password_file"),
        unix_socket=params.get("login_unix_socket"),
        database=database,
        ssl_mode=params.get("ssl_mode"),
        ssl_ca_cert=params.get("ssl_ca_cert"),
        ssl_cert=params.get("ssl_cert"),
        ssl_key=params.get("ssl_key"),
        connect_timeout=params.get("connect_timeout"),
        place=where,
    )


MONGO_CONTAINER_ENV = {"user": "MONGO_INITDB_ROOT_USERNAME", "password": "MONGO_INITDB_ROOT_PASSWORD",
                       "default_user": ""}


def mongo_connection(params: dict[str, t.Any], where: HostClient | ContainerClient | None = None) -> MongoConnection:
    where = where or place(params)
    defaults = _container_defaults(params, where, MONGO_CONTAINER_ENV)
    if not defaults.get("login_user"):
        defaults.pop("login_user", None)  # a container without a root user: no authentication
    params = {**params, **defaults}
    return MongoConnection.from_options(
        uri=params.get("login_uri"),
        host=params.get("login_host"),
        port=params.get("login_port"),
        user=params.get("login_user"),
        password=params.get("login_password"),
        password_file=params.get("login_password_file"),
        # With a URI, its own authSource (or its database path) decides, as in every MongoDB driver.
        auth_database=None if params.get("login_uri") else params.get("login_database"),
        auth_mechanism=params.get("auth_mechanism"),
        tls=bool(params.get("tls")),
        tls_ca_file=params.get("tls_ca_file"),
        tls_certificate_key_file=params.get("tls_certificate_key_file"),
        tls_allow_invalid_certificates=bool(params.get("tls_allow_invalid_certificates")),
        connect_timeout=params.get("connect_timeout") or 10,
        place=where,
    )


def archive_options(params: dict[str, t.Any], database: str | None) -> ArchiveOptions:
    return ArchiveOptions(
        destination=params["destination"],
        job=params.get("job") or default_job(database),
        compression=params.get("compression") or "zstd",
        compression_level=params.get("compression_level"),
        encryption=Encryption(
            recipients=tuple(params.get("encryption_recipients") or ()),
            recipients_files=tuple(params.get("encryption_recipients_files") or ()),
            passphrase_file=params.get("encryption_passphrase_file"),
        ),
        signing_key_file=params.get("signing_key_file"),
    )


def decryption(params: dict[str, t.Any]) -> Decryption:
    return Decryption(
        identity_files=tuple(params.get("age_identity_files") or ()),
        passphrase_file=params.get("age_passphrase_file"),
    )


def trust(params: dict[str, t.Any]) -> _signing.Trust:
    return _signing.resolve_trust(params.get("trusted_signers") or (), bool(params.get("allow_unsigned")),
                                  params.get("signing_key_file"))


def dump_result(result: dict[str, t.Any]) -> dict[str, t.Any]:
    """What a dump module returns, read from the manifest it wrote."""
    manifest = result["manifest_data"]
    return {
        "archive": result["archive"],
        "manifest": result["manifest"],
        "sha256": manifest["archive"]["sha256"],
        "size": manifest["archive"]["size"],
        "plain_size": manifest["archive"]["plain_size"],
        "counts": manifest["counts"],
        "duration_seconds": manifest["duration_seconds"],
        "restore_commands": manifest["restore_commands"],
    }


def safety_dump_options(params: dict[str, t.Any]) -> ArchiveOptions | None:
    """Where a restore first dumps what it is about to overwrite (named DATABASE-before-restore-...)."""
    if not params.get("safety_dump_dir"):
        return None
    return ArchiveOptions(destination=params["safety_dump_dir"], job="before-restore")


def postgres_dump_spec() -> dict[str, t.Any]:
    """What postgresql_dump takes besides the connection and the archive (the host command's jobs take the same)."""
    return {
        "database": {"type": "str", "aliases": ["db"]},
        "format": {"type": "str", "default": "custom", "choices": list(_postgres.FORMATS)},
        "jobs": {"type": "int", "default": 1},
        "schemas": {"type": "list", "elements": "str", "default": []},
        "exclude_schemas": {"type": "list", "elements": "str", "default": []},
        "tables": {"type": "list", "elements": "str", "default": []},
        "exclude_tables": {"type": "list", "elements": "str", "default": []},
        "exclude_table_data": {"type": "list", "elements": "str", "default": []},
        "globals": {"type": "str", "default": "none", "choices": list(_postgres.GLOBALS)},
    }


def mongodb_dump_spec() -> dict[str, t.Any]:
    return {
        "database": {"type": "str", "aliases": ["db"]},
        "collections": {"type": "list", "elements": "str", "default": []},
        "exclude_collections": {"type": "list", "elements": "str", "default": []},
        "exclude_collections_with_prefix": {"type": "list", "elements": "str", "default": []},
        "oplog": {"type": "str", "default": "auto", "choices": list(_mongo.OPLOG_MODES)},
        "parallel_collections": {"type": "int", "default": 4},
    }


def postgres_dump_request(params: dict[str, t.Any]) -> _postgres.DumpRequest:
    where = place(params)
    database = params.get("database")
    if database is None and isinstance(where, ContainerClient):
        database = where.environment.get("POSTGRES_DB") or pg_connection(params, None, where).params.get("user")
    connection = pg_connection(params, database, where)
    return _postgres.DumpRequest(
        connection=connection,
        archive=archive_options(params, connection.database),
        dump_format=params["format"],
        jobs=params["jobs"],
        schemas=params["schemas"],
        exclude_schemas=params["exclude_schemas"],
        tables=params["tables"],
        exclude_tables=params["exclude_tables"],
        exclude_table_data=params["exclude_table_data"],
        globals_mode=params["globals"],
        pg_bin_dir=params.get("pg_bin_dir"),
    )


def mongodb_dump_request(params: dict[str, t.Any]) -> _mongo.DumpRequest:
    return _mongo.DumpRequest(
        connection=mongo_connection(params),
        archive=archive_options(params, params.get("database")),
        database=params.get("database"),
        collections=params["collections"],
        exclude_collections=params["exclude_collections"],
        exclude_collections_with_prefix=params["exclude_collections_with_prefix"],
        oplog=params["oplog"],
        parallel_collections=params["parallel_collections"],
        tools_dir=params.get("tools_dir"),
    )
