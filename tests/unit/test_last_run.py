# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A failed `lifeboat backup` run makes its job CRITICAL while its previous archive still looks fresh."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys

from ansible_collections.lifeboat.ops.plugins.module_utils import _catalog, _status
from ansible_collections.lifeboat.ops.plugins.module_utils._status import CRITICAL, OK
from test_status import START, make_archive  # pylint: disable=import-error


def test_a_failed_run_after_the_newest_archive_is_critical(tmp_path):
    make_archive(tmp_path, START, verified=True)
    now = START + dt.timedelta(hours=2)
    assert _status.evaluate(str(tmp_path), ["journal"], now=now)["state"] == OK

    _status.record_run(str(tmp_path), "journal", ok=False, failure="password authentication failed for user backup",
                       at=START + dt.timedelta(hours=1))
    report = _status.evaluate(str(tmp_path), ["journal"], now=now)
    assert report["state"] == CRITICAL
    assert report["jobs"][0]["state"] == CRITICAL
    assert "journal last backup run failed at 2026-11-20T04:00:00Z: password authentication failed" in report["summary"]
    assert f'lifeboat_backup_status{{destination="{tmp_path}",job="journal",database="journal"}} 2' in \
        _status.metrics_text(report, now)
    # The record is no archive: the catalog and hence retention never see it.
    assert [archive.name for archive in _catalog.scan(str(tmp_path)).archives] == ["journal-20261120T030000Z.pgdump"]
    assert not _catalog.scan(str(tmp_path)).partials


def test_a_good_run_or_a_newer_archive_clears_the_failure(tmp_path):
    make_archive(tmp_path, START, verified=True)
    _status.record_run(str(tmp_path), "journal", ok=False, failure="boom", at=START + dt.timedelta(hours=1))
    make_archive(tmp_path, START + dt.timedelta(hours=3), verified=True)
    now = START + dt.timedelta(hours=4)
    assert _status.evaluate(str(tmp_path), ["journal"], now=now)["state"] == OK

    _status.record_run(str(tmp_path), "journal", ok=False, failure="boom", at=START + dt.timedelta(hours=5))
    assert _status.evaluate(str(tmp_path), ["journal"], now=now)["state"] == CRITICAL
    _status.record_run(str(tmp_path), "journal", ok=True, at=START + dt.timedelta(hours=6))
    assert _status.evaluate(str(tmp_path), ["journal"], now=now)["state"] == OK
    assert _status.last_run(str(tmp_path), "journal")["ok"] is True


def test_records_are_best_effort_and_damaged_ones_ignored(tmp_path):
    _status.record_run(str(tmp_path / "missing"), "journal", ok=False, failure="x")  # no destination: no error
    assert not (tmp_path / "missing").exists()
    make_archive(tmp_path, START, verified=True)
    (tmp_path / ".lifeboat-last-run-journal.json").write_text("{not json")
    assert _status.last_run(str(tmp_path), "journal") is None
    assert _status.evaluate(str(tmp_path), ["journal"], now=START + dt.timedelta(hours=1))["state"] == OK
    assert sorted(os.listdir(tmp_path)) == [".lifeboat-last-run-journal.json", "journal-20261120T030000Z.pgdump",
                                            "journal-20261120T030000Z.pgdump.manifest.json"]


def test_a_run_that_started_and_died_is_critical_and_a_live_one_is_running(tmp_path):
    make_archive(tmp_path, START, verified=True)
    now = START + dt.timedelta(hours=2)
    started = _status.record_start(str(tmp_path), "journal", at=START + dt.timedelta(hours=1))
    assert started["pid"] == os.getpid() and started["state"] == "started"
    report = _status.evaluate(str(tmp_path), ["journal"], now=now)
    assert report["state"] == OK and report["jobs"][0]["running"] == {
        "pid": os.getpid(), "started_at": "2026-11-20T04:00:00Z", "host": socket.gethostname()}

    record_path = tmp_path / ".lifeboat-last-run-journal.json"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    for change in ({"pid": int(gone.stdout)},  # its process is gone
                   {"pid_start": "1"}):  # its PID now belongs to another process
        record_path.write_text(json.dumps({**started, **change}))
        report = _status.evaluate(str(tmp_path), ["journal"], now=now)
        assert report["state"] == CRITICAL, change
        pid = change.get("pid", os.getpid())
        assert (f"journal last backup run started at 2026-11-20T04:00:00Z (PID {pid}) and never finished: it was "
                "killed or its host stopped") in report["summary"]
    # Recorded by another host sharing the destination: nothing tells from here, it counts as running.
    record_path.write_text(json.dumps({**started, "pid": int(gone.stdout), "host": "elsewhere"}))
    assert _status.evaluate(str(tmp_path), ["journal"], now=now)["jobs"][0]["running"]["host"] == "elsewhere"
    # An archive begun in the very second the killed run started is the previous run's, not its own: still an alarm
    # (both times are whole seconds; seen in test_cli when two runs started within one second).
    record_path.write_text(json.dumps({**started, "pid": int(gone.stdout), "at": "2026-11-20T03:00:00Z"}))
    assert _status.evaluate(str(tmp_path), ["journal"], now=now)["state"] == CRITICAL
    # An archive begun after the record (the run made it, then was killed before saying so): no alarm.
    record_path.write_text(json.dumps({**started, "pid": int(gone.stdout), "at": "2026-11-20T02:00:00Z"}))
    assert _status.evaluate(str(tmp_path), ["journal"], now=now)["state"] == OK

    _status.record_run(str(tmp_path), "journal", ok=True, started=started)
    assert _status.last_run(str(tmp_path), "journal")["started_at"] == "2026-11-20T04:00:00Z"
    assert _status.evaluate(str(tmp_path), ["journal"], now=now)["state"] == OK


def test_a_backup_root_reports_a_job_whose_first_run_was_killed(tmp_path):
    make_archive(tmp_path / "journal", START, verified=True)
    (tmp_path / "fresh").mkdir()
    started = _status.record_start(str(tmp_path / "fresh"), "fresh", at=START)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    (tmp_path / "fresh" / ".lifeboat-last-run-fresh.json").write_text(json.dumps({**started, "pid": int(gone.stdout)}))
    (tmp_path / "empty").mkdir()  # no archive, no record: not a job directory
    report = _status.evaluate_root(str(tmp_path), now=START + dt.timedelta(hours=1))
    assert [(job["job"], job["destination"], job["state"]) for job in report["jobs"]] == [
        ("fresh", str(tmp_path / "fresh"), CRITICAL), ("journal", str(tmp_path / "journal"), OK)]
    assert f"fresh last backup run started at 2026-11-20T03:00:00Z (PID {gone.stdout.strip()}) and never finished" \
        in report["summary"]
    assert _status.evaluate_root(str(tmp_path / "journal"), now=START + dt.timedelta(hours=1))["state"] == OK
