# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad arguments fail with one line that says what to fix; check mode writes nothing."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from testbed import MONGO_SOURCE, PG_SOURCE, listing


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("postgresql_dump", {"database": PG_SOURCE, "destination": "/tmp/x", "compression": "lz4"},
         "value of compression must be one of: zstd, gzip, none, got: lz4"),
        ("mongodb_dump", {"database": MONGO_SOURCE, "destination": "/tmp/x", "compression": "brotli"},
         "value of compression must be one of: zstd, gzip, none, got: brotli"),
        ("postgresql_dump", {"database": PG_SOURCE}, "missing required arguments: destination"),
        ("mongodb_dump", {"database": MONGO_SOURCE}, "missing required arguments: destination"),
        ("postgresql_dump", {"database": PG_SOURCE, "destination": "backups"},
         "destination 'backups' must be an absolute path"),
        ("mongodb_dump", {"database": MONGO_SOURCE, "destination": "backups"},
         "destination 'backups' must be an absolute path"),
        ("postgresql_dump", {"database": PG_SOURCE, "destination": "/tmp/x", "login_uri": "postgresql://a@b/c"},
         "parameters are mutually exclusive: login_uri|login_host"),
        ("mongodb_dump", {"database": MONGO_SOURCE, "destination": "/tmp/x", "login_uri": "mongodb://a@b/"},
         "parameters are mutually exclusive: login_uri|login_host"),
        ("postgresql_dump", {"destination": "/tmp/x"}, "database is required"),
        ("postgresql_dump", {"database": PG_SOURCE, "destination": "/tmp/x", "jobs": 4},
         "parallel jobs need format=directory"),
        ("mongodb_dump", {"destination": "/tmp/x", "collections": ["entries"]},
         "collections and exclude_collections need database"),
        ("postgresql_dump", {"database": PG_SOURCE, "destination": "/tmp/x", "encryption_recipients": ["hunter2"]},
         "is not an age recipient"),
        ("postgresql_restore", {"archive": "relative.pgdump.zst"}, "must be an absolute path to an archive file"),
        ("mongodb_restore", {"archive": "/nonexistent/a.mongo.archive.zst"}, "does not exist"),
    ],
)
def test_bad_arguments(pg, mongo, run_module, module, args, message):
    server = pg if module.startswith("postgresql") else mongo
    run = run_module(module, server.login(**args))
    assert run.rc == 1
    assert message in run.result["msg"], run.result["msg"]
    assert "\n" not in run.result["msg"]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_restore_over_existing_data_needs_confirmation(engine, server, run_module, tmp_path):
    source = server.sample
    dumped = run_module(f"{engine}_dump", server.login(database=source, destination=str(tmp_path / "a")))
    assert dumped.rc == 0, dumped.result
    # Restoring into the source itself: it holds data, so nothing may happen without overwrite=true.
    before = server.fingerprint(source)
    for check_mode in (True, False):
        run = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"]), check_mode=check_mode)
        assert run.rc == 1
        assert "set overwrite=true" in run.result["msg"]
    extra = {"recreate": True} if engine == "postgresql" else {"drop": True}
    run = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"], **extra))
    assert run.rc == 1 and "set overwrite=true to confirm" in run.result["msg"]
    assert server.fingerprint(source) == before


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_overwrite_with_safety_dump(engine, server, run_module, tmp_path, unique_name):
    source = server.sample
    dumped = run_module(f"{engine}_dump", server.login(database=source, destination=str(tmp_path / "a")))
    first = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"], target_database=unique_name))
    assert first.rc == 0, first.result
    try:
        replace = {"recreate": True} if engine == "postgresql" else {"drop": True}
        second = run_module(f"{engine}_restore", server.login(
            archive=dumped.result["archive"], target_database=unique_name, overwrite=True,
            safety_dump_dir=str(tmp_path / "safety"), **replace))
        assert second.rc == 0, second.result
        assert server.fingerprint(unique_name)["counts"] == server.fingerprint(source)["counts"]
        kept = [name for name in listing(tmp_path / "safety") if not name.endswith((".manifest.json", ".sig", ".pub"))]
        assert len(kept) == 1 and kept[0].startswith(f"{unique_name}-before-restore-")
    finally:
        server.drop(unique_name)


@pytest.mark.parametrize(("engine", "given"), [
    ("postgresql", "recipient"), ("mongodb", "recipient"), ("postgresql", "recipients_file gone")])
def test_the_safety_dump_of_an_encrypted_archive_is_encrypted_like_it(
        engine, given, server, age_key, run_module, tmp_path, unique_name):
    """Issue 29: what a restore overwrote (perhaps a table of password hashes) was archived unencrypted."""
    if given == "recipient":
        encryption = {"encryption_recipients": [age_key["recipient"]]}
    else:  # the backup host's recipients file is not on the host that restores
        recipients = tmp_path / "recipients.txt"
        recipients.write_text(age_key["recipient"] + "\n")
        encryption = {"encryption_recipients_files": [str(recipients)]}
    dumped = run_module(f"{engine}_dump",
                        server.login(database=server.sample, destination=str(tmp_path / "a"), **encryption))
    assert dumped.rc == 0, dumped.result
    if given != "recipient":
        os.unlink(tmp_path / "recipients.txt")
    opened = {"age_identity_files": [age_key["identity"]]}
    first = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"], target_database=unique_name,
                                                         **opened))
    assert first.rc == 0, first.result
    try:
        replace = {"recreate": True} if engine == "postgresql" else {"drop": True}
        second = run_module(f"{engine}_restore", server.login(
            archive=dumped.result["archive"], target_database=unique_name, overwrite=True,
            safety_dump_dir=str(tmp_path / "safety"), **opened, **replace))
        assert second.rc == 0, second.result
        kept = [name for name in listing(tmp_path / "safety") if not name.endswith((".manifest.json", ".sig", ".pub"))]
        assert len(kept) == 1 and kept[0].endswith(".age"), kept
        with open(tmp_path / "safety" / f"{kept[0]}.manifest.json", encoding="utf-8") as handle:
            described = json.load(handle)["archive"]["encryption"]
        assert described["recipients"] == [age_key["recipient"]], described
        # What was overwritten comes back with the same identity: a restore of the safety dump itself.
        back = run_module(f"{engine}_restore", server.login(archive=str(tmp_path / "safety" / kept[0]),
                                                            target_database=f"{unique_name}_back", **opened))
        assert back.rc == 0, back.result
        server.drop(f"{unique_name}_back")
    finally:
        server.drop(unique_name)


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_check_mode_lists_and_writes_nothing(engine, server, run_module, tmp_path, unique_name):
    source = server.sample
    run = run_module(f"{engine}_dump", server.login(database=source, destination=str(tmp_path / "out")),
                     check_mode=True)
    assert run.rc == 0 and run.result["changed"] is True
    listed = run.result["tables"] if engine == "postgresql" else run.result["collections"]
    assert ("public.journal_entry" if engine == "postgresql" else f"{MONGO_SOURCE}.entries") in listed
    assert not (tmp_path / "out").exists()

    dumped = run_module(f"{engine}_dump", server.login(database=source, destination=str(tmp_path / "real")))
    run = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"], target_database=unique_name),
                     check_mode=True)
    assert run.rc == 0 and run.result["changed"] is True
    assert sum(run.result["expected_counts"].values()) > 0
    assert not server.has_database(unique_name)


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_restore_given_the_manifest_restores_its_archive(engine, server, run_module, tmp_path, unique_name):
    dumped = run_module(f"{engine}_dump", server.login(database=server.sample, destination=str(tmp_path / "a")))
    assert dumped.rc == 0, dumped.result
    try:
        run = run_module(f"{engine}_restore", server.login(archive=dumped.result["manifest"], target_database=unique_name))
        assert run.rc == 0, run.result
        assert run.result["archive"] == dumped.result["archive"]
        note = f"{dumped.result['manifest']} is a manifest: restoring the archive it describes, {dumped.result['archive']}"
        assert note in str(run.result["warnings"])  # shown by ansible-playbook too
        assert server.fingerprint(unique_name)["counts"] == server.fingerprint(server.sample)["counts"]
    finally:
        server.drop(unique_name)
    # A manifest whose archive is not beside it: said exactly, not "damaged".
    alone = tmp_path / "alone" / os.path.basename(dumped.result["manifest"])
    alone.parent.mkdir()
    shutil.copy(dumped.result["manifest"], alone)
    run = run_module(f"{engine}_restore", server.login(archive=str(alone), target_database=unique_name))
    assert run.rc == 1 and "\n" not in run.result["msg"]
    assert run.result["msg"] == (
        f"{alone} is the manifest of an archive, not an archive, and its archive "
        f"{os.path.basename(dumped.result['archive'])} is not beside it; give the path of the archive file")
    assert not server.has_database(unique_name)


def test_overwrite_into_clashing_tables_names_recreate(pg, run_module, tmp_path):
    """overwrite=true alone restores into what the target holds: a clash says to set recreate=true, in one line."""
    dumped = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(tmp_path / "a")))
    assert dumped.rc == 0, dumped.result
    before = pg.fingerprint(PG_SOURCE)
    run = run_module("postgresql_restore", pg.login(archive=dumped.result["archive"], overwrite=True))
    assert run.rc == 1
    message = run.result["msg"]
    assert re.fullmatch(
        rf'pg_restore failed: \w+ "[^"]+" already exists in {PG_SOURCE}; set recreate=true to replace {PG_SOURCE} with '
        rf"the archive's content \(overwrite=true alone restores into what it holds\); {PG_SOURCE} is unchanged: "
        rf"the side database lifeboat_restore_{PG_SOURCE}_[0-9a-f]{{8}} this restore created was dropped", message), message
    assert pg.fingerprint(PG_SOURCE) == before
