# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify finds every damaged archive, and its restore test proves good ones restore."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _catalog, _sources, _verify
from testbed import RUN_ID, finish_module, listing, resign, start_module  # pylint: disable=import-error

FLIPS_PER_ARCHIVE = 50  # four archives: 200 flipped bytes in all


def manifest_of(archive):
    with open(archive + ".manifest.json", encoding="utf-8") as handle:
        return json.load(handle)


def write_manifest(archive, manifest):
    with open(archive + ".manifest.json", "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    resign(archive + ".manifest.json")


def copy_as(archive, destination, index):
    """A copy of the archive under a name of its own (the next second), its manifest saying so."""
    manifest = manifest_of(archive)
    job, rest = os.path.basename(archive).split("-", 1)
    stamp, suffix = rest.split(".", 1)
    new_stamp = f"{stamp[:-3]}{index:02d}Z"
    name = f"{job}-{new_stamp}.{suffix}"
    shutil.copyfile(archive, destination / name)
    manifest["archive"]["file"] = name
    manifest["started_at"] = f"{new_stamp[:4]}-{new_stamp[4:6]}-{new_stamp[6:8]}T{new_stamp[9:11]}:{new_stamp[11:13]}:{new_stamp[13:15]}Z"
    manifest["verifications"] = []
    write_manifest(str(destination / name), manifest)
    return destination / name


@pytest.fixture(scope="module")
def originals(pg, mongo, age_key, tmp_path_factory):
    """Four real archives: PostgreSQL and MongoDB, plain and age-encrypted."""
    destination = tmp_path_factory.mktemp("originals")
    made = {}
    for server in (pg, mongo):
        for encrypted in (False, True):
            module = "postgresql_dump" if server.engine == "postgresql" else "mongodb_dump"
            job = f"{server.engine}-{'age' if encrypted else 'plain'}"
            # The run id in the job name reaches the scratch databases' names (lifeboat_verify_<job>_<hex>),
            # so that the check for leftovers below sees this session's only.
            args = server.login(database=server.sample, destination=str(destination), job=f"{job}_{RUN_ID}")
            if encrypted:
                args["encryption_recipients"] = [age_key["recipient"]]
            run = finish_module(start_module(module, args, tmp_path_factory.mktemp("run")))
            assert run.rc == 0, run.result
            made[job] = run.result["archive"]
    return made


def test_every_flipped_byte_truncation_and_swap_is_found(originals, age_key, run_module, tmp_path):
    rng = random.Random(20261122)
    flipped = 0
    for job, original in originals.items():
        destination = tmp_path / job
        destination.mkdir()
        size = os.path.getsize(original)
        offsets = rng.sample(range(size), FLIPS_PER_ARCHIVE)
        for index, offset in enumerate(offsets):
            copy = copy_as(original, destination, index)
            with open(copy, "r+b") as handle:
                handle.seek(offset)
                byte = handle.read(1)[0]
                handle.seek(offset)
                handle.write(bytes([byte ^ rng.randrange(1, 256)]))
            flipped += 1
        for index, length in enumerate([0, 1, size // 3, size - 1], start=FLIPS_PER_ARCHIVE):
            copy = copy_as(original, destination, index)
            with open(copy, "r+b") as handle:
                handle.truncate(length)
        run = run_module("backup_verify", {"destination": str(destination), "level": "structure",
                                           "age_identity_files": [age_key["identity"]]})
        assert run.rc != 0
        results = run.result["results"]
        assert len(results) == FLIPS_PER_ARCHIVE + 4
        for result in results:
            name = os.path.basename(result["archive"])
            assert not result["ok"], name
            assert result["failed_check"] == "checksum", result
            assert result["failure"].startswith(f"{name}: checksum check failed: "), result["failure"]
        cut = [r for r in results if "cut short" in r["failure"]]
        assert len(cut) == 4, [r["failure"] for r in results[-4:]]
        assert run.result["failed_count"] == FLIPS_PER_ARCHIVE + 4 and run.result["passed_count"] == 0
        # Each failure is recorded: health and retention see these archives as failed, not as proven.
        for result in results:
            last = manifest_of(result["archive"])["verifications"][-1]
            assert last["ok"] is False and last["level"] == "checksum"
    assert flipped == 200


def test_swapped_archives_are_found(originals, run_module, tmp_path):
    plain_pg, plain_mongo = originals["postgresql-plain"], originals["mongodb-plain"]
    destination = tmp_path / "swap"
    destination.mkdir()
    # Another job's archive under this archive's name: the checksum tells.
    victim = copy_as(plain_pg, destination, 1)
    shutil.copyfile(plain_mongo, victim)
    # Another job's archive and manifest renamed as this one: the manifest names another file.
    renamed = copy_as(plain_pg, destination, 2)
    stranger = copy_as(plain_mongo, destination, 3)
    os.replace(stranger, renamed)
    os.replace(str(stranger) + ".manifest.json", str(renamed) + ".manifest.json")
    run = run_module("backup_verify", {"destination": str(destination)})
    assert run.rc != 0
    by_name = {os.path.basename(r["archive"]): r for r in run.result["results"]}
    assert by_name[victim.name]["failed_check"] == "checksum"
    assert by_name[renamed.name]["failed_check"] == "manifest"
    assert f"describes {stranger.name}, not {renamed.name}" in by_name[renamed.name]["failure"]
    assert "\n" not in run.result["msg"] and run.result["msg"].startswith(f"{victim.name}: checksum check failed")


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_restore_test_passes_on_good_archives_and_leaves_no_scratch_database(
        engine, originals, server, age_key, run_module):
    archives = [originals[f"{engine}-plain"], originals[f"{engine}-age"]]
    for archive in archives:
        run = run_module("backup_verify", {"archive": archive, "level": "restore",
                                           "age_identity_files": [age_key["identity"]], engine: server.login()})
        assert run.rc == 0, run.result
        (result,) = run.result["results"]
        assert result["checks"] == {"signature": "ok", "checksum": "ok", "stream": "ok", "structure": "ok",
                                    "restore": "ok"}
        manifest = manifest_of(archive)
        visible = {k: v for k, v in manifest["counts"].items() if not k.startswith(("admin.", "config."))}
        assert result["counts"] == visible
        assert set(result["content"]) == set(visible) and all(len(h) == 32 for h in result["content"].values())
        assert manifest["verifications"][-1]["ok"] is True and manifest["verifications"][-1]["level"] == "restore"
        assert not server.has_database(result["scratch_database"])
    if engine == "postgresql":
        with server.connect() as conn:
            left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                (f"lifeboat_verify_%{RUN_ID}%",)).fetchall()
    else:
        left = [name for name in server.client.list_database_names()
                if name.startswith("lifeboat_verify_") and RUN_ID in name]
    assert not left


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_archive_whose_content_no_longer_matches_its_manifest_fails(engine, originals, server, run_module, tmp_path):
    archive = copy_as(originals[f"{engine}-plain"], tmp_path, 7)
    manifest = manifest_of(str(archive))
    name = sorted(manifest["counts"])[-1]
    manifest["counts"][name] += 1
    write_manifest(str(archive), manifest)
    run = run_module("backup_verify", {"archive": str(archive), "level": "restore", engine: server.login()})
    assert run.rc != 0
    (result,) = run.result["results"]
    assert result["failed_check"] == "structure"
    expected = f"{name}: {manifest['counts'][name]} in the manifest, {manifest['counts'][name] - 1} in the archive"
    assert expected in result["failure"]
    assert manifest_of(str(archive))["verifications"][-1]["ok"] is False


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_restore_test_fails_when_restored_content_differs_from_the_archive(engine, originals, server):
    """The restore test's content comparison, fed a table hash that differs from what the server gives back."""
    archive = _catalog.scan(os.path.dirname(originals[f"{engine}-plain"])).archives
    (archive,) = [a for a in archive if a.path == originals[f"{engine}-plain"]]
    request = _verify.VerifyRequest(archives=[archive], level="restore", record=False,
                                    connections={engine: _sources.get(engine).connection(server.login())})
    reader = _verify._read_and_hash(archive, _verify._stored_files(archive)[-1], request, structure=True, content=True)
    changed = sorted(reader.tally.sums)[-1]
    reader.tally.sums[changed] += 1
    result = {}
    with pytest.raises(_verify.CheckFailed) as failure:
        _verify._restore_test(archive, request, reader, result)
    assert failure.value.check == "restore"
    assert "restored content differs from the archive's" in str(failure.value)
    scratch = str(failure.value).split("scratch database ")[1].split(":")[0]
    assert scratch.startswith("lifeboat_verify_") and not server.has_database(scratch)


def test_check_mode_records_nothing_and_restores_nothing(originals, run_module, pg):
    archive = originals["postgresql-plain"]
    before = manifest_of(archive)["verifications"]
    run = run_module("backup_verify", {"archive": archive, "level": "restore", "postgresql": pg.login()},
                     check_mode=True)
    assert run.rc == 0, run.result
    assert run.result["changed"] is False
    assert run.result["results"][0]["checks"] == {"signature": "ok", "checksum": "ok", "stream": "ok",
                                                  "structure": "ok"}
    assert manifest_of(archive)["verifications"] == before


@pytest.mark.parametrize("args, message", [
    ({}, "one of the following is required: archive, destination"),
    ({"archive": "relative.pgdump.zst"}, "archive 'relative.pgdump.zst' must be an absolute path"),
    ({"archive": "/nonexistent/x-20260101T000000Z.pgdump"}, "is neither an archive nor a manifest of lifeboat.ops"),
    ({"destination": "/nonexistent/backups"}, "destination /nonexistent/backups does not exist"),
    ({"level": "deep"}, "value of level must be one of: auto, checksum, stream, structure, restore, got: deep"),
])
def test_bad_arguments_give_one_line(args, message, run_module, tmp_path):
    run = run_module("backup_verify", args)
    assert run.rc != 0 and message in run.result["msg"] and "\n" not in run.result["msg"], run.result


def test_encrypted_archive_without_identity_and_restore_without_server(originals, run_module):
    run = run_module("backup_verify", {"archive": originals["mongodb-age"]})
    assert run.rc != 0
    assert "give the age identity file that can decrypt it" in run.result["msg"]
    assert run.result["msg"].endswith("or verify with level=checksum")
    run = run_module("backup_verify", {"archive": originals["mongodb-age"], "level": "checksum"})
    assert run.rc == 0 and run.result["results"][0]["checks"] == {"signature": "ok", "checksum": "ok"}
    run = run_module("backup_verify", {"archive": originals["postgresql-plain"], "level": "restore"})
    assert run.rc != 0
    assert run.result["msg"] == "a restore test of PostgreSQL archives needs the postgresql connection to restore into"


def test_empty_destination_verifies_nothing(run_module, tmp_path):
    (tmp_path / "empty").mkdir()
    run = run_module("backup_verify", {"destination": str(tmp_path / "empty")})
    assert run.rc == 0 and run.result["results"] == [] and run.result["msg"] == "no archive to verify"
    assert listing(tmp_path / "empty") == []


@pytest.mark.parametrize("engine, options", [
    ("postgresql", {"format": "directory", "jobs": 2, "globals": "roles", "compression": "gzip"}),
    ("postgresql", {"compression": "none"}),
    ("mongodb", {"compression": "gzip"}),  # mongodump --gzip: the whole archive stream is gzip
    ("mongodb", {"compression": "none"}),
])
def test_every_archive_format_verifies_up_to_a_restore(engine, options, server, run_module, tmp_path):
    module = "postgresql_dump" if engine == "postgresql" else "mongodb_dump"
    made = run_module(module, server.login(database=server.sample, destination=str(tmp_path / "b"), **options))
    assert made.rc == 0, made.result
    run = run_module("backup_verify", {"destination": str(tmp_path / "b"), "level": "restore", engine: server.login()})
    assert run.rc == 0, run.result
    (result,) = run.result["results"]
    assert result["checks"]["restore"] == "ok"
    assert sum(result["counts"].values()) == sum(
        n for name, n in made.result["counts"].items() if not name.startswith(("admin.", "config.")))
    # A damaged byte in the middle of the stored file (or of the globals file) is still found.
    for name in listing(tmp_path / "b"):
        if name.endswith((".manifest.json", ".sig", ".pub")):  # the signature's damage is the signature check's
            continue
        path = tmp_path / "b" / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x55
        path.write_bytes(bytes(data))
        failed = run_module("backup_verify", {"destination": str(tmp_path / "b"), "level": "structure"})
        assert failed.rc != 0 and failed.result["results"][0]["failed_check"] == "checksum"
        assert name in failed.result["msg"]
        data[len(data) // 2] ^= 0x55
        path.write_bytes(bytes(data))
