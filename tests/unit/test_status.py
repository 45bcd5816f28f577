# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup health decisions, on archives written by the real pipeline and manifest code (no database).

Dumps of the test bed's PostgreSQL and FerretDB go through the same checks in tests/integration/test_status.py;
here a producer writes the archive bytes, which is all the health check reads besides the manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import typing as t

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _catalog, _manifest, _prometheus, _status
from ansible_collections.lifeboat.ops.plugins.module_utils._archive import (
    ArchiveOptions,
    commit_with_manifest,
    stream_to_archive,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.ops.plugins.module_utils._status import CRITICAL, OK, UNKNOWN, WARNING
from prometheus_checks import assert_replaced_whole_and_world_readable  # pylint: disable=import-error

START = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)


def make_archive(destination: t.Any, started: dt.datetime, *, job: str = "journal", database: str | None = "journal",
                 size: int = 40_000, counts: dict[str, int] | None = None, verified: bool | None = None,
                 globals_size: int = 0) -> _catalog.Archive:
    """An archive of ``size`` random bytes, its manifest, and optionally a verification record."""
    options = ArchiveOptions(destination=str(destination), job=job, compression="none")
    options.prepare_destination()
    path = options.path_for(started, "pgdump")
    producer = [sys.executable, "-c", f"import os, sys; sys.stdout.buffer.write(os.urandom({size}))"]
    archive, stream = stream_to_archive(path, producer, options)
    files = [archive]
    extras = []
    if globals_size:
        extra_path = options.path_for(started, "globals.sql")
        extra, extra_stream = stream_to_archive(extra_path, [*producer[:2], producer[2].replace(str(size), str(globals_size))],
                                                options)
        files.append(extra)
        extras.append({"kind": "globals", "file": os.path.basename(extra_path), "size": extra_stream.stored_bytes})
    manifest = _manifest.build(
        job=job, engine="postgresql", database=database, archive_path=path, archive_format="pg_dump-custom",
        stream=stream, compression="none", compression_level=None, encryption=options.encryption,
        tool={"name": "pg_dump", "version": "pg_dump (PostgreSQL) 15"}, server={"product": "PostgreSQL", "version": "15"},
        counts=counts if counts is not None else {"public.entry": 1000}, started=started,
        finished=started + dt.timedelta(minutes=2), restore_commands=[], extras=extras,
    )
    commit_with_manifest(files, _manifest.manifest_path(path), manifest)
    result = _catalog.scan(str(destination), job).archives[-1]
    if verified is not None:
        verify(result, verified, started + dt.timedelta(hours=1))
    return result


def verify(archive: _catalog.Archive, ok: bool, at: dt.datetime) -> None:
    _catalog.record_verification(archive, {"at": _manifest.iso(at), "ok": ok, "level": "stream",
                                           "failure": None if ok else "plain sha256 differs"})


def check(destination: t.Any, hours_later: float = 1.0, jobs: list[str] | None = None,
          **options: t.Any) -> dict[str, t.Any]:
    newest = max((a.finished_at for a in _catalog.scan(str(destination)).archives), default=START)
    return _status.evaluate(str(destination), jobs, _status.StatusOptions(**options),
                            now=newest + dt.timedelta(hours=hours_later))


def messages(report: dict[str, t.Any]) -> list[str]:
    return [r["message"] for r in report["reasons"]] + [r["message"] for j in report["jobs"] for r in j["reasons"]]


def test_fresh_and_verified_is_ok(tmp_path):
    make_archive(tmp_path, START, verified=True)
    newest = make_archive(tmp_path, START + dt.timedelta(days=1), verified=True)
    report = check(tmp_path, hours_later=3)
    assert (report["state"], report["exit_code"]) == (OK, 0), report["summary"]
    assert report["summary"].startswith("OK: 1 backup job(s) in ") and "3.0 h old" in report["summary"]
    (job,) = report["jobs"]
    assert job["job"] == "journal" and job["database"] == "journal" and job["engine"] == "postgresql"
    assert job["archives"] == 2 and job["previous_verified"] != newest.name and job["previous_verified"]
    assert job["newest"]["name"] == newest.name and job["newest"]["verified"] is True
    assert job["newest"]["verification_level"] == "stream" and job["newest"]["counts_total"] == 1000
    assert job["newest"]["age_hours"] == 3.0 and job["newest"]["size"] == 40_000
    assert report["free_bytes"] > 0


def test_too_old_is_critical_and_says_how_old_and_since_when(tmp_path):
    archive = make_archive(tmp_path, START, verified=True)
    report = check(tmp_path, hours_later=27)
    assert (report["state"], report["exit_code"]) == (CRITICAL, 2)
    assert report["summary"] == (f"CRITICAL: journal newest archive is 27.0 h old (max 26 h), "
                                 f"finished {_manifest.iso(archive.finished_at)}")
    assert check(tmp_path, hours_later=25.9)["state"] == OK
    assert check(tmp_path, hours_later=27, max_age_hours=28)["state"] == OK


def test_shrink_is_a_warning(tmp_path):
    old = make_archive(tmp_path, START, size=50_000, verified=True)
    new = make_archive(tmp_path, START + dt.timedelta(days=1), size=10_000, verified=True)
    report = check(tmp_path)
    assert report["state"] == WARNING
    assert messages(report) == [f"journal newest archive {new.name} is 80% smaller than {old.name} "
                                "(9.8 KiB against 48.8 KiB before compression)"]
    assert check(tmp_path, shrink_ratio=0.9)["state"] == OK


def test_shrink_is_measured_against_the_previous_verified_archive(tmp_path):
    make_archive(tmp_path, START, size=50_000, verified=True)
    make_archive(tmp_path, START + dt.timedelta(days=1), size=12_000, verified=False)  # failed, not a reference
    make_archive(tmp_path, START + dt.timedelta(days=2), size=10_000, verified=True)
    (job,) = check(tmp_path)["jobs"]
    assert job["previous_verified"].startswith("journal-20261120T")
    assert [r["severity"] for r in job["reasons"]] == [WARNING]


def test_a_table_that_emptied_is_critical(tmp_path):
    make_archive(tmp_path, START, counts={"public.entry": 5000, "public.tag": 3}, verified=True)
    make_archive(tmp_path, START + dt.timedelta(days=1), counts={"public.entry": 0, "public.tag": 3}, verified=True)
    report = check(tmp_path)
    assert report["state"] == CRITICAL
    assert "public.entry went from 5000 to none" in report["summary"]
    assert check(tmp_path, collapse_min_count=6000)["state"] == OK


def test_unverified_newest_is_a_warning_unless_not_required(tmp_path):
    make_archive(tmp_path, START, verified=True)
    newest = make_archive(tmp_path, START + dt.timedelta(days=1))
    report = check(tmp_path)
    assert report["state"] == WARNING
    assert report["summary"] == f"WARNING: journal newest archive {newest.name} is not verified"
    assert report["jobs"][0]["newest"]["verified"] is False
    unrequired = check(tmp_path, require_verified=False)
    assert unrequired["state"] == OK
    # The OK summary claims verification only when every newest archive is verified.
    assert unrequired["summary"].startswith(f"OK: 1 backup job(s) in {tmp_path} fresh, newest archives at most ")


def test_failed_verification_is_critical_even_when_not_required(tmp_path):
    newest = make_archive(tmp_path, START, verified=False)
    for required in (True, False):
        report = check(tmp_path, require_verified=required)
        assert report["state"] == CRITICAL
        assert f"newest archive {newest.name} failed its last verification (stream at " in report["summary"]
        assert report["summary"].endswith("plain sha256 differs")
    verify(newest, True, START + dt.timedelta(hours=2))  # a later verification that passed counts
    assert check(tmp_path)["state"] == OK


def test_no_archive_at_all_is_critical(tmp_path):
    report = check(tmp_path, jobs=["journal", "nightscout"])
    assert report["state"] == CRITICAL
    assert messages(report) == [f"no archive of job journal in {tmp_path}", f"no archive of job nightscout in {tmp_path}"]
    expected = [("journal", CRITICAL, None), ("nightscout", CRITICAL, None)]
    assert [(j["job"], j["state"], j["newest"]) for j in report["jobs"]] == expected
    assert check(tmp_path)["summary"] == f"CRITICAL: no archive at all in {tmp_path}"


def test_only_the_jobs_asked_for_are_checked(tmp_path):
    make_archive(tmp_path, START, verified=True)
    make_archive(tmp_path, START - dt.timedelta(days=5), job="old-app", database="old", verified=True)
    assert check(tmp_path)["state"] == CRITICAL  # old-app is stale
    report = check(tmp_path, jobs=["journal"])
    assert report["state"] == OK and [j["job"] for j in report["jobs"]] == ["journal"]


def test_missing_destination_is_critical(tmp_path):
    missing = tmp_path / "gone"
    report = _status.evaluate(str(missing), ["journal"])
    assert report["state"] == CRITICAL and report["free_bytes"] is None
    assert report["summary"] == f"CRITICAL: destination {missing} does not exist; no archive of job journal in {missing}"
    (tmp_path / "file").write_text("")
    assert "is not a directory" in _status.evaluate(str(tmp_path / "file"))["summary"]


def test_unlistable_destination_is_unknown(tmp_path, monkeypatch):
    def refuse(destination, job=None):
        raise LifeboatError(f"cannot list destination {destination}: Permission denied")

    monkeypatch.setattr(_catalog, "scan", refuse)
    report = _status.evaluate(str(tmp_path))
    assert (report["state"], report["exit_code"]) == (UNKNOWN, 3)
    assert report["summary"] == f"UNKNOWN: cannot list destination {tmp_path}: Permission denied"


def test_an_untrustworthy_newest_archive_is_critical_and_the_last_good_one_is_reported(tmp_path):
    good = make_archive(tmp_path, START, verified=True)
    broken = make_archive(tmp_path, START + dt.timedelta(days=1), verified=True)
    os.unlink(broken.path)
    (job,) = check(tmp_path)["jobs"]
    assert job["state"] == CRITICAL and job["unreadable"] == [broken.name]
    assert job["newest"]["name"] == good.name
    assert job["reasons"][0]["message"] == (f"journal archive {broken.name} cannot be trusted: the archive file "
                                            f"{broken.name} is missing; only its manifest is left")


def test_an_archive_without_manifest_counts_against_its_job(tmp_path):
    make_archive(tmp_path, START, verified=True)
    stray = tmp_path / "journal-20261121T030000Z.pgdump"
    stray.write_bytes(b"x" * 100)
    report = check(tmp_path, hours_later=1)
    (job,) = report["jobs"]  # one group: the stray file joins journal/journal
    assert job["database"] == "journal" and job["archives"] == 2 and job["unreadable"] == [stray.name]
    assert "it has no manifest" in report["summary"] and report["state"] == CRITICAL


def test_no_readable_archive_at_all(tmp_path):
    (tmp_path / "journal-20261121T030000Z.pgdump").write_bytes(b"x")
    report = check(tmp_path)
    assert report["state"] == CRITICAL
    assert f"journal has no readable archive in {tmp_path}" in messages(report)


def test_leftovers_of_dead_runs_warn_and_those_of_running_ones_do_not(tmp_path):
    archive = make_archive(tmp_path, START, verified=True)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True)
    dead_pid = int(finished.stdout)
    (tmp_path / f".journal-20261121T030000Z.pgdump.partial-{os.getpid()}").write_bytes(b"being written")
    assert check(tmp_path)["state"] == OK
    dead_leftover = tmp_path / f".journal-20261121T030000Z.pgdump.partial-{dead_pid}"
    dead_leftover.write_bytes(b"half")
    manifest_leftover = tmp_path / f"{archive.name}.manifest.json.partial-{dead_pid}"
    manifest_leftover.write_text("{")
    # A writer in another PID namespace (a container) looks dead from here, but it holds its file's lock.
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; handles = [open(p, 'rb') for p in "
                               "sys.argv[1:]]; [fcntl.flock(h, fcntl.LOCK_SH) for h in handles]; print('locked', "
                               "flush=True); time.sleep(60)", str(dead_leftover), str(manifest_leftover)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert check(tmp_path)["state"] == OK
    finally:
        holder.kill()
        holder.wait()
    # Its writer gone, the leftovers are named at once (no waiting), with what removes them.
    report = check(tmp_path)
    assert report["state"] == WARNING
    assert [r["message"].split(" was left")[0] for r in report["reasons"]] == [
        f".journal-20261121T030000Z.pgdump.partial-{dead_pid}", manifest_leftover.name]
    assert report["reasons"][0]["message"].endswith("the next run or prune of job journal removes it")
    assert report["jobs"][0]["archives"] == 1  # the manifest leftover is not taken for an archive
    assert check(tmp_path, jobs=["other"])["reasons"] == []  # not the leftovers of the jobs asked for


@pytest.mark.parametrize("free, state", [(10**9, OK), (70_000, WARNING), (30_000, CRITICAL)])
def test_free_space_against_the_expected_next_archive(tmp_path, monkeypatch, free, state):
    make_archive(tmp_path, START, size=30_000, globals_size=5_000, verified=True)
    needed = sum(os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path))  # archive, globals, manifest
    assert 35_000 < needed < 40_000
    monkeypatch.setattr(_status, "free_bytes", lambda path: free)
    report = check(tmp_path)
    assert report["state"] == state, report["summary"]
    if state == CRITICAL:
        assert "journal next archive will not fit: 29.3 KiB free in" in report["summary"]
    if state == WARNING:
        assert "journal has room for less than 2 more archives: 68.4 KiB free in" in report["summary"]
        assert check(tmp_path, free_space_factor=1.5)["state"] == OK


@pytest.mark.parametrize("free, state, message", [
    (10**9, OK, None),
    (150_000, WARNING, "room for less than 2 more runs of all 3 jobs: 146.5 KiB free in"),
    (80_000, CRITICAL, "the next archives of all 3 jobs will not fit: 78.1 KiB free in"),
])
def test_jobs_share_the_free_space(tmp_path, monkeypatch, free, state, message):
    """Each job's next archive fits twice (no per-job reason), but not the next run of all three."""
    for job in ("journal", "recipes", "nightscout"):
        make_archive(tmp_path, START, job=job, database=job, size=30_000, verified=True)
    monkeypatch.setattr(_status, "free_bytes", lambda path: free)
    report = check(tmp_path)
    assert report["state"] == state and all(job["state"] == OK for job in report["jobs"]), report["summary"]
    assert [r["message"].split(f" {tmp_path}")[0] for r in report["reasons"]] == ([message] if message else [])


def test_a_job_short_of_space_is_not_repeated_for_all_jobs(tmp_path, monkeypatch):
    make_archive(tmp_path, START, size=30_000, verified=True)
    make_archive(tmp_path, START, job="recipes", database="recipes", size=30_000, verified=True)
    monkeypatch.setattr(_status, "free_bytes", lambda path: 20_000)
    report = check(tmp_path)
    assert report["reasons"] == [] and [job["state"] for job in report["jobs"]] == [CRITICAL, CRITICAL]


def test_jobs_per_database_are_separate(tmp_path):
    make_archive(tmp_path, START, job="apps", database="journal", verified=True)
    make_archive(tmp_path, START + dt.timedelta(seconds=1), job="apps", database="recipes")
    report = check(tmp_path)
    assert [(j["database"], j["state"]) for j in report["jobs"]] == [("journal", OK), ("recipes", WARNING)]
    assert report["summary"].startswith("WARNING: apps/recipes newest archive ")


@pytest.mark.parametrize("options, message", [
    ({"max_age_hours": -1}, "max_age_hours -1 is not valid: give the age in hours past which"),
    ({"max_age_hours": 0}, "max_age_hours 0 is not valid"),
    ({"max_age_hours": float("nan")}, "max_age_hours nan is not valid"),
    ({"max_age_hours": "26"}, "max_age_hours '26' is not valid"),
    ({"shrink_ratio": 1.5}, "shrink_ratio 1.5 is not valid: give a share between 0 and 1"),
    ({"shrink_ratio": 0}, "shrink_ratio 0 is not valid"),
    ({"collapse_min_count": 0}, "collapse_min_count 0 is not valid"),
    ({"collapse_min_count": 2.5}, "collapse_min_count 2.5 is not valid"),
    ({"free_space_factor": 0.5}, "free_space_factor 0.5 is not valid: give how many next archives"),
    ({"require_verified": "yes"}, "require_verified must be true or false, not 'yes'"),
    ({"max_age": 3}, "unknown status option max_age; known: collapse_min_count, free_space_factor, max_age_hours"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(LifeboatError) as caught:
        _status.StatusOptions.from_options(options)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_options_from_a_dict_keep_defaults_for_none():
    options = _status.StatusOptions.from_options({"max_age_hours": 30, "shrink_ratio": None})
    assert options == _status.StatusOptions(max_age_hours=30)


def test_bad_destination_and_job_names_are_one_line_errors():
    with pytest.raises(LifeboatError, match="destination 'relative' must be an absolute path"):
        _status.evaluate("relative")
    with pytest.raises(LifeboatError, match="job name 'a b' is not usable"):
        _status.evaluate("/tmp", ["a b"])


def test_exit_codes():
    assert [_status.exit_code_for(state) for state in (OK, WARNING, CRITICAL, UNKNOWN)] == [0, 1, 2, 3]
    with pytest.raises(LifeboatError, match="unknown state 'BAD'"):
        _status.exit_code_for("BAD")


def test_metrics_text(tmp_path):
    archive = make_archive(tmp_path, START, verified=True)
    make_archive(tmp_path, START, job='we"ird\\job', database="line\nbreak")
    report = check(tmp_path, hours_later=2)
    text = _status.metrics_text(report)
    labels = f'destination="{tmp_path}",job="journal",database="journal"'
    finished = archive.finished_at.timestamp()
    for line in (
        "# HELP lifeboat_backup_last_success_timestamp_seconds When the newest readable archive of a job finished"
        " (Unix time).",
        "# TYPE lifeboat_backup_last_success_timestamp_seconds gauge",
        f"lifeboat_backup_last_success_timestamp_seconds{{{labels}}} {finished!r}",
        f"lifeboat_backup_last_size_bytes{{{labels}}} 40000",
        f"lifeboat_backup_last_plain_size_bytes{{{labels}}} 40000",
        f"lifeboat_backup_last_duration_seconds{{{labels}}} 120.0",
        f"lifeboat_backup_last_verified{{{labels}}} 1",
        f"lifeboat_backup_last_verification_timestamp_seconds{{{labels}}} {(START + dt.timedelta(hours=1)).timestamp()!r}",
        f"lifeboat_backup_archives{{{labels}}} 1",
        f"lifeboat_backup_last_rows{{{labels}}} 1000",
        f"lifeboat_backup_status{{{labels}}} 0",
        f'lifeboat_backup_status{{destination="{tmp_path}",job="we\\"ird\\\\job",database="line\\nbreak"}} 1',
        f'lifeboat_backup_destination_status{{destination="{tmp_path}"}} 1',
        f'lifeboat_backup_destination_free_bytes{{destination="{tmp_path}"}} {report["free_bytes"]}',
        f'lifeboat_backup_status_timestamp_seconds{{destination="{tmp_path}"}} {finished + 7200!r}',
    ):
        assert line in text.splitlines(), line
    assert text.endswith("\n") and text.count("# TYPE ") == text.count("# HELP ") == 12


def test_metrics_of_a_missing_job_and_destination(tmp_path):
    report = _status.evaluate(str(tmp_path / "gone"), ["journal"], now=START)
    lines = _status.metrics_text(report).splitlines()
    assert f'lifeboat_backup_status{{destination="{tmp_path / "gone"}",job="journal",database=""}} 2' in lines
    assert not [line for line in lines if line.startswith(("lifeboat_backup_last_", "lifeboat_backup_destination_free"))]


def test_same_metrics_ignores_only_the_time_of_the_check_and_free_space(tmp_path, monkeypatch):
    make_archive(tmp_path, START, verified=True)
    first = _status.metrics_text(check(tmp_path, hours_later=1))
    monkeypatch.setattr(_status, "free_bytes", lambda path: 10**12)
    later = _status.metrics_text(check(tmp_path, hours_later=2))
    assert first != later and _status.same_metrics(first, later)
    changed = [line for line in zip(first.splitlines(), later.splitlines(), strict=False) if line[0] != line[1]]
    assert [old.split("{")[0] for old, _new in changed] == [_status.FREE_BYTES_METRIC, _status.STATUS_TIMESTAMP_METRIC]
    assert not _status.same_metrics(None, first)
    make_archive(tmp_path, START + dt.timedelta(days=1))
    assert not _status.same_metrics(first, _status.metrics_text(check(tmp_path, hours_later=-23)))


def test_write_metrics_is_atomic_and_world_readable(tmp_path):
    assert_replaced_whole_and_world_readable(_prometheus.write_metrics, tmp_path / "lifeboat.prom")
    assert _prometheus.read_metrics(str(tmp_path / "none.prom")) is None


@pytest.mark.parametrize("name, message", [
    ("missing/lifeboat.prom", "the directory of metrics_file {tmp}/missing/lifeboat.prom does not exist; create"),
    ("lifeboat.txt", "metrics_file {tmp}/lifeboat.txt must end in .prom"),
])
def test_write_metrics_refuses_with_one_line(tmp_path, name, message):
    with pytest.raises(LifeboatError) as caught:
        _prometheus.write_metrics(str(tmp_path / name), "a 1\n")
    assert str(caught.value).startswith(message.format(tmp=tmp_path))
    with pytest.raises(LifeboatError, match="must be an absolute path"):
        _prometheus.validate_metrics_path("lifeboat.prom")


def test_report_is_json(tmp_path):
    make_archive(tmp_path, START, verified=True)
    assert json.loads(json.dumps(check(tmp_path)))["state"] == OK


def test_jobs_with_options_of_their_own_still_share_the_free_space(tmp_path, monkeypatch):
    """As `lifeboat status` checks a destination: one evaluation, each job with its thresholds."""
    for job in ("journal", "recipes", "nightscout"):
        make_archive(tmp_path, START, job=job, database=job, size=30_000, verified=True)
    monkeypatch.setattr(_status, "free_bytes", lambda path: 80_000)
    own = {job: _status.StatusOptions(max_age_hours=10_000) for job in ("journal", "recipes", "nightscout")}
    report = _status.evaluate(str(tmp_path), list(own), job_options=own, now=START + dt.timedelta(hours=1))
    assert report["state"] == CRITICAL and all(job["state"] == OK for job in report["jobs"])
    assert report["reasons"][0]["message"].startswith("the next archives of all 3 jobs will not fit")
    assert all(job["next_size"] >= 30_000 for job in report["jobs"])
