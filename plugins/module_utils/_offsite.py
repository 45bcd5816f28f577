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

The bucket itself (options, client, errors, listing) is `_offsite_bucket`, the copy `_offsite_upload`; this file
verifies, fetches and prunes, keeps the record of the last copy and reads the bucket's health.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import json
import os
import typing as t
from dataclasses import dataclass, field

from . import _catalog, _manifest, _retention, _signing
from ._common import LifeboatError
from ._files import fsync_directory
from ._offsite_bucket import (
    CHECKSUMS,
    DEFAULT_PART_SIZE,
    LOCK_MODES,
    MIB,
    READ_BLOCK,
    Listing,
    Remote,
    RemoteArchive,
    b64,
    check_manifest,
    client,
    describe_error,
    digest_file,
    guarded,
    job_of,
    list_remote,
    read_object,
    refuse_foreign,
)

# Re-exported: the host command and the benchmarks copy through _offsite.copy_destination and friends.
from ._offsite_upload import CopyResult, copy_archive, copy_destination  # noqa: F401  # pylint: disable=unused-import

# Incomplete multipart uploads older than this are aborted by prune (younger ones may belong to a running copy).
STALE_UPLOAD_HOURS = 24


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
    head = guarded(remote, "checking", lambda: s3.head_object(Bucket=remote.bucket, Key=remote.key(name),
                                                              ChecksumMode="ENABLED"))
    recorded = head.get("ChecksumSHA256")
    if not recorded and not download:
        # Sent with Content-MD5 (a store without flexible checksums): only the bytes can be held to the manifest.
        return _check_object(s3, remote, name, sha256, True)
    if recorded and "-" not in recorded and recorded != b64(bytes.fromhex(sha256)):
        return f"{name} remotely has SHA-256 {base64.b64decode(recorded).hex()}, its manifest says {sha256}"
    if not recorded or "-" in recorded or download:
        # A multipart object's checksum is over its parts: read the object and compare the whole.
        whole = hashlib.sha256()
        body = guarded(remote, "reading", lambda: s3.get_object(Bucket=remote.bucket, Key=remote.key(name))["Body"])
        for block in iter(lambda: body.read(READ_BLOCK), b""):
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
    body = read_object(s3, remote, manifest_name, f"reading {manifest_name} from")
    try:
        manifest = check_manifest(json.loads(body), manifest_name)
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
    from botocore import exceptions as bce  # type: ignore[import-untyped]  # pylint: disable=import-outside-toplevel

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
            for block in iter(lambda: handle.read(READ_BLOCK), b""):
                whole.update(block)
                have += len(block)
    head = guarded(remote, f"checking {name} in", lambda: s3.head_object(Bucket=remote.bucket, Key=remote.key(name)))
    size = int(head["ContentLength"])
    if have > size:
        os.unlink(partial)
        whole, have = hashlib.sha256(), 0
    if have < size:
        extra = {"Range": f"bytes={have}-"} if have else {}
        response = guarded(remote, f"downloading {name} from", lambda: s3.get_object(
            Bucket=remote.bucket, Key=remote.key(name), **extra))
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for block in iter(lambda: response["Body"].read(READ_BLOCK), b""):
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
                guarded(remote, "aborting an upload in", functools.partial(
                    s3.abort_multipart_upload, Bucket=remote.bucket, Key=upload["Key"], UploadId=upload["UploadId"]))
        else:
            plan.uploads_open.append(label)
    if not check_mode:
        names = {archive.name: archive for archive in listing.archives}
        for entry in plan.remove:
            # Extras and archive first, the manifest last: an interrupted prune shows as an incomplete archive.
            for file in names[entry["name"]].files():
                if file in names[entry["name"]].objects:
                    guarded(remote, f"removing {file} from", functools.partial(
                        s3.delete_object, Bucket=remote.bucket, Key=remote.key(file)))
                    plan.removed_objects.append(file)
    return plan


def _locked_until(s3: t.Any, remote: Remote, archive: RemoteArchive, now: _dt.datetime) -> str | None:
    for file in archive.objects:
        head = guarded(remote, "checking", functools.partial(s3.head_object, Bucket=remote.bucket,
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
                              if not version.get("IsLatest") and (job is None or job_of(
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
