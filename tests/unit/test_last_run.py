# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A failed `lifeboat backup` run makes its job CRITICAL while its previous archive still looks fresh."""

from __future__ import annotations

import datetime as dt
import os

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
    assert 'lifeboat_backup_status{destination="%s",job="journal",database="journal"} 2' % tmp_path in \
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
