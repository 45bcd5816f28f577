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
import json
import re
import typing as t
import urllib.parse
from dataclasses import dataclass, field

from . import _manifest
from ._archive import (
    ArchiveOptions,
    Decode,
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
    friendly_errors,
    one_line,
    read_secret_file,
    register_secret,
)
from ._mongo_staging import staging_run
from ._pipeline import StreamResult

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
