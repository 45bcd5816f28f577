# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup playbook verifies and prunes what it made; the verify playbook reports per host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from testbed import REPO_ROOT, listing, module_env, sample_jobs


def manifests(directory):
    return [directory / name for name in listing(directory) if name.endswith(".manifest.json")]


def last_verification(path):
    return json.loads(path.read_text())["verifications"][-1]


def test_backup_playbook_verifies_and_prunes(pg, mongo, run_playbook, tmp_path, age_key):
    root = tmp_path / "backups"
    host_vars = {"backup_root": str(root), "backup_retention": {"keep_last": 1},
                 "backup_jobs": sample_jobs(pg, mongo, verify_level="restore")}
    first = run_playbook("backup", host_vars)
    assert first.returncode == 0, first.stdout + first.stderr
    for job in ("journal", "nightscout"):
        (manifest,) = manifests(root / job)
        record = last_verification(manifest)
        assert record["ok"] is True and record["level"] == "restore", record
    second = run_playbook("backup", host_vars)
    assert second.returncode == 0, second.stdout + second.stderr
    for job in ("journal", "nightscout"):
        # keep_last 1 and the new archive proven: the first one is gone.
        (manifest,) = manifests(root / job)
        assert manifest.name > f"{job}-" and last_verification(manifest)["ok"] is True
        assert len(listing(root / job)) == 4  # the archive, its manifest and signature, the signer's .pub

    # Encrypted to a key this host does not hold: auto verifies every stored byte (checksum level).
    encrypted = {"backup_root": str(tmp_path / "sealed"), "backup_encryption_recipients": [age_key["recipient"]],
                 "backup_jobs": sample_jobs(pg, mongo)[:1]}
    sealed = run_playbook("backup", encrypted)
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    (manifest,) = manifests(tmp_path / "sealed" / "journal")
    assert last_verification(manifest)["level"] == "checksum"

    # Encrypted with a passphrase this host holds: auto reads it whole, and both entry points can open it.
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a long passphrase for the journal\n")
    passphrase.chmod(0o600)
    locked = {"backup_root": str(tmp_path / "locked"), "backup_prune": False,
              "backup_jobs": sample_jobs(pg, mongo, encryption_passphrase_file=str(passphrase))[:1]}
    made = run_playbook("backup", locked)
    assert made.returncode == 0, made.stdout + made.stderr
    (manifest,) = manifests(tmp_path / "locked" / "journal")
    assert last_verification(manifest)["ok"] is True and last_verification(manifest)["level"] == "structure"
    report = run_playbook("verify", locked)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "1 archives proven, 0 failed" in report.stdout

    skipped = run_playbook("backup", {**encrypted, "backup_verify_level": "none", "backup_prune": False})
    assert skipped.returncode == 0
    assert len(manifests(tmp_path / "sealed" / "journal")) == 2
    newest = sorted(manifests(tmp_path / "sealed" / "journal"))[-1]
    assert json.loads(newest.read_text())["verifications"] == []


def test_verify_playbook_reports_per_host_and_fails_on_damage(pg, mongo, run_playbook, tmp_path):
    root = tmp_path / "backups"
    host_vars = {"backup_root": str(root), "backup_jobs": sample_jobs(pg, mongo), "backup_verify_level": "none",
                 "backup_prune": False}
    assert run_playbook("backup", host_vars).returncode == 0
    report = run_playbook("verify", {"backup_root": str(root)})
    assert report.returncode == 0, report.stdout + report.stderr
    assert "2 archives proven, 0 failed" in report.stdout
    (archive,) = [root / "journal" / n for n in listing(root / "journal") if n.endswith(".zst")]
    with open(archive, "r+b") as handle:
        handle.seek(64)
        handle.write(b"\x00\x01")
    report = run_playbook("verify", {**host_vars, "backup_verify_level": "auto", "backup_verify_select": "all"})
    assert report.returncode != 0
    assert "1 archives proven, 1 failed: " in report.stdout
    assert f"{archive.name}: checksum check failed" in report.stdout
    assert "localhost                  : ok=" in report.stdout and "failed=1" in report.stdout
    assert os.path.exists(archive)


def test_a_job_that_stopped_encrypting_verifies_alike_in_the_playbook_and_the_host_command(
        pg, mongo, run_playbook, tmp_path, age_key):
    """auto is the library's one definition, read from the archives' manifests: an encrypted archive this host
    cannot open is checked byte for byte, though the job encrypts no more."""
    root = tmp_path / "backups"
    (job,) = sample_jobs(pg, mongo)[:1]
    sealed = run_playbook("backup", {"backup_root": str(root), "backup_jobs": [job], "backup_prune": False,
                                     "backup_encryption_recipients": [age_key["recipient"]]})
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    plain_vars = {"backup_root": str(root), "backup_jobs": [job], "backup_prune": False}
    plain = run_playbook("backup", plain_vars)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    older, newer = sorted(manifests(root / "journal"))
    assert json.loads(older.read_text())["archive"]["encryption"] and not json.loads(newer.read_text())["archive"]["encryption"]

    report = run_playbook("verify", {**plain_vars, "backup_verify_select": "all"})
    assert report.returncode == 0, report.stdout + report.stderr
    assert "2 archives proven, 0 failed" in report.stdout
    assert [last_verification(m)["level"] for m in (older, newer)] == ["checksum", "checksum"]

    config = tmp_path / "lifeboat.yml"
    config.write_text(yaml.safe_dump({"jobs": {"journal": {
        "engine": "postgresql", "destination": str(root / "journal"), "verify": {"select": "all"},
        **{k: v for k, v in job.items() if k not in ("name", "engine")}}}}))
    command = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), "verify", "--config",
                              str(config)], capture_output=True, text=True, env=module_env(), check=False)
    assert command.returncode == 0, command.stdout + command.stderr
    assert [last_verification(m)["level"] for m in (older, newer)] == ["checksum", "checksum"]
    # After the backup, the playbook, the host command: each archive verified three times.
    assert [len(json.loads(m.read_text())["verifications"]) for m in (older, newer)] == [3, 3]
