# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dump with the backup playbook, restore under new names with the restore playbook, compare everything."""

from __future__ import annotations

import datetime
import json

import pytest
from bson import ObjectId

from testbed import MONGO_SOURCE, PG_SOURCE, listing, sample_jobs


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_playbooks_round_trip(pg, mongo, run_playbook, tmp_path, unique_name, age_key, encrypted):
    root = tmp_path / "backups"
    host_vars = {
        "backup_root": str(root),
        "backup_jobs": sample_jobs(pg, mongo),
        "backup_encryption_recipients": [age_key["recipient"]] if encrypted else [],
    }
    backup = run_playbook("backup", host_vars)
    assert backup.returncode == 0, backup.stdout + backup.stderr

    archives = {job: [n for n in listing(root / job) if not n.endswith((".manifest.json", ".sig", ".pub"))]
                for job in ("journal", "nightscout")}
    for job, names in archives.items():
        assert len(names) == 1, names
        assert names[0].endswith(".zst.age" if encrypted else ".zst")
        head = (root / job / names[0]).read_bytes()[:21]
        assert (head == b"age-encryption.org/v1") is encrypted, "an .age file is really age, a plain one is zstd"
        assert encrypted or head.startswith(b"\x28\xb5\x2f\xfd")  # the zstd frame magic
        assert f"{names[0]}.manifest.json" in listing(root / job)
        assert not [n for n in listing(root / job) if n.startswith(".")], "temporary files left behind"

    pg_target, mongo_target = f"{unique_name}_journal", f"{unique_name}_nightscout"
    restore_vars = {
        **host_vars,
        # The identity as the AWX project's credential gives it (backup_age_identity_files, which the restore role
        # reads too), and as an item's own.
        "backup_age_identity_files": [age_key["identity"]],
        "restore_items": [
            {"job": "journal", "target_database": pg_target},
            {"job": "nightscout", "target_database": mongo_target, "age_identity_files": [age_key["identity"]]},
        ],
    }
    try:
        restore = run_playbook("restore", restore_vars)
        assert restore.returncode == 0, restore.stdout + restore.stderr

        source, copy = pg.fingerprint(PG_SOURCE), pg.fingerprint(pg_target)
        assert copy["counts"] == source["counts"]
        assert copy["hashes"] == source["hashes"]
        assert copy["sequences"] == source["sequences"]
        assert sum(source["counts"].values()) > 1000

        source, copy = mongo.fingerprint(MONGO_SOURCE), mongo.fingerprint(mongo_target)
        assert copy["counts"] == source["counts"]
        assert copy["hashes"] == source["hashes"]
        assert copy["indexes"] == source["indexes"]
        assert sum(source["counts"].values()) > 1000

        manifest = json.loads((root / "journal" / f"{archives['journal'][0]}.manifest.json").read_text())
        assert manifest["counts"] == {k: v for k, v in pg.fingerprint(PG_SOURCE)["counts"].items() if k in manifest["counts"]}
        assert manifest["counts"]["public.journal_measurement_2024"] > 0, "partitions are dumped and counted"

        # The restore refuses to write over the copies it just made, unless confirmed.
        again = run_playbook("restore", restore_vars)
        assert again.returncode != 0
        assert "set overwrite=true" in again.stdout
    finally:
        pg.drop(pg_target)
        mongo.drop(mongo_target)


def test_sample_data_has_the_hard_types(pg, mongo):
    """The round trip above only proves something if the source holds the awkward types."""
    with pg.connect(PG_SOURCE) as conn:
        types = {row[0] for row in conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'public'").fetchall()}
        assert {"jsonb", "bytea", "numeric", "text"} <= types
        assert conn.execute("SELECT count(*) FROM pg_partitioned_table").fetchone()[0] >= 1
        assert conn.execute("SELECT count(*) FROM pg_sequences WHERE last_value IS NOT NULL").fetchone()[0] >= 1
        assert conn.execute("SELECT count(*) FROM journal_entry WHERE body ~ '[^\\x01-\\x7e]'").fetchone()[0] > 0
    db = mongo.client[MONGO_SOURCE]
    sample = db.entries.find_one({"sensor.calibration.history.last.ok": True})
    assert isinstance(sample["_id"], ObjectId)
    assert isinstance(sample["date"], datetime.datetime)
    assert isinstance(sample["raw"], bytes)
    assert isinstance(sample["sensor"]["calibration"]["history"]["last"]["at"], datetime.datetime)
    indexes = {name: spec for coll in db.list_collection_names() for name, spec in db[coll].index_information().items()}
    assert any(spec.get("unique") for spec in indexes.values())
    assert any(len(spec["key"]) > 1 for spec in indexes.values())
