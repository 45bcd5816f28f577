# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Off-site copy: a destination's archives uploaded to the bucket, each checked on receipt and against its manifest.

Every object carries a SHA-256 checksum the store verifies (per part for multipart uploads); after the upload the
object's recorded checksum is compared with the manifest's sha256. The manifest goes last, so an archive without
its manifest remotely is an incomplete upload; an interrupted multipart upload is resumed by the next copy.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import threading
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import _catalog, _manifest, _signing
from ._common import LifeboatError
from ._offsite_bucket import (
    DEFAULT_PART_SIZE,
    READ_BLOCK,
    Remote,
    b64,
    client,
    describe_error,
    digest_file,
    guarded,
    list_remote,
    no_object_lock,
    refuse_foreign,
    refuses_lock,
)

# Parts in flight at once (each held in memory: UPLOAD_THREADS x part size).
UPLOAD_THREADS = 8


# ---------------------------------------------------------------------------------------------------- copy

@dataclass
class CopyResult:
    copied: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # already complete remotely
    skipped: list[dict[str, str]] = field(default_factory=list)  # not copied, why
    resumed_parts: int = 0
    bytes_sent: int = 0

    def as_dict(self) -> dict[str, t.Any]:
        return {"copied": self.copied, "present": self.present, "skipped": self.skipped,
                "resumed_parts": self.resumed_parts, "bytes_sent": self.bytes_sent}


def copy_destination(destination: str, remote: Remote, job: str | None = None, check_mode: bool = False,
                     only_verified: bool = True, s3: t.Any = None) -> CopyResult:
    """Copy every readable (by default: verified) local archive of ``destination`` that is not complete remotely."""
    s3 = s3 or client(remote)
    local = _catalog.scan(destination, job)
    listing = list_remote(s3, remote, job, read_manifests=False)
    refuse_foreign(listing)
    complete = {archive.name for archive in listing.archives if not archive.problem}
    result = CopyResult()
    for archive in local.archives:
        if archive.name in complete:
            result.present.append(archive.name)
            continue
        if not archive.readable:
            result.skipped.append({"name": archive.name, "reason": archive.problem or "unreadable"})
            continue
        if only_verified and not archive.verified:
            result.skipped.append({"name": archive.name, "reason": "not verified (only proven archives are copied)"})
            continue
        if not result.copied:  # once, and only when there is something to lock
            require_object_lock(s3, remote)
        result.copied.append(archive.name)
        if not check_mode:
            copy_archive(s3, remote, archive.path, result)
    return result


def copy_archive(s3: t.Any, remote: Remote, archive_path: str, result: CopyResult | None = None) -> None:
    """Upload one archive, its extras, then its manifest (last), each checked against the manifest's sha256."""
    result = result or CopyResult()
    manifest = _manifest.load(archive_path)
    directory = os.path.dirname(archive_path)
    files = [(extra["file"], extra["sha256"]) for extra in manifest.get("extras", [])
             if isinstance(extra, dict) and extra.get("file") and extra.get("sha256")]
    files.append((manifest["archive"]["file"], manifest["archive"]["sha256"]))
    manifest_path = _manifest.manifest_path(archive_path)
    signature_path = _signing.signature_path(manifest_path)
    if os.path.exists(signature_path):  # before the manifest: a manifest remotely means everything is there
        files.append((os.path.basename(signature_path), digest_file(signature_path, DEFAULT_PART_SIZE).sha256))
    for name, sha256 in files:
        upload_file(s3, remote, os.path.join(directory, name), sha256, result)
    # The manifest says where the copy is and how to fetch it without this collection; it goes last. Its own
    # field, not restore_commands: a signature covers those, and this is added after the backup (_signing.ADDED_FIELDS).
    fetch_lines = [remote.fetch_command(name) for name, _digest in files]
    fetch_lines.append(remote.fetch_command(manifest["archive"]["file"] + _manifest.MANIFEST_SUFFIX))
    manifest["offsite"] = {"url": remote.url(), "fetch_commands": fetch_lines}
    _manifest.write(manifest_path, manifest)
    body = _manifest.encode(manifest)
    integrity = remote.integrity(hashlib.sha256(body).digest(), hashlib.md5(body, usedforsecurity=False).digest())
    guarded(remote, "uploading the manifest to", lambda: s3.put_object(
        Bucket=remote.bucket, Key=remote.key(manifest["archive"]["file"] + _manifest.MANIFEST_SUFFIX), Body=body,
        ContentType="application/json", **integrity, **_lock_args(remote)))


def _lock_args(remote: Remote) -> dict[str, t.Any]:
    if not remote.lock_mode or not remote.lock_days:
        return {}
    until = _manifest.utc_now() + _dt.timedelta(days=remote.lock_days)
    return {"ObjectLockMode": remote.lock_mode, "ObjectLockRetainUntilDate": until}


def upload_file(s3: t.Any, remote: Remote, path: str, sha256: str, result: CopyResult) -> None:
    """One file, uploaded with SHA-256 checksums the store verifies, and proven against ``sha256`` (the manifest's).

    A file of one part is sent with the manifest's sha256 as its checksum: the store itself refuses bytes that do
    not match it. A larger one goes in parts, each hashed as it is sent (the store checks each part), while the
    whole file is hashed beside them; the upload is completed only when that whole hash is the manifest's, so a
    file that changed since its backup never becomes an object.
    """
    name = os.path.basename(path)
    key = remote.key(name)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise LifeboatError(f"cannot read {path}: {exc.strerror}") from exc
    if size <= remote.part_size:
        expected = guarded(remote, f"uploading {name} to", lambda: _put_single(s3, remote, path, key, sha256))
    else:
        expected = guarded(remote, f"uploading {name} to",
                           lambda: _put_multipart(s3, remote, path, key, size, sha256, result))
    head = guarded(remote, "checking", lambda: s3.head_object(Bucket=remote.bucket, Key=key, ChecksumMode="ENABLED"))
    # With Content-MD5 the store's record is the ETag: the MD5 of the object, or of its parts' MD5s then -N.
    recorded = head.get("ETag", "").strip('"') if remote.md5 else head.get("ChecksumSHA256")
    if recorded != expected or int(head.get("ContentLength", -1)) != size:
        hint = "" if remote.md5 or recorded else "; the store keeps no SHA-256 checksums: set checksum to md5"
        raise LifeboatError(f"{remote.url(name)} records checksum {recorded} and {head.get('ContentLength')} bytes "
                            f"after the upload, not {expected} and {size}; the copy is not trusted{hint}")
    result.bytes_sent += size


def _put_single(s3: t.Any, remote: Remote, path: str, key: str, sha256: str) -> str:
    """One request; returns what the store should record (the SHA-256, or with Content-MD5 the ETag)."""
    from botocore import exceptions as bce  # type: ignore[import-untyped]  # pylint: disable=import-outside-toplevel

    md5 = None
    if remote.md5:  # the MD5 is read from the file itself, which must still be the manifest's
        sums = [hashlib.sha256(), hashlib.md5(usedforsecurity=False)]
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(READ_BLOCK), b""):
                for item in sums:
                    item.update(block)
        if sums[0].hexdigest() != sha256:
            raise LifeboatError(f"{path} does not match its manifest's sha256 (it changed after the backup); it is not "
                                "copied: verify it")
        md5 = sums[1].digest()
    with open(path, "rb") as handle:
        try:
            s3.put_object(Bucket=remote.bucket, Key=key, Body=handle,
                          **remote.integrity(bytes.fromhex(sha256), md5), **_lock_args(remote))
        except bce.ClientError as exc:
            if _checksum_refused(exc) and not refuses_lock(exc):
                raise LifeboatError(f"{path} does not match its manifest's sha256 (the store refused it); it changed "
                                    "after the backup: verify it") from None
            raise
    return md5.hex() if md5 else b64(bytes.fromhex(sha256))


def _checksum_refused(exc: t.Any) -> bool:
    """The store found the body unlike the checksum sent (some stores answer InvalidRequest, naming the checksum)."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code"), str(error.get("Message", "")).lower()
    return code in ("BadDigest", "XAmzContentChecksumMismatch") or (
        code == "InvalidRequest" and ("checksum" in message or "digest" in message or "md5" in message))


def require_object_lock(s3: t.Any, remote: Remote) -> None:
    """With lock_mode, a bucket without object lock is refused before any upload. A store that does not let these
    keys read the setting (AccessDenied, no such call) is left to answer the upload itself (``refuses_lock``)."""
    from botocore import exceptions as bce  # pylint: disable=import-outside-toplevel

    if not remote.lock_mode:
        return
    try:
        answer = s3.get_object_lock_configuration(Bucket=remote.bucket)
    except bce.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
            raise no_object_lock(remote) from None
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise describe_error(exc, remote, "checking the object lock of") from None
        return
    except bce.BotoCoreError as exc:
        raise describe_error(exc, remote, "checking the object lock of") from None
    if answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
        raise no_object_lock(remote)


def _put_multipart(s3: t.Any, remote: Remote, path: str, key: str, size: int, sha256: str,
                   result: CopyResult) -> str:
    """Resume an open upload of this key (its parts whose checksum matches stay) or start one; return the
    checksum S3 records for the object (SHA-256 of the parts' SHA-256s, -N).

    Each part is read once: its bytes are hashed for the part's checksum, fed in file order to the whole file's
    SHA-256, then sent; so the manifest's sha256 is checked against the very bytes that were sent (a second read of
    the file beside the parts passed bytes that changed between the two reads)."""
    count = -(-size // remote.part_size)
    upload_id, existing = _open_upload(s3, remote, key)
    if upload_id is None:
        algorithm = {} if remote.md5 else {"ChecksumAlgorithm": "SHA256"}
        upload_id = s3.create_multipart_upload(Bucket=remote.bucket, Key=key, **algorithm,
                                               **_lock_args(remote))["UploadId"]
    digests: dict[int, bytes] = {}  # per part: its SHA-256, or with Content-MD5 its MD5
    whole = _InOrderDigest()

    def send(number: int) -> dict[str, t.Any]:
        offset = (number - 1) * remote.part_size
        length = min(remote.part_size, size - offset)
        fd = os.open(path, os.O_RDONLY)
        try:
            body = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        # hashlib lets other threads run meanwhile
        digest = (hashlib.md5(body, usedforsecurity=False) if remote.md5 else hashlib.sha256(body)).digest()
        digests[number] = digest
        # Before the upload, not after: a part then waits only for its predecessors' reads, never for their
        # uploads, so memory stays about UPLOAD_THREADS parts
        whole.add(number, body)
        known = existing.get(number)
        recorded = known and (known.get("ETag", "").strip('"') == digest.hex() if remote.md5
                              else known.get("ChecksumSHA256") == b64(digest))
        if known and recorded and int(known.get("Size", -1)) == length:
            result.resumed_parts += 1
            return {"PartNumber": number, "ETag": known["ETag"],
                    **({} if remote.md5 else {"ChecksumSHA256": known["ChecksumSHA256"]})}
        integrity = {"ContentMD5": b64(digest)} if remote.md5 else {"ChecksumSHA256": b64(digest)}
        answer = s3.upload_part(Bucket=remote.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                                **integrity)
        return {"PartNumber": number, "ETag": answer["ETag"], **({} if remote.md5 else integrity)}

    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        parts = list(pool.map(send, range(1, count + 1)))
    if whole.hexdigest(count) != sha256:
        s3.abort_multipart_upload(Bucket=remote.bucket, Key=key, UploadId=upload_id)
        raise LifeboatError(f"{path} does not match its manifest's sha256 (it changed after the backup); it is not "
                            "copied: verify it")
    s3.complete_multipart_upload(Bucket=remote.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    joined = b"".join(digests[n] for n in range(1, count + 1))
    if remote.md5:
        return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{count}"
    return f"{b64(hashlib.sha256(joined).digest())}-{count}"


class _InOrderDigest:
    """The SHA-256 of parts that arrive in any order from several threads, taken in part order.

    A part that arrives before its predecessors waits in memory (parts are added as soon as they are read, and
    the pool hands them out in order, so only a few wait); the thread that brings the next part in order hashes
    it and every waiting successor."""

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._waiting: dict[int, bytes] = {}
        self._next = 1
        self._lock = threading.Lock()

    def add(self, number: int, body: bytes) -> None:
        with self._lock:
            self._waiting[number] = body
            while self._next in self._waiting:
                self._sha256.update(self._waiting.pop(self._next))
                self._next += 1

    def hexdigest(self, count: int) -> str:
        if self._next != count + 1:  # every part was added, or pool.map would have raised
            raise LifeboatError(f"internal error: {self._next - 1} of {count} parts hashed")
        return self._sha256.hexdigest()


def _open_upload(s3: t.Any, remote: Remote, key: str) -> tuple[str | None, dict[int, dict[str, t.Any]]]:
    """The newest open upload of ``key`` to continue, with its parts; older open uploads of the key are aborted."""
    uploads = [upload for upload in s3.list_multipart_uploads(Bucket=remote.bucket, Prefix=key).get("Uploads", [])
               if upload["Key"] == key]
    uploads.sort(key=lambda upload: str(upload.get("Initiated") or ""), reverse=True)
    if not uploads:
        return None, {}
    for stale in uploads[1:]:
        s3.abort_multipart_upload(Bucket=remote.bucket, Key=key, UploadId=stale["UploadId"])
    upload_id = uploads[0]["UploadId"]
    parts: dict[int, dict[str, t.Any]] = {}
    paginator = s3.get_paginator("list_parts")
    for page in paginator.paginate(Bucket=remote.bucket, Key=key, UploadId=upload_id):
        for part in page.get("Parts", []):
            parts[int(part["PartNumber"])] = part
    return upload_id, parts
