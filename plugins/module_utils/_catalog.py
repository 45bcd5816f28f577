# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""What a backup destination holds: archives with their manifests, their verifications, and what looks wrong.

Verification, retention and health all read a destination through this one view, so they agree on which
archive is the newest, which are proven, and which must not be touched because nobody can tell what they are.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import socket
import typing as t
from dataclasses import dataclass, field

from . import _manifest, _signing
from ._common import LifeboatError, first_few

# JOB-20261122T031500Z.KIND[.zst|.gz][.age]: the names _manifest.archive_name gives.
ARCHIVE_NAME = re.compile(r"^(?P<job>[A-Za-z0-9][A-Za-z0-9_.-]*?)-(?P<stamp>\d{8}T\d{6}Z)\.(?P<kind>[A-Za-z0-9_.-]+)$")
# Leftovers of a run that was interrupted, or is still going: the hidden archive being written
# (.NAME.partial-PID) and a manifest being renamed into place (NAME.manifest.json.partial-PID).
PARTIAL_NAME = re.compile(r"^.+\.partial-(?P<pid>\d+)$")
# The outcome of the newest `lifeboat backup` run of a job, kept beside its archives (see _status.record_run).
RUN_RECORD = ".lifeboat-last-run-{job}.json"
RUN_RECORD_NAME = re.compile(r"^\.lifeboat-last-run-(?P<job>.+)\.json$")
RUN_RECORD_PARTIAL = re.compile(r"^\.lifeboat-last-run-(?P<job>.+)\.json\.partial-\d+$")
VERIFICATIONS_KEPT = 20

OK, WARNING, CRITICAL, UNKNOWN = "OK", "WARNING", "CRITICAL", "UNKNOWN"
SEVERITY_ORDER = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}


def parse_time(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)


def stamp_time(stamp: str) -> _dt.datetime:
    return _dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)


@dataclass
class Archive:
    """One archive of a destination, readable or not."""

    path: str
    job: str
    started_at: _dt.datetime
    manifest: dict[str, t.Any] | None = None
    problem: str | None = None  # why this archive cannot be trusted or even read
    # Whose verification records count (see _signing.record_trusted); None: every record counts (status and
    # retention modules, which only hold or warn; what a restore chooses is always read with a trust).
    trust: _signing.Trust | None = field(default=None, repr=False, compare=False)
    _records: list[dict[str, t.Any]] | None = field(default=None, init=False, repr=False, compare=False)
    _ignored: int = field(default=0, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def manifest_path(self) -> str:
        return _manifest.manifest_path(self.path)

    @property
    def readable(self) -> bool:
        return self.manifest is not None and self.problem is None

    @property
    def database(self) -> str | None:
        return self.manifest.get("database") if self.manifest else None

    @property
    def engine(self) -> str | None:
        return self.manifest.get("engine") if self.manifest else None

    @property
    def group(self) -> tuple[str, str | None]:
        """Retention and health look at archives per job and database (never per host: containers rename)."""
        return self.job, self.database

    @property
    def finished_at(self) -> _dt.datetime:
        return parse_time(self.manifest.get("finished_at") if self.manifest else None) or self.started_at

    @property
    def size(self) -> int | None:
        return self.manifest["archive"].get("size") if self.manifest else None

    @property
    def plain_size(self) -> int | None:
        return self.manifest["archive"].get("plain_size") if self.manifest else None

    @property
    def encrypted(self) -> bool:
        return bool(self.manifest and self.manifest["archive"].get("encryption"))

    @property
    def duration_seconds(self) -> float | None:
        return self.manifest.get("duration_seconds") if self.manifest else None

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest.get("counts") or {}) if self.manifest else {}

    @property
    def last_verification(self) -> dict[str, t.Any] | None:
        """The newest verification record that counts: with a trust, the newest (by its time) a trusted key signed
        for this archive; a writer to the destination can add, copy or reorder records, not sign them. The unsigned
        or foreign records newer than it are counted in :attr:`ignored_records`."""
        if self._records is None:
            records = [item for item in (self.manifest or {}).get("verifications") or [] if isinstance(item, dict)]
            if self.trust is not None:
                sha256 = str((self.manifest or {})["archive"].get("sha256"))
                newest_first = sorted(records, key=lambda record: str(record.get("at") or ""), reverse=True)
                records, self._ignored = [], 0
                for record in newest_first:
                    if _signing.record_trusted(self.name, sha256, record, self.trust):
                        records = [record]
                        break
                    self._ignored += 1
            self._records = records
        return self._records[-1] if self._records else None

    @property
    def ignored_records(self) -> int:
        """The verification records newer than :attr:`last_verification` that no trusted key signed."""
        self.last_verification  # noqa: B018  # pylint: disable=pointless-statement  # reads and counts the records
        return self._ignored

    @property
    def verified(self) -> bool:
        """Proven: readable, and the last verification of it passed."""
        record = self.last_verification
        return self.readable and bool(record and record.get("ok"))

    @property
    def verification_failed(self) -> bool:
        record = self.last_verification
        return record is not None and not record.get("ok")

    def files(self) -> list[str]:
        """Every file that belongs to this archive: the extras (globals) first, then the archive, its manifest's
        signature when it has one, the manifest last."""
        directory = os.path.dirname(self.path)
        extras = [os.path.join(directory, extra["file"]) for extra in (self.manifest or {}).get("extras", [])
                  if isinstance(extra, dict) and extra.get("file")]
        signature = _signing.signature_path(self.manifest_path)
        return [*extras, self.path, *([signature] if os.path.exists(signature) else []), self.manifest_path]


@dataclass
class Destination:
    """The archives of one directory, oldest first, and the leftovers of interrupted runs."""

    path: str
    archives: list[Archive] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)

    def groups(self) -> dict[tuple[str, str | None], list[Archive]]:
        grouped: dict[tuple[str, str | None], list[Archive]] = {}
        for archive in self.archives:
            grouped.setdefault(archive.group, []).append(archive)
        return grouped


def scan(destination: str, job: str | None = None, trust: _signing.Trust | None = None) -> Destination:
    """Read every manifest of ``destination`` and match it with the files there; with ``trust``, only the
    verification records a trusted key signed count (:attr:`Archive.verifications`)."""
    _manifest.validate_destination(destination)
    try:
        names = sorted(os.listdir(destination))
    except FileNotFoundError:
        return Destination(destination)
    except OSError as exc:
        raise LifeboatError(f"cannot list destination {destination}: {exc.strerror}") from exc
    present = set(names)
    result = Destination(destination)
    claimed: set[str] = set()
    for name in names:
        if name.endswith(_manifest.MANIFEST_SUFFIX):
            archive = _from_manifest(destination, name, present)
            if archive is not None:
                result.archives.append(archive)
                claimed.update(os.path.basename(path) for path in archive.files())
        elif PARTIAL_NAME.match(name):
            result.partials.append(os.path.join(destination, name))
    for name in names:
        match = ARCHIVE_NAME.match(name)
        sidecar = name.endswith((_manifest.MANIFEST_SUFFIX, _manifest.MANIFEST_SUFFIX + _signing.SIGNATURE_SUFFIX))
        if name in claimed or not match or sidecar or PARTIAL_NAME.match(name):
            continue  # a manifest's signature left without it is not an archive (the archive beside it is reported)
        if not os.path.isfile(os.path.join(destination, name)):
            continue
        result.archives.append(Archive(
            path=os.path.join(destination, name), job=match["job"], started_at=stamp_time(match["stamp"]),
            problem="it has no manifest, so nothing says what it holds or proves it whole",
        ))
    if job is not None:
        result.archives = [archive for archive in result.archives if archive.job == job]
    for archive in result.archives:
        archive.trust = trust
    result.archives.sort(key=lambda archive: (archive.started_at, archive.name))
    return result


def _from_manifest(destination: str, name: str, present: set[str]) -> Archive | None:
    archive_file = name[: -len(_manifest.MANIFEST_SUFFIX)]
    match = ARCHIVE_NAME.match(archive_file)
    path = os.path.join(destination, archive_file)
    try:
        manifest = _manifest.load(os.path.join(destination, name))
    except LifeboatError as exc:
        if not match:
            return None  # not one of ours at all
        return Archive(path=path, job=match["job"], started_at=stamp_time(match["stamp"]), problem=str(exc))
    started = parse_time(manifest.get("started_at")) or (stamp_time(match["stamp"]) if match else None)
    if started is None:
        return Archive(path=path, job=str(manifest["job"]), started_at=_dt.datetime.fromtimestamp(0, _dt.timezone.utc),
                       manifest=manifest, problem=f"manifest {name} has no start time")
    archive = Archive(path=path, job=str(manifest["job"]), started_at=started, manifest=manifest)
    if manifest["archive"].get("file") != archive_file:
        archive.problem = f"manifest {name} describes {manifest['archive'].get('file')}, not {archive_file}"
    elif archive_file not in present:
        archive.problem = f"the archive file {archive_file} is missing; only its manifest is left"
    else:
        missing = [extra["file"] for extra in manifest.get("extras", []) if extra.get("file") not in present]
        if missing:
            archive.problem = f"{', '.join(missing)}, part of this archive, is missing"
    return archive


# How a restore picks the archive of a job when it is not given one: the newest one a verification proved (the
# default), or the newest one whatever its verifications say.
RESTORE_SELECTIONS = ("newest_verified", "newest")


def choose_for_restore(destination: str, job: str, select: str = "newest_verified",
                       trust: _signing.Trust | None = None) -> tuple[Archive, str, list[str]]:
    """The archive of ``job`` in ``destination`` a restore takes, why, in words for the person who asked, and
    warnings: verification records no key of ``trust`` signed, which were ignored."""
    if select not in RESTORE_SELECTIONS:
        raise LifeboatError(f"select must be one of {', '.join(RESTORE_SELECTIONS)}, not '{select}'")
    if not os.path.isdir(destination):
        raise LifeboatError(f"destination {destination} does not exist")
    archives = scan(destination, job, trust if trust is not None else _signing.host_trust()).archives
    readable = [archive for archive in archives if archive.readable]
    if not readable:
        unreadable = f" ({len(archives)} cannot be read)" if archives else ""
        raise LifeboatError(f"no archive of job '{job}' in {destination}{unreadable}; run the backup first or give archive")
    databases = sorted({str(archive.database) for archive in readable})
    if len(databases) > 1:
        raise LifeboatError(f"job '{job}' in {destination} holds archives of several databases ({', '.join(databases)}); "
                            "give archive")
    if select == "newest":
        chosen = readable[-1]
        proof = ("verified" if chosen.verified else
                 "its last verification failed" if chosen.verification_failed else "not verified yet")
        reason = f"{chosen.name} is the newest archive of job '{job}' ({proof}; select=newest)"
    else:
        proven = [archive for archive in readable if archive.verified]
        if not proven:
            raise LifeboatError(f"none of the {len(readable)} archives of job '{job}' in {destination} passed a "
                                "verification; verify them (lifeboat.ops.backup_verify) or give select=newest")
        chosen = proven[-1]
        record = chosen.last_verification or {}
        reason = (f"{chosen.name} is the newest verified archive of job '{job}' (level {record.get('level')} "
                  f"at {record.get('at')}; select=newest_verified)")
    newer = [archive.name for archive in archives if archive.started_at > chosen.started_at]
    if newer:
        reason += f"; passed over {len(newer)} newer: {first_few(newer, separator=', ')}"
    return chosen, reason, ignored_records_warnings(readable)


def ignored_records_warnings(archives: t.Iterable[Archive]) -> list[str]:
    """One warning per archive whose verification records were ignored: no trusted key signed them."""
    warnings = []
    for archive in archives:
        if archive.ignored_records:
            warnings.append(f"ignored {archive.ignored_records} verification record(s) of {archive.name} that no "
                            "trusted key signed (unsigned, signed by another key, or copied from another archive)")
    return warnings


def record_verification(archive: Archive, record: dict[str, t.Any], signing_key_file: str | None = None) -> bool:
    """Append a verification to the archive's manifest (atomically), so restores, retention and health can see it;
    signed by ``signing_key_file`` (bound to the archive's name and sha256). Returns whether it was signed: an
    unsigned record counts for no restore."""
    manifest = _manifest.load(archive.manifest_path)
    records = [item for item in manifest.get("verifications") or [] if isinstance(item, dict)]
    entry = {"host": socket.gethostname(), **record}
    if signing_key_file:
        entry[_signing.RECORD_SIGNATURE_FIELD] = _signing.sign_record(
            archive.name, str(manifest["archive"].get("sha256")), entry, signing_key_file)
    records.append(entry)
    manifest["verifications"] = records[-VERIFICATIONS_KEPT:]
    _manifest.write(archive.manifest_path, manifest)
    archive.manifest = manifest
    archive._records = None  # pylint: disable=protected-access  # read again, with the new record
    return bool(signing_key_file)


@dataclass
class Finding:
    severity: str  # WARNING or CRITICAL
    message: str


# When a new archive looks wrong next to the last verified one; status and retention's hold use the same.
SHRINK_RATIO = 0.5
COLLAPSE_MIN_COUNT = 100


def compare_to_reference(
    newest: Archive,
    reference: Archive | None,
    *,
    shrink_ratio: float = SHRINK_RATIO,
    collapse_min_count: int = COLLAPSE_MIN_COUNT,
) -> list[Finding]:
    """What makes ``newest`` suspicious next to the last verified archive before it.

    Smaller by more than ``shrink_ratio`` of the plain size is a warning; a table or collection that held
    at least ``collapse_min_count`` rows and now holds none (or is gone) is critical.
    """
    if reference is None or not newest.readable or not reference.readable:
        return []
    findings = []
    new_size, old_size = newest.plain_size or newest.size, reference.plain_size or reference.size
    if new_size is not None and old_size and new_size < old_size * (1 - shrink_ratio):
        findings.append(Finding(WARNING, (
            f"{newest.name} is {100 - round(100 * new_size / old_size)}% smaller than {reference.name} "
            f"({human_size(new_size)} against {human_size(old_size)} before compression)"
        )))
    collapsed = []
    for name, before in sorted(reference.counts.items()):
        now = newest.counts.get(name)
        if before >= collapse_min_count and not now:
            collapsed.append(f"{name} went from {before} to {'none' if now == 0 else 'missing'}")
    if collapsed:
        shown = first_few(collapsed)
        findings.append(Finding(CRITICAL, f"{newest.name}: {shown}"))
    return findings


def previous_verified(archives: t.Sequence[Archive], before: Archive) -> Archive | None:
    """The newest verified archive older than ``before`` (archives oldest first)."""
    candidates = [a for a in archives if a.verified and a is not before and a.started_at <= before.started_at]
    return candidates[-1] if candidates else None


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
