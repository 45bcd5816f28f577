# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate playbook end to end on the test bed: dump, restore, validate, report, and switch only when whole.

The switch-over tasks write a marker file; a hook between restore and validation that tampers with the target
must leave no marker and a report that names the tampered key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t

import pytest
import yaml

from testbed import PG_SECOND  # pylint: disable=import-error


def write_tasks(path: t.Any, tasks: list[dict[str, t.Any]]) -> str:
    path.write_text(yaml.safe_dump(tasks, sort_keys=False))
    return str(path)


def switch_hooks(tmp_path: t.Any) -> tuple[dict[str, t.Any], t.Any, t.Any]:
    marker, rolled_back = tmp_path / "switched.marker", tmp_path / "rolled-back.marker"
    hooks = {
        "migrate_switch_tasks": write_tasks(tmp_path / "switch.yml", [{
            "name": "Point the app at the target", "ansible.builtin.copy": {
                "dest": str(marker), "content": "DATABASE_URL=target\n", "mode": "0600"}}]),
        "migrate_rollback_tasks": write_tasks(tmp_path / "rollback.yml", [{
            "name": "Point the app back at the source", "ansible.builtin.copy": {
                "dest": str(rolled_back), "content": "DATABASE_URL=source\n", "mode": "0600"}}]),
    }
    return hooks, marker, rolled_back


def python_hook(tmp_path: t.Any, name: str, code: str) -> str:
    """A task file that runs Python (the test's interpreter, which has psycopg and pymongo) on the controller."""
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    return write_tasks(tmp_path / f"{name}.yml", [{
        "name": f"Run {name}", "ansible.builtin.command": {"argv": [sys.executable, str(script)]},
        "changed_when": True}])


@pytest.fixture
def pg_target_name(pg: t.Any, unique_name: str) -> t.Iterator[str]:
    yield unique_name
    pg.drop(unique_name)


def test_migrate_postgresql_end_to_end_and_refuses_a_tampered_target(pg, pg_target_name, run_playbook, tmp_path):
    hooks, marker, rolled_back = switch_hooks(tmp_path)
    variables = {"migrate_engine": "postgresql", "migrate_source": pg.login(database=pg.sample),
                 "migrate_target": pg.login(database=pg_target_name), "migrate_work_dir": str(tmp_path / "work"),
                 "migrate_checks": ["presence", "counts", "indexes", "schema", "content", "security"], **hooks}
    run = run_playbook("migrate", variables)
    assert run.returncode == 0, run.stdout[-3000:]
    assert marker.read_text() == "DATABASE_URL=target\n" and not rolled_back.exists()
    report = json.loads((tmp_path / "work" / f"migrate-{pg_target_name}-validation.json").read_text())
    assert report["passed"] is True and report["content"]["rows_compared"] > 4000
    assert pg.fingerprint(pg_target_name) == pg.fingerprint(pg.sample)
    assert pg.password not in run.stdout

    # Again into a fresh target, with a hook that deletes one row after the restore: no switch.
    marker.unlink()
    pg.drop(pg_target_name)
    tamper = python_hook(tmp_path, "tamper", (
        "import psycopg\n"
        f"with psycopg.connect(host={pg.host!r}, port={pg.port}, user={pg.user!r}, dbname={pg_target_name!r},"
        f" password=open({pg.password_file!r}).read().strip(), autocommit=True) as c:\n"
        "    c.execute('DELETE FROM journal_entry_tags WHERE id = 17')\n"))
    run = run_playbook("migrate", {**variables, "migrate_after_restore_tasks": tamper,
                                   "migrate_work_dir": str(tmp_path / "work2")})
    assert run.returncode != 0
    assert not marker.exists() and not rolled_back.exists()
    assert "NOT SWITCHED: FAILED" in run.stdout and "id=17" in run.stdout
    report = (tmp_path / "work2" / f"migrate-{pg_target_name}-validation.md").read_text()
    assert "| FAIL | content | rows | public.journal_entry_tags |" in report and "missing id=17" in report


def test_migrate_from_an_archive_and_rollback_on_failed_health(pg, pg_target_name, run_playbook, run_module,
                                                               tmp_path):
    dump = run_module("postgresql_dump", pg.login(database=PG_SECOND, destination=str(tmp_path / "export")))
    assert dump.rc == 0, dump.stdout
    hooks, marker, rolled_back = switch_hooks(tmp_path)
    variables = {"migrate_engine": "postgresql", "migrate_source_archive": dump.result["archive"],
                 "migrate_target": pg.login(database=pg_target_name), "migrate_work_dir": str(tmp_path / "work"),
                 "migrate_checks": ["presence", "counts", "indexes", "schema", "content"],
                 # Nothing listens there: the application "does not come up" after the switch.
                 "migrate_health_checks": [{"url": "http://127.0.0.1:9/health", "timeout": 2}], **hooks}
    run = run_playbook("migrate", variables)
    assert run.returncode != 0
    assert marker.exists() and rolled_back.read_text() == "DATABASE_URL=source\n"
    assert "the rollback tasks ran: the application is back on the source" in run.stdout
    # Rolled back because the application did not answer, not for any other failure of the switch.
    assert "application health of http://127.0.0.1:9/health: no answer: " in run.stdout, run.stdout[-3000:]
    report = json.loads((tmp_path / "work" / f"migrate-{pg_target_name}-validation.json").read_text())
    assert report["passed"] is True and report["source"] == f"archive {dump.result['archive']}"
    rolled_back.unlink()
    run = run_playbook("migrate", {**variables, "migrate_action": "rollback"})
    assert run.returncode == 0, run.stdout[-2000:]
    assert rolled_back.exists()


def test_migrate_mongodb_end_to_end_and_refuses_a_tampered_target(mongo, unique_name, run_playbook, tmp_path):
    hooks, marker, _rolled_back = switch_hooks(tmp_path)
    variables = {"migrate_engine": "mongodb", "migrate_source": mongo.login(database=mongo.sample),
                 "migrate_target": mongo.login(database=unique_name), "migrate_work_dir": str(tmp_path / "work"),
                 "migrate_checks": ["presence", "counts", "indexes", "content", "security"], **hooks}
    try:
        run = run_playbook("migrate", variables)
        assert run.returncode == 0, run.stdout[-3000:]
        assert marker.exists()
        assert mongo.fingerprint(unique_name)["hashes"] == mongo.fingerprint(mongo.sample)["hashes"]
        marker.unlink()
        mongo.drop(unique_name)
        tamper = python_hook(tmp_path, "tamper", (
            "import pymongo\n"
            f"c = pymongo.MongoClient({mongo.host!r}, {mongo.port}, username={mongo.user!r},"
            f" password=open({mongo.password_file!r}).read().strip(), authSource='admin')\n"
            f"c[{unique_name!r}].entries.update_one({{}}, {{'$set': {{'sgv': 999}}}})\n"))
        run = run_playbook("migrate", {**variables, "migrate_after_restore_tasks": tamper,
                                       "migrate_work_dir": str(tmp_path / "work2")})
        assert run.returncode != 0
        assert not marker.exists()
        assert "NOT SWITCHED: FAILED" in run.stdout and "sgv:" in run.stdout
        assert mongo.password not in run.stdout
    finally:
        mongo.drop(unique_name)
    assert os.path.exists(tmp_path / "work2" / f"migrate-{unique_name}-validation.md")


def test_migrate_from_a_signed_archive_trusts_only_its_signer(
        pg, pg_target_name, run_playbook, run_module, tmp_path):
    """The archive may come from elsewhere (a bucket, another host): with migrate_trusted_signers, an archive
    whose manifest another key signed is refused before the target exists, and the right signer's passes."""
    keys = {}
    for name in ("backup", "other"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(tmp_path / name)],
                       check=True)
        keys[name] = (tmp_path / f"{name}.pub").read_text().strip()
    dump = run_module("postgresql_dump", pg.login(database=PG_SECOND, destination=str(tmp_path / "export"),
                                                  signing_key_file=str(tmp_path / "backup")))
    assert dump.rc == 0, dump.stdout
    variables = {"migrate_engine": "postgresql", "migrate_source_archive": dump.result["archive"],
                 "migrate_target": pg.login(database=pg_target_name), "migrate_work_dir": str(tmp_path / "work"),
                 "migrate_checks": ["presence", "counts"], **switch_hooks(tmp_path)[0]}
    refused = run_playbook("migrate", {**variables, "migrate_trusted_signers": [keys["other"]]})
    assert refused.returncode != 0
    assert "does not carry a valid signature of a trusted signer" in refused.stdout, refused.stdout[-3000:]
    assert not pg.has_database(pg_target_name)
    run = run_playbook("migrate", {**variables, "migrate_trusted_signers": [keys["backup"]]})
    assert run.returncode == 0, run.stdout[-3000:]
    report = json.loads((tmp_path / "work" / f"migrate-{pg_target_name}-validation.json").read_text())
    assert report["passed"] is True and report["source"] == f"archive {dump.result['archive']}"
