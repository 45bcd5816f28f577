# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The kinds of source this collection backs up, each one object behind one small interface, and the one table.

A :class:`Source` knows its options (connection, dump), how to connect, dump and restore (through its engine's own
module, ``_postgres`` or ``_mongo``), how to walk its archive format, how to read a restored copy back, how to
compare two databases for a migration, and how to list and drop databases. Everything outside this file asks
:func:`get` for the source of an engine name; nothing else branches on the name. :func:`scratch_database` is the
one helper behind every throw-away database (a restore test, a migration check of an archive): a name no
database on the server has, dropped on the way out even when the work failed. The engines' own restores drop
their side databases with the same per-engine ``drop_database``.

Where a client runs is not a source's business: a request carries the place from ``_clients.client_for`` (this
host's ``HOST``, a ``HostClient``, or a ``ContainerClient`` that runs the same argv through the Docker Engine API's
exec inside the database's container, secrets in the exec's environment, never its argv). The three sources are
:class:`PostgreSQL` (work in ``_postgres``), :class:`MongoDB` (``_mongo``) and :class:`Files` (Docker named volumes
and host paths as one tar stream: ``_files_source``). :func:`database_source` says which source's server a container
runs (its image, or its dump tool answering inside): Docker app discovery asks it, and so does the files source,
which refuses to archive a running database's data directory (it gets the function handed in: it sits below this
table).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import typing as t

from . import (
    _data_catalog,
    _files_source,
    _mongo,
    _mongo_module,
    _mongo_restore,
    _params,
    _postgres,
    _postgres_module,
    _postgres_restore,
    _signing,
    _tar_index,
    _validate_mongo,
    _validate_pg,
)
from ._archive import ArchiveOptions
from ._clients import HOST, ContainerClient, HostClient
from ._codecs import Decryption
from ._common import LifeboatError, PrivateDir, find_binary
from ._structure import MongoArchiveReader, PgSqlReader, hex_sum, row_digest


def _own_trust(params: dict[str, t.Any]) -> _signing.Trust:
    """A deploy's rollback restores the archive its own run made: signed by this host's key."""
    return _signing.resolve_trust((), False, params.get("signing_key_file"))


if t.TYPE_CHECKING:
    from ._validate_core import Checks, ContentStats

# (the reader of the plain stream, the read_stream arguments that feed it, a work directory to remove after,
#  and an argv to run on that directory once the stream is read)
Place = t.Union[HostClient, ContainerClient]
StructureWalk = tuple[t.Any, dict[str, t.Any], "PrivateDir | None", list[str]]


class Source:
    """One kind of source. Subclasses fill in every method; the defaults say what is missing."""

    name: str = ""
    label: str = ""
    counts_in: tuple[str, str] = ("items", "groups")  # what a count counts, and what it is counted per
    bin_dir_option: str = ""  # the option that names the directory of this source's client tools
    own_options: tuple[str, ...] = ()  # connection options that only this source takes
    # How a server of this source shows in a container: its image's name, the dump tool inside, where its data is.
    image_pattern: re.Pattern[str] = re.compile(r"(?!)")
    dump_tool: str = ""
    data_dir: tuple[str | None, str] = (None, "")  # the environment variable that moves it, and the default

    def container_data_dir(self, environment: dict[str, str]) -> str:
        variable, default = self.data_dir
        return (environment.get(variable) if variable else None) or default

    def container_job(self, environment: dict[str, str]) -> dict[str, t.Any]:
        """Job options beyond name, engine and container that a container's environment decides."""
        return {}

    def connection_options(self) -> dict[str, t.Any]:
        raise NotImplementedError

    def dump_options(self) -> dict[str, t.Any]:
        raise NotImplementedError

    def job_options(self) -> dict[str, t.Any]:
        """The options a job of this source takes: those of its dump module."""
        return {**self.connection_options(), **_params.dump_archive_options(), **self.dump_options()}

    def connection(self, params: dict[str, t.Any]) -> t.Any:
        raise NotImplementedError

    def dump_request(self, params: dict[str, t.Any]) -> t.Any:
        raise NotImplementedError

    def dump(self, request: t.Any) -> dict[str, t.Any]:
        raise NotImplementedError

    def restore_whole(self, params: dict[str, t.Any], database: str, archive: str,
                      safety_dump: ArchiveOptions) -> dict[str, t.Any]:
        """Put an archive of ``database`` back in its place (a deploy's rollback), after a safety dump of what is
        there: the restore result (``counts``, ``safety_dump``)."""
        raise LifeboatError(f"{self.label} archives are not restored by a deploy's rollback")

    def plan_into_container(self, params: dict[str, t.Any], archive: str, replace: bool
                            ) -> tuple[t.Any, dict[str, t.Any]]:
        """A restore of ``archive`` into the server of the container ``params["container"]`` (a compose app's part),
        planned, nothing written: (request, plan) for :meth:`restore_planned`. ``replace``: the target is replaced
        whole (the operator's overwrite)."""
        raise NotImplementedError

    def restore_planned(self, request: t.Any, plan: dict[str, t.Any]) -> dict[str, t.Any]:
        raise NotImplementedError

    def describe_error(self, exc: Exception) -> str | None:
        """This source's driver error as one line; None for an error that is not its driver's."""
        raise NotImplementedError

    def is_internal(self, name: str) -> bool:
        """A table or collection the server keeps for itself: counted in a manifest, never compared."""
        return False

    def database_names(self, connection: t.Any) -> set[str]:
        raise NotImplementedError

    def drop_scratch(self, connection: t.Any, name: str) -> None:
        """Drop the scratch database ``name`` (and what a restore into it put beside it)."""
        raise NotImplementedError

    def restore_scratch(self, connection: t.Any, archive: str, manifest: dict[str, t.Any], scratch: str,
                        decryption: Decryption, bin_dir: str | None, *, keep_owners: bool = False,
                        tap: dict[str, t.Any] | None = None) -> None:
        """Restore ``archive`` into the new database ``scratch`` with the collection's own restore; ``tap``: more
        readers of its one read of the archive (_archive.as_tap)."""
        raise NotImplementedError

    def structure_walk(self, archive: str, manifest: dict[str, t.Any], content: bool,
                       bin_dir: str | None, place: Place = HOST) -> StructureWalk:
        """How the archive's inside is read; ``place`` is where this source's client runs (the job's container)."""
        raise NotImplementedError

    def scratch_contents(self, connection: t.Any, scratch: str, manifest: dict[str, t.Any], reader: t.Any
                         ) -> tuple[dict[str, int], dict[str, str], dict[str, int], dict[str, str]]:
        """What the archive holds (counts, content hashes) and what the restored ``scratch`` holds, by name."""
        raise NotImplementedError

    def compare(self, source: t.Any, target: t.Any, checks: Checks) -> ContentStats:
        """A migration's data checks: ``source`` and ``target`` are validate Endpoints with their databases."""
        raise NotImplementedError

    def security(self, target: t.Any, checks: Checks) -> None:
        raise NotImplementedError

    def data_catalog(self, connection: t.Any, database: str) -> t.ContextManager[t.Any]:
        """The live tables or collections of ``database``: names, exact counts, indexes (data expectations)."""
        raise NotImplementedError


class PostgreSQL(Source):
    name = "postgresql"
    label = "PostgreSQL"
    counts_in = ("rows", "tables")
    bin_dir_option = "pg_bin_dir"
    own_options = ("login_unix_socket", "ssl_mode", "ssl_ca_cert", "ssl_cert", "ssl_key", "pg_bin_dir")
    image_pattern = re.compile(r"(^|/)(postgres|postgis|timescaledb)[^/]*(:|$)")
    dump_tool = "pg_dump"
    data_dir = ("PGDATA", "/var/lib/postgresql/data")

    def container_job(self, environment: dict[str, str]) -> dict[str, t.Any]:
        return {"database": environment["POSTGRES_DB"]} if environment.get("POSTGRES_DB") else {}

    def connection_options(self) -> dict[str, t.Any]:
        return _postgres_module.postgres_connection_options()

    def dump_options(self) -> dict[str, t.Any]:
        return _postgres_module.postgres_dump_options()

    def connection(self, params: dict[str, t.Any]) -> _postgres.PgConnection:
        return _postgres_module.pg_connection(params, None, _params.place(params))

    def dump_request(self, params: dict[str, t.Any]) -> _postgres.DumpRequest:
        return _postgres_module.postgres_dump_request(params)

    def dump(self, request: t.Any) -> dict[str, t.Any]:
        return _postgres.dump(request)

    def restore_whole(self, params: dict[str, t.Any], database: str, archive: str,
                      safety_dump: ArchiveOptions) -> dict[str, t.Any]:
        # recreate: the archive's content replaces the database's atomically (a side database, then renamed)
        return _postgres_restore.restore(_postgres_restore.RestoreRequest(
            connection=_postgres_module.pg_connection(params, database), archive_path=archive, overwrite=True, recreate=True,
            safety_dump=safety_dump, trust=_own_trust(params)))

    def plan_into_container(self, params: dict[str, t.Any], archive: str, replace: bool
                            ) -> tuple[_postgres_restore.RestoreRequest, dict[str, t.Any]]:
        params = {**params, "overwrite": replace, "recreate": replace}
        connection = _postgres_module.pg_connection(params, None)
        request = _postgres_module.postgres_restore_request(params, connection, archive)
        return request, _postgres_restore.plan_restore(request, read_archive=False)

    def restore_planned(self, request: t.Any, plan: dict[str, t.Any]) -> dict[str, t.Any]:
        return _postgres_restore.restore(request, plan)

    def describe_error(self, exc: Exception) -> str | None:
        return _postgres.describe_error(exc)

    @staticmethod
    def _maintenance(connection: _postgres.PgConnection) -> _postgres.PgConnection:
        return connection.for_database(connection.database or "postgres")

    def database_names(self, connection: _postgres.PgConnection) -> set[str]:
        with self._maintenance(connection).connect() as conn:
            return {name for (name,) in conn.execute("SELECT datname FROM pg_database").fetchall()}

    def drop_scratch(self, connection: _postgres.PgConnection, name: str) -> None:
        with self._maintenance(connection).connect() as conn:
            _postgres.drop_database(conn, name)

    def restore_scratch(self, connection: _postgres.PgConnection, archive: str, manifest: dict[str, t.Any],
                        scratch: str, decryption: Decryption, bin_dir: str | None, *,
                        keep_owners: bool = False, tap: dict[str, t.Any] | None = None) -> None:
        _postgres_restore.restore(_postgres_restore.RestoreRequest(
            connection=self._maintenance(connection), archive_path=archive, target_database=scratch,
            decryption=decryption, no_owner=not keep_owners, no_privileges=not keep_owners,
            maintenance_database=connection.database or "postgres", pg_bin_dir=bin_dir, tap=tap or {},
            trust=_signing.CHECKED_BY_CALLER,
        ))

    def structure_walk(self, archive: str, manifest: dict[str, t.Any], content: bool,
                       bin_dir: str | None, place: Place = HOST) -> StructureWalk:
        reader = PgSqlReader(content)
        major = _postgres.pg_major(manifest["tool"]["version"])
        pg_restore, _version = _postgres.pick_binary("pg_restore", major, bin_dir, place)
        argv = [pg_restore, "--file=-"]
        if manifest["archive"]["format"] == "pg_dump-custom":
            command, env = place.command(argv)
            return reader, {"consumer_argv": command, "consumer_env": env, "consumer_name": "pg_restore",
                            "on_consumer_stdout": reader.feed}, None, []
        if place is not HOST:
            raise LifeboatError("a directory-format archive is read with the host's pg_restore: leave container unset")
        try:
            work = PrivateDir(os.path.dirname(archive))
        except OSError:
            work = PrivateDir()
        os.mkdir(os.path.join(work.path, "dump"))
        return reader, {"consumer_argv": [find_binary("tar"), "-x", "-C", os.path.join(work.path, "dump")],
                        "consumer_name": "tar"}, work, argv

    def scratch_contents(self, connection: _postgres.PgConnection, scratch: str, manifest: dict[str, t.Any],
                         reader: PgSqlReader) -> tuple[dict[str, int], dict[str, str], dict[str, int], dict[str, str]]:
        timezone = manifest.get("server", {}).get("timezone")
        with connection.for_database(scratch).connect() as conn:
            counts, hashes = _postgres.table_contents(conn, reader.blocks.values(), timezone, reader.client_encoding)
        if timezone is None:  # archives made before the manifest kept the time zone: counts only
            hashes = {}
        expected = {name: digest for name, digest in reader.tally.hashes.items() if name in hashes}
        return reader.tally.counts, expected, counts, hashes

    def compare(self, source: t.Any, target: t.Any, checks: Checks) -> ContentStats:
        return _validate_pg.run(source.connection.for_database(source.database),
                                target.connection.for_database(target.database), checks)

    def security(self, target: t.Any, checks: Checks) -> None:
        _validate_pg.security(target.connection.for_database(target.database), checks)

    def data_catalog(self, connection: _postgres.PgConnection, database: str
                     ) -> t.ContextManager[_data_catalog.PgDataCatalog]:
        return contextlib.closing(_data_catalog.PgDataCatalog(connection.for_database(database)))


class MongoDB(Source):
    name = "mongodb"
    label = "MongoDB"
    counts_in = ("documents", "collections")
    bin_dir_option = "tools_dir"
    own_options = ("login_database", "auth_mechanism", "tls", "tls_ca_file", "tls_certificate_key_file",
                   "tls_allow_invalid_certificates", "tools_dir")
    image_pattern = re.compile(r"(^|/)(mongo|ferretdb)[^/]*(:|$)")
    dump_tool = "mongodump"
    data_dir = (None, "/data/db")

    def connection_options(self) -> dict[str, t.Any]:
        return _mongo_module.mongodb_connection_options()

    def dump_options(self) -> dict[str, t.Any]:
        return _mongo_module.mongodb_dump_options()

    def connection(self, params: dict[str, t.Any]) -> _mongo.MongoConnection:
        return _mongo_module.mongo_connection(params, _params.place(params))

    def dump_request(self, params: dict[str, t.Any]) -> _mongo.DumpRequest:
        return _mongo_module.mongodb_dump_request(params)

    def dump(self, request: t.Any) -> dict[str, t.Any]:
        return _mongo.dump(request)

    def restore_whole(self, params: dict[str, t.Any], database: str, archive: str,
                      safety_dump: ArchiveOptions) -> dict[str, t.Any]:
        return _mongo_restore.restore(_mongo_restore.RestoreRequest(
            connection=_mongo_module.mongo_connection(params), archive_path=archive, drop=True, overwrite=True,
            safety_dump=safety_dump, trust=_own_trust(params)))

    def plan_into_container(self, params: dict[str, t.Any], archive: str, replace: bool
                            ) -> tuple[_mongo_restore.RestoreRequest, dict[str, t.Any]]:
        params = {**params, "overwrite": replace, "drop": replace}
        request = _mongo_module.mongo_restore_request(params, _mongo_module.mongo_connection(params), archive)
        return request, _mongo_restore.plan_restore(request, read_archive=False)

    def restore_planned(self, request: t.Any, plan: dict[str, t.Any]) -> dict[str, t.Any]:
        return _mongo_restore.restore(request, plan)

    def describe_error(self, exc: Exception) -> str | None:
        return _mongo.describe_error(exc)

    def is_internal(self, name: str) -> bool:
        return _mongo.is_system_namespace(name)

    def database_names(self, connection: _mongo.MongoConnection) -> set[str]:
        with contextlib.closing(connection.client()) as client:
            return set(client.list_database_names())

    def drop_scratch(self, connection: _mongo.MongoConnection, name: str) -> None:
        with contextlib.closing(connection.client()) as client:
            for database in client.list_database_names():
                if database == name or database.startswith(name + "_"):  # a whole server's databases, see _renames
                    client.drop_database(database)

    @staticmethod
    def _renames(manifest: dict[str, t.Any], scratch: str) -> tuple[dict[str, t.Any], list[tuple[str, str]]]:
        """The restore options that put the archive under ``scratch``, and the rules that map its namespaces."""
        if manifest.get("database"):
            return {"target_database": scratch}, [(f"{manifest['database']}.*", f"{scratch}.*")]
        # A whole server: every database under the scratch name as a prefix, system databases left out.
        rule = ("$db$.$coll$", f"{scratch}_$db$.$coll$")
        return {"ns_from": [rule[0]], "ns_to": [rule[1]], "ns_exclude": ["admin.*", "config.*", "local.*"]}, [rule]

    def restore_scratch(self, connection: _mongo.MongoConnection, archive: str, manifest: dict[str, t.Any],
                        scratch: str, decryption: Decryption, bin_dir: str | None, *,
                        keep_owners: bool = False, tap: dict[str, t.Any] | None = None) -> None:
        request = _mongo_restore.RestoreRequest(connection=connection, archive_path=archive, decryption=decryption,
                                                tools_dir=bin_dir, tap=tap or {}, trust=_signing.CHECKED_BY_CALLER,
                                                **self._renames(manifest, scratch)[0])
        _mongo_restore.restore(request)

    def structure_walk(self, archive: str, manifest: dict[str, t.Any], content: bool,
                       bin_dir: str | None, place: Place = HOST) -> StructureWalk:
        reader = MongoArchiveReader(content)  # read by our own parser: no client needed
        if manifest["archive"]["format"] == "mongodump-archive-gzip":  # mongodump --gzip gzips the whole stream
            return reader, {"consumer_argv": [find_binary("gzip"), "-dc"], "consumer_name": "gzip",
                            "on_consumer_stdout": reader.feed}, None, []
        return reader, {"on_plain": reader.feed}, None, []

    def scratch_contents(self, connection: _mongo.MongoConnection, scratch: str, manifest: dict[str, t.Any],
                         reader: MongoArchiveReader
                         ) -> tuple[dict[str, int], dict[str, str], dict[str, int], dict[str, str]]:
        rules = self._renames(manifest, scratch)[1]
        hashes = reader.tally.hashes
        expected = {_mongo.map_namespace(ns, rules): (count, hashes.get(ns))
                    for ns, count in reader.tally.counts.items() if not _mongo.is_system_namespace(ns)}
        actual_counts, actual_hashes = {}, {}
        with contextlib.closing(connection.client()) as client:
            for namespace in expected:
                actual_counts[namespace], actual_hashes[namespace] = _collection_content(client, namespace)
        return ({ns: n for ns, (n, _h) in expected.items()},
                {ns: h for ns, (_n, h) in expected.items() if h is not None}, actual_counts, actual_hashes)

    def compare(self, source: t.Any, target: t.Any, checks: Checks) -> ContentStats:
        return _validate_mongo.run(source.connection, target.connection, source.database, target.database, checks)

    def security(self, target: t.Any, checks: Checks) -> None:
        _validate_mongo.security(target.connection, target.auth_database, checks)

    def data_catalog(self, connection: _mongo.MongoConnection, database: str
                     ) -> t.ContextManager[_data_catalog.MongoDataCatalog]:
        return contextlib.closing(_data_catalog.MongoDataCatalog(connection, database))


def _collection_content(client: t.Any, namespace: str) -> tuple[int, str]:
    """Documents and the order-free hash of their exact BSON bytes."""
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    database, collection = _mongo.split_namespace(namespace)
    handle = client[database].get_collection(collection).with_options(
        codec_options=client.codec_options.with_options(document_class=RawBSONDocument))
    count, total = 0, 0
    for document in handle.find({}, batch_size=10000):
        count += 1
        total += row_digest(document.raw)
    return count, hex_sum(total)


class Files(Source):
    """Docker named volumes and host paths as one tar archive (see _files_source). Its "server" is this host: a
    restore test unpacks into a private directory beside the archive, the scratch "database" a folder in it."""

    name = "files"
    label = "files"
    counts_in = ("files", "roots")

    def connection_options(self) -> dict[str, t.Any]:
        return {}

    def dump_options(self) -> dict[str, t.Any]:
        return _files_source.files_options()

    def connection(self, params: dict[str, t.Any] | None) -> _files_source.ScratchPlace:
        return _files_source.ScratchPlace((params or {}).get("scratch_dir"))

    def dump_request(self, params: dict[str, t.Any]) -> _files_source.DumpRequest:
        if not params.get("job"):
            raise LifeboatError("a files job needs job: the name its archives carry")
        return _files_source.DumpRequest(
            archive=_params.archive_options(params, None),
            **{name: list(params.get(name) or []) for name in _files_source.files_options()})

    def dump(self, request: t.Any) -> dict[str, t.Any]:
        return _files_source.dump(request, database_source)

    def restore_whole(self, params: dict[str, t.Any], database: str, archive: str,
                      safety_dump: ArchiveOptions) -> dict[str, t.Any]:
        raise LifeboatError("a deploy's rollback restores databases, not files archives (use files_restore)")

    def plan_into_container(self, params: dict[str, t.Any], archive: str, replace: bool
                            ) -> tuple[t.Any, dict[str, t.Any]]:
        raise LifeboatError("a files archive is restored into volumes and paths (files_restore), not into a container")

    def restore_planned(self, request: t.Any, plan: dict[str, t.Any]) -> dict[str, t.Any]:
        raise LifeboatError("a files archive is restored into volumes and paths (files_restore), not into a container")

    def describe_error(self, exc: Exception) -> str | None:
        return None  # no driver: tar's own words reach LifeboatError through the pipeline

    def database_names(self, connection: _files_source.ScratchPlace) -> set[str]:
        return connection.names()

    def drop_scratch(self, connection: _files_source.ScratchPlace, name: str) -> None:
        connection.drop(name)

    def restore_scratch(self, connection: _files_source.ScratchPlace, archive: str, manifest: dict[str, t.Any],
                        scratch: str, decryption: Decryption, bin_dir: str | None, *,
                        keep_owners: bool = False, tap: dict[str, t.Any] | None = None) -> None:
        _files_source.restore_scratch(connection, archive, manifest, scratch, decryption, tap)

    def structure_walk(self, archive: str, manifest: dict[str, t.Any], content: bool,
                       bin_dir: str | None, place: Place = HOST) -> StructureWalk:
        files = manifest.get("files") or {}
        reader = _tar_index.TarIndex(files.get("roots") or [], files.get("entries") or {})
        return reader, {"on_plain": reader.feed}, None, []

    def scratch_contents(self, connection: _files_source.ScratchPlace, scratch: str, manifest: dict[str, t.Any],
                         reader: _tar_index.TarIndex
                         ) -> tuple[dict[str, int], dict[str, str], dict[str, int], dict[str, str]]:
        return _files_source.scratch_contents(connection, scratch, manifest, reader)

    def compare(self, source: t.Any, target: t.Any, checks: Checks) -> ContentStats:
        raise LifeboatError("migration checks compare databases; a files archive is proven by backup_verify")

    def security(self, target: t.Any, checks: Checks) -> None:
        raise LifeboatError("migration checks compare databases; a files archive is proven by backup_verify")

    def data_catalog(self, connection: t.Any, database: str) -> t.ContextManager[t.Any]:
        raise _data_catalog.unsupported(self.label)


SOURCES: dict[str, Source] = {source.name: source for source in (PostgreSQL(), MongoDB(), Files())}
NAMES = tuple(SOURCES)
DATABASES = tuple(name for name, source in SOURCES.items() if source.connection_options())  # what has a server


def get(name: str) -> Source:
    """The source of an engine name, or a one-line error that lists the names there are."""
    try:
        return SOURCES[name]
    except KeyError:
        raise LifeboatError(f"unknown engine {name!r}; use one of: {', '.join(NAMES)}") from None


def database_source(api: t.Any, info: dict[str, t.Any]) -> tuple[Source | None, str]:
    """The kind of database a container serves and how that was found (its image, or its client answering)."""
    image = info["Config"].get("Image", "")
    for source in SOURCES.values():
        if source.image_pattern.search(image):
            return source, f"image {image}"
    if not info["State"].get("Running"):
        return None, "not running: no client asked"
    for source in (source for source in SOURCES.values() if source.dump_tool):
        command = ["sh", "-c", 'command -v "$0"', source.dump_tool]
        exec_id = api.exec_create(info["Id"], command, stdout=True, stderr=True)["Id"]
        api.exec_start(exec_id)
        if api.exec_inspect(exec_id).get("ExitCode") == 0:
            return source, f"{source.dump_tool} answers inside"
    return None, "no database client inside"


@contextlib.contextmanager
def scratch_database(source: Source, connection: t.Any, prefix: str, name: str | None = None) -> t.Iterator[str]:
    """A database that no database on the server is, or is named like (``prefix`` and a random part, or ``name``,
    refused when it exists): it is this run's to drop, and it is dropped on the way out, failure or not."""
    taken = source.database_names(connection)
    if name is not None:
        if name in taken:
            raise LifeboatError(f"scratch_database {name} already exists on the target's server; name one that does "
                                "not (it is dropped after the comparison)")
    else:
        name = f"{prefix}_{secrets.token_hex(4)}"
        while any(other == name or other.startswith(name + "_") for other in taken):
            name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        source.drop_scratch(connection, name)
