# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Records of PostgreSQL restores that turned their target's connections off, as status reads them.

A real merge killed by SIGKILL, reported by backup_status and repaired by the next restore, is in
tests/integration/test_restore_leftovers_pg.py; here the records themselves (no database).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess

from ansible_collections.lifeboat.ops.plugins.module_utils import _restore_records, _status
from ansible_collections.lifeboat.ops.plugins.module_utils._status import CRITICAL, OK
from test_status import START, make_archive  # pylint: disable=import-error


def dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def killed_restore(directory, database: str = "journal", **changes) -> str:
    """A record as a restore writes it, of a process that is gone."""
    path = _restore_records.record_path(str(directory), "db.internal:5432", database)
    _restore_records.write(path, "db.internal:5432", database, f"lifeboat_restore_{database}_0badf00d",
                           START + dt.timedelta(hours=2))
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    record.update({"pid": dead_pid(), "pid_start": None, **changes})
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    return path


def critical_lines(destination) -> list[str]:
    report = _status.evaluate(str(destination), now=START + dt.timedelta(hours=3))
    return [reason["message"] for reason in report["reasons"] if reason["severity"] == CRITICAL]


def test_a_killed_restore_is_critical_and_says_what_to_run(tmp_path):
    make_archive(tmp_path, START, verified=True)
    assert _status.evaluate(str(tmp_path), now=START + dt.timedelta(hours=3))["state"] == OK
    path = killed_restore(tmp_path, database='odd "name"')
    lines = critical_lines(tmp_path)
    assert len(lines) == 1, lines
    assert lines[0].startswith('a restore into odd "name" at db.internal:5432 was killed (PID ')
    assert 'run ALTER DATABASE "odd ""name""" WITH ALLOW_CONNECTIONS true' in lines[0]
    assert os.path.basename(path) in lines[0] and "\n" not in lines[0]


def test_a_running_restore_and_one_of_another_host_are_not_reported(tmp_path):
    make_archive(tmp_path, START, verified=True)
    path = _restore_records.record_path(str(tmp_path), "db.internal:5432", "journal")
    assert _restore_records.write(path, "db.internal:5432", "journal", "side", START)  # this process: alive
    killed_restore(tmp_path, database="other", host=socket.gethostname() + "-elsewhere")
    assert critical_lines(tmp_path) == []


def test_a_record_cleared_or_unreadable_is_nothing(tmp_path):
    make_archive(tmp_path, START, verified=True)
    path = killed_restore(tmp_path)
    _restore_records.clear(path)
    _restore_records.clear(path)  # twice: no error
    with open(_restore_records.record_path(str(tmp_path), "x", "y"), "w", encoding="utf-8") as handle:
        handle.write("{not json")
    assert critical_lines(tmp_path) == []


def test_a_record_never_holds_a_secret_and_names_no_database_in_its_file_name(tmp_path):
    path = killed_restore(tmp_path, database="journal")
    assert "journal" not in os.path.basename(path)
    with open(path, encoding="utf-8") as handle:
        assert set(json.load(handle)) == {"database", "server", "side", "pid", "pid_start", "host", "at"}
