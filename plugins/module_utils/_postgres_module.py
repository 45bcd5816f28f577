# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The PostgreSQL modules' homes (postgresql_dump, postgresql_restore): connection options, their translation into
library requests, and each module's argument spec (``<module>_spec()``) beside its work (``<module>(run)``).

Apart from _params' engine-free part so that a PostgreSQL module packs and imports no MongoDB code.
"""

from __future__ import annotations

import typing as t

from . import _postgres, _postgres_restore
from ._clients import ContainerClient, HostClient
from ._module_frame import Outcome, Run
from ._params import (
    CONNECTION_EXCLUSIVE,
    RESTORE_ARCHIVE_RULES,
    archive_options,
    container_defaults,
    decryption,
    dump_archive_options,
    dump_result,
    login_options,
    option_or,
    place,
    restore_archive_options,
    restore_task,
    safety_dump_options,
    trust,
)
from ._postgres import PgConnection

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def postgres_connection_options() -> dict[str, t.Any]:
    return {
        **login_options(),
        "login_unix_socket": {"type": "path"},
        # Where the clients run: this host (unset), or the database server's own container (name or id).
        "container": {"type": "str"},
        "ssl_mode": {"type": "str", "choices": SSL_MODES},
        "ssl_ca_cert": {"type": "path"},
        "ssl_cert": {"type": "path"},
        "ssl_key": {"type": "path", "no_log": False},
        "pg_bin_dir": {"type": "path"},
    }


def postgres_dump_options() -> dict[str, t.Any]:
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


# The official image's variables; PGPORT in the container's environment is the port its server listens on.
PG_CONTAINER_ENV = {"engine": "PostgreSQL", "tool": "pg_dump", "user": "POSTGRES_USER", "password": "POSTGRES_PASSWORD",
                    "default_user": "postgres", "port": "PGPORT", "default_port": 5432}


def pg_connection(params: dict[str, t.Any], database: str | None,
                  where: HostClient | ContainerClient | None = None) -> PgConnection:
    where = where or place(params)
    params = {**params, **container_defaults(params, where, PG_CONTAINER_ENV)}
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


def postgresql_dump_spec() -> dict[str, t.Any]:
    return {**postgres_connection_options(), **dump_archive_options(), **postgres_dump_options()}


POSTGRESQL_DUMP_RULES: dict[str, t.Any] = {"mutually_exclusive": CONNECTION_EXCLUSIVE}


def postgresql_dump(run: Run) -> Outcome:
    request = postgres_dump_request(run.params)
    if run.check_mode:
        plan = _postgres.plan_dump(request)
        return Outcome(changed=True, result={key: plan[key] for key in ("tables", "server_version", "pg_dump_version")})
    result = _postgres.dump(request)
    manifest = result["manifest_data"]
    return Outcome(changed=True, result={"server_version": manifest["server"]["version"],
                                         "pg_dump_version": manifest["tool"]["version"],
                                         **dump_result(result, run)})


def postgres_restore_request(params: dict[str, t.Any], connection: PgConnection, archive: str
                             ) -> _postgres_restore.RestoreRequest:
    """The restore request of postgresql_restore's options (a compose app's restore builds its parts' the same way)."""
    return _postgres_restore.RestoreRequest(
        connection=connection,
        archive_path=archive,
        target_database=params.get("target_database"),
        decryption=decryption(params),
        overwrite=bool(params.get("overwrite")),
        recreate=bool(params.get("recreate")),
        jobs=option_or(params, "jobs", 1),  # 0 is refused (RestoreRequest.validate), not taken as the default
        no_owner=bool(params.get("no_owner")),
        no_privileges=bool(params.get("no_privileges")),
        maintenance_database=params.get("maintenance_database") or "postgres",
        safety_dump=safety_dump_options(params),
        pg_bin_dir=params.get("pg_bin_dir"),
        trust=trust(params),
    )


def postgresql_restore_spec() -> dict[str, t.Any]:
    return {
        **postgres_connection_options(),
        **restore_archive_options(),
        "target_database": {"type": "str", "aliases": ["database", "db"]},
        "maintenance_database": {"type": "str", "default": "postgres"},
        "recreate": {"type": "bool", "default": False},
        "jobs": {"type": "int", "default": 1},
        "no_owner": {"type": "bool", "default": False},
        "no_privileges": {"type": "bool", "default": False},
    }


POSTGRESQL_RESTORE_RULES: dict[str, t.Any] = {
    **RESTORE_ARCHIVE_RULES,
    "mutually_exclusive": [*CONNECTION_EXCLUSIVE, *RESTORE_ARCHIVE_RULES["mutually_exclusive"]],
}


def postgresql_restore(run: Run) -> Outcome:
    params = run.params
    connection = pg_connection(params, None)
    return restore_task(run, _postgres_restore, lambda archive: postgres_restore_request(params, connection, archive),
                        lambda plan: {"expected_counts": plan["manifest"]["counts"],
                                      **{key: plan[key] for key in _postgres_restore.TARGET_SUMMARY}},
                        lambda result: {key: result[key] for key in ("created", "counts", "safety_dump",
                                                                     "leftovers_dropped", *_postgres_restore.TARGET_SUMMARY)})
