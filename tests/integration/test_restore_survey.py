# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore playbook's survey-friendly scalars (restore_job, restore_archive, restore_target_database,
restore_confirm) beside restore_items: given as an AWX survey gives them (strings, empty when unanswered), one
item is restored; mixed with the list form, or given without restore_job, a one-line error says what to fix."""

from __future__ import annotations

import pytest

from testbed import PG_SOURCE, listing, sample_jobs


def test_scalars_restore_one_item_and_confirm_guards_a_target_with_data(
        pg, mongo, run_playbook, tmp_path, unique_name):
    journal, _nightscout = sample_jobs(pg, mongo)
    host_vars = {"backup_root": str(tmp_path / "backups"), "backup_jobs": [journal], "backup_prune": False}
    made = run_playbook("backup", host_vars)
    assert made.returncode == 0, made.stdout[-3000:]
    (archive,) = [name for name in listing(tmp_path / "backups" / "journal") if name.endswith(".pgdump.zst")]
    target = f"{unique_name}_survey"
    survey = {"restore_job": "journal", "restore_archive": "", "restore_target_database": target,
              "restore_confirm": "false"}
    try:
        first = run_playbook("restore", {**host_vars, **survey})
        assert first.returncode == 0, first.stdout[-3000:]
        assert pg.fingerprint(target)["counts"] == pg.fingerprint(PG_SOURCE)["counts"]
        # Again into the same database, which now holds data: refused without restore_confirm, done with it.
        refused = run_playbook("restore", {**host_vars, **survey, "restore_archive": archive})
        assert refused.returncode != 0 and "overwrite" in refused.stdout, refused.stdout[-3000:]
        confirmed = run_playbook("restore", {**host_vars, **survey, "restore_archive": archive,
                                             "restore_confirm": "true", "restore_items": []})
        assert confirmed.returncode == 0, confirmed.stdout[-3000:]
        assert f"{archive} -> database {target}" in " ".join(confirmed.stdout.split())
    finally:
        pg.drop(target)


@pytest.mark.parametrize("given, message", [
    ({"restore_job": "journal", "restore_items": [{"job": "journal"}]},
     "give either restore_items or restore_job (with restore_archive, restore_target_database, restore_confirm), "
     "not both"),
    ({"restore_target_database": "elsewhere"},
     "restore_archive, restore_target_database and restore_confirm describe the item of restore_job: give "
     "restore_job too"),
    ({"restore_confirm": "yes", "restore_items": [{"job": "journal"}]},
     "restore_archive, restore_target_database and restore_confirm describe the item of restore_job: give "
     "restore_job too"),
])
def test_mixed_forms_fail_in_one_line(run_playbook, tmp_path, given, message):
    run = run_playbook("restore", {"backup_root": str(tmp_path), "backup_jobs": [], **given})
    assert run.returncode != 0
    # the role's refusal, then the playbook's verdict once the host's outcome is published: the same one line
    failed = [line for line in run.stdout.splitlines() if line.startswith("fatal: ")]
    assert failed and all(f'"msg": "{message}"' in line for line in failed), run.stdout[-2000:]
