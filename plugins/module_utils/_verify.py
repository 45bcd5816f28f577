# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proving archives: every byte against the manifest, the inside with the engine's own tool, a real restore.

Levels, each including the ones before (restic's ``check --read-data`` and pgBackRest's ``verify`` set the bar):

- ``checksum``: the stored file's size and sha256 match the manifest (needs no key: works on hosts that only
  hold the recipients' public keys);
- ``stream``: in the same read, age decrypts and authenticates it and the decompressor tests it against the
  format's own content checksum (zstd's XXH64, gzip's CRC32), the plain bytes never entering Python;
- ``structure``: in that same read, the plain stream's sha256 matches the manifest's, the engine's format is
  walked (``pg_restore -f -``, the mongodump archive framing) and the rows or documents per table or collection
  match the manifest's counts;
- ``restore``: the archive is restored into a scratch database, created and dropped here under a name no
  database has, and the counts and an order-free content hash of every table or collection match the archive.

Every result is recorded in the archive's manifest, so retention and health know which archives are proven.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import typing as t
from dataclasses import dataclass, field

from . import _catalog, _manifest, _mongo, _postgres
from ._archive import StoredChecksumMismatch, check_decryption, compare_counts, read_stored, stream_compression
from ._common import LifeboatError, PrivateDir, find_binary, first_few
from ._files import sha256_file
from ._pipeline import Decryption, run_tool
from ._structure import MongoArchiveReader, PgSqlReader, StructureError, hex_sum, row_digest

LEVELS = ("checksum", "stream", "structure", "restore")
SELECTIONS = ("all", "newest", "unverified")
AUTO = "auto"  # structure, or checksum for encrypted archives this host cannot decrypt


def resolve_level(level: str, archives: list[_catalog.Archive], decryption: Decryption) -> str:
    """``auto``: read archives whole when this host can decrypt every one of them, else check every stored byte.

    Hosts that back up to age recipients usually hold no private key, and a nightly verify must not fail for that.
    """
    if level != AUTO:
        return level
    can_decrypt = bool(decryption.identity_files or decryption.passphrase_file)
    locked = any(a.readable and a.encrypted for a in archives)
    return "checksum" if locked and not can_decrypt else "structure"


class CheckFailed(LifeboatError):
    """One check of one archive failed; ``check`` names it."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


@dataclass
class VerifyRequest:
    archives: list[_catalog.Archive]
    level: str = "structure"
    decryption: Decryption = field(default_factory=Decryption)
    postgres: _postgres.PgConnection | None = None  # the server a restore test of a PostgreSQL archive uses
    mongo: _mongo.MongoConnection | None = None
    pg_bin_dir: str | None = None
    tools_dir: str | None = None
    record: bool = True

    def validate(self) -> None:
        if self.level not in LEVELS:
            raise LifeboatError(f"level must be one of {', '.join(LEVELS)}, not '{self.level}'")
        if self.level == "checksum":
            return
        locked = [a for a in self.archives if a.readable and a.encrypted]
        for archive in locked:
            try:
                check_decryption(archive.manifest or {}, self.decryption)
            except LifeboatError as exc:
                raise LifeboatError(f"{archive.name}: {exc}, or verify with level=checksum") from None
        if self.level == "restore":
            engines = {a.engine for a in self.archives if a.readable}
            if "postgresql" in engines and self.postgres is None:
                raise LifeboatError("a restore test of PostgreSQL archives needs the postgresql connection to restore into")
            if "mongodb" in engines and self.mongo is None:
                raise LifeboatError("a restore test of MongoDB archives needs the mongodb connection to restore into")


def select_archives(
    *, archive: str | None = None, destination: str | None = None, job: str | None = None, select: str = "all"
) -> list[_catalog.Archive]:
    """One archive by path, or the archives of a destination (of one job), as the catalog sees them."""
    if select not in SELECTIONS:
        raise LifeboatError(f"select must be one of {', '.join(SELECTIONS)}, not '{select}'")
    if archive:
        if not os.path.isabs(archive):
            raise LifeboatError(f"archive '{archive}' must be an absolute path")
        if archive.endswith(_manifest.MANIFEST_SUFFIX):
            archive = archive[: -len(_manifest.MANIFEST_SUFFIX)]
        found = [a for a in _catalog.scan(os.path.dirname(archive)).archives if a.path == archive]
        if not found:
            raise LifeboatError(f"{archive} is neither an archive nor a manifest of lifeboat.ops")
        return found
    if not destination:
        raise LifeboatError("give archive, or destination (and job) to verify the archives found there")
    if not os.path.isdir(destination):
        raise LifeboatError(f"destination {destination} does not exist")
    archives = _catalog.scan(destination, job).archives
    if select == "unverified":
        archives = [a for a in archives if not a.verified]
    elif select == "newest":
        archives = [group[-1] for group in _catalog.Destination(destination, archives).groups().values()]
    return archives


def verify(request: VerifyRequest) -> list[dict[str, t.Any]]:
    request.validate()
    return [verify_one(archive, request) for archive in request.archives]


def verify_one(archive: _catalog.Archive, request: VerifyRequest) -> dict[str, t.Any]:
    started = time.monotonic()
    result: dict[str, t.Any] = {
        "archive": archive.path, "job": archive.job, "database": archive.database, "engine": archive.engine,
        "ok": False, "level": request.level, "checks": {}, "failure": None, "failed_check": None,
    }
    try:
        if not archive.readable:
            raise CheckFailed("manifest", archive.problem or "its manifest is unreadable")
        _run_checks(archive, request, result)
        result["ok"] = True
    except CheckFailed as exc:
        result["checks"][exc.check] = "failed"
        result["failed_check"] = exc.check
        result["failure"] = f"{archive.name}: {exc.check} check failed: {exc}"
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    if request.record and archive.readable:
        _catalog.record_verification(archive, {
            "at": _manifest.iso(_manifest.utc_now()),
            "ok": result["ok"],
            "level": request.level if result["ok"] else result["failed_check"],
            "failure": result["failure"],
            "checks": result["checks"],
            "duration_seconds": result["duration_seconds"],
            **({"content": result["content"]} if "content" in result else {}),
        })
    return result


def _run_checks(archive: _catalog.Archive, request: VerifyRequest, result: dict[str, t.Any]) -> None:
    manifest = archive.manifest or {}
    checks = result["checks"]
    depth = LEVELS.index(request.level)
    *extras, main = stored = _stored_files(archive)
    for stored_file in stored:
        _check_size(stored_file.path, stored_file.size)
        if depth == 0:
            actual = sha256_file(stored_file.path)
            if actual != stored_file.sha256:
                raise CheckFailed("checksum", _sha_mismatch(stored_file.path, actual, stored_file.sha256))
    if depth == 0:
        checks["checksum"] = "ok"
        return
    for extra in extras:  # the extras (globals): read whole too
        _read_and_hash(archive, extra, request)
    reader = _read_and_hash(archive, main, request, structure=depth >= 2, content=depth >= 3)
    checks["checksum"] = checks["stream"] = "ok"
    if depth < 2 or reader is None:
        return
    found = reader.tally.counts
    expected = {name: n for name, n in manifest["counts"].items()
                if not (archive.engine == "mongodb" and _mongo.is_system_namespace(name))}
    differences = [
        f"{name}: {n} in the manifest, {found.get(name, 'none')} in the archive"
        for name, n in sorted(expected.items()) if found.get(name) != n
    ]
    differences += [f"{name}: {found[name]} in the archive, not in the manifest" for name in sorted(found)
                    if name not in expected and found[name] and not _mongo.is_system_namespace(name)]
    if differences:
        shown = first_few(differences)
        raise CheckFailed("structure", f"the archive's content does not match its manifest's counts: {shown}")
    checks["structure"] = "ok"
    result["counts"] = found
    if depth >= 3:
        result["content"] = reader.tally.hashes
        _restore_test(archive, request, reader, result)
        checks["restore"] = "ok"


class StoredFile(t.NamedTuple):
    path: str
    size: int | None
    sha256: str
    plain_sha256: str


def _stored_files(archive: _catalog.Archive) -> list[StoredFile]:
    """What the manifest says of the extras, then of the archive itself (last)."""
    manifest = archive.manifest or {}
    directory = os.path.dirname(archive.path)
    files = [StoredFile(os.path.join(directory, extra["file"]), extra.get("size"), extra["sha256"],
                        extra["plain_sha256"]) for extra in manifest.get("extras", [])]
    info = manifest["archive"]
    files.append(StoredFile(archive.path, info["size"], info["sha256"], info["plain_sha256"]))
    return files


def _check_size(path: str, expected: int | None) -> None:
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise CheckFailed("checksum", f"cannot read {os.path.basename(path)}: {exc.strerror}") from exc
    if expected is not None and size != expected:
        what = "cut short" if size < expected else "longer than it was written"
        raise CheckFailed("checksum", (
            f"{os.path.basename(path)} is {size} bytes, its manifest says {expected}: the file was {what} or replaced"
        ))


def _sha_mismatch(path: str, actual: str, expected: str) -> str:
    return (f"{os.path.basename(path)} has sha256 {actual[:16]}..., its manifest says {expected[:16]}...: "
            "the file is damaged or was replaced")


def _read_and_hash(
    archive: _catalog.Archive,
    stored_file: StoredFile,
    request: VerifyRequest,
    *,
    structure: bool = False,
    content: bool = False,
) -> PgSqlReader | MongoArchiveReader | None:
    """One read of a stored file: stored sha256, decryption, decompression, plain sha256 and, optionally, structure."""
    path, expected_sha = stored_file.path, stored_file.sha256
    manifest = archive.manifest or {}
    info = manifest["archive"]
    compression = stream_compression(manifest) if path == archive.path else info["compression"]
    reader: PgSqlReader | MongoArchiveReader | None = None
    stream_args: dict[str, t.Any] = {}
    work: PrivateDir | None = None
    pg_restore_argv: list[str] = []
    if structure:
        reader, stream_args, work, pg_restore_argv = _structure_reader(archive, request, content)
    try:
        try:
            # At level stream the plain bytes stay out of Python: the decompressor tests them against the
            # format's own content checksum and age authenticates them; structure reads and hashes them.
            stream = read_stored(path, expected_sha, compression=compression, decryption=request.decryption,
                                 encrypted=info["encryption"] is not None,
                                 hash_plain=structure or path != archive.path, **stream_args)
        except StoredChecksumMismatch as exc:
            raise CheckFailed("checksum", _sha_mismatch(path, exc.actual, expected_sha)) from None
        except LifeboatError as exc:
            check = "structure" if isinstance(exc, StructureError) or "pg_restore" in str(exc) else "stream"
            raise CheckFailed(check, str(exc)) from None
        expected_plain = stored_file.plain_sha256
        if stream.plain_sha256 and stream.plain_sha256 != expected_plain:
            raise CheckFailed("stream", (
                "decrypted and decompressed, it gives other bytes than were dumped (plain sha256 "
                f"{stream.plain_sha256[:16]}..., manifest {expected_plain[:16]}...)"
            ))
        if reader is not None:
            if work is not None:  # directory format: pg_restore reads the unpacked directory now
                run_tool("pg_restore", [*pg_restore_argv, os.path.join(work.path, "dump")],
                         on_stdout=reader.feed)
            try:
                reader.finish()
            except StructureError as exc:
                raise CheckFailed("structure", str(exc)) from None
        return reader
    except LifeboatError as exc:
        if isinstance(exc, CheckFailed):
            raise
        raise CheckFailed("structure", str(exc)) from None
    finally:
        if work is not None:
            work.cleanup()


def _structure_reader(
    archive: _catalog.Archive, request: VerifyRequest, content: bool
) -> tuple[t.Any, dict[str, t.Any], PrivateDir | None, list[str]]:
    """The parser of the plain stream, how read_stream feeds it, and for a directory-format dump the directory
    it is unpacked into and the pg_restore that reads it after the stream."""
    manifest = archive.manifest or {}
    archive_format = manifest["archive"]["format"]
    if archive.engine == "mongodb":
        reader = MongoArchiveReader(content)
        if archive_format == "mongodump-archive-gzip":  # mongodump --gzip gzips the whole archive stream
            return reader, {"consumer_argv": [find_binary("gzip"), "-dc"], "consumer_name": "gzip",
                            "on_consumer_stdout": reader.feed}, None, []
        return reader, {"on_plain": reader.feed}, None, []
    pg_reader = PgSqlReader(content)
    major = _postgres.pg_major(manifest["tool"]["version"])
    pg_restore, _version = _postgres.pick_binary("pg_restore", major, request.pg_bin_dir)
    argv = [pg_restore, "--file=-"]
    if archive_format == "pg_dump-custom":
        return pg_reader, {"consumer_argv": argv, "consumer_name": "pg_restore",
                           "on_consumer_stdout": pg_reader.feed}, None, []
    try:
        work = PrivateDir(os.path.dirname(archive.path))
    except OSError:
        work = PrivateDir()
    os.mkdir(os.path.join(work.path, "dump"))
    return pg_reader, {"consumer_argv": [find_binary("tar"), "-x", "-C", os.path.join(work.path, "dump")],
                       "consumer_name": "tar"}, work, argv


def _restore_test(
    archive: _catalog.Archive, request: VerifyRequest, reader: t.Any, result: dict[str, t.Any]
) -> None:
    if archive.engine == "postgresql":
        _restore_test_postgres(archive, request, reader, result)
    else:
        _restore_test_mongo(archive, request, reader, result)


def _scratch_name(job: str) -> str:
    return f"lifeboat_verify_{_manifest.default_job(job).replace('-', '_').replace('.', '_')[:30]}_{secrets.token_hex(4)}"


def _compare_content(expected_counts: dict[str, int], expected: dict[str, str],
                     actual_counts: dict[str, int], actual: dict[str, str], scratch: str) -> None:
    differences = compare_counts(expected_counts, actual_counts)
    differences += [f"{name}: restored content differs from the archive's" for name in sorted(expected)
                    if name in actual and actual[name] != expected[name] and not differences]
    if differences:
        shown = first_few(differences)
        raise CheckFailed("restore", f"restored into scratch database {scratch}: {shown}")


def _restore_test_postgres(archive: _catalog.Archive, request: VerifyRequest, reader: PgSqlReader,
                           result: dict[str, t.Any]) -> None:
    connection = t.cast(_postgres.PgConnection, request.postgres)
    manifest = archive.manifest or {}
    maintenance = connection.for_database(connection.database or "postgres")
    with maintenance.connect() as conn:
        while True:
            scratch = _scratch_name(archive.job)
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,)).fetchone() is None:
                break
    restore_request = _postgres.RestoreRequest(
        connection=maintenance, archive_path=archive.path, target_database=scratch,
        decryption=request.decryption, no_owner=True, no_privileges=True,
        maintenance_database=connection.database or "postgres", pg_bin_dir=request.pg_bin_dir,
    )
    try:
        try:
            _postgres.restore(restore_request)
        except LifeboatError as exc:
            raise CheckFailed("restore", str(exc)) from None
        timezone = manifest.get("server", {}).get("timezone")
        with connection.for_database(scratch).connect() as conn:
            counts, hashes = _postgres.table_contents(conn, reader.blocks.values(), timezone, reader.client_encoding)
        if timezone is None:  # archives made before the manifest kept the time zone: counts only
            hashes = {}
        _compare_content(reader.tally.counts, {k: v for k, v in reader.tally.hashes.items() if k in hashes},
                         counts, hashes, scratch)
    finally:
        with maintenance.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {_postgres.quote_ident(scratch)} WITH (FORCE)")
    result["scratch_database"] = scratch


def _restore_test_mongo(archive: _catalog.Archive, request: VerifyRequest, reader: MongoArchiveReader,
                        result: dict[str, t.Any]) -> None:
    connection = t.cast(_mongo.MongoConnection, request.mongo)
    manifest = archive.manifest or {}
    with contextlib.closing(connection.client()) as client:
        taken = set(client.list_database_names())
        prefix = _scratch_name(archive.job)
        while any(name.startswith(prefix) for name in taken):
            prefix = _scratch_name(archive.job)
        if manifest.get("database"):
            request_renames: dict[str, t.Any] = {"target_database": prefix}
            rules = [(f"{manifest['database']}.*", f"{prefix}.*")]
        else:  # a whole server: every database under a scratch prefix, system databases left out
            rules = [("$db$.$coll$", f"{prefix}_$db$.$coll$")]
            request_renames = {"ns_from": [rules[0][0]], "ns_to": [rules[0][1]], "ns_exclude": ["admin.*", "config.*", "local.*"]}
        hashes = reader.tally.hashes
        expected = {_mongo.map_namespace(ns, rules): (count, hashes.get(ns))
                    for ns, count in reader.tally.counts.items() if not _mongo.is_system_namespace(ns)}
        try:
            try:
                _mongo.restore(_mongo.RestoreRequest(connection=connection, archive_path=archive.path,
                                                     decryption=request.decryption, tools_dir=request.tools_dir,
                                                     **request_renames))
            except LifeboatError as exc:
                raise CheckFailed("restore", str(exc)) from None
            actual_counts, actual_hashes = {}, {}
            for namespace in expected:
                actual_counts[namespace], actual_hashes[namespace] = _mongo_content(client, namespace)
            _compare_content({ns: n for ns, (n, _h) in expected.items()},
                             {ns: h for ns, (_n, h) in expected.items() if h is not None},
                             actual_counts, actual_hashes, prefix)
        finally:
            for name in client.list_database_names():
                if name == prefix or name.startswith(prefix + "_"):
                    client.drop_database(name)
    result["scratch_database"] = prefix


def _mongo_content(client: t.Any, namespace: str) -> tuple[int, str]:
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
