# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""MongoDB restores through mongorestore --archive: into staging collections renamed over the targets once counted
(_mongo_staging), or straight into empty targets for an oplog archive; a failure leaves the targets as they were.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import typing as t
from dataclasses import dataclass, field

from . import _manifest
from ._archive import (
    ArchiveOptions,
    compare_counts,
    count_mismatch_error,
    read_for_restore,
    safety_dump_options,
    stream_compression,
    verify_archive,
)
from ._codecs import Decryption
from ._common import LifeboatError, PrivateDir, TargetHoldsData, find_cause
from ._mongo import (
    _FINISHED,
    _RESTORED,
    DumpRequest,
    MongoConnection,
    _acknowledged_count,
    _count,
    _has_documents,
    _one_line,
    _one_line_errors,
    _pymongo,
    _server_info,
    dump,
    is_system_namespace,
    map_namespace,
    namespace_matches,
    split_namespace,
)
from ._mongo_merge import Fingerprint, _carry_late_writes, _check_unchanged, _copy_collection, _ns_escape
from ._mongo_staging import Staging, with_retries
from ._pipeline import StageFailed, read_stream
from ._signing import Trust, host_trust
from ._structure import MongoArchiveReader
from ._termination import termination_deferred

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
