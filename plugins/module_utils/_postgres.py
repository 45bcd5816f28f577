# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL dumps and restores through pg_dump/pg_restore and the archive pipeline.

Row counts in the manifest are taken inside the very snapshot pg_dump reads (pg_export_snapshot), while
the dump streams, so they describe exactly what the archive holds.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import queue
import re
import shutil
import threading
import typing as t
import urllib.parse
from dataclasses import dataclass, field

from . import _manifest
from ._archive import (
    ArchiveOptions,
    check_stream,
    commit_with_manifest,
    compare_counts,
    count_mismatch_error,
    stream_to_archive,
    verify_archive,
)
from ._common import (
    LifeboatError,
    PrivateDir,
    child_env,
    find_binary,
    friendly_errors,
    read_secret_file,
    register_secret,
    tool_version,
)
from ._pipeline import Decryption, StreamResult, read_stream, run_tool

FORMATS = ("custom", "directory")
GLOBALS = ("none", "roles", "all")
_DUMPING_TABLE = re.compile(r'dumping contents of table "(.+)"$')
# Where distributions install PostgreSQL clients side by side (Debian/Ubuntu, then the PGDG RPMs).
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
    ) -> PgConnection:
        if uri and (host or user or unix_socket):
            raise LifeboatError("give either login_uri or login_host/login_user/login_unix_socket, not both")
        if password and password_file:
            raise LifeboatError("give either login_password or login_password_file, not both")
        params: dict[str, str] = {}
        if uri:
            try:
                params = {k: str(v) for k, v in _psycopg().conninfo.conninfo_to_dict(uri).items()}
            except Exception as exc:  # noqa: BLE001 - the library's parse errors vary by version
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
        return cls(params, password)

    @property
    def database(self) -> str | None:
        return self.params.get("dbname")

    def for_database(self, name: str) -> PgConnection:
        return PgConnection({**self.params, "dbname": name}, self.password)

    def conninfo(self) -> str:
        """libpq connection string without the password: safe on a command line."""
        return _psycopg().conninfo.make_conninfo(**self.params)

    def describe(self) -> str:
        host = self.params.get("host", "the local socket")
        return f"{host}:{self.params.get('port', 5432)}/{self.params.get('dbname', '')}"

    def env(self) -> dict[str, str]:
        return child_env({"PGPASSWORD": self.password} if self.password else None)

    def connect(self, autocommit: bool = True) -> t.Any:
        psycopg = _psycopg()
        try:
            return psycopg.connect(self.conninfo(), password=self.password, autocommit=autocommit)
        except psycopg.Error as exc:
            raise LifeboatError(f"cannot connect to PostgreSQL at {self.describe()}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # libpq repeats "connection to server ... failed:" before the real reason.
    for line in lines:
        if "FATAL" in line or "error" in line.lower() or "refused" in line or "timeout" in line:
            return re.sub(r"\s+", " ", line)
    return lines[-1] if lines else exc.__class__.__name__


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def server_info(conn: t.Any) -> dict[str, t.Any]:
    row = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
        " current_setting('TimeZone')"
    ).fetchone()
    return {"version": row[0], "major": row[1] // 10000, "timezone": row[2]}


def _binary_major(path: str) -> tuple[int, str]:
    version = tool_version(path)
    return pg_major(version), version


def pick_binary(name: str, server_major: int, bin_dir: str | None = None) -> tuple[str, str]:
    """The client matching the server's major version (Debian installs several side by side)."""
    if bin_dir:
        candidates = [os.path.join(bin_dir, name)]
        if not os.access(candidates[0], os.X_OK):
            raise LifeboatError(f"{name} not found in pg_bin_dir {bin_dir}")
    else:
        candidates = sorted(path for pattern in CLIENT_DIR_GLOBS for path in glob.glob(os.path.join(pattern, name)))
        on_path = shutil.which(name)
        if on_path:
            candidates.append(on_path)
        if not candidates:
            raise LifeboatError(f"{name} was not found; install the PostgreSQL client (postgresql-client-{server_major})")
    found = [(*_binary_major(path), path) for path in candidates]
    exact = [item for item in found if item[0] == server_major]
    newer = sorted(item for item in found if item[0] > server_major)
    chosen = (exact or newer or [None])[0]
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

    def validate(self) -> None:
        self.archive.validate()
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


def _one_line_error(exc: Exception) -> str | None:
    if isinstance(exc, _psycopg().Error):
        return f"PostgreSQL error: {_one_line(exc)}"
    return None


_one_line_errors = friendly_errors(_one_line_error)


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
    binary, version = pick_binary("pg_dump", server["major"], request.pg_bin_dir)
    return {"server_version": server["version"], "pg_dump": binary, "pg_dump_version": version, "tables": tables}


@_one_line_errors
def dump(request: DumpRequest) -> dict[str, t.Any]:
    request.validate()
    started = _manifest.utc_now()
    archive_opts = request.archive
    archive_opts.prepare_destination()
    conn = request.connection.connect()
    try:
        server = server_info(conn)
        pg_dump, pg_dump_version = pick_binary("pg_dump", server["major"], request.pg_bin_dir)
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
        archives = []
        try:
            if request.dump_format == "custom":
                kind, archive_format = "pgdump", "pg_dump-custom"
                path = archive_opts.path_for(started, kind)
                # Uncompressed: the pipeline compresses the whole stream, faster and smaller.
                archive, stream = stream_to_archive(
                    path, [pg_dump, "--format=custom", "--compress=0", *common], archive_opts,
                    producer_env=env, producer_name="pg_dump", on_producer_stderr=counter.on_dump_line,
                )
            else:
                kind, archive_format = "pgdir.tar", "pg_dump-directory-tar"
                path = archive_opts.path_for(started, kind)
                archive, stream = _dump_directory(request, pg_dump, common, env, path, counter.on_dump_line)
            archives.append(archive)
            counts = counter.finish()
            if not counts and _table_data_present(conn):
                raise LifeboatError(
                    f"pg_dump wrote no table data although {request.connection.database} has tables with rows; "
                    "check the include/exclude patterns"
                )
            extras = []
            if request.globals_mode != "none":
                extras.append(_dump_globals(request, server["major"], started, archives))
        except BaseException:
            counter.stop()
            for archive in archives:
                archive.discard()
            raise
    finally:
        conn.close()
    finished = _manifest.utc_now()
    manifest = _manifest.build(
        job=archive_opts.job,
        engine="postgresql",
        database=request.connection.database,
        archive_path=path,
        archive_format=archive_format,
        stream=stream,
        compression=archive_opts.compression,
        compression_level=archive_opts.compression_level,
        encryption=archive_opts.encryption,
        tool={"name": "pg_dump", "version": pg_dump_version},
        # pg_dump writes timestamptz in the session time zone: a restore test must read them back in the same one.
        server={"product": "PostgreSQL", "version": server["version"], "timezone": server["timezone"]},
        counts=counts,
        started=started,
        finished=finished,
        restore_commands=restore_commands(os.path.basename(path), archive_format, archive_opts, extras),
        options={"format": request.dump_format, "jobs": request.jobs, "filters": request.filter_args(),
                 "globals": request.globals_mode},
        extras=extras,
    )
    manifest_file = _manifest.manifest_path(path)
    commit_with_manifest(archives, manifest_file, manifest)
    return {"archive": path, "manifest": manifest_file, "manifest_data": manifest}


def _dump_directory(
    request: DumpRequest, pg_dump: str, common: list[str], env: dict[str, str], path: str, on_line: t.Any
) -> tuple[t.Any, t.Any]:
    """pg_dump -Fd -j N into a private directory beside the archive, then tar it through the pipeline.

    pg_dump compresses each file itself here (its default), so the directory takes a fraction of the
    database's size on the backup disk while it waits to be streamed.
    """
    work = PrivateDir(request.archive.destination)
    try:
        target = os.path.join(work.path, "dump")
        run_tool("pg_dump", [pg_dump, "--format=directory", f"--jobs={request.jobs}", f"--file={target}", *common],
                 env, on_line)
        return stream_to_archive(
            path, [find_binary("tar"), "-C", target, "-cf", "-", "."], request.archive, producer_name="tar"
        )
    finally:
        work.cleanup()


def _dump_globals(request: DumpRequest, server_major: int, started: t.Any, archives: list[t.Any]) -> dict[str, t.Any]:
    pg_dumpall, version = pick_binary("pg_dumpall", server_major, request.pg_bin_dir)
    flag = "--roles-only" if request.globals_mode == "roles" else "--globals-only"
    path = request.archive.path_for(started, "globals.sql")
    archive, stream = stream_to_archive(
        path,
        [pg_dumpall, flag, "--no-password", f"--dbname={request.connection.conninfo()}"],
        request.archive,
        producer_env=request.connection.env(),
        producer_name="pg_dumpall",
    )
    archives.append(archive)
    return {
        "kind": "globals",
        "file": os.path.basename(path),
        "size": stream.stored_bytes,
        "sha256": stream.stored_sha256,
        "plain_sha256": stream.plain_sha256,
        "tool": version,
    }


def restore_commands(file_name: str, archive_format: str, options: ArchiveOptions, extras: list[dict[str, t.Any]]) -> list[str]:
    """The standard commands that restore this archive without lifeboat.ops (placeholders in capitals)."""
    decode = " | ".join(_manifest.decode_commands(file_name, options.compression, options.encryption))
    commands = []
    for extra in extras:
        extra_decode = " | ".join(
            _manifest.decode_commands(extra["file"], options.compression, options.encryption)
        )
        commands.append(f"{extra_decode} | psql --dbname=postgres --set=ON_ERROR_STOP=0")
    commands.append("createdb --template=template0 TARGET_DB")
    if archive_format == "pg_dump-custom":
        commands.append(f"{decode} | pg_restore --exit-on-error --dbname=TARGET_DB")
    else:
        commands += [
            "mkdir RESTORE_DIR",
            f"{decode} | tar -x -C RESTORE_DIR",
            "pg_restore --exit-on-error --jobs=4 --dbname=TARGET_DB RESTORE_DIR",
        ]
    return commands


@dataclass
class RestoreRequest:
    connection: PgConnection
    archive_path: str
    target_database: str | None = None  # the archive's own database name when unset
    decryption: Decryption = field(default_factory=Decryption)
    overwrite: bool = False
    recreate: bool = False
    jobs: int = 1
    no_owner: bool = False
    no_privileges: bool = False
    maintenance_database: str = "postgres"
    safety_dump: ArchiveOptions | None = None
    pg_bin_dir: str | None = None

    def validate(self) -> None:
        if self.jobs < 1:
            raise LifeboatError("jobs must be 1 or more")
        if self.recreate and not self.overwrite:
            raise LifeboatError("recreate drops the target database; set overwrite=true to confirm")
        if self.safety_dump is not None:
            self.safety_dump.validate()


def _target_state(request: RestoreRequest, database: str) -> tuple[bool, int]:
    with request.connection.for_database(request.maintenance_database).connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None
    if not exists:
        return False, 0
    with request.connection.for_database(database).connect() as conn:
        return True, len(list_tables(conn))


@_one_line_errors
def plan_restore(request: RestoreRequest) -> dict[str, t.Any]:
    """Everything that can be checked before writing: the archive (read whole), the target, the client."""
    request.validate()
    manifest = verify_archive(request.archive_path, "postgresql", request.decryption)
    database = request.target_database or manifest["database"]
    exists, tables = _target_state(request, database)
    if tables and not request.overwrite:
        raise LifeboatError(
            f"database {database} already holds {tables} tables; set overwrite=true to restore into it "
            "(with recreate=true to replace it with the archive's content)"
        )
    with request.connection.for_database(request.maintenance_database).connect() as conn:
        server_major = server_info(conn)["major"]
    # pg_restore must read the archive's format and speak to the server: the newer of the two decides.
    needed = max(server_major, pg_major(manifest["tool"]["version"]))
    pg_restore, version = pick_binary("pg_restore", needed, request.pg_bin_dir)
    return {"database": database, "exists": exists, "existing_tables": tables, "manifest": manifest,
            "pg_restore": pg_restore, "pg_restore_version": version}


@_one_line_errors
def restore(request: RestoreRequest, plan: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    plan = plan or plan_restore(request)
    manifest, database = plan["manifest"], plan["database"]
    target = request.connection.for_database(database)
    safety = None
    if plan["existing_tables"] and request.safety_dump is not None:
        options = dataclasses.replace(request.safety_dump, job=f"{_manifest.default_job(database)}-before-restore")
        safety = dump(DumpRequest(connection=target, archive=options, pg_bin_dir=request.pg_bin_dir))
    created = not plan["exists"] or request.recreate
    argv = [plan["pg_restore"], "--exit-on-error", "--no-password", f"--dbname={target.conninfo()}"]
    argv += ["--no-owner"] if request.no_owner else []
    argv += ["--no-privileges"] if request.no_privileges else []
    # One transaction: a failure leaves an existing database as it was (pg_restore -j cannot do this).
    argv += ["--single-transaction"] if request.jobs == 1 else []
    try:
        if created:
            with request.connection.for_database(request.maintenance_database).connect() as conn:
                if plan["exists"]:
                    conn.execute(f"DROP DATABASE {quote_ident(database)} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {quote_ident(database)} TEMPLATE template0")
        stream = _run_pg_restore(request, manifest, argv, target.env())
        check_stream(stream, manifest, request.archive_path)
        with target.connect() as conn:
            actual = {name: count for name in manifest["counts"] if (count := _count_rows(conn, name)) is not None}
        problems = compare_counts(manifest["counts"], actual)
        if problems:
            raise count_mismatch_error(problems, database)
    except BaseException as exc:
        if not created:
            raise
        # The database was made for this restore and holds a part of it at most: a half restore must
        # never pass for a whole one.
        with request.connection.for_database(request.maintenance_database).connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
        if isinstance(exc, LifeboatError):
            raise LifeboatError(f"{exc}; the database {database} this restore created was dropped") from exc
        raise
    return {
        "database": database,
        "created": created,
        "counts": actual,
        "pg_restore_version": plan["pg_restore_version"],
        "safety_dump": safety["archive"] if safety else None,
    }


def _run_pg_restore(request: RestoreRequest, manifest: dict[str, t.Any], argv: list[str], env: dict[str, str]) -> StreamResult:
    info = manifest["archive"]
    read = functools.partial(read_stream, request.archive_path, compression=info["compression"],
                             decryption=request.decryption, encrypted=info["encryption"] is not None)
    if info["format"] == "pg_dump-custom" and request.jobs == 1:
        return read(consumer_argv=argv, consumer_env=env, consumer_name="pg_restore")
    # Parallel restore needs a seekable file or a directory: unpack into a private directory first,
    # beside the archive (the backup disk has room for it), else in the temporary directory.
    try:
        work = PrivateDir(os.path.dirname(request.archive_path))
    except OSError:
        work = PrivateDir()
    try:
        if info["format"] == "pg_dump-custom":
            source = os.path.join(work.path, "dump.pgdump")
            stream = read(consumer_argv=[find_binary("dd"), f"of={source}", "bs=1M", "status=none"], consumer_name="unpack")
        else:
            source = os.path.join(work.path, "dump")
            os.mkdir(source)
            stream = read(consumer_argv=[find_binary("tar"), "-x", "-C", source], consumer_name="unpack")
        run_tool("pg_restore", [*argv, f"--jobs={request.jobs}", source], env)
        return stream
    finally:
        work.cleanup()


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
