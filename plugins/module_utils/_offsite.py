# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Off-site copies of verified archives in an S3-compatible bucket: copy, verify, prune and fetch.

The remote copy stays plain files (the archive, its extras, its manifest), so ``aws s3 cp`` and the manifest's
restore commands still open it without this collection. Safety rules:

- every object carries a SHA-256 checksum the store verifies on receipt (per part for multipart uploads); after
  the upload the object's recorded checksum is compared with the manifest's sha256 (a single-part object's is that
  sha256; a multipart object's is the SHA-256 of its parts' SHA-256s, recomputed here from the local file whose
  whole SHA-256 was just checked against the manifest);
- the manifest is uploaded last: an archive without its manifest remotely is an incomplete upload, said as such;
- an interrupted multipart upload is resumed by the next copy (parts whose checksum matches are kept);
- pruning mirrors local retention and is never ahead of the local side (the guards of ``_retention``), and never
  tries to delete an object under object lock: it reports it;
- a fetch downloads to a partial file (resumed by the next fetch) and checks it against the manifest's sha256
  before it gets its final name, so a restore never reads a byte that was not proven.

Credentials come from a 0600 file, the environment or the instance's role (boto3's chain); never argv, never a
result. Plain Python: boto3 only, no Ansible.
"""

from __future__ import annotations

import base64
import configparser
import datetime as _dt
import functools
import hashlib
import json
import os
import stat
import threading
import typing as t
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import _catalog, _manifest, _retention, _signing
from ._common import LifeboatError, register_secret
from ._files import fsync_directory

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MIB
# Parts in flight at once (each held in memory: UPLOAD_THREADS x part size).
UPLOAD_THREADS = 8
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
# What the store verifies on receipt: SHA-256 (flexible checksums), or Content-MD5 per request for stores without
# them; either way the whole file's SHA-256 is checked against the manifest as it is read for the upload.
CHECKSUMS = ("sha256", "md5")
# Incomplete multipart uploads older than this are aborted by prune (younger ones may belong to a running copy).
STALE_UPLOAD_HOURS = 24
_READ_BLOCK = 4 * MIB


def remote_options() -> dict[str, t.Any]:
    """The options that say where the bucket is and how to reach it (modules and the config share them)."""
    return {
        "bucket": {"type": "str", "required": True},
        "prefix": {"type": "str", "default": ""},
        "endpoint_url": {"type": "str"},
        "region": {"type": "str"},
        "path_style": {"type": "bool", "default": False},
        "credentials_file": {"type": "path", "no_log": False},  # a path, not a secret
        "lock_mode": {"type": "str", "choices": list(LOCK_MODES)},
        "lock_days": {"type": "int"},
        "part_size_mib": {"type": "int", "default": DEFAULT_PART_SIZE // MIB},
        "checksum": {"type": "str", "default": "sha256", "choices": list(CHECKSUMS)},
    }


@dataclass(frozen=True)
class Remote:
    """A bucket and prefix, and how to reach them."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool = False
    credentials_file: str | None = None
    lock_mode: str | None = None
    lock_days: int | None = None
    part_size: int = DEFAULT_PART_SIZE
    checksum: str = "sha256"

    @classmethod
    def from_options(cls, options: t.Mapping[str, t.Any]) -> Remote:
        bucket = (options.get("bucket") or "").strip()
        if not bucket or "/" in bucket:
            raise LifeboatError(f"bucket '{bucket}' is not a bucket name; give the name alone (no s3://, no slash)")
        prefix = (options.get("prefix") or "").strip("/")
        lock_mode = options.get("lock_mode")
        lock_days = options.get("lock_days")
        if lock_mode and lock_mode not in LOCK_MODES:
            raise LifeboatError(f"lock_mode must be one of {', '.join(LOCK_MODES)}, not '{lock_mode}'")
        if bool(lock_mode) != bool(lock_days):
            raise LifeboatError("set lock_mode and lock_days together (object lock needs both a mode and a period)")
        if lock_days is not None and lock_days < 1:
            raise LifeboatError(f"lock_days is {lock_days}; give 1 or more days")
        part_mib = int(options.get("part_size_mib") or DEFAULT_PART_SIZE // MIB)
        if not 5 <= part_mib <= 5120:
            raise LifeboatError(f"part_size_mib is {part_mib}; S3 takes parts of 5 to 5120 MiB")
        endpoint_url = (options.get("endpoint_url") or "").strip() or None
        if endpoint_url:
            check_endpoint_url(endpoint_url)
        checksum = options.get("checksum") or "sha256"
        if checksum not in CHECKSUMS:
            raise LifeboatError(f"checksum must be one of {', '.join(CHECKSUMS)}, not '{checksum}'")
        return cls(bucket=bucket, prefix=f"{prefix}/" if prefix else "", endpoint_url=endpoint_url,
                   region=options.get("region") or None, path_style=bool(options.get("path_style")),
                   credentials_file=options.get("credentials_file") or None, lock_mode=lock_mode or None,
                   lock_days=lock_days, part_size=part_mib * MIB, checksum=checksum)

    @property
    def md5(self) -> bool:
        return self.checksum == "md5"

    def integrity(self, data_digest: bytes, md5_digest: bytes | None) -> dict[str, str]:
        """The request argument the store checks the body against: ChecksumSHA256, or ContentMD5."""
        if self.md5:
            return {"ContentMD5": _b64(md5_digest or b"")}
        return {"ChecksumSHA256": _b64(data_digest)}

    def key(self, name: str) -> str:
        return self.prefix + name

    def url(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def fetch_command(self, name: str) -> str:
        """The line a person without this collection runs to get a file back (the AWS CLI)."""
        endpoint = f" --endpoint-url {_manifest.shell_quote(self.endpoint_url)}" if self.endpoint_url else ""
        return f"aws s3 cp{endpoint} {_manifest.shell_quote(self.url(name))} ."


def check_endpoint_url(url: str) -> None:
    """An S3 endpoint is an http:// or https:// URL with a host (botocore says only "Invalid endpoint" otherwise)."""
    scheme, sep = url.partition("://")[:2]
    if not sep:
        raise LifeboatError(f"endpoint_url '{url}' has no scheme; add http:// or https:// (e.g. https://{url})")
    if scheme.lower() not in ("http", "https"):
        raise LifeboatError(f"endpoint_url '{url}' must start with http:// or https://, not {scheme}://")
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:  # a bracket left open, a port that is not a number
        host = None
    if not host:
        raise LifeboatError(f"endpoint_url '{url}' has no host; give e.g. https://minio.example.com:9000")


def read_credentials_file(path: str) -> tuple[str, str, str | None]:
    """Keys from a 0600 file in the AWS shared-credentials format ([default] aws_access_key_id = ...)."""
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise LifeboatError(f"cannot read credentials_file {path}: {exc.strerror}") from exc
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise LifeboatError(f"credentials_file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                            "chmod 600 it")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text if text.lstrip().startswith("[") else "[default]\n" + text)
    except configparser.Error as exc:
        raise LifeboatError(f"credentials_file {path} is not in the AWS credentials format "
                            "([default], aws_access_key_id = ..., aws_secret_access_key = ...)") from exc
    section = parser["default"] if parser.has_section("default") else parser[parser.sections()[0]] if parser.sections() else {}
    key_id, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not key_id or not secret:
        raise LifeboatError(f"credentials_file {path} lacks aws_access_key_id or aws_secret_access_key")
    token = section.get("aws_session_token")
    register_secret(secret, token)
    return key_id, secret, token


def client(remote: Remote) -> t.Any:
    """An S3 client: keys from credentials_file, else botocore's own chain (environment, instance role).

    Made by botocore's session, which boto3's wraps: importing boto3 would also import s3transfer and boto3's
    resource machinery (~0.03 s of CPU of each module run) for nothing a client uses."""
    try:
        import botocore.session  # type: ignore[import-untyped]  # pylint: disable=import-outside-toplevel
        from botocore.config import Config  # type: ignore[import-untyped]  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LifeboatError("off-site copies need boto3 on the host that copies (pip install boto3, or "
                            "apt install python3-boto3)") from exc
    keys: dict[str, t.Any] = {}
    if remote.credentials_file:
        key_id, secret, token = read_credentials_file(remote.credentials_file)
        keys = {"aws_access_key_id": key_id, "aws_secret_access_key": secret, "aws_session_token": token}
    else:
        register_secret(os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN"))
    settings: dict[str, t.Any] = {
        # payload_signing_enabled False: no SHA-256 of every body for the request signature (botocore does it over
        # http, and over https unless Content-MD5 is set), on this side and the store's. Every upload already carries
        # ChecksumSHA256 or Content-MD5, a signed header the store checks the body against; the other bodies
        # (complete_multipart_upload's list of parts) are proven by the object's checksum compared after upload.
        "s3": {"addressing_style": "path" if remote.path_style else "auto", "payload_signing_enabled": False},
        "retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 10, "read_timeout": 120,
        "max_pool_connections": 16,
        # We send SHA-256 (or MD5) ourselves; the SDK's own CRC32 on every request would only cost time.
        "request_checksum_calculation": "when_required", "response_checksum_validation": "when_required",
    }
    try:
        config = Config(**settings)
    except TypeError:  # botocore before 1.36 (Debian 12's python3-boto3) has no such settings, and no CRC32 either
        config = Config(**{key: value for key, value in settings.items() if not key.endswith("_checksum_calculation")
                           and not key.endswith("_checksum_validation")})
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=remote.endpoint_url, region_name=remote.region or "us-east-1", config=config, **keys)


def no_object_lock(remote: Remote) -> LifeboatError:
    return LifeboatError(f"bucket '{remote.bucket}' has no object lock (it was created without it), so lock_mode "
                         f"{remote.lock_mode} cannot hold the copies; copy to a bucket created with object lock "
                         "enabled, or remove lock_mode and lock_days")


def refuses_lock(exc: BaseException) -> bool:
    """The store's answer to a locked upload into a bucket without object lock: InvalidRequest, "Bucket is missing
    Object Lock Configuration" (AWS; "ObjectLockConfiguration" elsewhere), never a checksum of the bytes."""
    error = getattr(exc, "response", {}).get("Error", {})
    message = str(error.get("Message", "")).lower().replace(" ", "")
    return error.get("Code") == "InvalidRequest" and "objectlock" in message


def describe_error(exc: BaseException, remote: Remote, doing: str) -> LifeboatError:
    """One line a person can act on, for what boto3 raises."""
    from botocore import exceptions as bce  # pylint: disable=import-outside-toplevel

    where = remote.url()
    if isinstance(exc, bce.ClientError):
        if remote.lock_mode and refuses_lock(exc):
            return no_object_lock(remote)
        code = exc.response.get("Error", {}).get("Code", "")
        hints = {
            "NoSuchBucket": f"bucket '{remote.bucket}' does not exist; create it or fix bucket",
            "InvalidAccessKeyId": "the access key is not known to the store; check the credentials",
            "SignatureDoesNotMatch": "the secret key is wrong; check the credentials",
            "AccessDenied": f"access denied to {where}; check the credentials' permissions",
            "403": f"access denied to {where}; check the credentials and their permissions",
            "404": f"{where} was not found; check bucket and prefix",
        }
        said = " ".join(str(exc.response.get("Error", {}).get("Message") or "").split())[:200]
        answer = f"the store answered {code}" + (f" ({said})" if said else "")
        return LifeboatError(f"{doing} {where} failed: {hints.get(code, answer)}")
    if isinstance(exc, bce.EndpointConnectionError):
        return LifeboatError(f"{doing} {where} failed: cannot connect to {remote.endpoint_url or 'the S3 endpoint'}; "
                             "check endpoint_url and that the store is up")
    if isinstance(exc, bce.NoCredentialsError):
        return LifeboatError(f"{doing} {where} failed: no credentials; give credentials_file (chmod 600), set "
                             "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or give the host an instance role")
    if isinstance(exc, bce.BotoCoreError):
        return LifeboatError(f"{doing} {where} failed: {exc}")
    return LifeboatError(f"{doing} {where} failed: {exc}")


def _guarded(remote: Remote, doing: str, call: t.Callable[[], t.Any]) -> t.Any:
    from botocore import exceptions as bce  # pylint: disable=import-outside-toplevel

    try:
        return call()
    except (bce.BotoCoreError, bce.ClientError) as exc:
        raise describe_error(exc, remote, doing) from None


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass
class LocalDigest:
    """A file's whole SHA-256 and its parts' SHA-256s, read once."""

    size: int
    sha256: str
    parts: list[bytes]

    def composite(self) -> str:
        """The checksum S3 records for a multipart object: SHA-256 of the parts' SHA-256s, then -N."""
        return f"{_b64(hashlib.sha256(b''.join(self.parts)).digest())}-{len(self.parts)}"


def digest_file(path: str, part_size: int) -> LocalDigest:
    whole = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    with open(path, "rb") as handle:
        while True:
            part = hashlib.sha256()
            taken = 0
            while taken < part_size:
                block = handle.read(min(_READ_BLOCK, part_size - taken))
                if not block:
                    break
                whole.update(block)
                part.update(block)
                taken += len(block)
            if not taken:
                break
            parts.append(part.digest())
            size += taken
    return LocalDigest(size, whole.hexdigest(), parts or [hashlib.sha256(b"").digest()])


# ---------------------------------------------------------------------------------------------------- the listing

@dataclass
class RemoteArchive:
    name: str
    job: str
    started_at: _dt.datetime
    objects: dict[str, dict[str, t.Any]]  # name -> listing entry of the archive's files present remotely
    manifest: dict[str, t.Any] | None = None
    problem: str | None = None
    signed: bool = False  # its manifest's signature is there too

    def as_catalog(self) -> _catalog.Archive:
        """The same view the local retention and health code read."""
        return _catalog.Archive(path=self.name, job=self.job, started_at=self.started_at, manifest=self.manifest,
                                problem=self.problem)

    def files(self) -> list[str]:
        extras = [extra["file"] for extra in (self.manifest or {}).get("extras", [])
                  if isinstance(extra, dict) and extra.get("file")]
        manifest = self.name + _manifest.MANIFEST_SUFFIX
        signature = [manifest + _signing.SIGNATURE_SUFFIX] if self.signed else []
        return [*extras, self.name, *signature, manifest]

    @property
    def bytes(self) -> int:
        return sum(int(entry.get("Size", 0)) for entry in self.objects.values())


@dataclass
class Listing:
    remote: Remote
    archives: list[RemoteArchive] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    uploads: list[dict[str, t.Any]] = field(default_factory=list)  # incomplete multipart uploads
    stored_bytes: int = 0


def list_remote(s3: t.Any, remote: Remote, job: str | None = None, read_manifests: bool = True) -> Listing:
    """What the prefix holds: archives (with their manifests), incomplete uploads, and files not ours."""
    listing = Listing(remote)
    objects: dict[str, dict[str, t.Any]] = {}
    paginator = s3.get_paginator("list_objects_v2")
    pages = _guarded(remote, "listing", lambda: list(paginator.paginate(Bucket=remote.bucket, Prefix=remote.prefix)))
    for page in pages:
        for entry in page.get("Contents", []):
            objects[entry["Key"][len(remote.prefix):]] = entry
    listing.stored_bytes = sum(int(entry.get("Size", 0)) for entry in objects.values())
    uploads = _guarded(remote, "listing uploads of",
                       lambda: s3.list_multipart_uploads(Bucket=remote.bucket, Prefix=remote.prefix))
    listing.uploads = [upload for upload in uploads.get("Uploads", [])
                       if job is None or _job_of(upload["Key"][len(remote.prefix):]) == job]
    claimed: set[str] = set()
    for name in sorted(objects):
        if not name.endswith(_manifest.MANIFEST_SUFFIX):
            continue
        archive_name = name[: -len(_manifest.MANIFEST_SUFFIX)]
        match = _catalog.ARCHIVE_NAME.match(archive_name)
        if not match:
            continue
        archive = RemoteArchive(archive_name, match["job"], _catalog.stamp_time(match["stamp"]), {},
                                signed=name + _signing.SIGNATURE_SUFFIX in objects)
        if read_manifests:
            try:
                body = _read_object(s3, remote, name, "reading")
                archive.manifest = _check_manifest(json.loads(body), name)
                archive.started_at = _catalog.parse_time(archive.manifest.get("started_at")) or archive.started_at
            except (ValueError, LifeboatError) as exc:
                archive.problem = f"manifest {name} is unreadable: {exc}"
        archive.objects = {file: objects[file] for file in archive.files() if file in objects}
        missing = [file for file in archive.files() if file not in objects]
        if missing and not archive.problem:
            archive.problem = f"{', '.join(missing)} missing remotely"
        claimed.update(archive.files())
        listing.archives.append(archive)
    for name in sorted(objects):
        match = _catalog.ARCHIVE_NAME.match(name)
        if name in claimed:
            continue
        if not match or "/" in name:
            listing.foreign.append(name)
            continue
        # An archive (or extra) whose manifest never arrived: the upload did not finish.
        listing.archives.append(RemoteArchive(name, match["job"], _catalog.stamp_time(match["stamp"]),
                                              {name: objects[name]},
                                              problem="incomplete upload: no manifest remotely"))
    if job is not None:
        listing.archives = [archive for archive in listing.archives if archive.job == job]
    listing.archives.sort(key=lambda archive: (archive.started_at, archive.name))
    return listing


def _read_object(s3: t.Any, remote: Remote, name: str, doing: str) -> bytes:
    def read() -> bytes:
        return s3.get_object(Bucket=remote.bucket, Key=remote.key(name))["Body"].read()

    return _guarded(remote, doing, read)


def _job_of(name: str) -> str | None:
    match = _catalog.ARCHIVE_NAME.match(name)
    return match["job"] if match else None


def _check_manifest(manifest: t.Any, name: str) -> dict[str, t.Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != _manifest.FORMAT or not isinstance(
            manifest.get("archive"), dict) or not manifest["archive"].get("sha256"):
        raise LifeboatError(f"{name} is not a lifeboat.ops archive manifest")
    return manifest


def refuse_foreign(listing: Listing) -> None:
    """A prefix shared with other files is refused: a prune there could not tell ours from theirs."""
    if listing.foreign:
        shown = ", ".join(listing.foreign[:3]) + (" ..." if len(listing.foreign) > 3 else "")
        raise LifeboatError(f"{listing.remote.url()} holds {len(listing.foreign)} objects that are not lifeboat "
                            f"archives ({shown}); give a prefix of its own to the off-site copies")


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
    _guarded(remote, "uploading the manifest to", lambda: s3.put_object(
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
        expected = _guarded(remote, f"uploading {name} to", lambda: _put_single(s3, remote, path, key, sha256))
    else:
        expected = _guarded(remote, f"uploading {name} to",
                            lambda: _put_multipart(s3, remote, path, key, size, sha256, result))
    head = _guarded(remote, "checking", lambda: s3.head_object(Bucket=remote.bucket, Key=key, ChecksumMode="ENABLED"))
    # With Content-MD5 the store's record is the ETag: the MD5 of the object, or of its parts' MD5s then -N.
    recorded = head.get("ETag", "").strip('"') if remote.md5 else head.get("ChecksumSHA256")
    if recorded != expected or int(head.get("ContentLength", -1)) != size:
        hint = "" if remote.md5 or recorded else "; the store keeps no SHA-256 checksums: set checksum to md5"
        raise LifeboatError(f"{remote.url(name)} records checksum {recorded} and {head.get('ContentLength')} bytes "
                            f"after the upload, not {expected} and {size}; the copy is not trusted{hint}")
    result.bytes_sent += size


def _put_single(s3: t.Any, remote: Remote, path: str, key: str, sha256: str) -> str:
    """One request; returns what the store should record (the SHA-256, or with Content-MD5 the ETag)."""
    from botocore import exceptions as bce  # pylint: disable=import-outside-toplevel

    md5 = None
    if remote.md5:  # the MD5 is read from the file itself, which must still be the manifest's
        sums = [hashlib.sha256(), hashlib.md5(usedforsecurity=False)]
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(_READ_BLOCK), b""):
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
    return md5.hex() if md5 else _b64(bytes.fromhex(sha256))


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
                              else known.get("ChecksumSHA256") == _b64(digest))
        if known and recorded and int(known.get("Size", -1)) == length:
            result.resumed_parts += 1
            return {"PartNumber": number, "ETag": known["ETag"],
                    **({} if remote.md5 else {"ChecksumSHA256": known["ChecksumSHA256"]})}
        integrity = {"ContentMD5": _b64(digest)} if remote.md5 else {"ChecksumSHA256": _b64(digest)}
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
    return f"{_b64(hashlib.sha256(joined).digest())}-{count}"


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


# ---------------------------------------------------------------------------------------------------- verify

@dataclass
class RemoteCheck:
    name: str
    ok: bool
    problem: str | None = None

    def as_dict(self) -> dict[str, t.Any]:
        return {"name": self.name, "ok": self.ok, "problem": self.problem}


def verify_remote(remote: Remote, job: str | None = None, download: bool = False,
                  s3: t.Any = None) -> tuple[list[RemoteCheck], Listing]:
    """Every remote archive against its remote manifest: the stored checksum (and with ``download``, the bytes)."""
    s3 = s3 or client(remote)
    listing = list_remote(s3, remote, job)
    checks = []
    for archive in listing.archives:
        if archive.problem:
            checks.append(RemoteCheck(archive.name, False, archive.problem))
            continue
        problem = None
        manifest = archive.manifest or {}
        files = [(extra["file"], extra["sha256"]) for extra in manifest.get("extras", [])
                 if isinstance(extra, dict) and extra.get("file") and extra.get("sha256")]
        files.append((archive.name, manifest["archive"]["sha256"]))
        for name, sha256 in files:
            problem = _check_object(s3, remote, name, sha256, download)
            if problem:
                break
        checks.append(RemoteCheck(archive.name, problem is None, problem))
    return checks, listing


def _check_object(s3: t.Any, remote: Remote, name: str, sha256: str, download: bool) -> str | None:
    head = _guarded(remote, "checking", lambda: s3.head_object(Bucket=remote.bucket, Key=remote.key(name),
                                                               ChecksumMode="ENABLED"))
    recorded = head.get("ChecksumSHA256")
    if not recorded and not download:
        # Sent with Content-MD5 (a store without flexible checksums): only the bytes can be held to the manifest.
        return _check_object(s3, remote, name, sha256, True)
    if recorded and "-" not in recorded and recorded != _b64(bytes.fromhex(sha256)):
        return f"{name} remotely has SHA-256 {base64.b64decode(recorded).hex()}, its manifest says {sha256}"
    if not recorded or "-" in recorded or download:
        # A multipart object's checksum is over its parts: read the object and compare the whole.
        whole = hashlib.sha256()
        body = _guarded(remote, "reading", lambda: s3.get_object(Bucket=remote.bucket, Key=remote.key(name))["Body"])
        for block in iter(lambda: body.read(_READ_BLOCK), b""):
            whole.update(block)
        if whole.hexdigest() != sha256:
            return f"{name} remotely has SHA-256 {whole.hexdigest()}, its manifest says {sha256}"
    return None


# ---------------------------------------------------------------------------------------------------- fetch

def fetch_archive(remote: Remote, name: str, directory: str, s3: t.Any = None) -> str:
    """Bring one archive (extras, archive, manifest last) into ``directory``, each file proven against the remote
    manifest's sha256 before it gets its final name; returns the local archive path."""
    s3 = s3 or client(remote)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    manifest_name = name + _manifest.MANIFEST_SUFFIX
    body = _read_object(s3, remote, manifest_name, f"reading {manifest_name} from")
    try:
        manifest = _check_manifest(json.loads(body), manifest_name)
    except ValueError as exc:
        raise LifeboatError(f"{remote.url(manifest_name)} is not JSON: {exc}") from exc
    if manifest["archive"].get("file") != name:
        raise LifeboatError(f"{remote.url(manifest_name)} describes {manifest['archive'].get('file')}, not {name}")
    files = [(extra["file"], extra["sha256"]) for extra in manifest.get("extras", [])
             if isinstance(extra, dict) and extra.get("file") and extra.get("sha256")]
    files.append((name, manifest["archive"]["sha256"]))
    for file, sha256 in files:
        _download_checked(s3, remote, file, sha256, directory)
    local_manifest = os.path.join(directory, manifest_name)
    signature = _read_signature(s3, remote, manifest_name + _signing.SIGNATURE_SUFFIX)
    if signature is not None:  # the restore checks it against its trusted signers, as for a local archive
        _signing.write_signature(local_manifest, signature)
    try:
        kept = _manifest.load(local_manifest)["archive"]["sha256"] == manifest["archive"]["sha256"]
    except LifeboatError:
        kept = False
    if not kept:  # a local manifest of the same bytes stays: it may record verifications made after the copy
        _manifest.write(local_manifest, manifest)
    fsync_directory(directory)
    return os.path.join(directory, name)


def _read_signature(s3: t.Any, remote: Remote, name: str) -> bytes | None:
    """The manifest's signature, or None for an unsigned archive (the restore decides whether that is allowed):
    one GET, a missing key is the answer, not an error."""
    from botocore import exceptions as bce  # pylint: disable=import-outside-toplevel

    try:
        return s3.get_object(Bucket=remote.bucket, Key=remote.key(name))["Body"].read()
    except bce.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise describe_error(exc, remote, f"reading {name} from") from None
    except bce.BotoCoreError as exc:
        raise describe_error(exc, remote, f"reading {name} from") from None


def _download_checked(s3: t.Any, remote: Remote, name: str, sha256: str, directory: str) -> None:
    final = os.path.join(directory, name)
    if os.path.exists(final) and digest_file(final, DEFAULT_PART_SIZE).sha256 == sha256:
        return
    partial = os.path.join(directory, f".{name}.partial-fetch")  # a stable name: the next fetch resumes it
    whole = hashlib.sha256()
    have = 0
    if os.path.exists(partial):
        with open(partial, "rb") as handle:
            for block in iter(lambda: handle.read(_READ_BLOCK), b""):
                whole.update(block)
                have += len(block)
    head = _guarded(remote, f"checking {name} in", lambda: s3.head_object(Bucket=remote.bucket, Key=remote.key(name)))
    size = int(head["ContentLength"])
    if have > size:
        os.unlink(partial)
        whole, have = hashlib.sha256(), 0
    if have < size:
        extra = {"Range": f"bytes={have}-"} if have else {}
        response = _guarded(remote, f"downloading {name} from", lambda: s3.get_object(
            Bucket=remote.bucket, Key=remote.key(name), **extra))
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for block in iter(lambda: response["Body"].read(_READ_BLOCK), b""):
                whole.update(block)
                os.write(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)
    if whole.hexdigest() != sha256:
        os.unlink(partial)  # a resumed download that does not add up starts again next time
        raise LifeboatError(f"{remote.url(name)} does not match its manifest's sha256 ({whole.hexdigest()} != {sha256}); "
                            "it was changed after the upload: nothing was restored from it")
    os.replace(partial, final)


def newest_remote(remote: Remote, job: str, select: str = "newest_verified", s3: t.Any = None) -> str:
    """The archive name a restore from the bucket takes, as ``_catalog.choose_for_restore`` would locally."""
    s3 = s3 or client(remote)
    listing = list_remote(s3, remote, job)
    usable = [archive for archive in listing.archives if not archive.problem]
    if select == "newest_verified":
        usable = [archive for archive in usable if archive.as_catalog().verified]
    if not usable:
        raise LifeboatError(f"no complete{' verified' if select == 'newest_verified' else ''} archive of job '{job}' "
                            f"in {remote.url()}")
    return usable[-1].name


# ---------------------------------------------------------------------------------------------------- prune

@dataclass
class RemotePrunePlan:
    remove: list[dict[str, t.Any]] = field(default_factory=list)
    keep: list[dict[str, t.Any]] = field(default_factory=list)
    locked: list[dict[str, t.Any]] = field(default_factory=list)
    held: list[dict[str, t.Any]] = field(default_factory=list)
    uploads_aborted: list[str] = field(default_factory=list)
    uploads_open: list[str] = field(default_factory=list)
    removed_objects: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, t.Any]:
        return {"removed": self.remove, "kept": self.keep, "locked": self.locked, "held": self.held,
                "uploads_aborted": self.uploads_aborted, "uploads_open": self.uploads_open,
                "removed_objects": self.removed_objects}


def prune_remote(remote: Remote, destination: str, policy: _retention.Policy, job: str | None = None,
                 remote_policy: _retention.Policy | None = None, check_mode: bool = False,
                 now: _dt.datetime | None = None, s3: t.Any = None) -> RemotePrunePlan:
    """Mirror local retention remotely, never ahead of the local side.

    Per job and database: nothing goes while the local group is held (its newest archive unverified or
    anomalous) or absent locally; the newest verified remote archive and everything newer stay; an archive goes
    only when neither the local policy nor ``remote_policy`` keeps it and it is no longer kept locally.
    """
    now = now or _manifest.utc_now()
    s3 = s3 or client(remote)
    listing = list_remote(s3, remote, job)
    refuse_foreign(listing)
    local_plan = _retention.plan_prune(_catalog.scan(destination, job), policy, now)
    local_groups = {(group.job, group.database): group for group in local_plan.groups}
    local_kept = {archive.name for group in local_plan.groups for archive, _why in group.keep}
    plan = RemotePrunePlan()
    grouped: dict[tuple[str, str | None], list[RemoteArchive]] = {}
    for archive in listing.archives:
        grouped.setdefault(archive.as_catalog().group, []).append(archive)
    for (group_job, database), archives in sorted(grouped.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        catalog_view = [archive.as_catalog() for archive in archives]
        remote_group = _retention._plan_group(group_job, database, catalog_view, policy, now)  # pylint: disable=protected-access
        extra_keep = {id(archive) for archive, _why in _retention.apply_policy(
            [archive for archive in catalog_view if archive.readable], remote_policy, now)} if remote_policy else set()
        local = local_groups.get((group_job, database))
        held = None
        if local is None:
            held = "the local side has no archive of this job and database: nothing is removed remotely"
        elif local.held:
            held = f"held locally: {local.held}"
        elif remote_group.held:
            held = remote_group.held
        by_name = {archive.name: archive for archive in archives}
        for kept, why in remote_group.keep:
            plan.keep.append({"name": kept.name, "reasons": why})
        for candidate, why in remote_group.remove:
            if held:
                plan.keep.append({"name": candidate.name, "reasons": [f"held: {held}"]})
            elif candidate.name in local_kept:
                plan.keep.append({"name": candidate.name, "reasons": ["still kept locally"]})
            elif id(candidate) in extra_keep:
                plan.keep.append({"name": candidate.name, "reasons": ["kept by the remote policy"]})
            else:
                plan.remove.append({"name": candidate.name, "reasons": list(why)})
        if held:
            plan.held.append({"job": group_job, "database": database, "reason": held})
        for entry in list(plan.remove):
            if entry["name"] in by_name:
                locked_until = _locked_until(s3, remote, by_name[entry["name"]], now)
                if locked_until:
                    plan.remove.remove(entry)
                    plan.locked.append({"name": entry["name"], "locked_until": locked_until})
    for upload in listing.uploads:
        started = upload.get("Initiated")
        label = f"{upload['Key'][len(remote.prefix):]} (started {started})"
        if started and now - started > _dt.timedelta(hours=STALE_UPLOAD_HOURS):
            plan.uploads_aborted.append(label)
            if not check_mode:
                _guarded(remote, "aborting an upload in", functools.partial(
                    s3.abort_multipart_upload, Bucket=remote.bucket, Key=upload["Key"], UploadId=upload["UploadId"]))
        else:
            plan.uploads_open.append(label)
    if not check_mode:
        names = {archive.name: archive for archive in listing.archives}
        for entry in plan.remove:
            # Extras and archive first, the manifest last: an interrupted prune shows as an incomplete archive.
            for file in names[entry["name"]].files():
                if file in names[entry["name"]].objects:
                    _guarded(remote, f"removing {file} from", functools.partial(
                        s3.delete_object, Bucket=remote.bucket, Key=remote.key(file)))
                    plan.removed_objects.append(file)
    return plan


def _locked_until(s3: t.Any, remote: Remote, archive: RemoteArchive, now: _dt.datetime) -> str | None:
    for file in archive.objects:
        head = _guarded(remote, "checking", functools.partial(s3.head_object, Bucket=remote.bucket,
                                                              Key=remote.key(file)))
        until = head.get("ObjectLockRetainUntilDate")
        if until and until > now:
            return _manifest.iso(until)
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return "legal hold"
    return None


# ---------------------------------------------------------------------------------------------------- status

def remote_status(remote: Remote, job: str | None = None, s3: t.Any = None,
                  now: _dt.datetime | None = None) -> dict[str, t.Any]:
    """The remote side for status and metrics: newest complete verified copy (and its age), counts, bytes (old
    versions too)."""
    s3 = s3 or client(remote)
    now = now or _manifest.utc_now()
    listing = list_remote(s3, remote, job)
    complete = [archive for archive in listing.archives if not archive.problem]
    verified = [archive for archive in complete if archive.as_catalog().verified]
    newest = verified[-1] if verified else None
    from botocore import exceptions as bce  # pylint: disable=import-outside-toplevel

    noncurrent = 0
    try:
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=remote.bucket, Prefix=remote.prefix):
            noncurrent += sum(int(version.get("Size", 0)) for version in page.get("Versions", [])
                              if not version.get("IsLatest") and (job is None or _job_of(
                                  version["Key"][len(remote.prefix):].removesuffix(_signing.SIGNATURE_SUFFIX)
                                  .removesuffix(_manifest.MANIFEST_SUFFIX)) == job))
    except (bce.BotoCoreError, bce.ClientError):  # a store without versioning support: nothing to add
        noncurrent = 0
    return {
        "url": remote.url(),
        "archives": len(complete),
        "verified": len(verified),
        "incomplete": [archive.name for archive in listing.archives if archive.problem],
        "newest_verified": newest.name if newest else None,
        "newest_verified_started_at": _manifest.iso(newest.started_at) if newest else None,
        "newest_verified_age_hours": round((now - newest.started_at).total_seconds() / 3600, 2) if newest else None,
        "stored_bytes": sum(archive.bytes for archive in listing.archives) if job else listing.stored_bytes,
        "noncurrent_version_bytes": noncurrent,
        "open_uploads": len(listing.uploads),
    }


OFFSITE_RECORD = ".lifeboat-offsite-last-copy.json"


def _record_path(destination: str, job: str | None) -> str:
    return os.path.join(destination, OFFSITE_RECORD.replace(".json", f"-{job}.json") if job else OFFSITE_RECORD)


def record_copy(destination: str, ok: bool, failure: str | None = None, job: str | None = None) -> None:
    """The outcome of the newest copy to the bucket (of ``job``, or of the whole destination), beside the archives,
    for status: the last failure stays recorded after later successes (when and why), for the metrics."""
    from ._files import write_file_atomic  # pylint: disable=import-outside-toplevel

    at = _manifest.iso(_manifest.utc_now())
    previous = last_copy(destination, job, exact=True) or {}
    record = {"at": at, "ok": ok, "failure": failure,
              "last_failure": {"at": at, "failure": failure} if not ok else previous.get("last_failure")}
    if os.path.isdir(destination):
        write_file_atomic(_record_path(destination, job), json.dumps(record).encode("utf-8"), 0o600)


def last_copy(destination: str, job: str | None = None, exact: bool = False) -> dict[str, t.Any] | None:
    """The record of ``job``'s last copy, else (unless ``exact``) the destination's (a copy of all its jobs)."""
    for path in [_record_path(destination, job)] + ([] if exact or not job else [_record_path(destination, None)]):
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            return record
    return None


def offsite_health(destination: str, remote: Remote, max_delay_hours: float = 26.0,
                   now: _dt.datetime | None = None, s3: t.Any = None, job: str | None = None) -> dict[str, t.Any]:
    """The remote side of a destination's health (of ``job``'s archives alone when given): CRITICAL when the newest
    local verified archive has not reached the bucket within ``max_delay_hours`` of its end, or the bucket cannot
    be read; WARNING for incomplete uploads and a failed last copy."""
    now = now or _manifest.utc_now()
    health: dict[str, t.Any] = {"url": remote.url(), "job": job, "state": _catalog.OK, "reasons": [], "remote": None,
                                "last_copy": last_copy(destination, job)}

    def add(state: str, message: str) -> None:
        health["reasons"].append({"severity": state, "message": message})
        if _catalog.SEVERITY_ORDER[state] > _catalog.SEVERITY_ORDER[health["state"]]:
            health["state"] = state

    try:
        s3 = s3 or client(remote)
        health["remote"] = remote_status(remote, job=job, s3=s3, now=now)
        present = {archive.name for archive in list_remote(s3, remote, job, read_manifests=False).archives
                   if not archive.problem}
    except LifeboatError as exc:
        add(_catalog.CRITICAL, str(exc))
        return health
    local = [archive for archive in _catalog.scan(destination, job).archives if archive.verified] if os.path.isdir(
        destination) else []
    if local:
        newest = local[-1]
        late = now - newest.finished_at > _dt.timedelta(hours=max_delay_hours)
        if newest.name not in present and late:
            add(_catalog.CRITICAL, f"the newest verified archive {newest.name} has not reached {remote.url()} "
                                   f"within {max_delay_hours:g} h")
    if health["remote"]["incomplete"]:
        add(_catalog.WARNING, f"incomplete uploads in {remote.url()}: {', '.join(health['remote']['incomplete'][:3])}")
    record = health["last_copy"]
    if record and not record.get("ok"):
        add(_catalog.WARNING, f"the last copy to {remote.url()} failed at {record.get('at')}: {record.get('failure')}")
    return health


def describe_health(health: dict[str, t.Any]) -> str:
    """One line of the remote side for ``lifeboat status``: the newest verified copy, its age, the counts and
    bytes, and what is wrong."""
    remote = health.get("remote")
    if not remote:
        return health["reasons"][0]["message"] if health["reasons"] else f"{health['url']} not read"
    newest = (f"newest verified copy {remote['newest_verified']}, {remote['newest_verified_age_hours']:.1f} h old"
              if remote["newest_verified"] else "no verified copy")
    line = (f"{newest}; {remote['verified']} verified of {remote['archives']} archives, "
            f"{_catalog.human_size(remote['stored_bytes'])} in {health['url']}")
    return "; ".join([line, *(reason["message"] for reason in health["reasons"])])


def offsite_metrics_text(entries: t.Iterable[tuple[str, dict[str, t.Any]]]) -> str:
    """Gauges of the remote side for the textfile collector, one series per (destination, health) entry, labelled
    as _status's metrics (destination, and job when the health is a job's) plus the bucket's url."""
    from . import _prometheus  # pylint: disable=import-outside-toplevel

    families: dict[str, tuple[str, list[tuple[dict[str, str], float | int]]]] = {}

    def add(name: str, help_text: str, labels: dict[str, str], value: float | int | None) -> None:
        series = families.setdefault(name, (help_text, []))[1]
        if value is not None:
            series.append((labels, value))

    for destination, health in entries:
        labels = {"destination": destination, **({"job": health["job"]} if health.get("job") else {}),
                  "url": health["url"]}
        remote = health.get("remote") or {}
        started = _catalog.parse_time(remote.get("newest_verified_started_at"))
        record = health.get("last_copy") or {}
        copied_at = _catalog.parse_time(record.get("at"))
        failed_at = _catalog.parse_time((record.get("last_failure") or {}).get("at")) or (
            copied_at if record and not record.get("ok") else None)
        add("lifeboat_offsite_status", "Health of the off-site copies: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            labels, {_catalog.OK: 0, _catalog.WARNING: 1, _catalog.CRITICAL: 2}.get(health["state"], 3))
        add("lifeboat_offsite_archives", "Complete archives in the bucket.", labels, remote.get("archives"))
        add("lifeboat_offsite_verified_archives", "Complete archives in the bucket whose manifest records a passed "
            "verification.", labels, remote.get("verified"))
        add("lifeboat_offsite_last_verified_start_timestamp_seconds", "Start of the newest verified archive in the "
            "bucket (its age: time() minus this).", labels, started.timestamp() if started else None)
        add("lifeboat_offsite_stored_bytes", "Bytes of the current objects of the archives in the bucket.", labels,
            remote.get("stored_bytes"))
        add("lifeboat_offsite_noncurrent_bytes", "Bytes of older object versions kept by bucket versioning.", labels,
            remote.get("noncurrent_version_bytes"))
        add("lifeboat_offsite_incomplete_archives", "Archives in the bucket without their manifest (an upload that "
            "did not finish).", labels, len(remote["incomplete"]) if "incomplete" in remote else None)
        add("lifeboat_offsite_last_copy_success", "1 when the last copy to the bucket succeeded, 0 when it failed.",
            labels, int(bool(record.get("ok"))) if record else None)
        add("lifeboat_offsite_last_copy_timestamp_seconds", "When the last copy to the bucket ended.", labels,
            copied_at.timestamp() if copied_at else None)
        add("lifeboat_offsite_last_copy_failure_timestamp_seconds", "When a copy to the bucket last failed (absent "
            "when none did).", labels, failed_at.timestamp() if failed_at else None)
    return _prometheus.text((name, help_text, series) for name, (help_text, series) in families.items())
