# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The MongoDB modules' homes (mongodb_dump, mongodb_restore): connection options, their translation into library
requests, and each module's argument spec (``<module>_spec()``) beside its work (``<module>(run)``).

Apart from _params' engine-free part so that a MongoDB module packs and imports no PostgreSQL code.
"""

from __future__ import annotations

import typing as t

from . import _mongo, _mongo_restore
from ._clients import ContainerClient, HostClient
from ._module_frame import Outcome, Run
from ._mongo import MongoConnection
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


def mongodb_connection_options() -> dict[str, t.Any]:
    return {
        **login_options(),
        "login_database": {"type": "str", "default": "admin"},
        "auth_mechanism": {"type": "str", "choices": ["SCRAM-SHA-1", "SCRAM-SHA-256", "MONGODB-X509", "PLAIN"]},
        "tls": {"type": "bool", "default": False},
        "tls_ca_file": {"type": "path"},
        "tls_certificate_key_file": {"type": "path", "no_log": False},
        "tls_allow_invalid_certificates": {"type": "bool", "default": False},
        "tools_dir": {"type": "path"},
        "container": {"type": "str"},
    }


def mongodb_dump_options() -> dict[str, t.Any]:
    return {
        "database": {"type": "str", "aliases": ["db"]},
        "collections": {"type": "list", "elements": "str", "default": []},
        "exclude_collections": {"type": "list", "elements": "str", "default": []},
        "exclude_collections_with_prefix": {"type": "list", "elements": "str", "default": []},
        "oplog": {"type": "str", "default": "auto", "choices": list(_mongo.OPLOG_MODES)},
        "parallel_collections": {"type": "int", "default": 4},
    }


def mongorestore_parallel_options() -> dict[str, t.Any]:
    """How many collections mongorestore restores at a time, and how many inserters each gets (mongodb_restore,
    the restore role)."""
    return {
        "parallel_collections": {"type": "int", "default": _mongo_restore.RESTORE_PARALLEL_COLLECTIONS},
        "insertion_workers_per_collection": {"type": "int", "default": _mongo_restore.RESTORE_INSERTION_WORKERS},
    }


MONGO_CONTAINER_ENV = {"engine": "MongoDB", "tool": "mongodump", "user": "MONGO_INITDB_ROOT_USERNAME",
                       "password": "MONGO_INITDB_ROOT_PASSWORD", "default_user": ""}


def mongo_connection(params: dict[str, t.Any], where: HostClient | ContainerClient | None = None) -> MongoConnection:
    where = where or place(params)
    defaults = container_defaults(params, where, MONGO_CONTAINER_ENV)
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


def mongodb_dump_spec() -> dict[str, t.Any]:
    return {**mongodb_connection_options(), **dump_archive_options(), **mongodb_dump_options()}


MONGODB_DUMP_RULES: dict[str, t.Any] = {"mutually_exclusive": CONNECTION_EXCLUSIVE}


def mongodb_dump(run: Run) -> Outcome:
    request = mongodb_dump_request(run.params)
    if run.check_mode:
        plan = _mongo.plan_dump(request)
        return Outcome(changed=True, result={"collections": plan["collections"], "server": plan["server"]})
    result = _mongo.dump(request)
    return Outcome(changed=True, result={"server": result["manifest_data"]["server"],
                                         **dump_result(result, run)})


def mongo_restore_request(params: dict[str, t.Any], connection: MongoConnection, archive: str) -> _mongo_restore.RestoreRequest:
    """The restore request of mongodb_restore's options (a compose app's restore builds its parts' the same way)."""
    return _mongo_restore.RestoreRequest(
        connection=connection,
        archive_path=archive,
        decryption=decryption(params),
        target_database=params.get("target_database"),
        ns_from=params.get("ns_from") or [],
        ns_to=params.get("ns_to") or [],
        ns_include=params.get("ns_include") or [],
        ns_exclude=params.get("ns_exclude") or [],
        drop=bool(params.get("drop")),
        overwrite=bool(params.get("overwrite")),
        safety_dump=safety_dump_options(params),
        tools_dir=params.get("tools_dir"),
        trust=trust(params),
        # 0 is a mistake to refuse (RestoreRequest.validate), not a default: only a missing option takes it
        parallel_collections=option_or(params, "parallel_collections", _mongo_restore.RESTORE_PARALLEL_COLLECTIONS),
        insertion_workers_per_collection=option_or(
            params, "insertion_workers_per_collection", _mongo_restore.RESTORE_INSERTION_WORKERS),
    )


def mongodb_restore_spec() -> dict[str, t.Any]:
    return {
        **mongodb_connection_options(),
        **restore_archive_options(),
        "target_database": {"type": "str"},
        "ns_from": {"type": "list", "elements": "str", "default": []},
        "ns_to": {"type": "list", "elements": "str", "default": []},
        "ns_include": {"type": "list", "elements": "str", "default": []},
        "ns_exclude": {"type": "list", "elements": "str", "default": []},
        "drop": {"type": "bool", "default": False},
        **mongorestore_parallel_options(),
    }


MONGODB_RESTORE_RULES: dict[str, t.Any] = {
    **RESTORE_ARCHIVE_RULES,
    "mutually_exclusive": [*CONNECTION_EXCLUSIVE, ["target_database", "ns_from"],
                           *RESTORE_ARCHIVE_RULES["mutually_exclusive"]],
}


def mongodb_restore(run: Run) -> Outcome:
    params = run.params
    connection = mongo_connection(params)  # before the archive: a wrong container is the first error
    return restore_task(run, _mongo_restore, lambda archive: mongo_restore_request(params, connection, archive),
                        lambda plan: {"expected_counts": plan["expected"], "existing": plan["existing"],
                                      "mechanism": plan["mechanism"], "disk_space": plan["disk_space"],
                                      "concurrent_writes": _mongo_restore.concurrent_writes(plan["mechanism"], params["drop"])},
                        lambda result: {key: result[key] for key in ("counts", "restored_documents", "safety_dumps")})
