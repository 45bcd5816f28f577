# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration validation: does the target hold what the source holds? Checks, a result and a report.

The entry point is :func:`validate`. A side is a live database, or an archive made by this collection,
which is first restored into a scratch database on the target's server (and dropped afterwards).
"""

from __future__ import annotations

import time
import typing as t
import uuid
from dataclasses import dataclass, field

from . import _mongo, _params, _postgres, _validate_mongo, _validate_pg
from ._common import LifeboatError, friendly_errors
from ._mongo import MongoConnection
from ._pipeline import Decryption
from ._postgres import PgConnection
from ._validate_core import (
    DATA_CATEGORIES,
    Checks,
    ContentStats,
    Options,
    build_result,
    health_checks,
    write_report,
)

ENGINES = ("postgresql", "mongodb")


@dataclass
class Endpoint:
    """One side: a connection and its database, or (source only) an archive to restore for the comparison."""

    connection: PgConnection | MongoConnection
    database: str | None = None
    archive: str | None = None
    decryption: Decryption = field(default_factory=Decryption)
    auth_database: str = "admin"
    tools_dir: str | None = None
    pg_bin_dir: str | None = None

    def describe(self, engine: str) -> str:
        if self.archive:
            return f"archive {self.archive}"
        where = self.connection.display if isinstance(self.connection, MongoConnection) else \
            self.connection.describe().rsplit("/", 1)[0]
        return f"{engine}://{where}/{self.database}"


@dataclass
class ValidateRequest:
    engine: str
    source: Endpoint
    target: Endpoint
    options: Options = field(default_factory=Options)
    report_path: str | None = None
    check_mode: bool = False
    scratch_database: str | None = None

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise LifeboatError(f"unknown engine {self.engine!r}; use one of: {', '.join(ENGINES)}")
        self.options.validate()
        if self.target.archive:
            raise LifeboatError("target must be a live database; only the source can be an archive")
        if not self.target.database:
            raise LifeboatError("target.database is required: the database the migration wrote")
        if not self.source.archive and not self.source.database:
            raise LifeboatError("source.database is required (or source.archive, an archive made by this collection)")
        if self.report_path and not self.report_path.startswith("/"):
            raise LifeboatError(f"report_path must be an absolute path, not {self.report_path!r}")


def _driver_error(exc: Exception) -> str | None:
    """The engines' own one-line messages for their drivers' errors (an engine whose driver is missing is skipped)."""
    for describe in (_postgres._one_line_error, _mongo._describe_error):  # pylint: disable=protected-access
        try:
            message = describe(exc)
        except LifeboatError:
            continue
        if message is not None:
            return message
    return None


@friendly_errors(_driver_error)
def validate(request: ValidateRequest) -> dict[str, t.Any]:
    """Run the checks; return the result (``passed``, ``summary``, ``checks``...) and write the report."""
    request.validate()
    started = time.perf_counter()
    options = request.options
    checks = Checks(options)
    source, target = request.source, request.target
    scratch = None
    source_label = source.describe(request.engine)
    content = ContentStats()
    # Security and application look at the target alone: without a data check, no side's data is read (and an
    # archive source is not restored).
    if any(options.wanted(category) for category in DATA_CATEGORIES):
        if source.archive:
            if request.check_mode:
                result = build_result(checks, source_label, target.describe(request.engine), request.engine,
                                      ContentStats(), started)
                result.update(passed=False, summary="NOT COMPARED: check mode does not restore the source archive"
                              " into a scratch database, so nothing was compared; run without check mode")
                return result
            scratch = request.scratch_database or f"lifeboat_validate_{uuid.uuid4().hex[:10]}"
            _restore_scratch(request, scratch)
            source = Endpoint(connection=target.connection, database=scratch, auth_database=target.auth_database)
        try:
            content = _run_engine(request.engine, source, target, checks)
        finally:
            if scratch:
                _drop_scratch(request, scratch)
    if options.wanted("security"):
        if request.engine == "postgresql":
            _validate_pg.security(t.cast(PgConnection, target.connection).for_database(t.cast(str, target.database)),
                                  checks)
        else:
            _validate_mongo.security(t.cast(MongoConnection, target.connection), target.auth_database, checks)
    if options.wanted("application"):
        health_checks(checks)
    result = build_result(checks, source_label, target.describe(request.engine), request.engine, content, started)
    if request.report_path and not request.check_mode:
        result["report_json"], result["report_markdown"] = write_report(result, request.report_path)
    return result


def _run_engine(engine: str, source: Endpoint, target: Endpoint, checks: Checks) -> ContentStats:
    if engine == "postgresql":
        return _validate_pg.run(t.cast(PgConnection, source.connection).for_database(t.cast(str, source.database)),
                                t.cast(PgConnection, target.connection).for_database(t.cast(str, target.database)),
                                checks)
    return _validate_mongo.run(t.cast(MongoConnection, source.connection), t.cast(MongoConnection, target.connection),
                               t.cast(str, source.database), t.cast(str, target.database), checks)


def _restore_scratch(request: ValidateRequest, scratch: str) -> None:
    """Restore the source archive into ``scratch`` on the target's server, with the collection's own restore."""
    source, target = request.source, request.target
    # The scratch database is dropped afterwards: it must be one this run creates, never an existing one.
    if _database_exists(request, scratch):
        raise LifeboatError(f"scratch_database {scratch} already exists on the target's server; name one that does not"
                            " (it is dropped after the comparison)")
    if request.engine == "postgresql":
        _postgres.restore(_postgres.RestoreRequest(
            connection=t.cast(PgConnection, target.connection), archive_path=t.cast(str, source.archive),
            target_database=scratch, decryption=source.decryption, pg_bin_dir=target.pg_bin_dir))
    else:
        _mongo.restore(_mongo.RestoreRequest(
            connection=t.cast(MongoConnection, target.connection), archive_path=t.cast(str, source.archive),
            target_database=scratch, decryption=source.decryption, tools_dir=target.tools_dir))


def _database_exists(request: ValidateRequest, name: str) -> bool:
    if request.engine == "postgresql":
        connection = t.cast(PgConnection, request.target.connection).for_database("postgres")
        with connection.connect() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    client = t.cast(MongoConnection, request.target.connection).client()
    try:
        return name in client.list_database_names()
    finally:
        client.close()


def _drop_scratch(request: ValidateRequest, scratch: str) -> None:
    if request.engine == "postgresql":
        connection = t.cast(PgConnection, request.target.connection).for_database("postgres")
        with connection.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {_postgres.quote_ident(scratch)} WITH (FORCE)")
    else:
        client = t.cast(MongoConnection, request.target.connection).client()
        try:
            client.drop_database(scratch)
        finally:
            client.close()


# ---------------------------------------------------------------- module arguments

_PG_ONLY = ("login_unix_socket", "ssl_mode", "ssl_ca_cert", "ssl_cert", "ssl_key", "pg_bin_dir")
_MONGO_ONLY = ("login_database", "auth_mechanism", "tls", "tls_ca_file", "tls_certificate_key_file",
               "tls_allow_invalid_certificates", "tools_dir")


def endpoint_spec() -> dict[str, t.Any]:
    """Suboptions of the module's source and target: both engines' connection options, the database, an archive."""
    spec = {**_params.postgres_connection_spec(), **_params.mongodb_connection_spec()}
    spec["login_database"] = {"type": "str"}  # admin by default, for MongoDB only
    spec.update({
        "database": {"type": "str", "aliases": ["db"]},
        "archive": {"type": "path"},
        "age_identity_files": {"type": "list", "elements": "path", "default": [], "no_log": False},
        "age_passphrase_file": {"type": "path", "no_log": False},
    })
    return spec


def endpoint(params: dict[str, t.Any], engine: str, side: str) -> Endpoint:
    """The module's ``source`` or ``target`` dict as an Endpoint; options of the other engine are refused."""
    if engine not in ENGINES:
        raise LifeboatError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    foreign = _MONGO_ONLY if engine == "postgresql" else _PG_ONLY
    wrong = [name for name in foreign if params.get(name)]
    if wrong:
        other = "MongoDB" if engine == "postgresql" else "PostgreSQL"
        raise LifeboatError(f"{side}.{wrong[0]} is a {other} option, but engine is {engine}; remove it")
    auth_database = params.get("login_database") or "admin"
    if engine == "postgresql":
        connection: PgConnection | MongoConnection = _params.pg_connection(params, None)
    else:
        connection = _params.mongo_connection({**params, "login_database": auth_database})
    return Endpoint(
        connection=connection,
        database=params.get("database"),
        archive=params.get("archive"),
        decryption=_params.decryption(params),
        auth_database=auth_database,
        tools_dir=params.get("tools_dir"),
        pg_bin_dir=params.get("pg_bin_dir"),
    )
