# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A restore given a destination and a job chooses the archive in the library, and says which one and why."""

from __future__ import annotations

import json

from testbed import MONGO_SOURCE, PG_SOURCE, listing, sample_jobs


def archives_of(directory):
    return sorted(str(directory / name) for name in listing(directory)
                  if name.startswith(directory.name + "-") and not name.endswith((".manifest.json", ".sig")))


def test_the_restore_role_takes_the_newest_verified_archive_and_says_so(pg, mongo, run_playbook, tmp_path, unique_name):
    root = tmp_path / "backups"
    host_vars = {"backup_root": str(root), "backup_jobs": sample_jobs(pg, mongo), "backup_prune": False}
    for level in ("auto", "auto", "none"):  # the newest archive of each job is not verified
        made = run_playbook("backup", {**host_vars, "backup_verify_level": level})
        assert made.returncode == 0, made.stdout + made.stderr
    journal, nightscout = archives_of(root / "journal"), archives_of(root / "nightscout")
    assert len(journal) == len(nightscout) == 3
    assert not json.loads((root / "journal" / f"{journal[2]}.manifest.json").read_text())["verifications"]

    pg_target, mongo_target, newest_target = (f"{unique_name}_sel_journal", f"{unique_name}_sel_nightscout",
                                              f"{unique_name}_sel_newest")
    items = [{"job": "journal", "target_database": pg_target}, {"job": "nightscout", "target_database": mongo_target},
             {"job": "journal", "target_database": newest_target, "select": "newest"}]
    try:
        restore = run_playbook("restore", {**host_vars, "restore_items": items})
        assert restore.returncode == 0, restore.stdout + restore.stderr
        name = journal[1].rsplit("/", 1)[1]
        said = (f"{name} ({name} is the newest verified archive of job 'journal' (level structure at ")
        assert said in restore.stdout
        assert f"select=newest_verified); passed over 1 newer: {journal[2].rsplit('/', 1)[1]}) -> database {pg_target}" in (
            " ".join(restore.stdout.split()))
        newest = journal[2].rsplit("/", 1)[1]
        assert f"{newest} ({newest} is the newest archive of job 'journal' (not verified yet; select=newest))" in (
            " ".join(restore.stdout.split()))
        assert nightscout[1].rsplit("/", 1)[1] + " (" in restore.stdout
        assert pg.fingerprint(pg_target)["counts"] == pg.fingerprint(PG_SOURCE)["counts"]
        assert pg.fingerprint(newest_target)["counts"] == pg.fingerprint(PG_SOURCE)["counts"]
        assert mongo.fingerprint(mongo_target)["counts"] == mongo.fingerprint(MONGO_SOURCE)["counts"]
    finally:
        for database in (pg_target, newest_target):
            pg.drop(database)
        mongo.drop(mongo_target)


def test_the_modules_choose_from_a_destination_and_refuse_in_one_line(pg, mongo, run_module, tmp_path, unique_name):
    for server, module, job in ((pg, "postgresql_restore", "journal"), (mongo, "mongodb_restore", "nightscout")):
        destination = tmp_path / job
        made = run_module(f"{'postgresql' if server is pg else 'mongodb'}_dump",
                          server.login(database=server.sample, destination=str(destination), job=job))
        assert made.rc == 0, made.stdout + made.stderr
        args = server.login(destination=str(destination), job=job, target_database=f"{unique_name}_sel_{job}")

        # Nothing verified yet: newest_verified (the default) refuses, newest takes it.
        refused = run_module(module, args, check_mode=True)
        assert refused.rc == 1, refused.result.get("archive_reason")
        assert refused.result["msg"] == (
            f"none of the 1 archives of job '{job}' in {destination} passed a verification; "
            "verify them (lifeboat.ops.backup_verify) or give select=newest")
        taken = run_module(module, {**args, "select": "newest"}, check_mode=True)
        assert taken.rc == 0, taken.stdout + taken.stderr
        assert taken.result["archive"] == made.result["archive"]
        assert taken.result["archive_reason"] == (f"{made.result['archive'].rsplit('/', 1)[1]} is the newest archive "
                                                  f"of job '{job}' (not verified yet; select=newest)")

        verified = run_module("backup_verify", {"archive": made.result["archive"], "level": "checksum"})
        assert verified.rc == 0, verified.stdout
        chosen = run_module(module, args, check_mode=True)
        assert chosen.rc == 0 and chosen.result["archive"] == made.result["archive"]
        assert "is the newest verified archive of job" in chosen.result["archive_reason"]
        assert "(level checksum at " in chosen.result["archive_reason"]

        for wrong, message in (
            ({"job": None}, "give job with destination: the job whose archive to restore"),
            ({"archive": made.result["archive"]}, "parameters are mutually exclusive: archive|destination"),
            ({"job": "other"}, f"no archive of job 'other' in {destination}; run the backup first or give archive"),
        ):
            run = run_module(module, {**args, **wrong}, check_mode=True)
            assert run.rc == 1 and message in run.result["msg"] and "\n" not in run.result["msg"], run.result
        missing = {key: value for key, value in args.items() if key not in ("destination", "job")}
        run = run_module(module, missing, check_mode=True)
        assert run.rc == 1 and "one of the following is required: archive, destination" in run.result["msg"]
        run = run_module(module, {k: v for k, v in args.items() if k != "job"}, check_mode=True)
        assert run.rc == 1 and "parameters are required together: destination, job" in run.result["msg"], run.result
