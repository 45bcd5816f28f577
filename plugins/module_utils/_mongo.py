# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""MongoDB dumps and restores through mongodump/mongorestore --archive and the archive pipeline.

The tools get the connection string, password included, from a 0600 ``--config`` file: never argv.
Counts in the manifest are what mongodump itself reports having written for each collection.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import typing as t
import urllib.parse
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

from . import _manifest
from ._archive import (
    ArchiveOptions,
    Decode,
    Producer,
    Recipe,
    SourceDump,
    compare_counts,
    count_mismatch_error,
    read_for_restore,
    ready,
    safety_dump_options,
    stream_compression,
    verify_archive,
    write_archive,
)
from ._clients import HOST, ContainerClient, HostClient
from ._common import (
    CannotConnect,
    LifeboatError,
    PrivateDir,
    TargetHoldsData,
    find_cause,
    friendly_errors,
    one_line,
    read_secret_file,
    register_secret,
)
from ._mongo_staging import Staging, kept_name, staging_run, with_retries
from ._pipeline import Decryption, StageFailed, StreamResult, read_stream, termination_deferred
from ._signing import Trust, host_trust
from ._structure import MongoArchiveReader

Client = t.Union[HostClient, ContainerClient]

OPLOG_MODES = ("auto", "yes", "no")
# Database names cannot hold dots; collection names can hold dots and spaces.
_DONE_DUMPING = re.compile(r"done dumping ([^.\s]+)\.(.+) \((\d+) documents?\)$")
_RESTORED = re.compile(r"(\d+) document\(s\) restored successfully\. (\d+) document\(s\) failed to restore")
# mongorestore's line per collection (its Result.log): the namespace it wrote and the server's acknowledged inserts.
_FINISHED = re.compile(r"finished restoring (.+) \((\d+) documents?, (\d+) failures?\)$", re.DOTALL)
_SYSTEM_DATABASES = ("admin", "config", "local")


def split_namespace(namespace: str) -> tuple[str, str]:
    """``db.coll.with.dots`` -> (``db``, ``coll.with.dots``): database names cannot hold dots."""
    db, coll = namespace.split(".", 1)
    return db, coll


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


def describe_error(exc: Exception) -> str | None:
    """A PyMongo error as one line; None for any other error."""
    if isinstance(exc, _pymongo().errors.PyMongoError):
        return f"MongoDB error: {_one_line(exc)}"
    return None


_one_line_errors = friendly_errors(describe_error)


def _one_line(exc: BaseException) -> str:
    """A driver error as one_line, without the topology and raw server reply pymongo appends to its message."""
    text = str(exc).split(", Timeout:", maxsplit=1)[0].split(", full error:", maxsplit=1)[0]
    return one_line(text or type(exc).__name__)[:300]


def list_namespaces(client: t.Any, database: str | None) -> dict[str, list[str]]:
    databases = [database] if database else [
        name for name in client.list_database_names() if name not in _SYSTEM_DATABASES
    ]
    result = {}
    for name in databases:
        collections = client[name].list_collection_names(filter={"type": "collection"})
        result[name] = sorted(c for c in collections if not c.startswith("system."))
    return result


def _index_specs(client: t.Any, namespaces: t.Iterable[str]) -> dict[str, list[dict[str, t.Any]]]:
    keep = ("name", "key", "unique", "sparse", "expireAfterSeconds", "partialFilterExpression")
    specs = {}
    for namespace in namespaces:
        db, coll = split_namespace(namespace)
        specs[namespace] = [
            # Key order matters (compound indexes) and the manifest sorts object keys: store pairs.
            {k: ([[field, order] for field, order in v.items()] if k == "key" else v) for k, v in index.items() if k in keep}
            for index in client[db][coll].list_indexes()
        ]
    return json.loads(json.dumps(specs, default=str))


@dataclass
class DumpRequest:
    connection: MongoConnection
    archive: ArchiveOptions
    database: str | None = None
    collections: list[str] = field(default_factory=list)
    exclude_collections: list[str] = field(default_factory=list)
    exclude_collections_with_prefix: list[str] = field(default_factory=list)
    oplog: str = "auto"
    parallel_collections: int = 4
    tools_dir: str | None = None

    def validate(self) -> None:
        """Every check of the request, the archive options' included (check mode)."""
        self.archive.validate()
        self.check()

    def check(self) -> None:
        """The checks of the dump's own options (the archive core checks its options as it writes)."""
        if (self.collections or self.exclude_collections or self.exclude_collections_with_prefix) and not self.database:
            raise LifeboatError("collections and exclude_collections need database: mongodump filters within one database")
        if self.collections and (self.exclude_collections or self.exclude_collections_with_prefix):
            raise LifeboatError("give either collections (include) or exclude_collections, not both")
        if self.oplog not in OPLOG_MODES:
            raise LifeboatError(f"unknown oplog '{self.oplog}'; use one of: {', '.join(OPLOG_MODES)}")
        if self.oplog == "yes" and self.database:
            raise LifeboatError("oplog=yes needs a whole-server dump (leave database unset); mongodump allows no filter with --oplog")
        if self.parallel_collections < 1:
            raise LifeboatError("parallel_collections must be 1 or more")
        if self.archive.compression == "gzip" and self.archive.compression_level is not None:
            raise LifeboatError("compression=gzip uses mongodump --gzip, which takes no level; leave compression_level unset")

    def selected(self, namespaces: dict[str, list[str]]) -> list[str]:
        chosen = []
        for db, collections in namespaces.items():
            for coll in collections:
                if staging_run(coll) is not None:  # a restore's staging collections are not data
                    continue
                if self.collections and coll not in self.collections:
                    continue
                if coll in self.exclude_collections or coll.startswith(tuple(self.exclude_collections_with_prefix)):
                    continue
                chosen.append(f"{db}.{coll}")
        return chosen


def _server_info(client: t.Any) -> dict[str, t.Any]:
    build = client.admin.command("buildInfo")
    hello = client.admin.command("hello")
    info = {"product": "MongoDB", "version": build.get("version", "unknown")}
    if hello.get("setName"):
        info["replica_set"] = hello["setName"]
    if "ferretdbVersion" in build:
        info["product"] = "FerretDB"
        info["ferretdb_version"] = build["ferretdbVersion"]
    return info


@_one_line_errors
def plan_dump(request: DumpRequest) -> dict[str, t.Any]:
    request.validate()
    client = request.connection.client()
    try:
        server = _server_info(client)
        selected = request.selected(list_namespaces(client, request.database))
        counts = {ns: _estimated_count(client, ns) for ns in selected}
    finally:
        client.close()
    return {"server": server, "collections": counts, "mongodump": request.connection.tool("mongodump", request.tools_dir)}


def _namespaces_with_documents(connect: t.Callable[[], t.Any], namespaces: t.Iterable[str]) -> list[str]:
    """Which collections hold at least one document: one indexed lookup each, where counting may scan."""
    client = connect()
    try:
        return [ns for ns in namespaces if _has_documents(client, ns)]
    finally:
        client.close()


def _has_documents(client: t.Any, namespace: str) -> bool:
    db, coll = split_namespace(namespace)
    return client[db][coll].find_one({}, {"_id": 1}) is not None


def _count(client: t.Any, namespace: str) -> int:
    """The exact number of documents. A bare $count stage, not count_documents({}) ($match and $group): the same
    answer, and FerretDB computes it in about half the time (measured on the test bed: 8.0 against 14.4 s for
    40,000 documents on a busy machine), which is most of a small restore's time after mongorestore."""
    db, coll = split_namespace(namespace)
    return int(next(iter(client[db][coll].aggregate([{"$count": "n"}])), {"n": 0})["n"])


def _acknowledged_count(acknowledged: dict[str, tuple[int, int]], namespace: str) -> int | None:
    """The exact number of documents of a staging collection that mongorestore alone wrote, from the server's own
    answers: None when mongorestore did not report it (then the server counts it).

    Why this is as exact as counting afterwards: mongorestore adds up, per collection, the ``n`` of every insert
    command the server acknowledged (its Result.Successes from BulkWriteResult.InsertedCount) and reports failures
    apart; the restore runs with --stopOnError and fails on any failure. The staging collection has a name of this
    run only, did not exist before it (a merge, which starts from a copy, is counted on the server) and nothing
    else writes to it, so the server holds exactly the documents it acknowledged. Counting them again on FerretDB
    reads and decodes every document (no count is pushed down to SQLite): 16 of 29 s for 200,000 documents
    (bench/README.md, bench_restore.py). mongorestore's other path (a document with a zero timestamp) inserts
    that document alone and counts it only when the insert succeeded. A missing line (a name mongorestore's log
    cannot carry) falls back to the server's count; a line is never taken for a collection it does not name.
    """
    found = acknowledged.get(namespace)
    if found is None:
        return None
    inserted, failures = found
    if failures:
        raise LifeboatError(f"mongorestore could not restore {failures} documents of {namespace}")
    return inserted


def _estimated_count(client: t.Any, namespace: str) -> int:
    db, coll = split_namespace(namespace)
    return int(client[db][coll].estimated_document_count())


@_one_line_errors
def dump(request: DumpRequest) -> dict[str, t.Any]:
    """mongodump's archive stream and the documents it reports per collection, handed to the archive core to write."""
    request.check()
    mongodump = request.connection.tool("mongodump", request.tools_dir)
    client = request.connection.client()
    try:
        server = _server_info(client)
        namespaces = list_namespaces(client, request.database)
        selected = request.selected(namespaces)
        if not selected:
            where = f"database {request.database}" if request.database else "the server"
            raise LifeboatError(
                f"nothing to dump: {where} has no collections that the filters keep; check the database name and filters"
            )
        indexes = _index_specs(client, selected)
    finally:
        client.close()
    use_oplog = request.oplog == "yes" or (request.oplog == "auto" and "replica_set" in server and not request.database)
    if request.oplog == "yes" and "replica_set" not in server:
        raise LifeboatError(f"oplog=yes needs a replica set, and {request.connection.display} is a standalone server")
    inner_gzip = request.archive.compression == "gzip"
    counts: dict[str, int] = {}

    def on_line(line: str) -> None:
        match = _DONE_DUMPING.search(line)
        if match:
            counts[f"{match.group(1)}.{match.group(2)}"] = int(match.group(3))

    argv = [mongodump, "--archive", f"--numParallelCollections={request.parallel_collections}"]
    argv += ["--gzip"] if inner_gzip else []
    argv += ["--oplog"] if use_oplog else []
    if request.database:
        argv.append(f"--db={request.database}")
        excluded = [c for c in namespaces.get(request.database, []) if f"{request.database}.{c}" not in selected]
        if len(selected) == 1 and request.collections:
            argv.append(f"--collection={selected[0].partition('.')[2]}")
        else:
            # mongodump takes one --collection at most: an include list becomes the complement's excludes.
            argv += [f"--excludeCollection={c}" for c in excluded]
    place = request.connection.place.describe()
    with PrivateDir() as private:
        argv, env = request.connection.tool_command(argv, private)
        producer = Producer(argv, "mongodump", env, on_stderr=on_line,
                            reports_digest=request.connection.place.reports_digest)
        return write_archive(request.archive, SourceDump(
            engine="mongodb",
            database=request.database,
            kind="mongo-gzip.archive" if inner_gzip else "mongo.archive",
            archive_format="mongodump-archive-gzip" if inner_gzip else "mongodump-archive",
            stream=ready(producer),
            # gzip happens inside the archive (mongorestore --gzip reads it), so the stream itself is not gzipped.
            compression="none" if inner_gzip else None,
            tool={"name": "mongodump", "version": request.connection.place.version(mongodump)},
            server={**server, **({"container": place} if place else {})},
            options={"collections": request.collections, "exclude_collections": request.exclude_collections,
                     "exclude_collections_with_prefix": request.exclude_collections_with_prefix, "oplog": use_oplog},
            counts=functools.partial(_reported_counts, counts, request.connection.client, selected),
            restore=functools.partial(restore_recipe, database=request.database, inner_gzip=inner_gzip, oplog=use_oplog,
                                      container=place),
            more=lambda: {"indexes": indexes},
        ))


def _reported_counts(counts: dict[str, int], connect: t.Callable[[], t.Any], selected: list[str],
                     _stream: StreamResult) -> dict[str, int]:
    """The documents mongodump reported per collection; none although collections hold some refuses the archive."""
    holding = _namespaces_with_documents(connect, selected) if not sum(counts.values()) else []
    if holding:
        raise LifeboatError(
            f"mongodump wrote no documents although {', '.join(holding[:3])} hold some; "
            "the archive would be empty, so it was not kept"
        )
    return dict(sorted(counts.items()))


# In the container, mongorestore reads the URI (and its password) from a config file that is a pipe of bash's, filled
# from the exec's environment: the password is on no command line and no disk of the container.
_URI_FROM_ENVIRONMENT = """bash -c 'exec mongorestore --config=<(printf "uri: \\"%s\\"\\n" "$MONGODB_URI") "$@"' mongorestore"""
CONTAINER_CLIENT_ENVIRONMENT = {
    "MONGODB_URI": ("the server's URI as seen inside the container, the password percent-encoded: "
                    "mongodb://USER:PASSWORD@127.0.0.1:27017/?authSource=admin; set it without typing it on a command "
                    "line (read -rs MONGODB_URI; export MONGODB_URI): docker exec -e passes it into the container"),
}


def restore_recipe(file_name: str, decode: Decode, _extras: list[dict[str, t.Any]], database: str | None,
                   inner_gzip: bool, oplog: bool, container: dict[str, t.Any] | None = None) -> Recipe:
    """The standard commands that restore this archive without lifeboat.ops, the environment they read and what
    this archive's placeholders mean beyond the usual. A dump made in the server's container restores with that
    container's mongorestore (the version that dumped it), fed by this host's zstd and age."""
    flags = ["--archive", "--stopOnError"] + (["--gzip"] if inner_gzip else []) + (["--oplogReplay"] if oplog else [])
    if database:
        flags += [f"--nsFrom={_manifest.shell_quote(database + '.*')}", "--nsTo='TARGET_DB.*'"]
    if container is None:
        return [f"{decode(file_name)} | mongorestore CONNECTION {' '.join(flags)}"], {}, {}
    meaning = (f"the MongoDB server's container ({container.get('name')} when this was dumped, image "
               f"{container.get('image')}): its mongorestore is the one that matches the dump")
    command = f"{decode(file_name)} | docker exec -i -e MONGODB_URI CONTAINER {_URI_FROM_ENVIRONMENT} {' '.join(flags)}"
    return [command], dict(CONTAINER_CLIENT_ENVIRONMENT), {"CONTAINER": meaning}


_UNESCAPED_STAR = re.compile(r"(?<!\\)\*")
_VARIABLE = re.compile(r"\$([^$]*)\$")


def _number_wildcards(pattern: str) -> str:
    """``prod.*`` -> ``prod.$1$``: mongorestore pairs the asterisks of nsFrom and nsTo by position."""
    count = iter(range(1, 1000))
    return _UNESCAPED_STAR.sub(lambda _match: f"${next(count)}$", pattern).replace("\\*", "*")


def _ns_rule(source: str, target: str) -> tuple[re.Pattern[str], str]:
    """mongorestore's --nsFrom/--nsTo pair as a regex and a replacement (``$name$`` variables or ``*``)."""
    if "$" not in source:
        source, target = _number_wildcards(source), _number_wildcards(target)
    groups: dict[str, int] = {}
    regex = ""
    for index, piece in enumerate(_VARIABLE.split(source)):
        if index % 2:
            if piece in groups:
                raise LifeboatError(f"namespace variable ${piece}$ is used twice in '{source}'")
            groups[piece] = len(groups) + 1
            regex += "(.*?)"
        else:
            regex += re.escape(piece)

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) not in groups:
            raise LifeboatError(f"namespace variable ${match.group(1)}$ of '{target}' is not in '{source}'")
        return f"\\g<{groups[match.group(1)]}>"

    replacement = _VARIABLE.sub(substitute, target.replace("\\", "\\\\"))
    return re.compile(f"^{regex}$", re.DOTALL), replacement


def map_namespace(namespace: str, renames: list[tuple[str, str]]) -> str:
    """Where mongorestore puts ``namespace``: the last matching rename wins, as in mongorestore."""
    for source, target in reversed(renames):
        regex, replacement = _ns_rule(source, target)
        if regex.match(namespace):
            return regex.sub(replacement, namespace)
    return namespace


def namespace_matches(namespace: str, pattern: str) -> bool:
    """mongorestore's --nsInclude/--nsExclude: ``*`` matches anything, dots included."""
    return bool(_ns_rule(pattern, pattern)[0].match(namespace))


def is_system_namespace(namespace: str) -> bool:
    """Users, roles and server collections: mongorestore merges them specially, so their counts differ."""
    db, coll = split_namespace(namespace)
    return db in _SYSTEM_DATABASES or coll.startswith("system.")


# mongorestore's parallelism (--numParallelCollections, --numInsertionWorkersPerCollection). Its own defaults are 4
# and 1; two collections at a time keep a small host (2 cores, the server on it too) busy without thrashing it.
RESTORE_PARALLEL_COLLECTIONS = 2
RESTORE_INSERTION_WORKERS = 1


@dataclass
class RestoreRequest:
    connection: MongoConnection
    archive_path: str
    decryption: Decryption = field(default_factory=Decryption)
    target_database: str | None = None
    ns_from: list[str] = field(default_factory=list)
    ns_to: list[str] = field(default_factory=list)
    ns_include: list[str] = field(default_factory=list)
    ns_exclude: list[str] = field(default_factory=list)
    drop: bool = False
    overwrite: bool = False
    safety_dump: ArchiveOptions | None = None
    tools_dir: str | None = None
    trust: Trust = field(default_factory=host_trust)  # whose signature the archive's manifest must carry
    parallel_collections: int = RESTORE_PARALLEL_COLLECTIONS
    insertion_workers_per_collection: int = RESTORE_INSERTION_WORKERS
    # More readers of the restore's one read of the archive (a verify's structure walk; see _archive.as_tap).
    tap: dict[str, t.Any] = field(default_factory=dict)

    def validate(self) -> None:
        for option in ("parallel_collections", "insertion_workers_per_collection"):
            if getattr(self, option) < 1:
                raise LifeboatError(f"{option} must be 1 or more, not {getattr(self, option)}")
        if len(self.ns_from) != len(self.ns_to):
            raise LifeboatError("ns_from and ns_to must have the same number of patterns")
        if self.target_database and self.ns_from:
            raise LifeboatError("give either target_database or ns_from/ns_to, not both")
        if self.drop and not self.overwrite:
            raise LifeboatError("drop removes collections in the target before restoring; set overwrite=true to confirm")
        if self.safety_dump is not None:
            self.safety_dump.validate()

    def renames(self, manifest: dict[str, t.Any]) -> list[tuple[str, str]]:
        if self.target_database:
            if not manifest.get("database"):
                raise LifeboatError("target_database needs an archive of one database; this one holds a whole server")
            return [(f"{manifest['database']}.*", f"{self.target_database}.*")]
        return list(zip(self.ns_from, self.ns_to))

    def included(self, namespace: str) -> bool:
        if self.ns_include and not any(namespace_matches(namespace, p) for p in self.ns_include):
            return False
        return not any(namespace_matches(namespace, p) for p in self.ns_exclude)


MECHANISM = "staged-rename"  # mongorestore writes staging collections, renamed over the targets when counted
# How long no write of a killed mongorestore may reach its staging collections before they count as gone.
SETTLE_SECONDS = 1.5
DIRECT = "direct"  # oplog archives: straight into targets that hold nothing; what it created is dropped on failure


@_one_line_errors
def plan_restore(request: RestoreRequest, read_archive: bool = True) -> dict[str, t.Any]:
    """Everything that can be checked before writing: the archive, the target and the disk.

    ``read_archive``: read the whole archive now (check mode). A staged restore leaves it false: it reads the
    archive once, into the staging collections, and a mismatch found in that read drops them. An oplog archive,
    restored straight into its targets, is read whole first whatever this says.
    """
    request.validate()
    manifest = verify_archive(request.archive_path, "mongodb", request.decryption, request.trust, read_archive)
    renames = request.renames(manifest)
    expected = {
        map_namespace(ns, renames): count
        for ns, count in manifest["counts"].items()
        if request.included(ns) and not is_system_namespace(ns)
    }
    client = request.connection.client()
    try:
        present = {f"{db}.{coll}" for db in {split_namespace(ns)[0] for ns in expected}
                   for coll in client[db].list_collection_names()}
        # Exact counts, but only of the target collections that hold anything (usually none): a collection that
        # does not exist holds nothing, and is not asked (one query per database instead of one per collection).
        existing = {ns: _count(client, ns) for ns in expected if ns in present and _has_documents(client, ns)}
        server = _server_info(client)
        if existing and not request.overwrite:
            shown = ", ".join(f"{ns} ({n} documents)" for ns, n in sorted(existing.items())[:3])
            raise TargetHoldsData(f"the target already holds data in {shown}", "restore over it",
                                  "with drop=true to replace it")
        # mongorestore replays an oplog only under the archive's own names (it refuses renames and includes with
        # --oplogReplay): such an archive goes straight to its targets, which must hold nothing yet.
        mechanism = DIRECT if manifest["options"].get("oplog") else MECHANISM
        if mechanism == DIRECT and (renames or request.ns_include or request.ns_exclude):
            raise LifeboatError(
                "this archive holds an oplog, which mongorestore replays only under the archive's own names; leave "
                "target_database, ns_from, ns_to, ns_include and ns_exclude unset"
            )
        if mechanism == DIRECT and existing:
            raise LifeboatError(
                f"this archive holds an oplog, which mongorestore replays only under the archive's own names, so it "
                f"cannot be restored all or nothing over {sorted(existing)[0]}, which holds data; restore it into a "
                "server where its collections hold nothing"
            )
        staging: Staging | None = None
        copied: list[str] = []
        if mechanism == MECHANISM:  # only a staged restore renames its targets
            staging = Staging(targets={ns: ns in present for ns in expected})
            staging.check_names(server["product"] == "FerretDB")
            if not request.drop:  # a merge starts from a copy of each existing target
                copied = sorted(ns for ns, existed in staging.targets.items() if existed)
        disk_space = _check_disk_space(client, request.connection, manifest, copied)
    finally:
        client.close()
    return {"manifest": manifest, "renames": renames, "expected": expected, "existing": existing, "server": server,
            "created": sorted(set(expected) - present), "mechanism": mechanism, "staging": staging,
            "disk_space": disk_space, "archive_read": read_archive}


def _check_disk_space(client: t.Any, connection: MongoConnection, manifest: dict[str, t.Any], copied: list[str]) -> str:
    """Refuse a restore whose staging copy cannot fit; say what was compared, or that the disk is not visible.

    Staging needs the archive's plain size (documents and their indexes take about that much) plus, for a
    merge, a copy of each target collection; the old collections are dropped only after the swap.
    """
    needed = int(manifest["archive"].get("plain_size") or 0)
    for namespace in copied:
        db, coll = split_namespace(namespace)
        stats = _command_or_empty(client[db], "collStats", coll)
        needed += int(stats.get("size", 0)) + int(stats.get("totalIndexSize", 0))
    free = _server_free_bytes(client, connection)
    if free is None:
        return f"not checked: the server's disk is not visible from here (the restore needs about {_size(needed)})"
    if needed > free:
        raise LifeboatError(
            f"not enough disk space on the MongoDB server for this restore: it needs about {_size(needed)} for the "
            f"staging collections and {_size(free)} are free; free some space first"
        )
    return f"about {_size(needed)} needed, {_size(free)} free"


def _command_or_empty(database: t.Any, *command: t.Any) -> dict[str, t.Any]:
    """A statistics command's answer, or {} where the user may not run it (or a server version dropped it)."""
    try:
        return dict(database.command(*command))
    except _pymongo().errors.OperationFailure:
        return {}


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"


def _server_free_bytes(client: t.Any, connection: MongoConnection) -> int | None:
    """Free bytes where the server keeps its data: MongoDB reports its filesystem in dbStats; FerretDB does not,
    but when it runs on this host its data directory (argv) can be looked at here."""
    stats = _command_or_empty(client.admin, "dbStats")
    if stats.get("fsTotalSize") and stats.get("fsUsedSize") is not None:
        return int(stats["fsTotalSize"]) - int(stats["fsUsedSize"])
    directory = _local_data_directory(connection)
    if directory is None:
        return None
    usage = os.statvfs(directory)
    return usage.f_bavail * usage.f_frsize


def _local_data_directory(connection: MongoConnection) -> str | None:
    """The ``--sqlite-url`` (FerretDB) or ``--dbpath`` (mongod) directory of the process listening on the server's
    port, when that is on this host. (A user allowed getCmdLineOpts may also run dbStats, which already answered.)"""
    host, _sep, port = connection.display.split(",")[0].rpartition(":")
    if host.strip("[]") not in ("127.0.0.1", "localhost", "::1") or not port.isdigit():
        return None
    argv = _listener_argv(int(port))
    for arg, following in zip(argv, [*argv[1:], ""]):
        flag, has_value, inline = arg.partition("=")
        if flag in ("--dbpath", "--sqlite-url"):
            path = (inline if has_value else following).removeprefix("file:").split("?", 1)[0]
            if path and os.path.isdir(path):
                return path
    return None


def _listener_argv(port: int) -> list[str]:
    """argv of the process of this host listening on TCP ``port`` ([] when it cannot be seen)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                for line in handle.readlines()[1:]:
                    fields = line.split()
                    if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
                        inodes.add(f"socket:[{fields[9]}]")
        except (OSError, IndexError):
            continue
    for pid in filter(str.isdigit, os.listdir("/proc") if inodes else []):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    return [arg.decode("utf-8", "replace") for arg in handle.read().split(b"\0") if arg]
        except OSError:
            continue
    return []


@_one_line_errors
def restore(request: RestoreRequest, plan: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    """Restore into staging collections, count them, and only then rename them over the targets."""
    plan = plan or plan_restore(request, read_archive=False)
    if plan["staging"] is None and not plan.get("archive_read"):
        # Straight into the targets (an oplog archive): nothing may be written before the whole archive is proven.
        read_for_restore(request.archive_path, plan["manifest"], decryption=request.decryption)
    safety = []
    if plan["existing"] and request.safety_dump is not None:
        for database in sorted({split_namespace(ns)[0] for ns in plan["existing"]}):
            options = safety_dump_options(request.safety_dump, plan["manifest"], request.decryption,
                                          f"{_manifest.default_job(database)}-before-restore")
            safety.append(dump(DumpRequest(connection=request.connection, archive=options,
                                           database=database, tools_dir=request.tools_dir))["archive"])
    staging: Staging | None = plan["staging"]
    if staging is None:
        return {**_restore_direct(request, plan), "safety_dumps": safety, "mechanism": DIRECT,
                "concurrent_writes": concurrent_writes(plan["mechanism"], request.drop)}
    connect = request.connection.client
    warnings: list[str] = with_retries(connect, functools.partial(Staging.recover_leftovers,
                                                                  databases=staging.databases()), seconds=0)
    swapping = False
    try:
        with_retries(connect, staging.begin, seconds=0)
        result = _restore_and_check(request, plan, staging)
        copied: dict[str, Fingerprint] = result.pop("copied")
        with_retries(connect, functools.partial(_check_unchanged, copied=copied), seconds=0)
        with termination_deferred():  # a stop request waits for the few renames: never half swapped
            swapping = True
            warnings += with_retries(connect, staging.swap, seconds=0)
    except BaseException as exc:
        error = _undo(request, plan, staging, exc, swapping)
        if error is exc:
            raise
        raise error from exc
    try:
        late, kept = with_retries(connect, functools.partial(_carry_late_writes, staging=staging, copied=copied),
                                  seconds=0)
    except Exception as exc:
        raise LifeboatError(
            f"the restore is in place, but checking the collections it replaced for writes made during the swap failed "
            f"({_one_line(exc)}); they are still there as {staging.prefix}_old_*: rename them out of the way "
            "(lifeboat_kept_*) before another restore into this database drops them, and compare"
        ) from exc
    warnings += late
    try:
        with_retries(connect, staging.drop, seconds=10)
    except Exception:  # noqa: BLE001 - the restore itself is complete
        warnings.append(f"the collections {staging.prefix}_old_* replaced by this restore could not be dropped yet; "
                        "the next restore into this database drops them")
    if kept:
        raise LifeboatError(
            f"the restore is in place, but writes other than inserts arrived between the last check and the swap; the "
            f"collections as they were just before it are kept as {', '.join(kept)}: compare and set back what is "
            "missing")
    return {**result, "warnings": warnings + result["warnings"], "safety_dumps": safety, "mechanism": MECHANISM,
            "concurrent_writes": concurrent_writes(plan["mechanism"], request.drop)}


def concurrent_writes(mechanism: str, drop: bool) -> str:
    """What a restore guarantees for writes made to its targets while it runs (the module's RV(concurrent_writes)):
    C(checked) a merge proves them absent or keeps them, C(replaced) by the archive's collections (drop), or
    C(not checked) (an oplog archive, written straight beside them)."""
    if mechanism == DIRECT:
        return "not checked"
    return "replaced" if drop else "checked"


def _undo(request: RestoreRequest, plan: dict[str, t.Any], staging: Staging, exc: BaseException, swapping: bool
          ) -> BaseException:
    """After any failure: roll the swap back (if it began) and drop the staging collections; the error to raise."""
    connect = request.connection.client
    with termination_deferred():
        try:
            rollback = functools.partial(staging.rollback, settle_seconds=SETTLE_SECONDS, undo_commit=swapping)
            with_retries(connect, rollback)
        except Exception as cleanup:  # noqa: BLE001 - reported with the cause, in one line
            state = ("the swap was cut short: run the restore again to put the target back" if swapping
                     else "the target is unchanged")
            return LifeboatError(
                f"{_restore_failure(exc, staging)}; {state}, but the staging collections {staging.prefix}* could not "
                f"be dropped ({_one_line(cleanup)}): the next restore into {', '.join(staging.databases())} drops them"
            )
    if not isinstance(exc, Exception):
        return exc  # KeyboardInterrupt and the like keep their meaning
    cause = _restore_failure(exc, staging, _duplicates_of(request, plan, exc, staging))
    return LifeboatError(f"{cause}; the target is unchanged: the staging collections this restore created were dropped")


def _restore_direct(request: RestoreRequest, plan: dict[str, t.Any]) -> dict[str, t.Any]:
    try:
        result = _restore_and_check(request, plan, None)
        del result["copied"]  # nothing is copied when nothing is staged
        return result
    except BaseException as exc:
        _drop_collections(request.connection, plan["created"])
        if isinstance(exc, Exception):
            raise LifeboatError(f"{_restore_failure(exc)}; the collections this restore created were dropped") from exc
        raise


def _restore_failure(exc: BaseException, staging: Staging | None = None,
                     duplicates: tuple[str, t.Any, int] | None = None) -> str:
    """The cause of a failed restore in one line: a signal by name, the first duplicate key and how many."""
    if not isinstance(exc, Exception):
        return f"the restore was interrupted ({type(exc).__name__})"
    message = _one_line(exc) if not isinstance(exc, LifeboatError) else str(exc)
    if staging is not None:  # the tool names the staging collections: say which target they stand for
        message = message.replace(f"{staging.prefix}_new_", "")
    stage = find_cause(exc, StageFailed)
    if stage is not None and stage.stage == "mongorestore" and stage.signal:
        number = stage.signal
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        return f"mongorestore was killed by signal {number} ({name}) before the restore was complete"
    if "E11000" not in message:
        return message
    fix = ("set drop: true (with overwrite: true) to replace the target's collections instead of merging the archive "
           "into them")
    if duplicates:
        target, first, count = duplicates
        return (f"{count} document{'s' if count > 1 else ''} of the archive ha{'ve' if count > 1 else 's'} an _id that "
                f"{target} already holds (the first: {{ _id: {first!r} }}); {fix}")
    # MongoDB names the key of each duplicate in one long line; FerretDB only the collection.
    first_key = re.search(r"dup key: (\{.*?\})(?=,? *(?:E11000|\]|$))", message)
    where = re.search(r"E11000 duplicate key error collection: (\S+?),? ", message + " ")
    count = message.count("E11000")
    return (f"mongorestore stopped at {count} duplicate key{'s' if count > 1 else ''}"
            f"{f' in {where.group(1)}' if where else ''}{f' (the first: {first_key.group(1)})' if first_key else ''}; {fix}")


def _duplicates_of(request: RestoreRequest, plan: dict[str, t.Any], exc: BaseException, staging: Staging
                   ) -> tuple[str, t.Any, int] | None:
    """For an E11000 failure: the target collection, the first document _id of the archive it already holds, and
    how many it holds; read from the archive and the (unchanged) target, as FerretDB names no key."""
    match = re.search(r"E11000 duplicate key error collection: (\S+?),? ", str(exc) + " ")
    manifest = plan["manifest"]
    if not match or manifest["archive"]["format"] == "mongodump-archive-gzip":
        return None
    target = match.group(1).replace(f"{staging.prefix}_new_", "")
    source = next((ns for ns in manifest["counts"] if map_namespace(ns, plan["renames"]) == target), None)
    if source is None:
        return None
    from bson import encode  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    found: dict[str, t.Any] = {"first": None, "count": 0}
    pending: list[t.Any] = []
    client = request.connection.client()
    collection = client[split_namespace(target)[0]][split_namespace(target)[1]]

    def look_up() -> None:
        held = {encode({"_id": doc["_id"]}) for doc in collection.find({"_id": {"$in": pending}}, {"_id": 1})}
        for key in pending:
            if encode({"_id": key}) in held:
                found["first"] = key if found["count"] == 0 else found["first"]
                found["count"] += 1
        pending.clear()

    class _Ids(MongoArchiveReader):
        def _document(self, document: bytes) -> None:
            if self._state == "segment-body" and self._namespace == source:
                pending.append(RawBSONDocument(document)["_id"])
                if len(pending) >= 1000:
                    look_up()
            super()._document(document)

    try:
        reader = _Ids()
        read_stream(request.archive_path, compression=stream_compression(manifest), decryption=request.decryption,
                    encrypted=manifest["archive"]["encryption"] is not None, on_plain=reader.feed)
        look_up()
    except Exception:  # noqa: BLE001 - the tool's own words are then the best we have
        return None
    finally:
        client.close()
    return (target, found["first"], found["count"]) if found["count"] else None


def _restore_and_check(request: RestoreRequest, plan: dict[str, t.Any], staging: Staging | None) -> dict[str, t.Any]:
    """mongorestore into the staging collections (for a merge: copies of the targets first), then count them.

    Without ``staging`` (an oplog archive) it writes straight into the targets, as mongorestore replays an oplog.
    """
    manifest, expected = plan["manifest"], plan["expected"]
    inner_gzip = manifest["archive"]["format"] == "mongodump-archive-gzip"
    restored: dict[str, int | None] = {"ok": None, "failed": None}
    # Source namespace -> its target: every one is named, so mongorestore writes nothing under any other name.
    sources = {ns: map_namespace(ns, plan["renames"]) for ns in manifest["counts"]
               if request.included(ns) and not is_system_namespace(ns)}

    acknowledged: dict[str, tuple[int, int]] = {}  # written namespace -> (inserts acknowledged, failures)

    def on_line(line: str) -> None:
        match = _RESTORED.search(line)
        if match:
            restored["ok"], restored["failed"] = int(match.group(1)), int(match.group(2))
        finished = _FINISHED.search(line)
        if finished:  # summed per collection, as a server count would (mongorestore refuses two sources onto one)
            inserted, failures = acknowledged.get(finished.group(1), (0, 0))
            acknowledged[finished.group(1)] = (inserted + int(finished.group(2)), failures + int(finished.group(3)))

    place: t.Callable[[str], str] = staging.staged if staging else (lambda target: target)
    base = {target: 0 if staging or request.drop else plan["existing"].get(target, 0) for target in expected}
    copied: dict[str, Fingerprint] = {}  # targets whose staging starts as a copy of them (a merge): what it held
    if staging and not request.drop:
        client = request.connection.client()
        try:
            for target, existed in staging.targets.items():
                if existed:
                    copied[target] = _copy_collection(client, target, staging.staged(target))
                    base[target] = copied[target].count
        finally:
            client.close()
    mongorestore = request.connection.tool("mongorestore", request.tools_dir)
    # FerretDB rejects the "ns" option mongorestore puts on every index it creates, so the indexes
    # recorded in the manifest are created here instead.
    indexes_by_module = plan["server"]["product"] == "FerretDB"
    with PrivateDir() as private:
        argv = [mongorestore, "--archive", "--stopOnError",
                f"--numParallelCollections={request.parallel_collections}",
                f"--numInsertionWorkersPerCollection={request.insertion_workers_per_collection}"]
        argv += ["--gzip"] if inner_gzip else []
        argv += ["--noIndexRestore"] if indexes_by_module else []
        if staging:
            for source, target in sorted(sources.items()):
                argv += [f"--nsInclude={_ns_escape(source)}", f"--nsFrom={_ns_escape(source)}",
                         f"--nsTo={_ns_escape(staging.staged(target))}"]
        else:
            argv += ["--oplogReplay"]
        argv, env = request.connection.tool_command(argv, private)
        # The archive's checksums are checked in this same read: a mismatch fails it, and the staging goes.
        read_for_restore(request.archive_path, manifest, decryption=request.decryption, consumer_argv=argv,
                         consumer_env=env, consumer_name="mongorestore", on_consumer_output=on_line, **request.tap)
    expected_total = sum(expected.values())
    if expected_total and not restored["ok"]:
        raise LifeboatError(f"mongorestore restored 0 documents although the archive holds {expected_total}")
    if restored["failed"]:
        raise LifeboatError(f"mongorestore could not restore {restored['failed']} documents")
    warnings: list[str] = []
    client = request.connection.client()
    try:
        if staging:  # an archive's empty collection still replaces its target
            names = {db: set(client[db].list_collection_names()) for db in staging.databases()}
            for target in expected:
                db, coll = split_namespace(place(target))
                if coll not in names[db]:
                    client[db].create_collection(coll)
        if indexes_by_module:
            warnings = _create_indexes(client, manifest, lambda ns: place(sources[ns]), sources)
        vouched = {target: _acknowledged_count(acknowledged, place(target)) if staging and target not in copied
                   else None for target in expected}
        # What no acknowledged count vouches for is counted on the server (a merge, an oplog replay, a missing line).
        actual = {target: _count(client, place(target)) if n is None else n for target, n in vouched.items()}
    finally:
        client.close()
    wanted = {target: n + base[target] for target, n in expected.items()}
    problems = compare_counts(wanted, actual)
    if problems:
        raise count_mismatch_error(problems, request.connection.display)
    return {"counts": actual, "restored_documents": restored["ok"] or 0, "warnings": warnings, "copied": copied}


def _ns_escape(namespace: str) -> str:
    """A literal namespace for mongorestore's patterns (its ns.Escape): backslashes and asterisks escaped."""
    return namespace.replace("\\", "\\\\").replace("*", "\\*")


def _copy_collection(client: t.Any, source: str, copy: str) -> Fingerprint:
    """Copy a collection's options, indexes and documents (their exact BSON) to a new name; returns what it copied."""
    _pymongo()  # a clear message when pymongo (which brings bson) is missing
    from bson import decode_all  # pylint: disable=import-outside-toplevel
    from bson.codec_options import CodecOptions  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    raw = CodecOptions(document_class=RawBSONDocument)
    db_name, name = split_namespace(source)
    copy_name = split_namespace(copy)[1]
    db = client[db_name]
    info: t.Mapping[str, t.Any] = next(iter(db.list_collections(filter={"name": name})), {})
    db.command({"create": copy_name, **{k: v for k, v in info.get("options", {}).items() if k != "uuid"}})
    for index in db[name].list_indexes():
        if index["name"] == "_id_":
            continue
        options = {k: v for k, v in index.items() if k not in ("v", "key", "ns")}
        db[copy_name].create_index(list(index["key"].items()), **options)
    target = db.get_collection(copy_name, codec_options=raw)
    copied = Fingerprint()
    for batch in db[name].find_raw_batches(sort=[("_id", 1)]):
        documents = decode_all(batch, raw)
        if documents:
            target.insert_many(documents, ordered=False)
            for document in documents:
                copied.add(document)
    copied.ids = array("Q", sorted(copied.ids))
    return copied


_DIGEST_MODULUS = 1 << 128


def _document_digest(document: t.Any) -> int:
    return int.from_bytes(hashlib.sha256(document.raw).digest()[:16], "big")


def _id_digest(document: t.Any) -> int:
    from bson import encode  # pylint: disable=import-outside-toplevel

    return int.from_bytes(hashlib.sha256(encode({"_id": document["_id"]})).digest()[:8], "big")


@dataclass
class Fingerprint:
    """What a merge copied from a target: the count, the sum of every document's digest (its exact BSON; a sum, so
    that the order of reading does not matter and inserts can be taken out) and the sorted digests of the _ids
    (8 bytes a document), which tell a document inserted later from one that was copied."""

    count: int = 0
    digest: int = 0
    ids: array = field(default_factory=lambda: array("Q"))  # type: ignore[type-arg]

    def add(self, document: t.Any) -> None:
        self.count += 1
        self.digest = (self.digest + _document_digest(document)) % _DIGEST_MODULUS
        self.ids.append(_id_digest(document))

    def holds_id(self, document: t.Any) -> bool:
        key = _id_digest(document)
        index = bisect_left(self.ids, key)
        return index < len(self.ids) and self.ids[index] == key


@dataclass
class Changes:
    """How a collection differs from the copy a merge took of it."""

    inserted: list[t.Any]  # documents whose _id the copy did not hold (their exact BSON)
    removed: int  # documents of the copy that are gone
    rewritten: bool  # documents of the copy changed in place (or removed and inserted again)

    @property
    def writes(self) -> int:
        return len(self.inserted) + self.removed

    def __bool__(self) -> bool:
        return bool(self.writes or self.rewritten)


def _changes(client: t.Any, namespace: str, copied: Fingerprint) -> Changes:
    """Read a collection whole and compare it with the copy: one pass, documents in any order."""
    from bson import decode_all  # pylint: disable=import-outside-toplevel
    from bson.codec_options import CodecOptions  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    raw = CodecOptions(document_class=RawBSONDocument)
    db, coll = split_namespace(namespace)
    inserted = []
    kept = 0
    digest = 0
    for batch in client[db][coll].find_raw_batches():
        for document in decode_all(batch, raw):
            if copied.holds_id(document):
                kept += 1
                digest = (digest + _document_digest(document)) % _DIGEST_MODULUS
            else:
                inserted.append(document)
    return Changes(inserted=inserted, removed=copied.count - kept,
                   rewritten=kept == copied.count and digest != copied.digest)


def concurrent_writes_error(changed: dict[str, Changes]) -> str:
    """The one line that stops a merge whose targets changed after their copy was taken."""
    writes = sum(change.writes for change in changed.values())
    where = ", ".join(sorted(changed))
    what = (f"{writes} write{'s' if writes != 1 else ''} arrived in {where} during the restore" if writes
            else f"documents of {where} were changed in place during the restore")
    return (f"{what}; stop the writers and run it again, or set drop: true to replace the collections (what is written "
            "meanwhile is then replaced too)")


def _check_unchanged(client: t.Any, copied: dict[str, Fingerprint]) -> None:
    """Before the swap of a merge: every target must still hold exactly what was copied, or the swap would drop
    what was written since."""
    changed = {target: change for target, fingerprint in sorted(copied.items())
               if (change := _changes(client, target, fingerprint))}
    if changed:
        raise LifeboatError(concurrent_writes_error(changed))


def _carry_late_writes(client: t.Any, staging: Staging, copied: dict[str, Fingerprint]) -> tuple[list[str], list[str]]:
    """After the swap of a merge: the targets moved aside must still hold exactly what was copied.

    Nothing writes to a collection under its aside name, so this closes the window between the last check and the
    swap: inserts made in it are added to the new target (notes); anything else (a change in place, a removal, an
    insert whose _id the archive also holds) keeps the old collection under a name no restore drops (problems).
    """
    from bson.codec_options import CodecOptions  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    notes, problems = [], []
    for target, fingerprint in sorted(copied.items()):
        aside = staging.aside(target)
        change = _changes(client, aside, fingerprint)
        if not change:
            continue
        db, coll = split_namespace(target)
        if not change.removed and not change.rewritten:
            try:
                raw = CodecOptions(document_class=RawBSONDocument)
                client.get_database(db, codec_options=raw)[coll].insert_many(change.inserted, ordered=False)
                notes.append(f"{len(change.inserted)} write{'s' if len(change.inserted) != 1 else ''} arrived in "
                             f"{target} between the last check and the swap; added to it after the swap")
                continue
            except _pymongo().errors.PyMongoError:  # an _id of the archive: neither document may be dropped
                pass
        kept = kept_name(split_namespace(aside)[1])
        client[db][split_namespace(aside)[1]].rename(kept)
        problems.append(f"{db}.{kept} (writes arrived in {target} between the last check and the swap)")
    return notes, problems


def _drop_collections(connection: MongoConnection, namespaces: list[str]) -> None:
    """Remove what a failed direct restore created, so a half restore never passes for a whole one.

    A database left without collections is dropped too (FerretDB, unlike MongoDB, keeps empty ones).
    """
    client = connection.client()
    try:
        for namespace in namespaces:
            db, coll = split_namespace(namespace)
            client[db].drop_collection(coll)
        for db in {split_namespace(namespace)[0] for namespace in namespaces}:
            if not client[db].list_collection_names():
                client.drop_database(db)
    finally:
        client.close()


_FERRETDB_UNSUPPORTED_INDEX_OPTIONS = ("expireAfterSeconds", "partialFilterExpression")


def _create_indexes(
    client: t.Any, manifest: dict[str, t.Any], place: t.Callable[[str], str], sources: t.Container[str]
) -> list[str]:
    """Create the manifest's indexes of ``sources`` where ``place`` puts them; say which options the server cannot keep."""
    pymongo = _pymongo()
    warnings = []
    for source_ns, specs in sorted(manifest.get("indexes", {}).items()):
        if source_ns not in sources:
            continue
        db, coll = split_namespace(place(source_ns))
        for spec in specs:
            if spec["name"] == "_id_":
                continue
            options = {k: v for k, v in spec.items() if k not in ("key", "name")}
            for option in _FERRETDB_UNSUPPORTED_INDEX_OPTIONS:
                if options.pop(option, None) is not None:
                    warnings.append(f"index {spec['name']} of {db}.{coll} was created without {option}: FerretDB does not support it")
            try:
                client[db][coll].create_index([tuple(pair) for pair in spec["key"]], name=spec["name"], **options)
            except pymongo.errors.PyMongoError as exc:
                raise LifeboatError(f"creating index {spec['name']} on {db}.{coll} failed: {_one_line(exc)}") from exc
    return warnings
