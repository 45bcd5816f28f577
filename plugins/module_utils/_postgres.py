# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""PostgreSQL dumps and restores through pg_dump/pg_restore and the archive pipeline.

Row counts in the manifest are taken inside the very snapshot pg_dump reads (pg_export_snapshot), while
the dump streams, so they describe exactly what the archive holds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import threading
import typing as t
import urllib.parse
from dataclasses import dataclass, field

from ._archive import (
    ArchiveOptions,
    Decode,
    Extra,
    Producer,
    Recipe,
    SourceDump,
    ready,
    write_archive,
)
from ._clients import HOST, ContainerClient, HostClient
from ._common import (
    CannotConnect,
    LifeboatError,
    PrivateDir,
    child_env,
    find_binary,
    friendly_errors,
    one_line,
    read_secret_file,
    redact,
    register_secret,
)
from ._pipeline import StreamResult, run_tool

FORMATS = ("custom", "directory")
GLOBALS = ("none", "roles", "all")
_DUMPING_TABLE = re.compile(r'dumping contents of table "(.+)"$')
# Where distributions install PostgreSQL clients side by side (Debian/Ubuntu, then the PGDG RPMs).
Client = t.Union[HostClient, ContainerClient]
CLIENT_DIR_GLOBS = ["/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"]
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?")
_USER_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"


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
    return '"' + name.replace('"', '""') + '"'


def server_info(conn: t.Any) -> dict[str, t.Any]:
    row = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
        " current_setting('TimeZone')"
    ).fetchone()
    return {"version": row[0], "major": row[1] // 10000, "timezone": row[2]}


def pick_binary(name: str, server_major: int, bin_dir: str | None = None, place: Client = HOST) -> tuple[str, str]:
    """The client matching the server's major version (Debian installs several side by side; a container has one)."""
    candidates = place.candidates(name, CLIENT_DIR_GLOBS, bin_dir)
    if not candidates:
        if bin_dir:
            raise LifeboatError(f"{name} not found in pg_bin_dir {bin_dir}")
        if place is not HOST:
            raise LifeboatError(f"{name} was not found in {place.where}: give the container of the PostgreSQL server")
        raise LifeboatError(f"{name} was not found; install the PostgreSQL client (postgresql-client-{server_major})")
    found = []
    for path in candidates:
        version = place.version(path)
        if pg_major(version) == server_major:
            # The first exact match is the choice: the rest are not asked (on Debian the last candidate is
            # the pg_wrapper script on PATH, a Perl start-up of its own for each --version).
            return path, version
        found.append((pg_major(version), version, path))
    newer = sorted(item for item in found if item[0] > server_major)
    chosen = newer[0] if newer else None
    if chosen is None:
        best = max(found)
        raise LifeboatError(
            f"{name} {best[0]} is older than the server (PostgreSQL {server_major}) and cannot work with it; "
            f"install postgresql-client-{server_major} or set pg_bin_dir to a version-{server_major} client"
        )
    return chosen[2], chosen[1]


@dataclass
class DumpRequest:
    connection: PgConnection
    archive: ArchiveOptions
    dump_format: str = "custom"
    jobs: int = 1
    schemas: list[str] = field(default_factory=list)
    exclude_schemas: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    exclude_tables: list[str] = field(default_factory=list)
    exclude_table_data: list[str] = field(default_factory=list)
    globals_mode: str = "none"
    pg_bin_dir: str | None = None

    @property
    def place(self) -> Client:
        return self.connection.place

    def validate(self) -> None:
        """Every check of the request, the archive options' included (check mode)."""
        self.archive.validate()
        self.check()

    def check(self) -> None:
        """The checks of the dump's own options (the archive core checks its options as it writes)."""
        if self.place is not HOST and self.dump_format != "custom":
            raise LifeboatError("with container, use format=custom: a directory dump would be written inside the "
                                "container")
        if not self.connection.database:
            raise LifeboatError("database is required: the name of the database to dump")
        if self.dump_format not in FORMATS:
            raise LifeboatError(f"unknown dump format '{self.dump_format}'; use one of: {', '.join(FORMATS)}")
        if self.jobs < 1:
            raise LifeboatError("jobs must be 1 or more")
        if self.jobs > 1 and self.dump_format != "directory":
            raise LifeboatError("parallel jobs need format=directory (pg_dump writes custom format in one stream)")
        if self.globals_mode not in GLOBALS:
            raise LifeboatError(f"unknown globals '{self.globals_mode}'; use one of: {', '.join(GLOBALS)}")

    def filter_args(self) -> list[str]:
        args = []
        for flag, patterns in (
            ("--schema", self.schemas),
            ("--exclude-schema", self.exclude_schemas),
            ("--table", self.tables),
            ("--exclude-table", self.exclude_tables),
            ("--exclude-table-data", self.exclude_table_data),
        ):
            args += [f"{flag}={pattern}" for pattern in patterns]
        return args


class _SnapshotCounter:
    """Counts each table pg_dump reports, in pg_dump's own snapshot, on a thread of its own."""

    def __init__(self, conn: t.Any) -> None:
        self.conn = conn
        self.counts: dict[str, int] = {}
        self.error: BaseException | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def on_dump_line(self, line: str) -> None:
        match = _DUMPING_TABLE.search(line)
        if match:
            self._queue.put(match.group(1))

    def _run(self) -> None:
        while (name := self._queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                count = _count_rows(self.conn, name)
                if count is not None:
                    self.counts[name] = count
            except BaseException as exc:  # noqa: BLE001 - reported by finish()
                self.error = exc

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def finish(self) -> dict[str, int]:
        self.stop()
        if self.error is not None:
            raise LifeboatError(f"counting rows in the dump snapshot failed: {_one_line(self.error)}")
        return dict(sorted(self.counts.items()))


def _count_rows(conn: t.Any, name: str) -> int | None:
    """Rows of the table named ``schema.table`` as pg_dump prints it (dots in names included), or None."""
    row = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname || '.' || c.relname = %s AND c.relkind IN ('r', 'p', 'm', 'f')",
        (name,),
    ).fetchone()
    return None if row is None else conn.execute(f"SELECT count(*) FROM ONLY {row[0]}").fetchone()[0]


def pg_major(version: str) -> int:
    """16 from "pg_dump (PostgreSQL) 16.4 (Debian 16.4-1)" or from "16.4"."""
    match = _VERSION.search(version.split("PostgreSQL)", 1)[-1])
    return int(match.group(1)) if match else 0


def describe_error(exc: Exception) -> str | None:
    """A psycopg error as one line; None for any other error."""
    if isinstance(exc, _psycopg().Error):
        return f"PostgreSQL error: {_one_line(exc)}"
    return None


_one_line_errors = friendly_errors(describe_error)


def _table_data_present(conn: t.Any) -> int:
    """How many ordinary tables hold at least one row (cheap: stops at the first row of each)."""
    tables = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE c.relkind = 'r' AND {_USER_SCHEMA}"
    ).fetchall()
    return sum(1 for (name,) in tables if conn.execute(f"SELECT EXISTS (SELECT FROM ONLY {name})").fetchone()[0])


def list_tables(conn: t.Any) -> dict[str, int]:
    """User tables with the planner's row estimate: what check mode shows."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE c.relkind IN ('r', 'p') AND {_USER_SCHEMA}"
        " ORDER BY 1"
    ).fetchall()
    return dict(rows)


@_one_line_errors
def plan_dump(request: DumpRequest) -> dict[str, t.Any]:
    """Check mode: connect, pick the client, list what would be dumped; write nothing."""
    request.validate()
    with request.connection.connect() as conn:
        server = server_info(conn)
        tables = list_tables(conn)
    binary, version = pick_binary("pg_dump", server["major"], request.pg_bin_dir, request.place)
    return {"server_version": server["version"], "pg_dump": binary, "pg_dump_version": version, "tables": tables}


@_one_line_errors
def dump(request: DumpRequest) -> dict[str, t.Any]:
    """pg_dump's stream, its rows counted in the very snapshot it reads, handed to the archive core to write."""
    request.check()
    conn = request.connection.connect()
    counter = None
    try:
        server = server_info(conn)
        pg_dump, pg_dump_version = pick_binary("pg_dump", server["major"], request.pg_bin_dir, request.place)
        extras = []
        if request.globals_mode != "none":
            extras.append(_globals_extra(request, server["major"]))
        # One repeatable-read transaction exports the snapshot pg_dump uses and counts rows in it. It
        # idles between tables, so a server-wide idle timeout must not end it halfway through a long dump.
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        conn.execute("SET statement_timeout = 0")
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        counter = _SnapshotCounter(conn)
        common = [
            "--verbose",
            "--no-password",
            f"--snapshot={snapshot}",
            f"--dbname={request.connection.conninfo()}",
            *request.filter_args(),
        ]
        env = request.connection.env()
        container = request.place.describe()
        if request.dump_format == "custom":
            kind, archive_format = "pgdump", "pg_dump-custom"
            # Uncompressed: the pipeline compresses the whole stream, faster and smaller.
            argv, producer_env = request.place.command([pg_dump, "--format=custom", "--compress=0", *common], env,
                                                       forward=CLIENT_SECRETS)
            producer = Producer(argv, "pg_dump", producer_env, on_stderr=counter.on_dump_line,
                                reports_digest=request.place.reports_digest)
            stream = ready(producer)
        else:
            kind, archive_format = "pgdir.tar", "pg_dump-directory-tar"
            stream = functools.partial(_directory_dump, [pg_dump, "--format=directory", f"--jobs={request.jobs}"],
                                       common, env, counter.on_dump_line)
        return write_archive(request.archive, SourceDump(
            engine="postgresql",
            database=request.connection.database,
            kind=kind,
            archive_format=archive_format,
            stream=stream,
            tool={"name": "pg_dump", "version": pg_dump_version},
            # pg_dump writes timestamptz in the session time zone: a restore test must read them back in the same one.
            server={"product": "PostgreSQL", "version": server["version"], "timezone": server["timezone"],
                    **({"container": container} if container else {})},
            options={"format": request.dump_format, "jobs": request.jobs, "filters": request.filter_args(),
                     "globals": request.globals_mode},
            counts=functools.partial(_snapshot_counts, counter, conn, request.connection.database or ""),
            restore=functools.partial(restore_recipe, archive_format=archive_format, container=container),
            extras=extras,
        ))
    finally:
        if counter is not None:
            counter.stop()
        conn.close()


def _snapshot_counts(counter: _SnapshotCounter, conn: t.Any, database: str, _stream: StreamResult) -> dict[str, int]:
    """The rows counted in pg_dump's snapshot; none although tables hold rows refuses the archive."""
    counts = counter.finish()
    if not counts and _table_data_present(conn):
        raise LifeboatError(
            f"pg_dump wrote no table data although {database} has tables with rows; check the include/exclude patterns"
        )
    return counts


@contextlib.contextmanager
def _directory_dump(dump_argv: list[str], common: list[str], env: dict[str, str], on_line: t.Callable[[str], None],
                    destination: str) -> t.Iterator[Producer]:
    """pg_dump -Fd -j N into a private directory beside the archive, then tar it through the pipeline.

    pg_dump compresses each file itself here (its default), so the directory takes a fraction of the
    database's size on the backup disk while it waits to be streamed.
    """
    work = PrivateDir(destination)
    try:
        target = os.path.join(work.path, "dump")
        run_tool("pg_dump", [*dump_argv, f"--file={target}", *common], env, on_line)
        yield Producer([find_binary("tar"), "-C", target, "-cf", "-", "."], "tar")
    finally:
        work.cleanup()


def _globals_extra(request: DumpRequest, server_major: int) -> Extra:
    """pg_dumpall's roles (and tablespaces), an archive of their own beside the database's."""
    pg_dumpall, version = pick_binary("pg_dumpall", server_major, request.pg_bin_dir, request.place)
    flag = "--roles-only" if request.globals_mode == "roles" else "--globals-only"
    argv, env = request.place.command(
        [pg_dumpall, flag, "--no-password", f"--dbname={request.connection.conninfo()}"],
        request.connection.env(), forward=CLIENT_SECRETS)
    return Extra("globals", "globals.sql", Producer(argv, "pg_dumpall", env), version)


CLIENT_SECRETS = ("PGPASSWORD",)  # what a client in a container must see of its environment
# What the by-hand restore commands read from the environment, on this host or through docker exec -e.
HOST_CLIENT_ENVIRONMENT = {
    "PGHOST": "the server's address (or its socket directory)",
    "PGPORT": "the server's port (default 5432)",
    "PGUSER": "the role that restores (it creates TARGET_DB)",
    "PGPASSWORD": "its password, or leave it unset and keep the password in ~/.pgpass (never on the command line)",
}
CONTAINER_CLIENT_ENVIRONMENT = {
    "PGUSER": "the role that restores (it creates TARGET_DB), e.g. the container's POSTGRES_USER",
    "PGPASSWORD": ("its password, if the server asks for one on its local socket; docker exec -e passes both "
                   "variables from this shell into the container, so the password is on no command line"),
}
# In the container the clients reach their server on its local socket: no PGHOST or PGPORT of this shell goes in.
_IN_CONTAINER = "docker exec -e PGUSER -e PGPASSWORD"


def restore_recipe(file_name: str, decode: Decode, extras: list[dict[str, t.Any]], archive_format: str,
                   container: dict[str, t.Any] | None = None) -> Recipe:
    """The standard commands that restore this archive without lifeboat.ops (placeholders in capitals), the
    environment they read and what this archive's placeholders mean beyond the usual.

    A dump made in the server's container restores through that container's clients: the host's may be older than
    the server and unable to read its dump (pg_restore 15 refuses a PostgreSQL 17 dump), and the container has no
    zstd or age, so this host decodes and pipes into ``docker exec -i``."""
    run, run_fed = ("", "") if container is None else (f"{_IN_CONTAINER} CONTAINER ", f"{_IN_CONTAINER} -i CONTAINER ")
    commands = []
    for extra in extras:
        commands.append(f"{decode(extra['file'])} | {run_fed}psql --dbname=postgres --set=ON_ERROR_STOP=0")
    commands.append(f"{run}createdb --template=template0 TARGET_DB")
    if archive_format == "pg_dump-custom":
        commands.append(f"{decode(file_name)} | {run_fed}pg_restore --exit-on-error --dbname=TARGET_DB")
    else:
        commands += [
            "mkdir RESTORE_DIR",
            f"{decode(file_name)} | tar -x -C RESTORE_DIR",
            "pg_restore --exit-on-error --jobs=4 --dbname=TARGET_DB RESTORE_DIR",
        ]
    if container is None:
        return commands, dict(HOST_CLIENT_ENVIRONMENT), {}
    meaning = (f"the PostgreSQL server's container ({container.get('name')} when this was dumped, image "
               f"{container.get('image')}): its clients have the server's version, this host's may be older and "
               "unable to read the dump")
    return commands, dict(CONTAINER_CLIENT_ENVIRONMENT), {"CONTAINER": meaning}


def drop_database(conn: t.Any, name: str) -> None:
    """The one place that drops a database: a side, scratch or previous database this collection made, by name."""
    conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def table_contents(
    conn: t.Any, blocks: t.Iterable[t.Any], timezone: str | None, client_encoding: str | None
) -> tuple[dict[str, int], dict[str, str]]:
    """Rows and order-free content hash of each table, read back as pg_dump wrote them (COPY text, same settings)."""
    from ._structure import hex_sum, row_digest  # pylint: disable=import-outside-toplevel

    sql = _psycopg().sql
    # pg_dump's own session settings, so every value prints the way it does in the archive.
    settings = {"DateStyle": "ISO", "IntervalStyle": "postgres", "extra_float_digits": "3",
                "TimeZone": timezone or "UTC", "client_encoding": client_encoding or "UTF8"}
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    counts, hashes = {}, {}
    for block in blocks:
        statement = sql.SQL("COPY {}.{} ({}) TO STDOUT").format(
            sql.Identifier(block.schema), sql.Identifier(block.table),
            sql.SQL(", ").join(sql.Identifier(column) for column in block.columns))
        count, total, pending = 0, 0, b""
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for data in copy:
                lines = (pending + bytes(data)).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    count += 1
                    total += row_digest(line)
        counts[block.name], hashes[block.name] = count, hex_sum(total)
    return counts, hashes
