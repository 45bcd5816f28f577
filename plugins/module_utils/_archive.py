# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""What every engine's dump and restore share: options, the write-then-commit sequence, manifest checks."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import os
import subprocess
import time
import typing as t
from dataclasses import dataclass, field

from . import _manifest, _retention, _signing
from ._codecs import Decryption, Encryption, validate_compression, validate_encryption
from ._common import LifeboatError, child_env, find_binary, first_few
from ._files import ArchiveFile, sha256_file, write_file_atomic
from ._pipeline import StreamResult, read_stream, write_stream
from ._termination import stop_requested

_NAME_WAITS = 3  # seconds a run waits at most for a name of its own (then the commit refuses, as before)


@dataclass
class ArchiveOptions:
    """Where and how a dump is stored."""

    destination: str
    job: str
    compression: str = "zstd"
    compression_level: int | None = None
    encryption: Encryption = field(default_factory=Encryption)
    # OpenSSH private key that signs the manifest (see _signing); none given: this host's default key, made on first use
    signing_key_file: str | None = None
    public_key: str | None = None  # its public half, once validate() (or prepare_destination()) read it
    key_created: bool = False  # this run made the host's default key (its first backup)

    @property
    def signing_key(self) -> str:
        """The key this dump signs with: the one given, or this host's default key."""
        return self.signing_key_file or _signing.default_key_file()

    def validate(self) -> None:
        _manifest.validate_destination(self.destination)
        _manifest.validate_job_name(self.job)
        validate_compression(self.compression, self.compression_level)
        validate_encryption(self.encryption)
        # Before the dump: a key that cannot sign fails now. A key given must exist; the default one is made by the
        # run's first write (prepare_destination), never by a check.
        _signing.check_key_outside(self.signing_key, self.destination)
        if self.signing_key_file or os.path.lexists(self.signing_key):
            self.public_key = _signing.check_signing_key(self.signing_key)

    def prepare_destination(self) -> None:
        try:
            os.makedirs(self.destination, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise LifeboatError(f"cannot create destination {self.destination}: {exc.strerror}") from exc
        if not os.access(self.destination, os.W_OK):
            raise LifeboatError(f"destination {self.destination} is not writable by this user")
        # What killed runs of this job left (partial files, private directories) goes now; a live writer's stays.
        _retention.sweep_leftovers(self.destination, self.job)
        if not self.public_key:
            self.key_created = not os.path.lexists(self.signing_key)
            self.public_key = _signing.ensure_signing_key(self.signing_key)

    def start_time(self) -> _dt.datetime:
        """Now, which names this run's files to the second; the next free second when a file of this job already
        has that name (an archive, or one being written): a second run of a job within the same second would
        otherwise do all its work and then fail, refusing to overwrite the first one's archive."""
        started = _manifest.utc_now()
        for _wait in range(_NAME_WAITS):
            if not self._stem_taken(_manifest.archive_stem(self.job, started)):
                break
            time.sleep(1 - started.microsecond / 1_000_000)
            started = _manifest.utc_now()
        return started

    def _stem_taken(self, stem: str) -> bool:
        try:
            names = os.listdir(self.destination)
        except OSError:
            return False  # no destination yet (or unreadable: prepare_destination says so)
        taken = (f"{stem}.", f".{stem}.")  # .NAME.partial-PID: a run still writing it
        return any(name.startswith(taken) for name in names)

    def path_for(self, started: _dt.datetime, kind: str, compression: str | None = None) -> str:
        name = _manifest.archive_name(
            self.job, started, kind, compression or self.compression, self.encryption
        )
        return os.path.join(self.destination, name)


def stream_to_archive(
    final_path: str,
    producer_argv: list[str],
    options: ArchiveOptions,
    *,
    compression: str | None = None,
    producer_env: dict[str, str] | None = None,
    producer_name: str = "dump",
    on_producer_stderr: t.Callable[[str], None] | None = None,
    producer_ok_codes: t.Collection[int] = (0,),
    on_plain: t.Callable[[bytes], None] | None = None,
    producer_hashes: bool = False,
    hash_plain: bool = True,
) -> tuple[ArchiveFile, StreamResult]:
    """Stream a producer into a temporary file beside ``final_path``; the caller commits or discards it."""
    archive = ArchiveFile(final_path)
    try:
        stream = write_stream(
            producer_argv,
            archive.fd,
            temp_label=final_path,
            producer_env=producer_env,
            producer_name=producer_name,
            compression=compression or options.compression,
            compression_level=options.compression_level,
            encryption=options.encryption,
            on_producer_stderr=on_producer_stderr,
            producer_ok_codes=producer_ok_codes,
            on_plain=on_plain,
            producer_hashes=producer_hashes,
            hash_plain=hash_plain,
        )
    except BaseException:
        archive.discard()
        raise
    return archive, stream


def commit_with_manifest(archives: t.Sequence[ArchiveFile], manifest_path: str, manifest: dict[str, t.Any],
                         signing_key_file: str | None = None) -> None:
    """Give every archive its final name, then its signature (with a signing key), then the manifest; undo the
    archives if any step fails. The manifest comes last: it is what makes an archive complete."""
    signature_file = _signing.signature_path(manifest_path)
    try:
        signature = None
        if signing_key_file:
            # Who signed (for people and other hosts' trusted_signers; a check never takes the key from here).
            manifest["signer"] = _signing.check_signing_key(signing_key_file)
            # The by-hand check of the signature opens the restore commands, before the sha256 checks.
            manifest["restore_commands"] = [*_signing.by_hand_commands(os.path.basename(manifest_path)),
                                            *manifest["restore_commands"]]
            if isinstance(manifest.get("restore_placeholders"), dict):
                manifest["restore_placeholders"] = {"ALLOWED_SIGNERS": _signing.ALLOWED_SIGNERS_MEANING,
                                                    **manifest["restore_placeholders"]}
        data = _manifest.encode(manifest)
        if signing_key_file:
            signature = _signing.sign(data, signing_key_file)  # before any file is committed
        for archive in archives:
            archive.commit()
        if signature is not None:
            _signing.write_signature(manifest_path, signature)
        write_file_atomic(manifest_path, data, 0o600)
    except BaseException:
        for archive in archives:
            if archive.committed:
                os.unlink(archive.final_path)
            archive.discard()
        if signing_key_file and os.path.exists(signature_file):
            os.unlink(signature_file)
        raise
    if signing_key_file:
        # For the operator to copy to other hosts' trusted_signers (nothing trusts it from there); written once an
        # archive is complete, so that a failed run leaves nothing behind. The archive stands without it.
        try:
            _signing.publish_public_key(os.path.dirname(manifest_path), manifest["signer"])
        except (OSError, LifeboatError):
            pass


Decode = t.Callable[[str], str]  # a file of this run -> the shell pipe that decrypts and decompresses it (by hand)
Recipe = tuple[list[str], dict[str, str], dict[str, str]]  # restore commands, their environment, placeholders


@dataclass
class Producer:
    """A command whose stdout is an archive's plain stream, and how the pipeline treats it."""

    argv: list[str]
    name: str = "dump"
    env: dict[str, str] | None = None
    on_stderr: t.Callable[[str], None] | None = None
    ok_codes: t.Collection[int] = (0,)
    on_plain: t.Callable[[bytes], None] | None = None
    reports_digest: bool = False  # the producer hashes its own output (_pipeline.write_stream's producer_hashes)
    hash_plain: bool = True


@dataclass
class Extra:
    """Another archive of the same run and manifest (PostgreSQL's roles and tablespaces), streamed after the main one."""

    kind: str  # what the manifest's extras entry calls it: "globals"
    suffix: str  # its file's kind in the name: "globals.sql"
    producer: Producer
    tool: str


@dataclass
class SourceDump:
    """What a source hands to :func:`write_archive`: its stream, what it counted, and how to restore it by hand.

    Everything else (the destination, the name, the pipeline, the manifest, the signature, the commit or the
    discard) is the archive core's, the same for every source.
    """

    engine: str
    database: str | None
    kind: str  # the archive's kind in its name: "pgdump", "mongo.archive", "files.tar"
    archive_format: str
    # Entered once the destination is ready and left right after the stream: it yields the producer (and may stop
    # containers, or dump into a private directory of the destination first, for as long as the stream lasts).
    stream: t.Callable[[str], t.ContextManager[Producer]]  # the destination -> its context
    tool: dict[str, str]
    server: dict[str, t.Any]
    options: dict[str, t.Any]
    # Once the main stream ended: the counts the manifest records; raising refuses the archive (nothing is kept).
    counts: t.Callable[[StreamResult], dict[str, int]]
    # (archive file name, decode, extras) -> the standard commands that restore it without this collection.
    restore: t.Callable[[str, Decode, list[dict[str, t.Any]]], Recipe]
    compression: str | None = None  # the pipeline's, when not the options' (mongodump --gzip compresses inside)
    extras: list[Extra] = field(default_factory=list)
    more: t.Callable[[], dict[str, t.Any]] | None = None  # further manifest sections, once counted (indexes, files)


def ready(producer: Producer) -> t.Callable[[str], t.ContextManager[Producer]]:
    """A SourceDump's ``stream`` for a producer that needs nothing set up first."""
    return lambda _destination: contextlib.nullcontext(producer)


def write_archive(options: ArchiveOptions, source: SourceDump) -> dict[str, t.Any]:
    """The one sequence every dump runs: options checked, destination ready, stream -> manifest -> sign -> commit,
    or discard. An archive gets its final name only once its whole stream succeeded and was checksummed and its
    manifest is built; any failure on the way leaves no archive under a final name.

    Returns ``archive`` (its path), ``manifest`` (the manifest's path), ``manifest_data``, and what a module
    reports of the signing key (``signing_key``, ``signing_key_created``).
    """
    options.validate()
    options.prepare_destination()
    started = options.start_time()
    compression = source.compression or options.compression
    path = options.path_for(started, source.kind, compression)
    archives: list[ArchiveFile] = []
    try:
        with source.stream(options.destination) as producer:
            archive, stream = _stream_into(path, producer, options, compression)
            archives.append(archive)
        counts = source.counts(stream)
        extras = [_stream_extra(extra, options, started, archives) for extra in source.extras]
        finished = _manifest.utc_now()
        decode = functools.partial(decode_pipe, compression, options.encryption)
        commands, environment, meanings = source.restore(os.path.basename(path), decode, extras)
        manifest = _manifest.build(
            job=options.job, engine=source.engine, database=source.database, archive_path=path,
            archive_format=source.archive_format, stream=stream, compression=options.compression,
            compression_level=options.compression_level, encryption=options.encryption, tool=source.tool,
            server=source.server, counts=counts, started=started, finished=finished, restore_commands=commands,
            restore_environment=environment, restore_placeholders=meanings, options=source.options, extras=extras,
        )
        manifest.update(source.more() if source.more else {})
    except BaseException:
        for archive in archives:
            archive.discard()
        raise
    manifest_file = _manifest.manifest_path(path)
    commit_with_manifest(archives, manifest_file, manifest, options.signing_key)
    return {"archive": path, "manifest": manifest_file, "manifest_data": manifest,
            "signing_key": options.signing_key, "signing_key_created": options.key_created}


def _stream_into(path: str, producer: Producer, options: ArchiveOptions, compression: str
                 ) -> tuple[ArchiveFile, StreamResult]:
    return stream_to_archive(
        path, producer.argv, options, compression=compression, producer_env=producer.env,
        producer_name=producer.name, on_producer_stderr=producer.on_stderr, producer_ok_codes=producer.ok_codes,
        on_plain=producer.on_plain, producer_hashes=producer.reports_digest, hash_plain=producer.hash_plain,
    )


def _stream_extra(extra: Extra, options: ArchiveOptions, started: _dt.datetime, archives: list[ArchiveFile]
                  ) -> dict[str, t.Any]:
    path = options.path_for(started, extra.suffix)
    archive, stream = _stream_into(path, extra.producer, options, options.compression)
    archives.append(archive)
    return {"kind": extra.kind, "file": os.path.basename(path), "size": stream.stored_bytes,
            "sha256": stream.stored_sha256, "plain_sha256": stream.plain_sha256, "tool": extra.tool}


def decode_pipe(compression: str, encryption: Encryption, file_name: str) -> str:
    return " | ".join(_manifest.decode_commands(file_name, compression, encryption))


def safety_dump_options(base: ArchiveOptions, manifest: dict[str, t.Any], decryption: Decryption,
                        job: str) -> ArchiveOptions:
    """Where and how a restore archives what it is about to overwrite: encrypted as the archive it restores was.

    Data worth encrypting in the backup is worth it in the copy of what the restore replaces (a volume's .env, a
    table of password hashes). The recipients are the archive's own; recipients files missing on this host are
    replaced by the public halves of the identities that decrypt the archive here.
    """
    described = manifest["archive"].get("encryption")
    if not described:
        return dataclasses.replace(base, job=job)
    if described.get("method") == "age-passphrase":
        encryption = Encryption(passphrase_file=decryption.passphrase_file)
    else:
        recipients = tuple(described.get("recipients") or ())
        files = tuple(path for path in described.get("recipients_files") or () if os.path.isfile(path))
        if len(files) < len(described.get("recipients_files") or ()):
            recipients += recipients_of(decryption.identity_files)
        encryption = Encryption(recipients=recipients, recipients_files=files)
    if not encryption.enabled:
        raise LifeboatError(
            f"{manifest['archive'].get('file')} is encrypted but no key to encrypt the safety dump like it is known "
            "here: give the age identity files that decrypt it, or restore without safety_dump_dir"
        )
    return dataclasses.replace(base, job=job, encryption=encryption)


def recipients_of(identity_files: t.Iterable[str]) -> tuple[str, ...]:
    """The public halves of age or OpenSSH identity files (named by path only: the secret never leaves the file)."""
    found = []
    for path in identity_files:
        for argv in ([find_binary("age-keygen"), "-y", path], [find_binary("ssh-keygen"), "-y", "-f", path]):
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=child_env(), timeout=30,
                                  check=False)
            lines = [line for line in done.stdout.decode("ascii", "replace").splitlines() if line.strip()]
            if done.returncode == 0 and lines:
                found.extend(lines)
                break
    return tuple(found)


def resolve_archive(path: str) -> tuple[str, str | None]:
    """The archive a restore reads, and a note when it was given the archive's manifest instead.

    Restoring the manifest's own archive is what the person meant; reading the manifest as an archive
    would only fail its checksum and send them away from a good backup.
    """
    if not path or not os.path.isabs(path) or not path.endswith(_manifest.MANIFEST_SUFFIX):
        return path, None
    archive = path[: -len(_manifest.MANIFEST_SUFFIX)]
    if not os.path.isfile(archive):
        raise LifeboatError(
            f"{path} is the manifest of an archive, not an archive, and its archive {os.path.basename(archive)} "
            "is not beside it; give the path of the archive file"
        )
    return archive, f"{path} is a manifest: restoring the archive it describes, {archive}"


def verify_archive(archive_path: str, engine: str, decryption: Decryption,
                   trust: _signing.Trust | None = None, read_whole: bool = True) -> dict[str, t.Any]:
    """The archive's manifest, once everything that can be checked without writing is: path, signature (first,
    before any byte of the archive is read), engine, what decrypts it.

    ``read_whole`` also reads the whole archive through age and the decompressor (check mode, and restores that
    write straight into their targets). A restore into a side copy leaves it false: it reads the archive once,
    restoring while it checks (``read_for_restore``), and a mismatch discards the side copy.
    """
    if not archive_path or not os.path.isabs(archive_path):
        raise LifeboatError(f"archive '{archive_path}' must be an absolute path to an archive file")
    if not os.path.isfile(archive_path):
        raise LifeboatError(f"archive {archive_path} does not exist")
    if archive_path.endswith(_manifest.MANIFEST_SUFFIX):
        raise LifeboatError(
            f"{archive_path} is the manifest of an archive, not an archive; give the archive "
            f"{archive_path[: -len(_manifest.MANIFEST_SUFFIX)]}"
        )
    manifest = load_trusted(archive_path, trust)
    if manifest.get("engine") != engine:
        raise LifeboatError(f"{archive_path} is a {manifest.get('engine')} archive, not a {engine} one")
    check_decryption(manifest, decryption)
    if read_whole:
        read_for_restore(archive_path, manifest, decryption=decryption)
    return manifest


def read_for_restore(archive_path: str, manifest: dict[str, t.Any], **read_args: t.Any) -> StreamResult:
    """One read of an archive (into a restore's consumer, or nowhere): the stored sha256, decryption,
    decompression and the plain sha256 checked in the same stream; any difference is a LifeboatError.

    The stored sha256 is only known at the end of the stream, so whatever the consumer wrote must be thrown away
    on an error here: it goes into a side database, staging collections or a side directory, never the target.
    """
    info = manifest["archive"]
    read_args.setdefault("compression", stream_compression(manifest))
    read_args.setdefault("encrypted", info["encryption"] is not None)
    read_args.setdefault("hash_plain", info["plain_sha256"] is not None)  # a files archive has per-file sha256 instead
    try:
        stream = read_stream(archive_path, **read_args)
    except LifeboatError:
        # A damaged file usually trips age, zstd or the consumer first; the checksum says what really happened
        # (not after a stop request: reading a large archive again would only delay the stop).
        actual = info["sha256"] if stop_requested() else sha256_file(archive_path)
        if actual != info["sha256"]:
            raise _damaged(archive_path, actual, info["sha256"]) from None
        raise
    if stream.stored_sha256 != info["sha256"]:
        raise _damaged(archive_path, stream.stored_sha256, info["sha256"])
    if info["plain_sha256"] is not None and stream.plain_sha256 != info["plain_sha256"]:
        raise PlainChecksumMismatch(
            f"{archive_path} decrypts and decompresses to other bytes than were dumped (plain sha256 differs); "
            "the archive cannot be trusted"
        )
    return stream


def as_tap(stream_args: dict[str, t.Any]) -> dict[str, t.Any]:
    """A reader's read_stream arguments (a parser of the plain stream, or a consumer such as ``pg_restore -f -``)
    turned into a tap on a restore's own read: the consumer becomes the stream's second consumer (its tee)."""
    renamed = {"consumer_argv": "tee_argv", "consumer_env": "tee_env", "consumer_name": "tee_name",
               "on_consumer_stdout": "on_tee_stdout"}
    return {renamed.get(key, key): value for key, value in stream_args.items()}


def _damaged(archive_path: str, actual: str, expected: str) -> StoredChecksumMismatch:
    return StoredChecksumMismatch(actual, (
        f"{archive_path} does not match its manifest (sha256 {actual[:12]}... instead of {expected[:12]}...); "
        "the file is damaged or was replaced: restore another archive"
    ))


def load_trusted(archive_path: str, trust: _signing.Trust | None) -> dict[str, t.Any]:
    """The archive's manifest, once its signature is checked against ``trust`` and it is shown to describe this very
    file: what every restore reads first. (The sha256 is checked as the restore reads the file.) Without a trust (no
    signer, nothing allowed), only a signature a trusted key made could pass: none does."""
    manifest = _manifest.load(archive_path)
    _signing.check(_manifest.manifest_path(archive_path), manifest, trust or _signing.host_trust())
    check_describes(archive_path, manifest)
    return manifest


def check_describes(archive_path: str, manifest: dict[str, t.Any]) -> None:
    """A manifest proves only the file it names: an older, genuinely signed archive copied with its manifest under a
    newer name (a replay) carries a valid signature, so the name and the size are checked as verify does."""
    described = manifest["archive"].get("file")
    name = os.path.basename(archive_path)
    if described != name:
        raise LifeboatError(
            f"{archive_path}'s manifest describes {described}, not {name}: the archive was renamed or copied under "
            "another name; restore the archive under the name its manifest gives"
        )
    size = os.path.getsize(archive_path)
    if size != manifest["archive"].get("size"):
        raise LifeboatError(
            f"{archive_path} has {size} bytes, its manifest says {manifest['archive'].get('size')}; the file is "
            "damaged or was replaced: restore another archive"
        )


class StoredChecksumMismatch(LifeboatError):
    """The stored file's sha256 is not the one its manifest recorded: it is damaged or was replaced."""

    def __init__(self, actual: str, message: str | None = None) -> None:
        super().__init__(message or f"the stored file has sha256 {actual}")
        self.actual = actual


class PlainChecksumMismatch(LifeboatError):
    """The stored file is the one recorded, but decrypted and decompressed it gives other bytes than were dumped."""


def read_stored(path: str, expected_sha256: str, **read_args: t.Any) -> StreamResult:
    """``read_stream`` of a stored file whose sha256 is known; a changed file fails as StoredChecksumMismatch."""
    try:
        stream = read_stream(path, **read_args)
    except LifeboatError:
        # A damaged file usually trips age or zstd first; the checksum says what really happened.
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise StoredChecksumMismatch(actual) from None
        raise
    if stream.stored_sha256 != expected_sha256:
        raise StoredChecksumMismatch(stream.stored_sha256)
    return stream


def stream_compression(manifest: dict[str, t.Any]) -> str:
    # mongodump --gzip compresses inside the archive: the stored stream itself is not gzip.
    return "none" if manifest["archive"]["format"] == "mongodump-archive-gzip" else manifest["archive"]["compression"]


def check_decryption(manifest: dict[str, t.Any], decryption: Decryption) -> None:
    """Refuse early, before anything is created, when an encrypted archive comes without what opens it."""
    encryption = manifest["archive"]["encryption"]
    if not encryption:
        return
    if encryption["method"] == "age-passphrase" and not decryption.passphrase_file:
        raise LifeboatError("the archive is encrypted with a passphrase; give age_passphrase_file")
    if encryption["method"] == "age" and not decryption.identity_files:
        recipients = ", ".join(encryption["recipients"]) or "the keys of its recipients file"
        raise LifeboatError(
            f"the archive is encrypted; give the age identity file that can decrypt it (recipients: {recipients})"
        )


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Differences between the counts recorded at dump time and those found after a restore."""
    problems = []
    for name, count in sorted(expected.items()):
        found = actual.get(name)
        if found != count:
            problems.append(f"{name}: {count} in the archive, {'none' if found is None else found} after restore")
    return problems


def count_mismatch_error(problems: list[str], target: str) -> LifeboatError:
    shown = first_few(problems)
    return LifeboatError(f"restore into {target} is incomplete: {shown}")
