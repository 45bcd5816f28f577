# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Backup health of a destination: is each job's newest archive fresh, whole, verified and plausible?

Reads the destination through ``_catalog`` and the records beside its archives only (never a database), so it is
safe to run at any time, from
the ``backup_status`` module, the host's ``lifeboat status`` command (Nagios exit codes) or a timer that
writes node_exporter textfile metrics.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import socket
import typing as t
from dataclasses import dataclass, fields

from . import _catalog, _manifest, _prometheus, _restore_records, _retention
from ._catalog import CRITICAL, OK, SEVERITY_ORDER, UNKNOWN, WARNING, human_size
from ._common import PRIVATE_DIR_NAME, LifeboatError, pid_alive, process_start, stale_private_dirs
from ._files import write_file_atomic
from ._module_frame import Outcome, Run
from ._prometheus import read_metrics, validate_metrics_path, write_metrics

EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}
STATUS_TIMESTAMP_METRIC = "lifeboat_backup_status_timestamp_seconds"
FREE_BYTES_METRIC = "lifeboat_backup_destination_free_bytes"
VOLATILE_METRICS = (STATUS_TIMESTAMP_METRIC + "{", FREE_BYTES_METRIC + "{")


def exit_code_for(state: str) -> int:
    """The Nagios plugin exit code of a state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    try:
        return EXIT_CODES[state]
    except KeyError:
        raise LifeboatError(f"unknown state '{state}'; use one of {', '.join(EXIT_CODES)}") from None


def worst(states: t.Iterable[str]) -> str:
    return max(states, key=SEVERITY_ORDER.__getitem__, default=OK)


@dataclass(frozen=True)
class StatusOptions:
    """Thresholds of the health check."""

    max_age_hours: float = 26.0
    # WARNING when the newest archive is smaller than the previous verified one by more than this share.
    shrink_ratio: float = _catalog.SHRINK_RATIO
    # A table or collection with at least this many rows in the previous verified archive and none now: CRITICAL.
    collapse_min_count: int = _catalog.COLLAPSE_MIN_COUNT
    # Free space at the destination below this many times the expected next archive: WARNING (below 1x: CRITICAL).
    free_space_factor: float = 2.0
    # The newest archive unverified: WARNING. Its last verification failed: CRITICAL whatever this says.
    require_verified: bool = True

    def __post_init__(self) -> None:
        _check_number("max_age_hours", self.max_age_hours, minimum=0, strict=True,
                      hint="the age in hours past which the newest archive is CRITICAL, e.g. 26")
        _check_number("shrink_ratio", self.shrink_ratio, minimum=0, maximum=1, strict=True,
                      hint="a share between 0 and 1, e.g. 0.5 warns when an archive is less than half the last one")
        _check_number("collapse_min_count", self.collapse_min_count, minimum=1, integer=True,
                      hint="a row or document count of at least 1, e.g. 100")
        _check_number("free_space_factor", self.free_space_factor, minimum=1,
                      hint="how many next archives should fit in the free space, at least 1, e.g. 2")
        if not isinstance(self.require_verified, bool):
            raise LifeboatError(f"require_verified must be true or false, not {self.require_verified!r}")

    @classmethod
    def from_options(cls, options: t.Mapping[str, t.Any] | None) -> StatusOptions:
        """From a dict of option values (None means the default); unknown names are an error."""
        known = {item.name for item in fields(cls)}
        given = {key: value for key, value in (options or {}).items() if value is not None}
        unknown = sorted(set(given) - known)
        if unknown:
            raise LifeboatError(f"unknown status option {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**given)


def status_options() -> dict[str, t.Any]:
    """StatusOptions as an argument spec (the status module's and the config's ``status`` section): one source."""
    return {item.name: {"type": type(item.default).__name__, "default": item.default} for item in fields(StatusOptions)}


def _check_number(name: str, value: t.Any, *, minimum: float, maximum: float | None = None, strict: bool = False,
                  integer: bool = False, hint: str) -> None:
    kinds = (int,) if integer else (int, float)
    valid = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if valid:
        valid = (value > minimum if strict else value >= minimum) and (
            maximum is None or (value < maximum if strict else value <= maximum))
    if not valid:
        raise LifeboatError(f"{name} {value!r} is not valid: give {hint}")


def evaluate(
    destination: str,
    jobs: t.Sequence[str] | None = None,
    options: StatusOptions | None = None,
    now: _dt.datetime | None = None,
    job_options: t.Mapping[str, StatusOptions] | None = None,
) -> dict[str, t.Any]:
    """The health of every (job, database) group of ``destination``; with ``jobs``, each of them must be there.

    ``job_options`` gives jobs thresholds of their own (an hourly job is late sooner than a nightly one); the
    others, and the check of the space all jobs share, use ``options``, or the strictest free-space factor given.
    """
    options = options or StatusOptions()
    job_options = job_options or {}
    now = now or _manifest.utc_now()
    _manifest.validate_destination(destination)
    expected = list(dict.fromkeys(jobs)) if jobs else None
    for job in expected or ():
        _manifest.validate_job_name(job)
    report: dict[str, t.Any] = {
        "destination": destination, "checked_at": _manifest.iso(now), "free_bytes": None, "reasons": [], "jobs": [],
    }
    if not os.path.isdir(destination):
        problem = "does not exist" if not os.path.lexists(destination) else "is not a directory"
        _add(report["reasons"], CRITICAL, f"destination {destination} {problem}")
        report["jobs"] = [_missing_job(job, destination) for job in expected or ()]
        return _conclude(report)
    try:
        found = _catalog.scan(destination)
    except LifeboatError as exc:  # unreadable destination: the check itself cannot run
        _add(report["reasons"], UNKNOWN, str(exc))
        return _conclude(report)
    report["free_bytes"] = free_bytes(destination)
    groups = _groups(found)
    if expected is not None:
        groups = {key: archives for key, archives in groups.items() if key[0] in expected}
    for (job, database), archives in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        report["jobs"].append(_evaluate_group(job, database, archives, report["free_bytes"], destination,
                                              job_options.get(job, options), now))
    present = {job for job, _database in groups}
    for job in expected or ():
        if job not in present:
            report["jobs"].append(_missing_job(job, destination))
    if expected is None and not groups:
        _add(report["reasons"], CRITICAL, f"no archive at all in {destination}")
    strictest = max([options, *job_options.values()], key=lambda given: given.free_space_factor)
    _check_total_space(report["reasons"], report["jobs"], report["free_bytes"], destination, strictest)
    for path, run_job in _interrupted_runs(found.partials):
        if expected is None or run_job in expected:
            who = f"the next run or prune of job {run_job}" if run_job else "the next prune"
            _add(report["reasons"], WARNING,
                 f"{os.path.basename(path)} was left by an interrupted run (its process is gone); {who} removes it")
    for path in stale_private_dirs(destination):
        _add(report["reasons"], WARNING, f"{os.path.basename(path)}/ (private files) was left by an interrupted run "
                                         "(its process is gone); the next run or prune in this destination removes it")
    _check_last_runs(report, destination)
    _check_killed_restores(report["reasons"], destination)
    return _conclude(report)


def _check_killed_restores(reasons: list[dict[str, str]], destination: str) -> None:
    """A restore from this directory killed while its target refused connections: the app may be down. Status only
    reports it (it never connects to a database); the next restore into that target lets connections in again."""
    for path, record in _restore_records.killed_restores(destination):
        database = record["database"]
        _add(reasons, CRITICAL,
             f"a restore into {database} at {record.get('server', '?')} was killed (PID {record['pid']}, started at "
             f"{record.get('at', '?')}) while {database} refused connections, and may still refuse them: the next "
             f"restore into {database} from {destination} lets them in again, or run "
             f"{_restore_records.repair_hint(database)} and remove {os.path.basename(path)}")


def _holds_archives(names: t.Iterable[str]) -> bool:
    """Whether a directory's listing shows archives or manifests (read by name: no manifest is opened)."""
    return any(name.endswith(_manifest.MANIFEST_SUFFIX) or _catalog.ARCHIVE_NAME.match(name) for name in names)


def job_directories(root: str) -> list[str]:
    """The subdirectories of ``root`` that hold archives or run records of their own: ``root`` is then a backup
    root (the backup role writes each job to ROOT/JOB)."""
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or PRIVATE_DIR_NAME.match(entry.name):
            continue
        try:
            names = os.listdir(entry.path)
        except OSError:
            continue
        if _holds_archives(names) or any(_catalog.RUN_RECORD_NAME.match(name) for name in names):
            found.append(entry.path)
    return found


def evaluate_root(
    path: str,
    jobs: t.Sequence[str] | None = None,
    options: StatusOptions | None = None,
    now: _dt.datetime | None = None,
    job_options: t.Mapping[str, StatusOptions] | None = None,
) -> dict[str, t.Any]:
    """``evaluate`` of a destination, or of every job directory of a backup root (a directory that holds no
    archive itself, only directories that do): one report whose jobs carry their own ``destination``, with the
    report of each directory under ``destinations``."""
    now = now or _manifest.utc_now()
    _manifest.validate_destination(path)
    try:
        holds_archives = _holds_archives(os.listdir(path))
    except OSError:
        holds_archives = True  # missing or unreadable: evaluate says so
    directories = [] if holds_archives else job_directories(path)
    if not directories:
        return evaluate(path, jobs, options, now, job_options)
    expected = list(dict.fromkeys(jobs)) if jobs else None
    combined: dict[str, t.Any] = {"destination": path, "checked_at": _manifest.iso(now), "free_bytes": free_bytes(path),
                                  "reasons": [], "jobs": [], "destinations": []}
    for directory in directories:
        # The jobs there: those of its archives, else of its run records (a first run killed leaves only that).
        present = {archive.job for archive in _catalog.scan(directory).archives} or {
            match["job"] for name in os.listdir(directory) if (match := _catalog.RUN_RECORD_NAME.match(name))}
        wanted = [job for job in expected if job in present] if expected is not None else sorted(present)
        if wanted == []:
            continue
        report = evaluate(directory, wanted, options, now, job_options)
        combined["destinations"].append(report)
        combined["reasons"] += report["reasons"]
        combined["jobs"] += [{**entry, "destination": directory} for entry in report["jobs"]]
    found = {entry["job"] for entry in combined["jobs"]}
    for job in expected or ():
        if job not in found:
            combined["jobs"].append({**_missing_job(job, path), "destination": path})
    return _conclude(combined)


# The newest `lifeboat backup` run of a job, kept beside its archives: written as "started" before the dump and
# finished after it, so a run that failed, or was killed before it could say so, makes the job CRITICAL at once
# while its previous archive still looks fresh.
RUN_RECORD = _catalog.RUN_RECORD
STARTED, FINISHED = "started", "finished"


def record_start(destination: str, job: str, at: _dt.datetime | None = None) -> dict[str, t.Any]:
    """Say that a backup run of ``job`` begins, by this process (best effort, like record_run); returns the record."""
    _manifest.validate_job_name(job)
    pid = os.getpid()
    record = {"job": job, "state": STARTED, "ok": None, "at": _manifest.iso(at or _manifest.utc_now()),
              "pid": pid, "pid_start": process_start(pid), "host": socket.gethostname(), "failure": None}
    _write_record(destination, job, record)
    return record


def record_run(destination: str, job: str, ok: bool, failure: str | None = None,
               at: _dt.datetime | None = None, started: dict[str, t.Any] | None = None) -> None:
    """Keep the outcome of a backup run of ``job`` in ``destination`` (atomically; best effort when unwritable)."""
    _manifest.validate_job_name(job)
    record = {"job": job, "state": FINISHED, "ok": bool(ok), "at": _manifest.iso(at or _manifest.utc_now()),
              "started_at": (started or {}).get("at"),
              "failure": None if ok else (failure or "no reason recorded")}
    _write_record(destination, job, record)


def _write_record(destination: str, job: str, record: dict[str, t.Any]) -> None:
    try:
        write_file_atomic(os.path.join(destination, RUN_RECORD.format(job=job)), json.dumps(record).encode("utf-8"))
    except OSError:
        pass  # no destination (yet), or a full one: the status reports that by itself


def last_run(destination: str, job: str) -> dict[str, t.Any] | None:
    """The record of the newest backup run of ``job`` in ``destination``, or None when there is none."""
    try:
        with open(os.path.join(destination, RUN_RECORD.format(job=job)), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("state") == STARTED:
        return record if isinstance(record.get("pid"), int) else None
    return record if isinstance(record.get("ok"), bool) else None


def run_in_progress(record: dict[str, t.Any]) -> bool:
    """Whether the run a "started" record names still runs: its process, the same one (not a reused PID), is
    alive on this host. A run recorded by another host cannot be seen from here and counts as running."""
    if record.get("host") not in (None, socket.gethostname()):
        return True
    pid = record["pid"]
    if not pid_alive(pid):
        return False
    recorded = record.get("pid_start")
    return recorded is None or process_start(pid) in (None, recorded)


def _check_last_runs(report: dict[str, t.Any], destination: str) -> None:
    for entry in report["jobs"]:
        record = last_run(destination, entry["job"])
        if not record or record.get("ok"):
            continue
        at = _catalog.parse_time(record.get("at"))
        label = _label(entry["job"], entry["database"])
        if at is None:
            continue
        if record.get("state") == STARTED:
            if run_in_progress(record):
                entry["running"] = {"pid": record["pid"], "started_at": record["at"], "host": record.get("host")}
                continue
            newest_start = _catalog.parse_time((entry["newest"] or {}).get("started_at"))
            # Strictly later: times are whole seconds, and the archive of a run that ended within the second this one
            # started is not this one's (seen: a killed run reported OK). One killed in the instant between its
            # archive and its record, in the second it began, is reported once too often; the next run clears it.
            if newest_start is not None and newest_start > at:
                continue  # the run made its archive (and was killed just after), or a later one did
            _add(entry["reasons"], CRITICAL, f"{label} last backup run started at {record['at']} (PID "
                                             f"{record['pid']}) and never finished: it was killed or its host stopped")
        else:
            newest = _catalog.parse_time((entry["newest"] or {}).get("finished_at"))
            if newest is not None and newest >= at:
                continue  # an archive made after the failure
            _add(entry["reasons"], CRITICAL, f"{label} last backup run failed at {record['at']}: "
                                             f"{record.get('failure') or 'no reason recorded'}")
        entry["state"] = worst(reason["severity"] for reason in entry["reasons"])


def free_bytes(path: str) -> int | None:
    """Space an unprivileged writer can still use (root's reserve does not count)."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def _groups(found: _catalog.Destination) -> dict[tuple[str, str | None], list[_catalog.Archive]]:
    """Archives per (job, database); an archive too broken to name its database joins its job's only group."""
    groups = found.groups()
    for (job, database), archives in list(groups.items()):
        if database is not None or any(archive.readable for archive in archives):
            continue
        named = [key for key in groups if key[0] == job and key[1] is not None]
        if len(named) == 1:
            groups[named[0]] = sorted(groups[named[0]] + groups.pop((job, database)),
                                      key=lambda archive: (archive.started_at, archive.name))
    return groups


def _interrupted_runs(partials: t.Iterable[str]) -> list[tuple[str, str | None]]:
    """Leftover temporary files that the next run or prune removes: their writer is gone (PID dead, lock free)."""
    return [(path, _retention.partial_job(path)) for path in partials
            if _retention.describe_partial(path).removable]


def _label(job: str, database: str | None) -> str:
    return job if database in (None, job) else f"{job}/{database}"


def _add(reasons: list[dict[str, str]], severity: str, message: str) -> None:
    reasons.append({"severity": severity, "message": message})


def _missing_job(job: str, destination: str) -> dict[str, t.Any]:
    entry = _job_entry(job, None, None, [])
    _add(entry["reasons"], CRITICAL, f"no archive of job {job} in {destination}")
    entry["state"] = CRITICAL
    return entry


def _job_entry(job: str, database: str | None, engine: str | None, archives: list[_catalog.Archive]) -> dict[str, t.Any]:
    return {"job": job, "database": database, "engine": engine, "state": OK, "reasons": [], "archives": len(archives),
            "newest": None, "unreadable": [a.name for a in archives if not a.readable], "previous_verified": None,
            "next_size": None, "running": None}


def _evaluate_group(
    job: str,
    database: str | None,
    archives: list[_catalog.Archive],
    free: int | None,
    destination: str,
    options: StatusOptions,
    now: _dt.datetime,
) -> dict[str, t.Any]:
    readable = [archive for archive in archives if archive.readable]
    newest = readable[-1] if readable else None
    entry = _job_entry(job, database, newest.engine if newest else None, archives)
    label = _label(job, database)
    reasons = entry["reasons"]
    for broken in [archive for archive in archives if not archive.readable and
                   (newest is None or archive.started_at >= newest.started_at)]:
        _add(reasons, CRITICAL, f"{label} archive {broken.name} cannot be trusted: {broken.problem}")
    if newest is None:
        _add(reasons, CRITICAL, f"{label} has no readable archive in {destination}")
        entry["state"] = worst(reason["severity"] for reason in reasons)
        return entry
    entry["newest"] = describe(newest, now)
    age_hours = entry["newest"]["age_hours"]
    if age_hours > options.max_age_hours:
        _add(reasons, CRITICAL, f"{label} newest archive is {age_hours:.1f} h old (max {options.max_age_hours:g} h), "
                                f"finished {_manifest.iso(newest.finished_at)}")
    record = newest.last_verification
    if newest.verification_failed:
        failure = (record or {}).get("failure") or "no reason recorded"
        _add(reasons, CRITICAL, f"{label} newest archive {newest.name} failed its last verification "
                                f"({(record or {}).get('level', '?')} at {(record or {}).get('at', '?')}): {failure}")
    elif options.require_verified and not newest.verified:
        _add(reasons, WARNING, f"{label} newest archive {newest.name} is not verified")
    reference = _catalog.previous_verified(archives, newest)
    entry["previous_verified"] = reference.name if reference else None
    for finding in _catalog.compare_to_reference(newest, reference, shrink_ratio=options.shrink_ratio,
                                                 collapse_min_count=options.collapse_min_count):
        _add(reasons, finding.severity, f"{label} newest archive {finding.message}")
    entry["next_size"] = expected_next_size(newest)
    if free is not None:
        _check_space(reasons, label, entry["next_size"], free, destination, options)
    entry["state"] = worst(reason["severity"] for reason in reasons)
    return entry


def expected_next_size(archive: _catalog.Archive) -> int:
    """What the next run of this job needs: the size of its newest archive, extras (globals) included."""
    total = 0
    for path in archive.files():
        try:
            total += os.stat(path).st_size
        except OSError:
            pass
    return total


def _space_state(free: int, needed: int, options: StatusOptions) -> str:
    if free < needed:
        return CRITICAL
    return WARNING if free < needed * options.free_space_factor else OK


def _check_space(reasons: list[dict[str, str]], label: str, needed: int, free: int, destination: str,
                 options: StatusOptions) -> None:
    state = _space_state(free, needed, options)
    if state == CRITICAL:
        _add(reasons, CRITICAL, f"{label} next archive will not fit: {human_size(free)} free in {destination}, "
                                f"the newest archive took {human_size(needed)}")
    elif state == WARNING:
        _add(reasons, WARNING, f"{label} has room for less than {options.free_space_factor:g} more archives: "
                               f"{human_size(free)} free in {destination}, the newest archive took {human_size(needed)}")


def _check_total_space(reasons: list[dict[str, str]], entries: list[dict[str, t.Any]], free: int | None,
                       destination: str, options: StatusOptions) -> None:
    """The jobs of one destination share its space: each next archive may fit while all of them do not."""
    sizes = [entry["next_size"] for entry in entries if entry["next_size"] is not None]
    if free is None or len(sizes) < 2:
        return
    each = worst(_space_state(free, size, options) for size in sizes)  # already reported per job
    total = sum(sizes)
    state = _space_state(free, total, options)
    if SEVERITY_ORDER[state] <= SEVERITY_ORDER[each]:
        return
    if state == CRITICAL:
        _add(reasons, CRITICAL, f"the next archives of all {len(sizes)} jobs will not fit: {human_size(free)} free "
                                f"in {destination}, their newest archives took {human_size(total)}")
    else:
        _add(reasons, WARNING, f"room for less than {options.free_space_factor:g} more runs of all {len(sizes)} jobs: "
                               f"{human_size(free)} free in {destination}, their newest archives took {human_size(total)}")


def describe(archive: _catalog.Archive, now: _dt.datetime) -> dict[str, t.Any]:
    record = archive.last_verification or {}
    total = (archive.manifest or {}).get("total_count")
    return {
        "name": archive.name,
        "started_at": _manifest.iso(archive.started_at),
        "finished_at": _manifest.iso(archive.finished_at),
        "age_hours": round((now - archive.finished_at).total_seconds() / 3600, 2),
        "size": archive.size,
        "plain_size": archive.plain_size,
        "duration_seconds": archive.duration_seconds,
        "verified": archive.verified,
        "verification_level": record.get("level"),
        "verified_at": record.get("at"),
        "verification_failure": record.get("failure") if record and not record.get("ok") else None,
        "counts_total": total if isinstance(total, int) else sum(archive.counts.values()),
    }


def _conclude(report: dict[str, t.Any]) -> dict[str, t.Any]:
    state = worst(reason["severity"] for reason in _all_reasons(report))
    report["state"] = state
    report["exit_code"] = exit_code_for(state)
    report["summary"] = f"{state}: {summary_detail(report)}"
    return report


def _all_reasons(report: dict[str, t.Any]) -> list[dict[str, str]]:
    return report["reasons"] + [reason for job in report["jobs"] for reason in job["reasons"]]


def summary_detail(report: dict[str, t.Any]) -> str:
    """The summary without its state: every reason, worst first, or what makes the destination OK."""
    everything = _all_reasons(report)
    if everything:
        ordered = sorted(everything, key=lambda reason: -SEVERITY_ORDER[reason["severity"]])
        return "; ".join(reason["message"] for reason in ordered)
    oldest = max(job["newest"]["age_hours"] for job in report["jobs"])
    proof = " and verified" if all(job["newest"]["verified"] for job in report["jobs"]) else ""
    return (f"{len(report['jobs'])} backup job(s) in {report['destination']} fresh{proof}, "
            f"newest archives at most {oldest:.1f} h old")


# node_exporter textfile metrics (Prometheus text exposition format 0.0.4).
_METRICS: list[tuple[str, str]] = [
    ("lifeboat_backup_last_success_timestamp_seconds", "When the newest readable archive of a job finished (Unix time)."),
    ("lifeboat_backup_last_size_bytes", "Stored size of the newest readable archive."),
    ("lifeboat_backup_last_plain_size_bytes", "Size of the newest readable archive before compression and encryption."),
    ("lifeboat_backup_last_duration_seconds", "How long the dump of the newest readable archive took."),
    ("lifeboat_backup_last_verified", "1 when the last verification of the newest readable archive passed, else 0."),
    ("lifeboat_backup_last_verification_timestamp_seconds", "When the newest readable archive was last verified, whether that passed or not."),
    ("lifeboat_backup_archives", "Archives of a job at the destination, unreadable ones included."),
    ("lifeboat_backup_last_rows", "Rows or documents in the newest readable archive, all tables or collections."),
    ("lifeboat_backup_status", "Health of a job's backups: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."),
    ("lifeboat_backup_destination_status", "Health of all backups of a destination: 0 OK, 1 WARNING, 2 CRITICAL, "
                                           "3 UNKNOWN."),
    (FREE_BYTES_METRIC, "Free space at the backup destination."),
    (STATUS_TIMESTAMP_METRIC, "When this backup health check ran (Unix time)."),
]


def metrics_text(reports: dict[str, t.Any] | t.Sequence[dict[str, t.Any]], now: _dt.datetime | None = None) -> str:
    """Reports (one per destination) as gauges for node_exporter's textfile collector.

    Labelled by destination, job and database: the destination label keeps two destinations' files (merged by
    node_exporter) from colliding.
    """
    reports = [reports] if isinstance(reports, dict) else list(reports)
    reports = [part for report in reports for part in report.get("destinations") or [report]]  # a backup root's
    now = now or _catalog.parse_time(reports[0].get("checked_at")) or _manifest.utc_now()
    samples: dict[str, list[_prometheus.Sample]] = {name: [] for name, _help in _METRICS}

    def sample(name: str, labels: dict[str, str], value: float | None) -> None:
        if value is not None:
            samples[name].append((labels, value))

    for report in reports:
        _report_samples(report, now, sample)
    return _prometheus.text((name, help_text, samples[name]) for name, help_text in _METRICS)


def _report_samples(report: dict[str, t.Any], now: _dt.datetime, sample: t.Callable[..., None]) -> None:
    destination = report["destination"]
    for job in report["jobs"]:
        labels = {"destination": destination, "job": job["job"], "database": job["database"] or ""}
        newest = job["newest"] or {}
        sample("lifeboat_backup_status", labels, exit_code_for(job["state"]))
        sample("lifeboat_backup_archives", labels, job["archives"])
        if not newest:
            continue
        sample("lifeboat_backup_last_success_timestamp_seconds", labels, _timestamp(newest["finished_at"]))
        sample("lifeboat_backup_last_size_bytes", labels, newest["size"])
        sample("lifeboat_backup_last_plain_size_bytes", labels, newest["plain_size"])
        sample("lifeboat_backup_last_duration_seconds", labels, newest["duration_seconds"])
        sample("lifeboat_backup_last_verified", labels, 1 if newest["verified"] else 0)
        sample("lifeboat_backup_last_verification_timestamp_seconds", labels, _timestamp(newest["verified_at"]))
        sample("lifeboat_backup_last_rows", labels, newest["counts_total"])
    where = {"destination": destination}
    sample("lifeboat_backup_destination_status", where, report["exit_code"])
    sample(FREE_BYTES_METRIC, where, report["free_bytes"])
    sample(STATUS_TIMESTAMP_METRIC, where, now.timestamp())


def _timestamp(text: str | None) -> float | None:
    moment = _catalog.parse_time(text)
    return moment.timestamp() if moment else None


def same_metrics(old: str | None, new: str) -> bool:
    """Equal but for the measurements that change on every run: the time of the check and the free space.

    The file is still rewritten each time (the timestamp is node_exporter's proof that checks still run);
    this only decides whether a task reports a change.
    """
    if old is None:
        return False

    def significant(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith(VOLATILE_METRICS)]

    return significant(old) == significant(new)


STATUS_FAIL_FROM = {"warning": WARNING, "critical": CRITICAL}


def backup_status_spec() -> dict[str, t.Any]:
    return {
        "destination": {"type": "path", "required": True},
        "jobs": {"type": "list", "elements": "str", "default": []},
        **status_options(),
        "metrics_file": {"type": "path"},
        "fail_on": {"type": "str", "default": "none", "choices": ["none", "warning", "critical"]},
        "offsite": {"type": "dict"},
        "offsite_max_delay_hours": {"type": "float", "default": 26.0},
    }


def backup_status(run: Run) -> Outcome:
    params = run.params
    outcome = Outcome()
    try:
        options = StatusOptions.from_options({name: params[name] for name in status_options()})
        metrics_file = params["metrics_file"]
        if metrics_file:
            validate_metrics_path(metrics_file)
        report = evaluate_root(params["destination"], params["jobs"], options)
        report = with_left_stopped(report, left_stopped_here())
        offsite_text = ""
        if params.get("offsite"):
            report, offsite_text = _with_offsite(report, params)
        outcome.result.update(report)
        if metrics_file:
            text = metrics_text(report) + offsite_text
            before = read_metrics(metrics_file)
            outcome.changed = not same_metrics(before, text)
            outcome.result.update(metrics=text, metrics_file=metrics_file)
            if run.diff:
                outcome.diff = {"before": before or "", "after": text,
                                "before_header": metrics_file, "after_header": metrics_file}
            if not run.check_mode:
                write_metrics(metrics_file, text)
    except LifeboatError as exc:
        # The report built so far is still worth returning (e.g. when only the metrics file could not be written).
        outcome.failure = str(exc)
        return outcome
    threshold = STATUS_FAIL_FROM.get(params["fail_on"])
    if threshold is not None and SEVERITY_ORDER[report["state"]] >= SEVERITY_ORDER[threshold]:
        outcome.failure = report["summary"]
    return outcome


def _with_offsite(report: dict[str, t.Any], params: t.Mapping[str, t.Any]) -> tuple[dict[str, t.Any], str]:
    """The report with its remote side (state, reasons, summary) and that side's metrics."""
    from . import _offsite  # pylint: disable=import-outside-toplevel  # boto3 only when a bucket is asked about

    remote = _offsite.Remote.from_options(params["offsite"])
    health = _offsite.offsite_health(params["destination"], remote, params["offsite_max_delay_hours"],
                                     job=params["offsite"].get("job") or None)
    health["summary"] = _offsite.describe_health(health)
    report = {**report, "offsite": health}
    if SEVERITY_ORDER[health["state"]] > SEVERITY_ORDER[report["state"]]:
        report["state"] = health["state"]
        report["exit_code"] = exit_code_for(health["state"])
        report["summary"] = f"{health['state']}: {health['reasons'][0]['message']}"
    return report, _offsite.offsite_metrics_text([(params["destination"], health)])


def left_stopped_here() -> list[dict[str, t.Any]]:
    from . import _stopped_notes  # pylint: disable=import-outside-toplevel  # only a host with notes needs it

    try:
        return _stopped_notes.left_stopped()
    except LifeboatError as exc:  # the notes directory cannot be listed: the check cannot say, which is UNKNOWN
        return [{"path": _stopped_notes.notes_dir(), "problem": str(exc), "unknown": True}]


def with_left_stopped(report: dict[str, t.Any], entries: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """The report with the host's containers that a killed backup run left stopped: CRITICAL each, naming them and
    since when (``_stopped_notes.left_stopped``); they are the host's, so every report of the host carries them."""
    if not entries:
        return report
    from . import _stopped_notes  # pylint: disable=import-outside-toplevel

    report = {**report, "reasons": list(report["reasons"]), "left_stopped": entries}
    for entry in entries:
        _add(report["reasons"], UNKNOWN if entry.get("unknown") else CRITICAL, _stopped_notes.describe_left_stopped(entry))
    return _conclude(report)
