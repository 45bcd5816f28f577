# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection by URI, filters, roles via pg_dumpall, parallel restore, renaming, encrypted restores."""

from __future__ import annotations

import json
import subprocess
import urllib.parse

from testbed import MONGO_SECOND, MONGO_SOURCE, PG_SOURCE


def test_postgresql_by_uri_with_filters_globals_and_parallel_restore(pg, run_module, tmp_path, unique_name):
    uri = f"postgresql://{pg.user}:{urllib.parse.quote(pg.password)}@{pg.host}:{pg.port}/{PG_SOURCE}"
    dumped = run_module("postgresql_dump", {
        "login_uri": uri, "destination": str(tmp_path), "exclude_tables": ["public.journal_entry_tags"],
        "globals": "roles"})
    assert dumped.rc == 0, dumped.result
    assert pg.password not in dumped.stdout
    counts = dumped.result["counts"]
    assert "public.journal_entry_tags" not in counts and counts["public.journal_entry"] > 0
    manifest = json.loads(open(dumped.result["manifest"], encoding="utf-8").read())
    globals_file = tmp_path / manifest["extras"][0]["file"]
    assert globals_file.name.endswith(".globals.sql.zst") and globals_file.stat().st_size > 0

    restored = run_module("postgresql_restore", pg.login(archive=dumped.result["archive"], target_database=unique_name,
                                                         jobs=2))
    try:
        assert restored.rc == 0, restored.result
        source, copy = pg.fingerprint(PG_SOURCE), pg.fingerprint(unique_name)
        for table, count in copy["counts"].items():
            if table != "public.journal_entry_tags":
                assert count == source["counts"][table]
                assert copy["hashes"][table] == source["hashes"][table]
        assert "public.journal_entry_tags" not in copy["counts"], "an excluded table is not even created"
    finally:
        pg.drop(unique_name)


def test_mongodb_by_uri_with_collection_filter(mongo, run_module, tmp_path, unique_name):
    uri = f"mongodb://{mongo.user}:{urllib.parse.quote_plus(mongo.password)}@{mongo.host}:{mongo.port}/?authSource=admin"
    dumped = run_module("mongodb_dump", {"login_uri": uri, "database": MONGO_SOURCE, "destination": str(tmp_path),
                                         "collections": ["entries", "treatments"]})
    assert dumped.rc == 0, dumped.result
    assert sorted(dumped.result["counts"]) == [f"{MONGO_SOURCE}.entries", f"{MONGO_SOURCE}.treatments"]
    restored = run_module("mongodb_restore", {"login_uri": uri, "archive": dumped.result["archive"],
                                              "ns_from": [f"{MONGO_SOURCE}.*"], "ns_to": [f"{unique_name}.copy_*"]})
    try:
        assert restored.rc == 0, restored.result
        assert sorted(mongo.client[unique_name].list_collection_names()) == ["copy_entries", "copy_treatments"]
        source = mongo.fingerprint(MONGO_SOURCE)
        copy = mongo.fingerprint(unique_name)
        assert copy["hashes"]["copy_entries"] == source["hashes"]["entries"]
        assert copy["counts"]["copy_treatments"] == source["counts"]["treatments"]
        for run in (dumped, restored):
            assert mongo.password not in run.stdout + run.stderr
    finally:
        mongo.drop(unique_name)


def test_mongodb_exclude_collections(mongo, run_module, tmp_path):
    dumped = run_module("mongodb_dump", mongo.login(database=MONGO_SOURCE, destination=str(tmp_path),
                                                    exclude_collections=["devicestatus"]))
    assert dumped.rc == 0, dumped.result
    assert f"{MONGO_SOURCE}.devicestatus" not in dumped.result["counts"]
    assert f"{MONGO_SOURCE}.entries" in dumped.result["counts"]


def test_encrypted_restore_needs_the_identity(pg, mongo, run_module, tmp_path, unique_name, age_key):
    for engine, server, source in (("postgresql", pg, PG_SOURCE), ("mongodb", mongo, MONGO_SOURCE)):
        dumped = run_module(f"{engine}_dump", server.login(database=source, destination=str(tmp_path / engine),
                                                           encryption_recipients=[age_key["recipient"]]))
        assert dumped.rc == 0, dumped.result
        denied = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"],
                                                              target_database=unique_name))
        assert denied.rc == 1 and "give the age identity file" in denied.result["msg"]
        other = tmp_path / f"{engine}-other.txt"
        subprocess.run(["age-keygen", "-o", str(other)], capture_output=True, check=True)
        wrong = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"],
                                                             target_database=unique_name,
                                                             age_identity_files=[str(other)]))
        try:
            assert wrong.rc == 1 and "no identity matched" in wrong.result["msg"], wrong.result["msg"]
            # A restore that failed leaves no half-made database behind.
            assert not server.has_database(unique_name)
        finally:
            server.drop(unique_name)


def test_passphrase_encrypted_round_trip(pg, run_module, tmp_path, unique_name):
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a long passphrase for the journal\n")
    passphrase.chmod(0o600)
    dumped = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(tmp_path / "out"),
                                                    encryption_passphrase_file=str(passphrase)))
    assert dumped.rc == 0, dumped.result
    manifest = json.loads(open(dumped.result["manifest"], encoding="utf-8").read())
    assert manifest["archive"]["encryption"]["method"] == "age-passphrase"
    denied = run_module("postgresql_restore", pg.login(archive=dumped.result["archive"], target_database=unique_name))
    assert denied.rc == 1 and "give age_passphrase_file" in denied.result["msg"]
    restored = run_module("postgresql_restore", pg.login(archive=dumped.result["archive"], target_database=unique_name,
                                                         age_passphrase_file=str(passphrase)))
    try:
        assert restored.rc == 0, restored.result
        assert pg.fingerprint(unique_name)["hashes"] == pg.fingerprint(PG_SOURCE)["hashes"]
    finally:
        pg.drop(unique_name)


def test_mongodb_whole_server_dump_and_partial_restore(mongo, run_module, tmp_path, unique_name):
    dumped = run_module("mongodb_dump", mongo.login(destination=str(tmp_path)))
    assert dumped.rc == 0, dumped.result
    assert f"{MONGO_SOURCE}.entries" in dumped.result["counts"] and f"{MONGO_SECOND}.samples" in dumped.result["counts"]
    assert dumped.result["archive"].split("/")[-1].startswith("all-")
    restored = run_module("mongodb_restore", mongo.login(
        archive=dumped.result["archive"], ns_include=[f"{MONGO_SECOND}.*"], ns_from=[f"{MONGO_SECOND}.*"], ns_to=[f"{unique_name}.*"]))
    try:
        assert restored.rc == 0, restored.result
        assert sorted(restored.result["counts"]) == [f"{unique_name}.notes", f"{unique_name}.samples"]
        assert mongo.fingerprint(unique_name)["hashes"] == mongo.fingerprint(MONGO_SECOND)["hashes"]
    finally:
        mongo.drop(unique_name)


def test_mongodb_dump_of_a_missing_database_fails(mongo, run_module, tmp_path):
    run = run_module("mongodb_dump", mongo.login(database="nightscot", destination=str(tmp_path / "out")))
    assert run.rc == 1
    assert run.result["msg"] == ("nothing to dump: database nightscot has no collections that the filters keep; "
                                 "check the database name and filters")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_mongodb_safety_dumps_one_per_database(mongo, run_module, tmp_path, unique_name):
    dumped = run_module("mongodb_dump", mongo.login(destination=str(tmp_path / "all")))
    assert dumped.rc == 0, dumped.result
    renames = {"ns_include": [f"{MONGO_SECOND}.*", f"{MONGO_SOURCE}.*"],
               "ns_from": [f"{MONGO_SECOND}.*", f"{MONGO_SOURCE}.*"], "ns_to": [f"{unique_name}_r.*", f"{unique_name}_n.*"]}
    try:
        first = run_module("mongodb_restore", mongo.login(archive=dumped.result["archive"], **renames))
        assert first.rc == 0, first.result
        second = run_module("mongodb_restore", mongo.login(
            archive=dumped.result["archive"], overwrite=True, drop=True, safety_dump_dir=str(tmp_path / "safety"),
            **renames))
        assert second.rc == 0, second.result
        assert sorted(path.split("/")[-1].split("-before-restore-")[0] for path in second.result["safety_dumps"]) == [
            f"{unique_name}_n", f"{unique_name}_r"]
        assert mongo.fingerprint(f"{unique_name}_r")["hashes"] == mongo.fingerprint(MONGO_SECOND)["hashes"]
    finally:
        mongo.drop(f"{unique_name}_r")
        mongo.drop(f"{unique_name}_n")
