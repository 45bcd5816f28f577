# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One failing job stops nothing else: the backup, verify and restore roles run each job on its own.

A job with a wrong password sits between two good ones. The good ones are done (archives made and verified,
databases restored), the host fails at the end with one line per failed job, which names the bad job once, and
the role's result lists every job. The wrong password is printed nowhere.
"""

from __future__ import annotations

import json
import typing as t

from testbed import MONGO_SOURCE, PG_SOURCE, listing, sample_jobs, unsafe_extra_vars

WRONG_PASSWORD = "WrTok7 wrong p@ss:w/rd?#&%'\"{{x}}"


def bad_job(pg: t.Any, **extra: t.Any) -> dict[str, t.Any]:
    return {"name": "badpass", "engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host,
            "login_port": pg.port, "login_user": pg.user, **extra}


def final_failure(stdout: str, task: str) -> str:
    """The output of the role's closing task (TASK [...: TASK] up to the next task or the recap; the playbook's
    next task publishes the outcome, where the failed jobs' lines are repeated on purpose)."""
    start = stdout.rindex(f": {task}")
    ends = [stdout.find(marker, start) for marker in ("\nTASK [", "PLAY RECAP")]
    return stdout[start:min(end for end in ends if end >= 0)]


def newest_manifest(directory: t.Any) -> dict[str, t.Any]:
    (name,) = [n for n in listing(directory) if n.endswith(".manifest.json")][-1:]
    return json.loads((directory / name).read_text())


def test_backup_runs_the_jobs_after_a_failing_one(pg, mongo, run_playbook, tmp_path):
    root = tmp_path / "backups"
    journal, nightscout = sample_jobs(pg, mongo)
    host_vars = {"backup_root": str(root), "backup_prune": False,
                 "backup_jobs": [journal, bad_job(pg, login_password="{{ wrong_password }}"), nightscout]}
    run = run_playbook("backup", host_vars, "-v",
                       "-e", unsafe_extra_vars(tmp_path / "wrong.yml", {"wrong_password": WRONG_PASSWORD}))
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    for job in ("journal", "nightscout"):
        verification = newest_manifest(root / job)["verifications"][-1]
        assert verification["ok"] is True and verification["level"] == "structure", verification
    assert not [n for n in listing(root / "badpass") if not n.startswith(".")]
    summary = final_failure(run.stdout, "Fail this host when a job failed")
    assert summary.count("badpass") == 1, summary
    assert "badpass: dump failed: " in summary and "password authentication failed" in summary
    assert '"journal: ' not in summary and '"nightscout: ' not in summary
    assert "localhost                  : ok=" in run.stdout and "failed=1" in run.stdout
    assert "WrTok7" not in output and pg.password not in output and mongo.password not in output


def test_verify_and_restore_run_the_jobs_after_a_failing_one(pg, mongo, run_playbook, tmp_path, unique_name):
    root = tmp_path / "backups"
    journal, nightscout = sample_jobs(pg, mongo)
    made = run_playbook("backup", {"backup_root": str(root), "backup_verify_level": "none", "backup_prune": False,
                                   "backup_jobs": [journal, bad_job(pg, **pg.login()), nightscout]})
    assert made.returncode == 0, made.stdout[-3000:]
    wrong = unsafe_extra_vars(tmp_path / "wrong.yml", {"wrong_password": WRONG_PASSWORD})
    # The restore test of the middle job's archive logs in with a wrong password.
    jobs = [journal, bad_job(pg, login_password="{{ wrong_password }}"), nightscout]
    verify = run_playbook("verify", {"backup_root": str(root), "backup_verify_level": "restore", "backup_jobs": jobs},
                          "-v", "-e", wrong)
    output = verify.stdout + verify.stderr
    assert verify.returncode != 0, output[-3000:]
    assert "2 archives proven, 0 failed; errors: badpass: cannot connect to PostgreSQL" in verify.stdout
    for job in ("journal", "nightscout"):
        verification = newest_manifest(root / job)["verifications"][-1]
        assert verification["ok"] is True and verification["level"] == "restore", verification
    summary = final_failure(verify.stdout, "Fail this host when an archive failed")
    assert summary.count("badpass") == 1 and "password authentication failed" in summary, summary
    assert '"journal: ' not in summary and '"nightscout: ' not in summary
    assert "WrTok7" not in output and pg.password not in output and mongo.password not in output

    restore = run_playbook("restore", {"backup_root": str(root), "backup_jobs": jobs, "restore_items": [
        {"job": "journal", "target_database": unique_name},
        # Its archive failed its restore test above: select newest, or the restore refuses an unverified archive.
        {"job": "badpass", "target_database": f"{unique_name}_bad", "select": "newest"},
        {"job": "nightscout", "target_database": unique_name},
    ]}, "-v", "-e", wrong)
    try:
        output = restore.stdout + restore.stderr
        assert restore.returncode != 0, output[-3000:]
        assert pg.fingerprint(unique_name)["hashes"] == pg.fingerprint(PG_SOURCE)["hashes"]
        assert mongo.fingerprint(unique_name)["hashes"] == mongo.fingerprint(MONGO_SOURCE)["hashes"]
        assert not pg.has_database(f"{unique_name}_bad")
        summary = final_failure(restore.stdout, "Fail this host when an item failed")
        assert summary.count("badpass") == 1 and "password authentication failed" in summary, summary
        assert f"badpass -> {unique_name}_bad: " in summary
        assert '"journal: ' not in summary and '"nightscout: ' not in summary
        assert "WrTok7" not in output and pg.password not in output and mongo.password not in output
    finally:
        pg.drop(unique_name)
        pg.drop(f"{unique_name}_bad")
        mongo.drop(unique_name)
