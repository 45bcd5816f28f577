# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_prune on real archives made by postgresql_dump from the test bed."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _catalog, _manifest, _verify
from testbed import PG_SOURCE, resign  # pylint: disable=import-error

JOB = "prune"
FIRST_DAY = _dt.datetime(2026, 11, 1, 3, 0, tzinfo=_dt.UTC)


@pytest.fixture
def real_archive(pg, run_module, tmp_path):
    """One real dump of the sample database, to copy into a dated series."""
    made = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(tmp_path / "made"), job=JOB))
    assert made.rc == 0, made.result.get("msg")
    return made.result["archive"]


def dated_series(real_archive: str, destination: str, days: int) -> list[_catalog.Archive]:
    """Copies of one real archive, one a day, oldest first.

    Real dumps are named by their start second, and a series that spans days and weeks cannot be dumped in a
    test's time; so the real archive is copied under the names of other days and its manifest rewritten to
    match (archive.file, started_at, finished_at). The bytes, checksums and counts stay the real ones.
    """
    os.makedirs(destination, exist_ok=True)
    manifest = _manifest.load(real_archive)
    kind = os.path.basename(real_archive).split(".", 1)[1]
    for day in range(days):
        started = FIRST_DAY + _dt.timedelta(days=day)
        name = f"{JOB}-{started:%Y%m%dT%H%M%SZ}.{kind}"
        shutil.copyfile(real_archive, os.path.join(destination, name))
        finished = started + _dt.timedelta(seconds=2)
        manifest.update(started_at=_manifest.iso(started), finished_at=_manifest.iso(finished))
        manifest["archive"]["file"] = name
        _manifest.write(_manifest.manifest_path(os.path.join(destination, name)), manifest)
        resign(_manifest.manifest_path(os.path.join(destination, name)))  # as the backup of that day signed it
    archives = _catalog.scan(destination, JOB).archives
    assert len(archives) == days and all(archive.readable for archive in archives)
    return archives


def verify(archive: _catalog.Archive, ok: bool = True) -> None:
    """A real verification (structure level) recorded in the manifest; a failed one on a damaged copy of the bytes."""
    original = None
    if not ok:
        with open(archive.path, "r+b") as handle:
            original = handle.read(64)
            handle.seek(32)
            handle.write(bytes([original[32] ^ 0xFF]))
    try:
        result = _verify.verify_one(archive, _verify.VerifyRequest(archives=[archive], level="structure"))
    finally:
        if original is not None:
            with open(archive.path, "r+b") as handle:
                handle.write(original)
    assert result["ok"] is ok, result["failure"]


def names(entries: list[dict]) -> list[str]:
    return [entry["name"] for entry in entries]


def test_failed_backups_do_not_push_out_the_last_good_one(real_archive, run_module, tmp_path):
    destination = str(tmp_path / "backups")
    good, failed, *unverified = dated_series(real_archive, destination, 4)
    verify(good)
    verify(failed, ok=False)

    held = run_module("backup_prune", {"destination": destination, "keep_last": 1})
    assert held.rc == 0, held.result.get("msg")
    assert held.result["changed"] is False and held.result["removed"] == []
    assert len(held.result["held"]) == 1
    assert f"the newest archive {unverified[-1].name} is not verified" in held.result["held"][0]["reason"]
    reasons = {entry["name"]: entry["reasons"] for entry in held.result["kept"]}
    assert "newest verified archive" in reasons[good.name]
    assert all(os.path.exists(path) for archive in (good, failed, *unverified) for path in archive.files())

    verify(unverified[-1])
    pruned = run_module("backup_prune", {"destination": destination, "keep_last": 1})
    assert pruned.result["changed"] is True and pruned.result["held"] == []
    assert names(pruned.result["removed"]) == [good.name, failed.name, unverified[0].name]
    assert pruned.result["kept"] == [{
        "name": unverified[-1].name, "job": JOB, "database": PG_SOURCE, "started_at": "2026-11-04T03:00:00Z",
        "verified": True, "reasons": ["last 1 of 1", "newest verified archive"]}]
    assert pruned.result["freed_bytes"] > 3 * os.path.getsize(real_archive)
    assert sorted(os.listdir(destination)) == sorted(os.path.basename(path) for path in unverified[-1].files())


def test_archive_without_manifest_is_kept_and_reported(real_archive, run_module, tmp_path):
    destination = str(tmp_path / "backups")
    orphan, middle, newest = dated_series(real_archive, destination, 3)
    for archive in (middle, newest):
        verify(archive)
    os.unlink(orphan.manifest_path)

    run = run_module("backup_prune", {"destination": destination, "keep_last": 1})
    assert run.result["changed"] is True
    assert names(run.result["removed"]) == [middle.name]
    assert run.result["unreadable"] == [{"name": orphan.name, "job": JOB, "problem":
                                         "it has no manifest, so nothing says what it holds or proves it whole"}]
    assert any(orphan.name in warning for warning in run.result["warnings_found"])
    assert orphan.name in str(run.result["warnings"])  # also shown by ansible-playbook
    assert os.path.exists(orphan.path) and not os.path.exists(middle.path)


def test_check_and_diff_mode_list_without_removing(real_archive, run_module, tmp_path):
    destination = str(tmp_path / "backups")
    archives = dated_series(real_archive, destination, 3)
    for archive in archives:
        verify(archive)
    before = sorted(os.listdir(destination))

    run = run_module("backup_prune", {"destination": destination, "job": JOB, "keep_daily": 2, "_ansible_diff": True},
                     check_mode=True)
    assert run.result["changed"] is True
    assert names(run.result["removed"]) == [archives[0].name]
    assert run.result["removed"][0]["reasons"] == ["kept by none of keep_daily=2"]
    assert run.result["diff"]["before"].split() == [archive.name for archive in archives]
    assert run.result["diff"]["after"].split() == [archive.name for archive in archives[1:]]
    assert sorted(os.listdir(destination)) == before


@pytest.mark.parametrize("args, message", [
    ({}, "the retention policy keeps nothing"),
    ({"keep_within": "3w"}, "keep_within '3w' is not a span"),
    ({"keep_daily": -5}, "keep_daily is -5; use a count of 0 or more, or -1 for no limit"),
    ({"keep_last": 1, "destination": "backups"}, "destination 'backups' must be an absolute path"),
])
def test_bad_policy_is_one_line_error(run_module, tmp_path, args, message):
    run = run_module("backup_prune", {"destination": str(tmp_path), **args})
    assert run.result.get("failed") and message in run.result["msg"]
    assert "\n" not in run.result["msg"] and "Traceback" not in run.result["msg"]


def test_a_destination_that_does_not_exist_fails_in_one_line(run_module, tmp_path):
    run = run_module("backup_prune", {"destination": str(tmp_path / "typo"), "keep_last": 1})
    assert run.result.get("failed")
    assert run.result["msg"] == (f"destination {tmp_path / 'typo'} does not exist: nothing to prune; check the path "
                                 "(a backup creates it)")
    (tmp_path / "file").write_text("")
    run = run_module("backup_prune", {"destination": str(tmp_path / "file"), "keep_last": 1})
    assert run.result.get("failed") and "is not a directory: nothing to prune" in run.result["msg"]


def test_leftovers_of_a_dead_writer_go_and_a_live_writers_stay(real_archive, run_module, tmp_path):
    destination = tmp_path / "backups"
    (archive,) = dated_series(real_archive, str(destination), 1)
    verify(archive)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    partial = destination / f".{JOB}-20261130T030000Z.pgdump.zst.partial-{dead}"
    partial.write_bytes(b"half")
    private = destination / f".lifeboat-{dead}-x1y2z3"
    private.mkdir()
    (private / "toc.dat").write_bytes(b"unpacked")
    live = destination / f".{JOB}-20261130T040000Z.pgdump.zst.partial-{os.getpid()}"
    live.write_bytes(b"being written")
    listed = run_module("backup_prune", {"destination": str(destination), "job": JOB, "keep_last": 1},
                        check_mode=True)
    assert listed.result["changed"] is True and partial.exists() and private.exists()
    run = run_module("backup_prune", {"destination": str(destination), "job": JOB, "keep_last": 1})
    assert run.result["changed"] is True, run.result
    assert sorted(run.result["removed_files"]) == sorted([str(partial), str(private)])
    assert {entry["path"]: (entry["writer_alive"], entry["removed"]) for entry in run.result["partials"]} == {
        str(partial): (False, True), str(private): (False, True), str(live): (True, False)}
    assert live.exists() and os.path.exists(archive.path)
