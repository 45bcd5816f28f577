# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""PostgreSQL restores: into a side database that takes the target's name only once complete and counted.

The side database is a new one, or a copy of the target (while the target refuses connections, so no write to it
is lost); a failed restore drops it and leaves the target as it was. Killed restores' leftovers are found by name
and by their records (_restore_records) and cleaned up by the next restore into the same target.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import secrets
import struct
import time
import typing as t
from dataclasses import dataclass, field

from . import _manifest, _restore_records
from ._archive import (
    ArchiveOptions,
    compare_counts,
    count_mismatch_error,
    read_for_restore,
    safety_dump_options,
    verify_archive,
)
from ._catalog import human_size
from ._clients import HOST
from ._codecs import Decryption
from ._common import LifeboatError, PrivateDir, TargetHoldsData, find_binary
from ._pipeline import StreamResult, run_tool
from ._postgres import (
    CLIENT_SECRETS,
    Client,
    DumpRequest,
    PgConnection,
    _count_rows,
    _one_line,
    _one_line_errors,
    _psycopg,
    describe_error,
    drop_database,
    dump,
    list_tables,
    pg_major,
    pick_binary,
    quote_ident,
    server_info,
)
from ._signing import Trust, host_trust
from ._termination import termination_deferred


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
    trust: Trust = field(default_factory=host_trust)  # whose signature the archive's manifest must carry
    # More readers of the restore's one read of the archive (a verify's structure walk; see _archive.as_tap).
    tap: dict[str, t.Any] = field(default_factory=dict)

    @property
    def place(self) -> Client:
        return self.connection.place

    def validate(self) -> None:
        if self.jobs < 1:
            raise LifeboatError("jobs must be 1 or more")
        if self.jobs > 1 and self.place is not HOST:
            raise LifeboatError("with container, use jobs=1: a parallel restore reads files this host unpacks")
        if self.recreate and not self.overwrite:
            raise LifeboatError("recreate drops the target database; set overwrite=true to confirm")
        if self.safety_dump is not None:
            self.safety_dump.validate()

    def maintenance(self) -> PgConnection:
        return self.connection.for_database(self.maintenance_database)


# Every restore writes into a side database and gives it the target's name only once it is complete and
# counted, so a half restore never carries the target's name and a failed one leaves the target as it was.
SIDE_PREFIX = "lifeboat_restore_"
_NAME_BYTES = 63  # PostgreSQL cuts longer names (NAMEDATALEN - 1)
# How long a failed restore keeps trying to drop its side database while the server is away (a restart).
SIDE_DROP_SECONDS = 60
# The side database holds the archive's rows and the indexes rebuilt from them: more than the plain stream.
_INDEX_ALLOWANCE = 1.5
_SWAP_ATTEMPTS = 5
# Settings whose value is a list of identifiers (GUC_LIST_QUOTE): each element is quoted on its own.
_LIST_SETTINGS = frozenset({"search_path", "temp_tablespaces", "local_preload_libraries", "session_preload_libraries"})
# What a restore's result says about its target (the check mode's result too).
TARGET_SUMMARY = ("database", "existing_tables", "mechanism", "mechanism_description", "disk_space")
MECHANISMS = {
    "side-database-rename": "restore into a new side database; once complete and counted it is renamed to {database}",
    "side-database-swap": (
        "restore into a new side database; once complete and counted it takes the name {database} in one "
        "transaction (sessions to {database} are ended), and the previous {database} is dropped"
    ),
    "target-copy-swap": (
        "copy {database} into a side database ({database} refuses connections from the copy on, so no write "
        "to it is lost), restore into the copy; once complete and counted it takes the name {database} in one "
        "transaction, and the previous {database} is dropped"
    ),
}


def side_prefix(database: str) -> str:
    """``lifeboat_restore_<database>_``: how every side database of a restore into ``database`` is named."""
    tag = database
    if len(f"{SIDE_PREFIX}{tag}_{'0' * 8}".encode()) > _NAME_BYTES:
        # Too long to fit: a cut name, made unique again by a digest of the whole one.
        room = _NAME_BYTES - len(SIDE_PREFIX) - 2 - 16
        tag = database.encode()[:room].decode("utf-8", "ignore") + "_" + hashlib.sha256(database.encode()).hexdigest()[:8]
    return f"{SIDE_PREFIX}{tag}_"


def is_side_database(name: str, database: str) -> bool:
    return re.fullmatch(re.escape(side_prefix(database)) + "[0-9a-f]{8}", name) is not None


def _new_side_name(database: str) -> str:
    return side_prefix(database) + secrets.token_hex(4)


def _leftovers(conn: t.Any, database: str) -> list[str]:
    """Side databases of restores into ``database`` that were killed before they could drop them."""
    rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1",
                        (side_prefix(database),)).fetchall()
    return [name for (name,) in rows if is_side_database(name, database)]


def _decide(request: RestoreRequest, conn: t.Any, database: str, manifest: dict[str, t.Any],
            leftovers: dict[str, int], dropped: dict[str, int] | None = None, killed_run: bool = False,
            defer_disk: bool = False) -> dict[str, t.Any]:
    """What the target holds, the mechanism, the disk space: everything a refusal is based on.

    ``leftovers``: side databases of killed restores that the restore drops before it writes (their sizes count as
    free space); ``dropped``: those it dropped already (named if the space is still short); ``killed_run``: a record
    of a killed restore that turned the target's connections off; ``defer_disk``: a space too short is not refused
    here but by the restore, once it dropped the leftovers under its lock.
    """
    if database == request.maintenance_database:
        raise LifeboatError(
            f"the target database {database} is also the maintenance_database; set maintenance_database to another "
            "one (postgres)"
        )
    row = conn.execute("SELECT datallowconn, pg_database_size(oid) FROM pg_database WHERE datname = %s",
                       (database,)).fetchone()
    exists = row is not None
    tables: int | None = 0
    if exists and not row[0]:
        if not leftovers and not killed_run:
            raise LifeboatError(f"database {database} does not accept connections (ALLOW_CONNECTIONS false), so what "
                                "it holds cannot be checked, and no killed restore of this collection left it so: if "
                                f"nobody turned them off on purpose, run {_restore_records.repair_hint(database)}")
        tables = None  # left so by a killed restore: the restore lets connections in again first
    elif exists:
        with request.connection.for_database(database).connect() as target:
            tables = len(list_tables(target))
    if tables and not request.overwrite:
        raise TargetHoldsData(f"database {database} already holds {tables} tables", "restore into it",
                              "with recreate=true to replace it with the archive's content")
    mechanism = ("side-database-rename" if not exists
                 else "side-database-swap" if request.recreate else "target-copy-swap")
    plain = int(manifest["archive"].get("plain_size") or manifest["archive"]["size"] or 0)
    copied = row[1] if mechanism == "target-copy-swap" else 0
    disk = _disk_space(conn, database if copied else "template0", int(plain * _INDEX_ALLOWANCE) + copied)
    freeing = sum(leftovers.values())
    if disk["checked"] and freeing:
        disk["leftover_bytes"] = freeing
        disk["note"] += f", {human_size(freeing)} more once the leftovers of killed restores are dropped"
    if disk["checked"] and disk["free_bytes"] + freeing < disk["needed_bytes"] and not defer_disk:
        cleaned = ""
        if dropped:
            cleaned = f" after dropping {_named_sizes(dropped)} that killed restores left"
        elif leftovers:
            cleaned = (f" counting {_named_sizes(leftovers)} that killed restores left, which a restore drops before "
                       "it writes")
        raise LifeboatError(
            f"not enough disk space to restore into {database}: the side database needs about "
            f"{human_size(disk['needed_bytes'])} in {disk['path']} and "
            f"{human_size(disk['free_bytes'] + freeing)} is free{cleaned} "
            f"(the previous {database} is only dropped after the swap); free space on the server first"
        )
    return {"database": database, "exists": exists, "existing_tables": tables, "mechanism": mechanism,
            "mechanism_description": MECHANISMS[mechanism].format(database=database), "disk_space": disk}


def _named_sizes(sizes: dict[str, int]) -> str:
    """``the side database X (86.0 MB)``, or several of them."""
    named = ", ".join(f"{name} ({human_size(size)})" for name, size in sizes.items())
    return f"the side database{'s' if len(sizes) > 1 else ''} {named}"


def _disk_space(conn: t.Any, template: str, needed: int) -> dict[str, t.Any]:
    """Free space where the side database will be written, when this host sees the server's own disk."""
    result: dict[str, t.Any] = {"checked": False, "needed_bytes": needed, "free_bytes": None, "path": None}
    try:
        data_dir, location, system_id = conn.execute(
            "SELECT current_setting('data_directory'), pg_tablespace_location(d.dattablespace),"
            " (SELECT system_identifier FROM pg_control_system()) FROM pg_database d WHERE d.datname = %s",
            (template,),
        ).fetchone()
    except _psycopg().Error:
        return {**result, "note": "not checked: this login may not read where the server keeps its data"}
    path = location or data_dir
    if not _is_local_cluster(data_dir, system_id):
        return {**result, "note": "not checked: the server's data directory is not readable on this host"}
    stats = os.statvfs(path)
    free = stats.f_bavail * stats.f_frsize
    return {**result, "checked": True, "free_bytes": free, "path": path,
            "note": f"{human_size(needed)} needed, {human_size(free)} free in {path}"}


def _is_local_cluster(data_dir: str, system_id: int) -> bool:
    """The data directory seen here is the server's own: its pg_control names the same system identifier."""
    try:
        with open(os.path.join(data_dir, "global", "pg_control"), "rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return len(head) == 8 and struct.unpack("=Q", head)[0] == int(system_id)


@_one_line_errors
def plan_restore(request: RestoreRequest, read_archive: bool = True) -> dict[str, t.Any]:
    """Everything that can be checked before writing: the archive, the target, the client, the disk.

    ``read_archive``: read the whole archive now (check mode). A restore leaves it false: it reads the archive
    once, into the side database, and a mismatch found in that read drops the side database.
    """
    request.validate()
    manifest = verify_archive(request.archive_path, "postgresql", request.decryption, request.trust, read_archive)
    database = request.target_database or manifest["database"]
    with request.maintenance().connect() as conn:
        server_major = server_info(conn)["major"]
        # A side database of a restore that runs now is none of a killed one's: its space is not counted as free.
        running = _restore_running(conn, database)
        leftovers = {} if running else _database_sizes(conn, _leftovers(conn, database))
        killed_run = not running and _killed_run_record(_record_path(request, database)) is not None
        # A restore (not check mode) drops the leftovers first, under its lock, then decides whether it fits.
        decided = _decide(request, conn, database, manifest, leftovers, killed_run=killed_run,
                          defer_disk=bool(leftovers) and not read_archive)
    # pg_restore must read the archive's format and speak to the server: the newer of the two decides.
    needed = max(server_major, pg_major(manifest["tool"]["version"]))
    pg_restore, version = pick_binary("pg_restore", needed, request.pg_bin_dir, request.place)
    return {**decided, "manifest": manifest, "pg_restore": pg_restore, "pg_restore_version": version}


@_one_line_errors
def restore(request: RestoreRequest, plan: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    plan = plan or plan_restore(request, read_archive=False)
    manifest, database = plan["manifest"], plan["database"]
    # This session holds the restore's lock on the target name to the end: one restore per target at a time,
    # and what looks left over by a killed restore really is.
    with contextlib.closing(request.maintenance().connect()) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                              (_lock_key(database),)).fetchone()[0]
        if not locked:
            raise LifeboatError(f"another restore into {database} is running on this server; wait for it to end")
        for setting in ("statement_timeout", "idle_session_timeout"):  # a copy, a long pg_restore: no limit
            with contextlib.suppress(_psycopg().Error):
                conn.execute("SELECT set_config(%s, '0', false)", (setting,))
        record = _record_path(request, database)
        # A killed run's leftovers go before anything is decided: the space they held counts as free.
        dropped, warnings = _clean_up_killed_runs(conn, database, record)
        # Decided again under the lock: the target may have changed since the plan.
        decided = _decide(request, conn, database, manifest, {}, dropped=dropped)
        safety = None
        if decided["existing_tables"] and request.safety_dump is not None:
            options = safety_dump_options(request.safety_dump, manifest, request.decryption,
                                          f"{_manifest.default_job(database)}-before-restore")
            safety = dump(DumpRequest(connection=request.connection.for_database(database), archive=options,
                                      pg_bin_dir=request.pg_bin_dir))
        side = _new_side_name(database)
        refusing = decided["mechanism"] == "target-copy-swap"
        try:
            if refusing:
                # A copy needs the target to itself, and a write after the copy would be lost at the swap. The record
                # says so to `lifeboat status` and to the next restore, should this process be killed from here on.
                _restore_records.write(record, request.connection.server(), database, side, _manifest.utc_now())
                name = quote_ident(database)
                _uninterrupted(functools.partial(conn.execute, f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"))
                _end_sessions(conn, database)
                _uninterrupted(functools.partial(conn.execute, f"CREATE DATABASE {quote_ident(side)} TEMPLATE {name}"))
            else:
                _uninterrupted(functools.partial(conn.execute,
                                                 f"CREATE DATABASE {quote_ident(side)} TEMPLATE template0"))
            actual = _restore_into(request, plan, side)
            with termination_deferred():  # a swap is never cut in half: it is done, or never begun
                warnings += _swap(conn, side, database, decided)
            _restore_records.clear(record)  # the target accepts connections: the new one never refused them
        except BaseException as exc:
            error = _undo(request, exc, side, decided, record)
            if error is exc:
                raise
            raise error from exc
    return {
        **{key: decided[key] for key in TARGET_SUMMARY},
        "created": not decided["exists"],
        "counts": actual,
        "pg_restore_version": plan["pg_restore_version"],
        "safety_dump": safety["archive"] if safety else None,
        "leftovers_dropped": list(dropped),
        "warnings": warnings,
    }


def _uninterrupted(work: t.Callable[[], object]) -> None:
    """Work that a SIGTERM does not cut off midway (the server would finish it unseen); stop after it."""
    with termination_deferred() as arrived:
        work()
    if arrived:
        raise LifeboatError(f"stopped by {arrived[0]} before the work was done")


def _end_sessions(conn: t.Any, database: str) -> None:
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                 (database,))


def _lock_key(database: str) -> str:
    """The advisory lock a restore into ``database`` holds (hashed by the server) for as long as it runs."""
    return f"lifeboat.ops restore {database}"


def _restore_running(conn: t.Any, database: str) -> bool:
    """Whether a restore into ``database`` holds its lock on this server now (its side database is no leftover)."""
    if conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (_lock_key(database),)).fetchone()[0]:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_lock_key(database),))
        return False
    return True


def _record_path(request: RestoreRequest, database: str) -> str:
    return _restore_records.record_path(os.path.dirname(os.path.abspath(request.archive_path)),
                                        request.connection.server(), database)


def _killed_run_record(path: str) -> dict[str, t.Any] | None:
    record = _restore_records.read(path)
    return record if record is not None and _restore_records.is_dead(record) else None


def _database_sizes(conn: t.Any, names: t.Sequence[str]) -> dict[str, int]:
    """Each database's size on disk (0 when this login may not see it: then it is not counted as space to free)."""
    sizes = {}
    for name in names:
        try:
            sizes[name] = int(conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()[0])
        except _psycopg().Error:
            sizes[name] = 0
    return sizes


def _clean_up_killed_runs(conn: t.Any, database: str, record: str) -> tuple[dict[str, int], list[str]]:
    """Drop the side databases killed restores into ``database`` left, and let connections into it again when one of
    them turned them off: the sizes dropped, and the warnings that say what was repaired. Runs under the lock."""
    leftovers = _database_sizes(conn, _leftovers(conn, database))
    for name in leftovers:
        _uninterrupted(functools.partial(drop_database, conn, name))
    killed = _killed_run_record(record)
    warnings = []
    # Only a restore that copies the target turns its connections off: its side database, or its record, says so.
    if (leftovers or killed) and conn.execute("SELECT NOT datallowconn FROM pg_database WHERE datname = %s",
                                              (database,)).fetchone() == (True,):
        conn.execute(f"ALTER DATABASE {quote_ident(database)} WITH ALLOW_CONNECTIONS true")
        evidence = (f"its side database {', '.join(leftovers)} was left" if leftovers
                    else f"PID {killed['pid']}, started at {killed['at']}" if killed else "")
        warnings.append(f"{database} refused connections since a restore into it was killed ({evidence}): "
                        "it accepts them again")
    if killed:
        _restore_records.clear(record)
    return leftovers, warnings


def _restore_into(request: RestoreRequest, plan: dict[str, t.Any], side: str) -> dict[str, int]:
    """pg_restore into the side database, then prove it: the stream's checksums and every table's rows."""
    manifest = plan["manifest"]
    target = request.connection.for_database(side)
    argv = [plan["pg_restore"], "--exit-on-error", "--no-password", f"--dbname={target.conninfo()}"]
    argv += ["--no-owner"] if request.no_owner else []
    argv += ["--no-privileges"] if request.no_privileges else []
    # No --single-transaction: the side database is thrown away whole on failure, and -j can use it too.
    # The archive's checksums are checked in the same read (a mismatch fails it, and the side database goes).
    _run_pg_restore(request, manifest, argv, target.env())  # wrapped for the client's place there
    with target.connect() as conn:
        actual = {name: count for name in manifest["counts"] if (count := _count_rows(conn, name)) is not None}
    problems = compare_counts(manifest["counts"], actual)
    if problems:
        raise count_mismatch_error(problems, plan["database"])
    return actual


def _swap(conn: t.Any, side: str, database: str, decided: dict[str, t.Any]) -> list[str]:
    """Give the complete side database the target's name in one transaction; then drop the previous one."""
    if not decided["exists"]:
        conn.execute(f"ALTER DATABASE {quote_ident(side)} RENAME TO {quote_ident(database)}")
        return []
    properties = _property_statements(conn, database)
    previous = _new_side_name(database)  # a leftover by that name is dropped by the next restore
    psycopg = _psycopg()
    for attempt in range(1, _SWAP_ATTEMPTS + 1):
        try:
            with conn.transaction():
                _end_sessions(conn, database)
                # Renaming waits up to 5 s for the ended sessions to go, and new ones wait for it (they lock the
                # database before they join it); only one that got in between these two statements fails it.
                conn.execute(f"ALTER DATABASE {quote_ident(database)} RENAME TO {quote_ident(previous)}")
                conn.execute(f"ALTER DATABASE {quote_ident(side)} RENAME TO {quote_ident(database)}")
                for statement in properties:
                    conn.execute(statement)
            break
        except psycopg.errors.ObjectInUse as exc:
            if attempt == _SWAP_ATTEMPTS:
                raise LifeboatError(f"sessions kept connecting to {database} while its name was swapped: "
                                    f"{_one_line(exc)}; stop its clients and restore again") from exc
    try:
        drop_database(conn, previous)
    except psycopg.Error as exc:
        return [f"the restore is complete, but the previous {database}, now named {previous}, could not be dropped "
                f"({_one_line(exc)}); the next restore into {database} drops it, or DROP DATABASE it"]
    return []


def _property_statements(conn: t.Any, database: str) -> list[str]:
    """SQL that gives the database named ``database`` after the swap the owner, grants, settings and comment it had."""
    sql = _psycopg().sql
    name = quote_ident(database)
    oid, owner, limit, has_acl, comment = conn.execute(
        "SELECT d.oid, pg_get_userbyid(d.datdba), d.datconnlimit, d.datacl IS NOT NULL,"
        " shobj_description(d.oid, 'pg_database') FROM pg_database d WHERE d.datname = %s", (database,)
    ).fetchone()
    statements = [f"ALTER DATABASE {name} OWNER TO {quote_ident(owner)}"]
    if limit != -1:
        statements.append(f"ALTER DATABASE {name} CONNECTION LIMIT {int(limit)}")
    if has_acl:  # NULL means the defaults, which the new database has
        statements.append(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
        for grantee, privilege, grantable in conn.execute(
            "SELECT coalesce(quote_ident(r.rolname), 'PUBLIC'), a.privilege_type, a.is_grantable"
            " FROM pg_database d CROSS JOIN aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee"
            " WHERE d.oid = %s", (oid,)
        ).fetchall():
            statements.append(f"GRANT {privilege} ON DATABASE {name} TO {grantee}"
                              + (" WITH GRANT OPTION" if grantable else ""))
    for role, config in conn.execute(
        "SELECT r.rolname, s.setconfig FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole"
        " WHERE s.setdatabase = %s", (oid,)
    ).fetchall():
        target = f"ROLE {quote_ident(role)} IN DATABASE {name}" if role else f"DATABASE {name}"
        for item in config:
            setting, value = item.split("=", 1)
            values = _list_elements(value) if setting in _LIST_SETTINGS else [value]
            literals = ", ".join(sql.Literal(v).as_string(conn) for v in values)
            statements.append(f"ALTER {target} SET {'.'.join(quote_ident(p) for p in setting.split('.'))} TO {literals}")
    if comment is not None:
        statements.append(f"COMMENT ON DATABASE {name} IS {sql.Literal(comment).as_string(conn)}")
    return statements


def _list_elements(value: str) -> list[str]:
    """``"$user", public`` as PostgreSQL stores a list setting: its elements, unquoted."""
    return [quoted.replace('""', '"') if quoted else bare
            for quoted, bare in re.findall(r'"((?:[^"]|"")*)"|([^,\s][^,]*?)(?=\s*(?:,|$))', value)]


def _undo(request: RestoreRequest, exc: BaseException, side: str, decided: dict[str, t.Any],
          record: str) -> BaseException:
    """After any failure: drop the side database, let connections into the target again; the error to raise."""
    database = decided["database"]
    refusing = decided["mechanism"] == "target-copy-swap"  # the target refused connections from the copy on
    with termination_deferred():
        problem = _drop_side(request, side, database if refusing else None)
        if problem is None:
            _restore_records.clear(record)  # kept otherwise: the target may still refuse connections
    if isinstance(exc, LifeboatError):
        message = str(exc)
    elif isinstance(exc, Exception) and (described := describe_error(exc)) is not None:
        message = described
    else:
        return exc
    clash = re.search(r'(\w+ "[^"]+" already exists)', message)
    if clash and refusing:
        message = (f"pg_restore failed: {clash.group(1)} in {database}; set recreate=true to replace {database} "
                   "with the archive's content (overwrite=true alone restores into what it holds)")
    state = f"{database} is unchanged" if decided["exists"] else f"{database} was not created"
    if problem is None:
        return LifeboatError(f"{message}; {state}: the side database {side} this restore created was dropped")
    again = f" and lets connections into {database} again" if refusing else ""
    return LifeboatError(f"{message}; {state}, but the side database {side} this restore created could not be "
                         f"dropped ({problem}): the next restore into {database} drops it{again}")


def _drop_side(request: RestoreRequest, side: str, reopen: str | None) -> str | None:
    """Drop the side database (and allow connections to ``reopen``), retried while the server is away."""
    psycopg = _psycopg()
    deadline = time.monotonic() + SIDE_DROP_SECONDS
    while True:
        try:
            with request.maintenance().connect() as conn:
                drop_database(conn, side)
                if reopen is not None:
                    conn.execute(f"ALTER DATABASE {quote_ident(reopen)} WITH ALLOW_CONNECTIONS true")
            return None
        except (LifeboatError, psycopg.OperationalError) as exc:
            # Refused or cut off: the server is restarting, most likely. Other errors will not pass by waiting.
            problem = _one_line(exc)
        except psycopg.Error as exc:
            return _one_line(exc)
        if time.monotonic() > deadline:
            return problem
        time.sleep(1)


def _run_pg_restore(request: RestoreRequest, manifest: dict[str, t.Any], argv: list[str], env: dict[str, str]) -> StreamResult:
    """One read of the archive: streamed into pg_restore, or unpacked (and checked) before ``pg_restore -j``."""
    info = manifest["archive"]
    read = functools.partial(read_for_restore, request.archive_path, manifest, decryption=request.decryption,
                             **request.tap)
    if info["format"] == "pg_dump-custom" and request.jobs == 1:
        command, command_env = request.place.command(argv, env, forward=CLIENT_SECRETS)
        return read(consumer_argv=command, consumer_env=command_env, consumer_name="pg_restore")
    if request.place is not HOST:
        raise LifeboatError("a directory-format archive restores with the host's pg_restore: leave container unset")
    # Parallel restore needs a seekable file or a directory: unpack into a private directory first,
    # beside the archive (the backup disk has room for it), else in the temporary directory. The unpacking read
    # checks the archive: pg_restore only starts on bytes that match the manifest.
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
