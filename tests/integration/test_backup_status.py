# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_status on archives dumped from the test bed's PostgreSQL and FerretDB, metrics checked by promtool."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import subprocess
import time
import typing as t

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _catalog, _manifest, _status, _verify
from testbed import metric

JOB = "status-test"


def promtool_check(text: str) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not on PATH: source the test bed's env.sh (scripts/testbed/up.sh fetches it)"
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)


def assert_valid_metrics(text: str) -> None:
    checked = promtool_check(text)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), text


def mark_verified(archive_path: str) -> None:
    """A real verification of the archive (level stream), recorded in its manifest as backup_verify does."""
    archives = _verify.select_archives(archive=archive_path)
    (result,) = _verify.verify(_verify.VerifyRequest(archives=archives, level="stream"))
    assert result["ok"], result["failure"]


def age_archive(archive_path: str, hours: float) -> None:
    """Move an archive's recorded start and end back in time, as if it had been made ``hours`` earlier.

    The module has no notion of "now" but the clock (a health check is about the present), so its tests age
    the archive instead of the clock. The health check reads times from the manifest, not from the file name
    or mtime, so rewriting started_at and finished_at is all it takes.
    """
    manifest = _manifest.load(archive_path)
    for key in ("started_at", "finished_at"):
        moment = _catalog.parse_time(manifest[key])
        assert moment is not None
        manifest[key] = _manifest.iso(moment - dt.timedelta(hours=hours))
    _manifest.write(_manifest.manifest_path(archive_path), manifest)


def next_second() -> None:
    """Archive names carry the start time to the second: two dumps of a job must not start in the same one."""
    time.sleep(1.05 - time.time() % 1)


@pytest.fixture
def dump(run_module, pg, mongo):
    def run(engine: str, database: str, destination: t.Any, job: str = JOB) -> dict[str, t.Any]:
        server = pg if engine == "postgresql" else mongo
        done = run_module(f"{engine}_dump", server.login(database=database, destination=str(destination), job=job))
        assert done.rc == 0, done.result
        return done.result

    return run


@pytest.fixture
def status(run_module):
    def run(destination: t.Any, check_mode: bool = False, **args: t.Any) -> t.Any:
        return run_module("backup_status", {"destination": str(destination), **args}, check_mode=check_mode)

    return run


@pytest.fixture
def pg_copy(pg, unique_name):
    """A database of our own with 20000 rows (the seeded ones are never modified)."""
    with pg.connect() as conn:
        conn.execute(f"CREATE DATABASE {unique_name}")
    try:
        with pg.connect(unique_name) as conn:
            conn.execute("CREATE TABLE reading (id int PRIMARY KEY, value text)")
            conn.execute("INSERT INTO reading SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
        yield unique_name
    finally:
        pg.drop(unique_name)


@pytest.fixture
def mongo_copy(mongo, unique_name):
    """A copy of nightscout.entries (thousands of documents) and a small collection, in a database of our own."""
    entries = list(mongo.client[mongo.sample].entries.find())
    assert len(entries) >= 1000
    try:
        mongo.client[unique_name].entries.insert_many(entries)
        mongo.client[unique_name].profile.insert_one({"name": "default", "units": "mg/dl"})
        yield unique_name
    finally:
        mongo.drop(unique_name)


@pytest.fixture
def metrics_dir(tmp_path):
    directory = tmp_path / "textfile"
    directory.mkdir()
    return directory


def test_fresh_and_verified_is_ok(dump, status, tmp_path, metrics_dir, pg):
    destination = tmp_path / "backups"
    dumped = dump("postgresql", pg.sample, destination)
    mark_verified(dumped["archive"])
    metrics_file = metrics_dir / "lifeboat.prom"

    planned = status(destination, check_mode=True, jobs=[JOB], metrics_file=str(metrics_file))
    assert planned.rc == 0 and planned.result["changed"] is True, planned.result
    assert not metrics_file.exists(), "check mode wrote the metrics file"
    assert planned.result["state"] == "OK" and "lifeboat_backup_status{" in planned.result["metrics"]

    run = status(destination, jobs=[JOB], metrics_file=str(metrics_file))
    result = run.result
    assert run.rc == 0 and result["changed"] is True, result
    assert (result["state"], result["exit_code"]) == ("OK", 0)
    assert result["summary"].startswith(f"OK: 1 backup job(s) in {destination} fresh and verified")
    (job,) = result["jobs"]
    assert (job["job"], job["database"], job["engine"], job["archives"]) == (JOB, pg.sample, "postgresql", 1)
    assert job["newest"]["name"] == os.path.basename(dumped["archive"]) and job["newest"]["verified"] is True
    assert job["newest"]["counts_total"] == sum(dumped["counts"].values()) > 0

    text = metrics_file.read_text()
    assert text == result["metrics"]
    assert stat.S_IMODE(os.stat(metrics_file).st_mode) == 0o644
    assert_valid_metrics(text)
    labels = {"job": JOB, "database": pg.sample}
    manifest = _manifest.load(dumped["archive"])
    assert metric(text, "lifeboat_backup_status", **labels) == 0
    assert metric(text, "lifeboat_backup_last_verified", **labels) == 1
    assert metric(text, "lifeboat_backup_last_size_bytes", **labels) == dumped["size"]
    assert metric(text, "lifeboat_backup_last_plain_size_bytes", **labels) == dumped["plain_size"]
    assert metric(text, "lifeboat_backup_last_rows", **labels) == sum(dumped["counts"].values())
    assert metric(text, "lifeboat_backup_last_success_timestamp_seconds", **labels) == \
        _catalog.parse_time(manifest["finished_at"]).timestamp()
    assert metric(text, "lifeboat_backup_destination_free_bytes", destination=str(destination)) > 0
    checked_at = metric(text, "lifeboat_backup_status_timestamp_seconds", destination=str(destination))
    assert abs(checked_at - time.time()) < 60

    next_second()
    again = status(destination, jobs=[JOB], metrics_file=str(metrics_file), _ansible_diff=True)
    assert again.rc == 0 and again.result["changed"] is False, "only the time of the check changed"
    assert metric(metrics_file.read_text(), "lifeboat_backup_status_timestamp_seconds",
                  destination=str(destination)) > checked_at, "the heartbeat must advance on every run"
    assert again.result["diff"]["before"] == text and again.result["diff"]["after"] == metrics_file.read_text()
    assert sorted(os.listdir(metrics_dir)) == ["lifeboat.prom"], "a temporary file was left"


def test_27_hours_old_is_critical(dump, status, tmp_path, metrics_dir, pg):
    destination = tmp_path / "backups"
    dumped = dump("postgresql", pg.sample, destination)
    mark_verified(dumped["archive"])
    finished = _catalog.parse_time(_manifest.load(dumped["archive"])["finished_at"])

    report = _status.evaluate(str(destination), [JOB], now=finished + dt.timedelta(hours=27))
    assert (report["state"], report["exit_code"]) == ("CRITICAL", 2)
    assert report["summary"] == (f"CRITICAL: {JOB}/{pg.sample} newest archive is 27.0 h old (max 26 h), "
                                 f"finished {_manifest.iso(finished)}")

    age_archive(dumped["archive"], 27)
    metrics_file = metrics_dir / "lifeboat.prom"
    run = status(destination, metrics_file=str(metrics_file))
    assert run.rc == 0 and run.result["state"] == "CRITICAL", run.result
    assert "newest archive is 27.0 h old (max 26 h)" in run.result["summary"]
    text = metrics_file.read_text()
    assert_valid_metrics(text)
    assert metric(text, "lifeboat_backup_status", job=JOB) == 2
    assert metric(text, "lifeboat_backup_destination_status") == 2
    assert time.time() - metric(text, "lifeboat_backup_last_success_timestamp_seconds", job=JOB) > 27 * 3600 - 60

    assert status(destination, max_age_hours=28).result["state"] == "OK"
    failed = status(destination, fail_on="critical", metrics_file=str(metrics_file))
    assert failed.rc != 0 and failed.result["failed"] is True
    assert failed.result["msg"] == failed.result["summary"] and failed.result["msg"].startswith("CRITICAL: ")
    assert metric(metrics_file.read_text(), "lifeboat_backup_status", job=JOB) == 2, "metrics are written first"


def test_shrunk_by_80_percent_is_a_warning(dump, status, tmp_path, metrics_dir, pg, pg_copy):
    destination = tmp_path / "backups"
    first = dump("postgresql", pg_copy, destination)
    mark_verified(first["archive"])
    with pg.connect(pg_copy) as conn:
        conn.execute("DELETE FROM reading WHERE id % 5 <> 0")  # 80% of the rows
    next_second()
    second = dump("postgresql", pg_copy, destination)
    mark_verified(second["archive"])
    assert second["counts"]["public.reading"] == 4000

    metrics_file = metrics_dir / "lifeboat.prom"
    run = status(destination, jobs=[JOB], metrics_file=str(metrics_file))
    assert run.rc == 0 and run.result["state"] == "WARNING", run.result
    (reason,) = run.result["jobs"][0]["reasons"]
    shrink = re.search(r"is (\d+)% smaller than " + re.escape(os.path.basename(first["archive"])), reason["message"])
    assert shrink and 75 <= int(shrink[1]) <= 85, reason
    assert run.result["jobs"][0]["previous_verified"] == os.path.basename(first["archive"])
    text = metrics_file.read_text()
    assert_valid_metrics(text)
    assert metric(text, "lifeboat_backup_status", job=JOB, database=pg_copy) == 1
    assert metric(text, "lifeboat_backup_archives", job=JOB) == 2
    assert metric(text, "lifeboat_backup_last_rows", job=JOB) == 4000


def test_newest_unverified_is_a_warning(dump, status, tmp_path, pg):
    destination = tmp_path / "backups"
    first = dump("postgresql", pg.sample, destination)
    mark_verified(first["archive"])
    next_second()
    second = dump("postgresql", pg.sample, destination)
    run = status(destination)
    assert run.rc == 0, run.result
    assert (run.result["state"], run.result["exit_code"]) == ("WARNING", 1)
    assert run.result["summary"] == (f"WARNING: {JOB}/{pg.sample} newest archive "
                                     f"{os.path.basename(second['archive'])} is not verified")
    assert status(destination, require_verified=False).result["state"] == "OK"


@pytest.mark.parametrize("exists", [True, False])
def test_no_archive_is_critical(status, tmp_path, metrics_dir, exists):
    destination = tmp_path / "backups"
    if exists:
        destination.mkdir()
    metrics_file = metrics_dir / "lifeboat.prom"
    run = status(destination, jobs=["journal"], metrics_file=str(metrics_file))
    assert run.rc == 0 and (run.result["state"], run.result["exit_code"]) == ("CRITICAL", 2), run.result
    assert f"no archive of job journal in {destination}" in run.result["summary"]
    assert ("does not exist" in run.result["summary"]) is not exists
    text = metrics_file.read_text()
    assert_valid_metrics(text)
    assert metric(text, "lifeboat_backup_status", job="journal", database="") == 2
    assert "lifeboat_backup_last_success_timestamp_seconds" not in text


@pytest.fixture
def small_tmpfs(tmpfs):
    return tmpfs("16m")


def fill_until_free(directory: t.Any, free: int) -> None:
    """Grow a filler file until about ``free`` bytes stay free (tmpfs counts whole pages)."""
    filler = directory / "filler.bin"
    free_before = _status.free_bytes(str(directory))
    assert free_before is not None
    with open(filler, "ab") as handle:
        handle.write(b"\0" * max(0, free_before - free))
    free_after = _status.free_bytes(str(directory))
    assert free_after is not None and abs(free_after - free) <= 8192


def test_destination_nearly_full(dump, status, small_tmpfs, metrics_dir, pg):
    dumped = dump("postgresql", pg.sample, small_tmpfs)
    mark_verified(dumped["archive"])
    needed = os.path.getsize(dumped["archive"]) + os.path.getsize(dumped["manifest"])
    assert needed > 64 * 1024, "the archive must be far larger than a page for the thresholds to be exact"
    metrics_file = metrics_dir / "lifeboat.prom"
    assert status(small_tmpfs, jobs=[JOB]).result["state"] == "OK"

    fill_until_free(small_tmpfs, int(needed * 1.5))  # the next archive fits, but not twice
    run = status(small_tmpfs, jobs=[JOB], metrics_file=str(metrics_file))
    assert run.result["state"] == "WARNING", run.result
    assert "has room for less than 2 more archives: " in run.result["summary"]
    assert status(small_tmpfs, jobs=[JOB], free_space_factor=1.2).result["state"] == "OK"

    fill_until_free(small_tmpfs, needed // 2)  # the next archive will not fit
    run = status(small_tmpfs, jobs=[JOB], metrics_file=str(metrics_file))
    assert run.result["state"] == "CRITICAL", run.result
    assert "next archive will not fit: " in run.result["summary"]
    text = metrics_file.read_text()
    assert_valid_metrics(text)
    assert metric(text, "lifeboat_backup_status", job=JOB) == 2
    assert abs(metric(text, "lifeboat_backup_destination_free_bytes") - needed // 2) <= 8192


def test_a_collection_emptied_is_critical(dump, status, tmp_path, metrics_dir, mongo, mongo_copy):
    destination = tmp_path / "backups"
    first = dump("mongodb", mongo_copy, destination)
    mark_verified(first["archive"])
    documents = first["counts"][f"{mongo_copy}.entries"]
    assert documents >= 1000
    mongo.client[mongo_copy].entries.delete_many({})
    next_second()
    second = dump("mongodb", mongo_copy, destination)
    mark_verified(second["archive"])

    metrics_file = metrics_dir / "lifeboat.prom"
    run = status(destination, jobs=[JOB], metrics_file=str(metrics_file))
    assert run.rc == 0 and run.result["state"] == "CRITICAL", run.result
    assert f"{mongo_copy}.entries went from {documents} to none" in run.result["summary"]
    assert run.result["jobs"][0]["engine"] == "mongodb"
    text = metrics_file.read_text()
    assert_valid_metrics(text)
    assert metric(text, "lifeboat_backup_status", job=JOB, database=mongo_copy) == 2
    assert metric(text, "lifeboat_backup_last_rows", job=JOB) == 1


@pytest.mark.parametrize("args, message", [
    ({"max_age_hours": -1}, "max_age_hours -1.0 is not valid: give the age in hours past which the newest archive "
                            "is CRITICAL, e.g. 26"),
    ({"shrink_ratio": 2}, "shrink_ratio 2.0 is not valid: give a share between 0 and 1"),
    ({"free_space_factor": 0.5}, "free_space_factor 0.5 is not valid"),
    ({"metrics_file": "{tmp}/missing/lifeboat.prom"}, "the directory of metrics_file {tmp}/missing/lifeboat.prom "
                                                      "does not exist; create {tmp}/missing"),
    ({"metrics_file": "{tmp}/lifeboat.txt"}, "metrics_file {tmp}/lifeboat.txt must end in .prom"),
    ({"destination": "relative/dir"}, "destination 'relative/dir' must be an absolute path"),
    ({"jobs": ["no spaces"]}, "job name 'no spaces' is not usable in a file name"),
])
def test_bad_options_are_one_line_errors(status, tmp_path, args, message):
    args = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in args.items()}
    run = status(args.pop("destination", tmp_path), **args)
    assert run.rc != 0 and run.result.get("failed") is True
    assert run.result["msg"].startswith(message.format(tmp=tmp_path)), run.result["msg"]
    assert "\n" not in run.result["msg"] and "Traceback" not in run.stdout + run.stderr
    assert not list(tmp_path.glob("*.prom")), "nothing is written after a bad option"


def test_library_metrics_with_awkward_labels_pass_promtool():
    """Label values with quotes, backslashes and new lines are escaped as the text format wants."""
    report = {"destination": '/srv/"backups"\\x', "checked_at": "2026-11-22T10:00:00Z", "free_bytes": 10, "reasons": [],
              "state": "WARNING", "exit_code": 1, "summary": "", "jobs": [
                  {"job": "j", "database": 'we"ird\\name\nline', "state": "WARNING", "archives": 1, "newest": {
                      "finished_at": "2026-11-22T03:00:00Z", "size": 1, "plain_size": 2, "duration_seconds": 0.5,
                      "verified": False, "verified_at": None, "counts_total": 3}},
                  {"job": "k", "database": None, "state": "CRITICAL", "archives": 0, "newest": None}]}
    text = _status.metrics_text(report)
    assert_valid_metrics(text)
    assert metric(text, "lifeboat_backup_status", job="k", database="") == 2
    assert metric(text, "lifeboat_backup_last_plain_size_bytes", database='we\\"ird\\\\name\\nline') == 2


@pytest.mark.parametrize("breakage", [
    "unescaped quote in a label value",
    "a sample before its TYPE line again",
    "no HELP",
    "a counter named like a gauge",
])
def test_promtool_rejects_broken_metrics(breakage):
    """The check can fail: each of these breaks a valid metrics text in a way promtool must catch."""
    report = {"destination": "/srv/backups", "checked_at": "2026-11-22T10:00:00Z", "free_bytes": 10, "reasons": [],
              "state": "OK", "exit_code": 0, "summary": "", "jobs": []}
    text = _status.metrics_text(report)
    assert_valid_metrics(text)
    broken = {
        "unescaped quote in a label value": text.replace('destination="/srv/backups"', 'destination="/srv/"b"', 1),
        "a sample before its TYPE line again": text + "# TYPE lifeboat_backup_destination_status gauge\n",
        "no HELP": "\n".join(line for line in text.splitlines() if not line.startswith("# HELP")) + "\n",
        "a counter named like a gauge": text.replace("# TYPE lifeboat_backup_destination_free_bytes gauge",
                                                     "# TYPE lifeboat_backup_destination_free_bytes counter"),
    }[breakage]
    assert broken != text
    assert promtool_check(broken).returncode != 0


def test_a_backup_root_reports_each_job(dump, status, tmp_path, metrics_dir, pg, mongo):
    """The backup role writes ROOT/JOB; status of ROOT reports every job there (it used to say "no archive at all")."""
    root = tmp_path / "root"
    made = {"journal": dump("postgresql", pg.sample, root / "journal", job="journal"),
            "nightscout": dump("mongodb", mongo.sample, root / "nightscout", job="nightscout")}
    for result in made.values():
        mark_verified(result["archive"])
    metrics_file = metrics_dir / "lifeboat.prom"
    run = status(root, metrics_file=str(metrics_file))
    assert run.rc == 0, run.result
    assert run.result["state"] == "OK", run.result["summary"]
    assert run.result["summary"].startswith(f"OK: 2 backup job(s) in {root} fresh and verified")
    assert [(job["job"], job["destination"], job["state"]) for job in run.result["jobs"]] == [
        ("journal", str(root / "journal"), "OK"), ("nightscout", str(root / "nightscout"), "OK")]
    assert [report["destination"] for report in run.result["destinations"]] == [
        str(root / "journal"), str(root / "nightscout")]
    text = metrics_file.read_text()
    assert_valid_metrics(text)
    assert metric(text, "lifeboat_backup_status", destination=str(root / "nightscout"), job="nightscout") == 0

    age_archive(made["journal"]["archive"], 27)
    run = status(root, jobs=["journal", "nightscout", "absent"], fail_on="critical")
    assert run.rc == 1 and run.result["state"] == "CRITICAL"
    assert f"journal/{pg.sample} newest archive is 27.0 h old" in run.result["msg"]
    assert f"no archive of job absent in {root}" in run.result["msg"]
    assert [job["job"] for job in run.result["jobs"]] == ["journal", "nightscout", "absent"]


def test_status_playbook_fails_the_hosts_whose_backups_are_critical(dump, run_playbook, tmp_path, pg, mongo):
    root = tmp_path / "root"
    journal = dump("postgresql", pg.sample, root / "journal", job="journal")
    mark_verified(journal["archive"])
    mark_verified(dump("mongodb", mongo.sample, root / "nightscout", job="nightscout")["archive"])
    run = run_playbook("status", {"backup_root": str(root)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert f'"msg": "OK: 2 backup job(s) in {root} fresh and verified' in run.stdout
    age_archive(journal["archive"], 30)
    run = run_playbook("status", {"backup_root": str(root)})
    assert run.returncode == 2, run.stdout + run.stderr
    assert f'"msg": "CRITICAL: journal/{pg.sample} newest archive is 30.0 h old (max 26 h)' in run.stdout
    assert "failed=1" in run.stdout
    # Given destinations instead of the root, and a missing one: that host fails too.
    run = run_playbook("status", {"backup_status_destinations": [str(root / "nightscout"), str(tmp_path / "gone")]})
    assert run.returncode == 2 and f"destination {tmp_path / 'gone'} does not exist" in run.stdout
