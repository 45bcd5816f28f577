# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
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
The backup_verify module's home (``backup_verify_spec()``, ``backup_verify(run)``) closes the file.
"""

from __future__ import annotations

import os
import time
import typing as t
from dataclasses import dataclass, field

from . import _catalog, _manifest, _params, _signing, _sources
from ._archive import (
    PlainChecksumMismatch,
    StoredChecksumMismatch,
    as_tap,
    check_decryption,
    compare_counts,
    read_stored,
    stream_compression,
)
from ._codecs import DECODING_STAGES, Decryption
from ._common import LifeboatError, PrivateDir, find_cause, first_few
from ._files import sha256_file
from ._module_frame import Outcome, Run
from ._pipeline import StageFailed, run_tool
from ._structure import MongoArchiveReader, PgSqlReader, StructureError

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


def _source_of(archive: _catalog.Archive) -> _sources.Source:
    return _sources.get(archive.engine or "")  # a readable archive's manifest names its engine


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
    connections: dict[str, t.Any] = field(default_factory=dict)  # by engine: the server a restore test uses
    pg_bin_dir: str | None = None
    tools_dir: str | None = None
    record: bool = True
    trust: _signing.Trust = field(default_factory=_signing.host_trust)  # whose signature each manifest must carry
    signing_key_file: str | None = None  # signs each record; without it a record is written unsigned (and ignored)

    @property
    def unsigned_records_warning(self) -> str | None:
        if not self.record or self.signing_key_file:
            return None
        return ("this host has no signing key, so its verification records are unsigned and no restore counts them "
                f"(select newest_verified): give signing_key_file, or run the backup here once to make "
                f"{_signing.default_key_file()}")

    def validate(self) -> None:
        if self.level not in LEVELS:
            raise LifeboatError(f"level must be one of {', '.join(LEVELS)}, not '{self.level}'")
        self.trust.validate()
        if self.level == "checksum":
            return
        locked = [a for a in self.archives if a.readable and a.encrypted]
        for archive in locked:
            try:
                check_decryption(archive.manifest or {}, self.decryption)
            except LifeboatError as exc:
                raise LifeboatError(f"{archive.name}: {exc}, or verify with level=checksum") from None
        if self.level == "restore":
            for engine in sorted({a.engine for a in self.archives if a.readable and a.engine}):
                if engine not in self.connections and _sources.get(engine).connection_options():
                    raise LifeboatError(f"a restore test of {_sources.get(engine).label} archives needs the {engine} "
                                        "connection to restore into")

    def bin_dir(self, source: _sources.Source) -> str | None:
        """Where this source's client tools are, when the request names a directory."""
        return t.cast("str | None", getattr(self, source.bin_dir_option, None))


def select_archives(
    *, archive: str | None = None, destination: str | None = None, job: str | None = None, select: str = "all",
    trust: _signing.Trust | None = None,
) -> list[_catalog.Archive]:
    """One archive by path, or the archives of a destination (of one job), as the catalog sees them (``unverified``:
    those without a passed verification a key of ``trust`` signed)."""
    if select not in SELECTIONS:
        raise LifeboatError(f"select must be one of {', '.join(SELECTIONS)}, not '{select}'")
    if archive:
        if not os.path.isabs(archive):
            raise LifeboatError(f"archive '{archive}' must be an absolute path")
        if archive.endswith(_manifest.MANIFEST_SUFFIX):
            archive = archive[: -len(_manifest.MANIFEST_SUFFIX)]
        found = [a for a in _catalog.scan(os.path.dirname(archive), trust=trust).archives if a.path == archive]
        if not found:
            raise LifeboatError(f"{archive} is neither an archive nor a manifest of lifeboat.ops")
        return found
    if not destination:
        raise LifeboatError("give archive, or destination (and job) to verify the archives found there")
    if not os.path.isdir(destination):
        raise LifeboatError(f"destination {destination} does not exist")
    archives = _catalog.scan(destination, job, trust).archives
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
        _check_signature(archive, request, result)  # before anything else: a forged manifest proves nothing
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
            **({"signature": result["signature"]} if "signature" in result else {}),
            "duration_seconds": result["duration_seconds"],
            **({"content": result["content"]} if "content" in result else {}),
        }, request.signing_key_file)
    return result


def _check_signature(archive: _catalog.Archive, request: VerifyRequest, result: dict[str, t.Any]) -> None:
    try:
        result["signature"] = _signing.check(archive.manifest_path, archive.manifest or {}, request.trust)
    except LifeboatError as exc:
        raise CheckFailed("signature", str(exc)) from None
    if result["signature"] == _signing.SIGNED:
        result["checks"]["signature"] = "ok"


def _run_checks(archive: _catalog.Archive, request: VerifyRequest, result: dict[str, t.Any]) -> None:
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
    if depth >= 3 and _restores_in_one_read(archive, request):
        _restore_in_one_read(archive, main, request, result)
        return
    reader = _read_and_hash(archive, main, request, structure=depth >= 2, content=depth >= 3)
    checks["checksum"] = checks["stream"] = "ok"
    if depth < 2 or reader is None:
        return
    _check_counts(archive, reader, result)
    if depth >= 3:
        result["content"] = reader.tally.hashes
        _restore_test(archive, request, reader, result)
        checks["restore"] = "ok"


def _check_counts(archive: _catalog.Archive, reader: t.Any, result: dict[str, t.Any]) -> None:
    """The rows or documents the structure walk found per table or collection against the manifest's counts."""
    found = reader.tally.counts
    source = _source_of(archive)
    expected = {name: n for name, n in (archive.manifest or {})["counts"].items() if not source.is_internal(name)}
    differences = [
        f"{name}: {n} in the manifest, {found.get(name, 'none')} in the archive"
        for name, n in sorted(expected.items()) if found.get(name) != n
    ]
    differences += [f"{name}: {found[name]} in the archive, not in the manifest" for name in sorted(found)
                    if name not in expected and found[name] and not source.is_internal(name)]
    if differences:
        shown = first_few(differences)
        raise CheckFailed("structure", f"the archive's content does not match its manifest's counts: {shown}")
    result["checks"]["structure"] = "ok"
    result["counts"] = found


def _restores_in_one_read(archive: _catalog.Archive, request: VerifyRequest) -> bool:
    """Whether the restore test can walk the structure in the restore's own read: not for a directory-format dump,
    which pg_restore walks from the unpacked directory after the stream."""
    return (archive.manifest or {})["archive"]["format"] != "pg_dump-directory-tar"


# MongoDB and FerretDB refuse a database name of more than 63 bytes ("Invalid namespace specified"); PostgreSQL cuts
# at 63. A whole server's archive is restored into SCRATCH_DB per database: the job's part of the name gives way.
DATABASE_NAME_BYTES = 63


def scratch_prefix(archive: _catalog.Archive) -> str:
    """``lifeboat_verify_<job>``, the job cut so that ``<prefix>_<8 hex>`` (and ``_<database>`` for each database of a
    whole server's MongoDB archive) fits a database name."""
    job = _manifest.default_job(archive.job).replace("-", "_").replace(".", "_")
    manifest = archive.manifest or {}
    databases = [] if manifest.get("database") else [
        name.split(".", 1)[0] for name in manifest.get("counts") or {} if "." in name]
    longest = max((len(name.encode()) + 1 for name in databases if name not in ("admin", "config", "local")), default=0)
    room = DATABASE_NAME_BYTES - len("lifeboat_verify_") - len("_01234567") - longest
    return f"lifeboat_verify_{job[:max(8, min(30, room))]}"


def _restore_in_one_read(archive: _catalog.Archive, stored_file: StoredFile, request: VerifyRequest,
                         result: dict[str, t.Any]) -> None:
    """Level restore in one read of the archive: the restore into the scratch database carries the structure walk
    (a tap on its stream) and checks both sha256 sums; then counts and content are compared."""
    checks = result["checks"]
    reader, stream_args, work, _argv = _structure_reader(archive, request, True)
    if work is not None:  # not expected (see _restores_in_one_read); nothing may be left behind
        work.cleanup()
    walk_errors: list[BaseException] = []

    def recording(feed: t.Callable[[bytes], None]) -> t.Callable[[bytes], None]:
        def call(chunk: bytes) -> None:
            try:
                feed(chunk)
            except Exception as exc:
                walk_errors.append(exc)
                raise
        return call

    for key in ("on_plain", "on_consumer_stdout"):
        if key in stream_args:
            stream_args[key] = recording(stream_args[key])
    tap = as_tap(stream_args)
    walk_stage = None  # the tee's stage name when the walk is a process of its own (pg_restore -f -)
    if "tee_argv" in tap:
        walk_stage = tap["tee_name"] = f"{tap.get('tee_name', 'reader')} (structure walk)"
    source = _source_of(archive)
    connection = request.connections.get(source.name) or source.connection({"scratch_dir": os.path.dirname(archive.path)})
    manifest = archive.manifest or {}
    prefix = scratch_prefix(archive)
    with _sources.scratch_database(source, connection, prefix) as scratch:
        try:
            source.restore_scratch(connection, archive.path, manifest, scratch, request.decryption,
                                   request.bin_dir(source), tap=tap)
        except LifeboatError as exc:
            _classify_restore_failure(archive, stored_file, reader, result, exc, walk_errors, walk_stage)
        try:
            reader.finish()
        except StructureError as exc:
            raise CheckFailed("structure", str(exc)) from None
        checks["checksum"] = checks["stream"] = "ok"
        _check_counts(archive, reader, result)
        result["content"] = reader.tally.hashes
        _compare_content(*source.scratch_contents(connection, scratch, manifest, reader), scratch)
    checks["restore"] = "ok"
    result["scratch_database"] = scratch


def _classify_restore_failure(archive: _catalog.Archive, stored_file: StoredFile, reader: t.Any,
                              result: dict[str, t.Any], exc: LifeboatError, walk_errors: list[BaseException],
                              walk_stage: str | None) -> None:
    """A restore test that failed in its one read: which check failed, as the separate reads would have said.

    Decided by the types the read raised (the restore wraps them in its own message, keeping them as the cause)."""
    message = str(exc)
    if find_cause(exc, StoredChecksumMismatch):
        raise CheckFailed("checksum", _sha_mismatch(stored_file.path, sha256_file(stored_file.path), stored_file.sha256))
    stage = find_cause(exc, StageFailed)
    if find_cause(exc, PlainChecksumMismatch) or (stage and stage.stage in DECODING_STAGES):
        raise CheckFailed("stream", message)
    if walk_errors or (stage and walk_stage and stage.stage == walk_stage):
        raise CheckFailed("structure", str(walk_errors[0]) if walk_errors else message)
    # The stream was whole and matched: the archive's own counts say whether it or the restore is at fault.
    try:
        reader.finish()
    except StructureError as exc:
        raise CheckFailed("structure", str(exc)) from None
    _check_counts(archive, reader, result)
    raise CheckFailed("restore", message)


class StoredFile(t.NamedTuple):
    path: str
    size: int | None
    sha256: str
    plain_sha256: str | None  # None: a files archive (its per-file sha256 prove the plain stream)


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
                                 hash_plain=(structure or path != archive.path) and bool(stored_file.plain_sha256),
                                 **stream_args)
        except StoredChecksumMismatch as exc:
            raise CheckFailed("checksum", _sha_mismatch(path, exc.actual, expected_sha)) from None
        except LifeboatError as exc:
            raise CheckFailed(_read_failure_check(exc, stream_args), str(exc)) from None
        expected_plain = stored_file.plain_sha256
        if expected_plain and stream.plain_sha256 and stream.plain_sha256 != expected_plain:
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


def _read_failure_check(exc: LifeboatError, stream_args: dict[str, t.Any]) -> str:
    """The check a failed read of a stored file fails: ``structure`` when the walk failed (our parser, or the engine's
    tool reading the plain stream, such as ``pg_restore -f -``), else ``stream`` (age, the decompressor, the file)."""
    stage = find_cause(exc, StageFailed)
    walked_by_tool = stage is not None and "consumer_argv" in stream_args and stage.stage == stream_args["consumer_name"]
    return "structure" if find_cause(exc, StructureError) or walked_by_tool else "stream"


def _structure_reader(
    archive: _catalog.Archive, request: VerifyRequest, content: bool
) -> tuple[t.Any, dict[str, t.Any], PrivateDir | None, list[str]]:
    """The parser of the plain stream, how read_stream feeds it, and for a directory-format dump the directory
    it is unpacked into and the pg_restore that reads it after the stream."""
    source = _source_of(archive)
    connection = request.connections.get(source.name)
    place = getattr(connection, "place", None)
    return source.structure_walk(archive.path, archive.manifest or {}, content, request.bin_dir(source),
                                 *([place] if place is not None else []))


def _compare_content(expected_counts: dict[str, int], expected: dict[str, str],
                     actual_counts: dict[str, int], actual: dict[str, str], scratch: str) -> None:
    differences = compare_counts(expected_counts, actual_counts)
    differences += [f"{name}: restored content differs from the archive's" for name in sorted(expected)
                    if name in actual and actual[name] != expected[name] and not differences]
    if differences:
        shown = first_few(differences)
        raise CheckFailed("restore", f"restored into scratch database {scratch}: {shown}")


def _restore_test(
    archive: _catalog.Archive, request: VerifyRequest, reader: t.Any, result: dict[str, t.Any]
) -> None:
    """Restore into a scratch database, created and dropped here; its content must be the archive's."""
    source = _source_of(archive)
    # A source without a connection (files) restores on this host, beside the archive.
    connection = request.connections.get(source.name) or source.connection({"scratch_dir": os.path.dirname(archive.path)})
    manifest = archive.manifest or {}
    prefix = scratch_prefix(archive)
    with _sources.scratch_database(source, connection, prefix) as scratch:
        try:
            source.restore_scratch(connection, archive.path, manifest, scratch, request.decryption,
                                   request.bin_dir(source))
        except LifeboatError as exc:
            raise CheckFailed("restore", str(exc)) from None
        _compare_content(*source.scratch_contents(connection, scratch, manifest, reader), scratch)
    result["scratch_database"] = scratch


def backup_verify_spec() -> dict[str, t.Any]:
    return {
        "archive": {"type": "path"},
        "destination": {"type": "path"},
        "job": {"type": "str"},
        "select": {"type": "str", "default": "all", "choices": list(SELECTIONS)},
        "level": {"type": "str", "default": "structure", "choices": [AUTO, *LEVELS]},
        **_params.decryption_options(),
        "record": {"type": "bool", "default": True},
        "pg_bin_dir": {"type": "path"},
        "tools_dir": {"type": "path"},
        # each database source's connection, for a restore-level check
        **{name: {"type": "dict", "options": source.connection_options(), "mutually_exclusive": _params.CONNECTION_EXCLUSIVE}
           for name, source in _sources.SOURCES.items() if source.connection_options()},
    }


BACKUP_VERIFY_RULES: dict[str, t.Any] = {"mutually_exclusive": [["archive", "destination"], ["archive", "job"]],
                                         "required_one_of": [["archive", "destination"]]}


def backup_verify(run: Run) -> Outcome:
    params = run.params
    trust = _params.trust(params)
    archives = select_archives(archive=params["archive"], destination=params["destination"],
                               job=params["job"], select=params["select"], trust=trust)
    decryption = _params.decryption(params)
    level = resolve_level(params["level"], archives, decryption)
    if run.check_mode and level == "restore":
        level = "structure"
    request = VerifyRequest(
        archives=archives,
        level=level,
        decryption=decryption,
        connections={name: source.connection(params[name]) for name, source in _sources.SOURCES.items()
                     if params.get(name)},
        pg_bin_dir=params["pg_bin_dir"],
        tools_dir=params["tools_dir"],
        record=params["record"] and not run.check_mode,
        trust=trust,
        signing_key_file=_params.record_key(params),
    )
    results = verify(request)
    if results and request.unsigned_records_warning:
        run.warn(request.unsigned_records_warning)
    failures = [result for result in results if not result["ok"]]
    summary: dict[str, t.Any] = {"results": results, "passed_count": len(results) - len(failures),
                                 "failed_count": len(failures)}
    changed = bool(results) and request.record
    if failures:
        more = f" (and {len(failures) - 1} more archives failed)" if len(failures) > 1 else ""
        return Outcome(changed=changed, result=summary, failure=failures[0]["failure"] + more)
    if not results:
        summary["msg"] = "no archive to verify"
    return Outcome(changed=changed, result=summary)
