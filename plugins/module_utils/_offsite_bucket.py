# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The S3-compatible bucket of off-site copies: its options (`Remote`), the client, errors, digests, the listing.

What copying (`_offsite_upload`) and verifying, fetching and pruning (`_offsite`) share: one `Remote` checked once,
one client per call made from botocore's session (credentials from a 0600 file, the environment or the instance's
role; never argv, never a result), store errors said in one line with what to fix, and the bucket read as
archives, their manifests and what does not belong there.
"""

from __future__ import annotations

import base64
import configparser
import datetime as _dt
import hashlib
import json
import os
import stat
import typing as t
import urllib.parse
from dataclasses import dataclass, field

from . import _catalog, _manifest, _signing
from ._common import LifeboatError, register_secret

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MIB
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
# What the store verifies on receipt: SHA-256 (flexible checksums), or Content-MD5 per request for stores without
# them; either way the whole file's SHA-256 is checked against the manifest as it is read for the upload.
CHECKSUMS = ("sha256", "md5")
READ_BLOCK = 4 * MIB


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
            return {"ContentMD5": b64(md5_digest or b"")}
        return {"ChecksumSHA256": b64(data_digest)}

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


def guarded(remote: Remote, doing: str, call: t.Callable[[], t.Any]) -> t.Any:
    from botocore import exceptions as bce  # pylint: disable=import-outside-toplevel

    try:
        return call()
    except (bce.BotoCoreError, bce.ClientError) as exc:
        raise describe_error(exc, remote, doing) from None


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass
class LocalDigest:
    """A file's whole SHA-256 and its parts' SHA-256s, read once."""

    size: int
    sha256: str
    parts: list[bytes]

    def composite(self) -> str:
        """The checksum S3 records for a multipart object: SHA-256 of the parts' SHA-256s, then -N."""
        return f"{b64(hashlib.sha256(b''.join(self.parts)).digest())}-{len(self.parts)}"


def digest_file(path: str, part_size: int) -> LocalDigest:
    whole = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    with open(path, "rb") as handle:
        while True:
            part = hashlib.sha256()
            taken = 0
            while taken < part_size:
                block = handle.read(min(READ_BLOCK, part_size - taken))
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
    pages = guarded(remote, "listing", lambda: list(paginator.paginate(Bucket=remote.bucket, Prefix=remote.prefix)))
    for page in pages:
        for entry in page.get("Contents", []):
            objects[entry["Key"][len(remote.prefix):]] = entry
    listing.stored_bytes = sum(int(entry.get("Size", 0)) for entry in objects.values())
    uploads = guarded(remote, "listing uploads of",
                      lambda: s3.list_multipart_uploads(Bucket=remote.bucket, Prefix=remote.prefix))
    listing.uploads = [upload for upload in uploads.get("Uploads", [])
                       if job is None or job_of(upload["Key"][len(remote.prefix):]) == job]
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
                body = read_object(s3, remote, name, "reading")
                archive.manifest = check_manifest(json.loads(body), name)
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


def read_object(s3: t.Any, remote: Remote, name: str, doing: str) -> bytes:
    def read() -> bytes:
        return s3.get_object(Bucket=remote.bucket, Key=remote.key(name))["Body"].read()

    return guarded(remote, doing, read)


def job_of(name: str) -> str | None:
    match = _catalog.ARCHIVE_NAME.match(name)
    return match["job"] if match else None


def check_manifest(manifest: t.Any, name: str) -> dict[str, t.Any]:
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
