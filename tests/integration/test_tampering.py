# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tampering matrix of issue 28, against a destination made by the README's first-run path (the backup
playbook, archives encrypted to an age recipient, no signing option given): someone who can write to the backup
directory and holds the age recipient (public) forges, re-signs, swaps, strips, replaces and replays; every case is
refused by every verify level, by the restore modules (by path and choosing from the destination), by the restore
role with ``select: newest_verified`` and by ``lifeboat verify``, and no forged byte reaches a database or a restored
folder.

Made once per module: two backups of a PostgreSQL, a MongoDB and a files job (a small folder; the host's signing key
made by the first run), one forged archive per engine; each case tampers with a copy of its engine's destination.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from test_cli import install_host, lifeboat  # pylint: disable=import-error
from test_signing import (  # pylint: disable=import-error
    FORGED_FILE,
    MONGO_TOOLS,
    forge_files,
    forge_mongo,
    forge_pg,
    keypair,
    one_line,
    replay,
)

from testbed import collections_root, finish_module, module_env, start_module  # pylint: disable=import-error

ENGINES = {"postgresql": "journal", "mongodb": "nightscout", "files": "uploads"}
LEVELS = ("checksum", "stream", "structure", "restore")
CASES = ("forged_old_signature", "forged_unsigned", "swapped_signature", "attackers_key", "signature_removed",
         "public_key_replaced", "replay_by_renaming", "forged_verification_records")
SIG = ".manifest.json.sig"
UPLOADS = {"notes.txt": b"kept\n", "readings/2026-12-07.csv": b"time,mg_dl\n08:00,104\n"}


@pytest.fixture
def server(engine, pg, mongo):
    """The test bed server of the engine; a files job has none (None)."""
    return {"postgresql": pg, "mongodb": mongo}.get(engine)


def forged_files_under(directory):
    """Files under directory that hold the files forger's content: none may ever be restored."""
    return [str(path) for path in pathlib.Path(directory).rglob("*") if path.is_file() and not path.is_symlink()
            and FORGED_FILE in path.read_bytes()]


def restored_anything(server, target):
    return server.has_database(target) if server else os.path.lexists(target)


def drop(server, target):
    if server:
        server.drop(target)
    else:
        shutil.rmtree(target, ignore_errors=True)


def archives_of(directory):
    return sorted(str(path)[: -len(".manifest.json")] for path in directory.glob("*.manifest.json"))


def playbook(directory, name, host_vars):
    inventory = directory / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
    env = {**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(directory / "ansible-tmp")}
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), name,
                           "-i", str(inventory)], capture_output=True, text=True, env=env, timeout=900, check=False)


@pytest.fixture(scope="module")
def first_run(pg, mongo, age_key, tmp_path_factory):
    """The README's tour on a new host: `ansible-playbook lifeboat.ops.backup`, no signing option, run twice (two
    archives per job; retention off so that the older stays for the replay and the records cases). The host's
    default key is this module's own (LIFEBOAT_SIGNING_KEY_FILE, never /etc), absent before the first run."""
    root = tmp_path_factory.mktemp("first-run")
    uploads = root / "uploads"
    for name, content in UPLOADS.items():
        (uploads / name).parent.mkdir(parents=True, exist_ok=True)
        (uploads / name).write_bytes(content)
    key_file = root / "host-etc" / "signing_key"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIFEBOAT_SIGNING_KEY_FILE", str(key_file))
        host_vars = {
            "backup_root": str(root / "backups"), "backup_encryption_recipients": [age_key["recipient"]],
            "backup_prune": False,
            "backup_jobs": [{"name": "journal", "engine": "postgresql", "database": pg.sample, **pg.login()},
                            {"name": "nightscout", "engine": "mongodb", "database": mongo.sample, **mongo.login(),
                             "tools_dir": MONGO_TOOLS},
                            {"name": "uploads", "engine": "files", "paths": [str(uploads)]}],
        }
        for run in range(2):
            done = playbook(root, "lifeboat.ops.backup", host_vars)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
            if run == 0:
                assert "made this host's signing key" in done.stdout + done.stderr, done.stderr[-3000:]
                time.sleep(1.1)  # archive names carry the second the backup started
        # The key: made by the first run, 0600, outside the destination; its public half beside the archives.
        assert oct(key_file.stat().st_mode & 0o777) == "0o600" and (root / "host-etc").stat().st_mode & 0o077 == 0
        public = (root / "host-etc" / "signing_key.pub").read_text().strip()
        forged = {}
        for engine, job in ENGINES.items():
            destination = root / "backups" / job
            assert (destination / "lifeboat-signer.pub").read_text().strip() == public
            older, newer = archives_of(destination)
            for archive in (older, newer):
                assert os.path.isfile(archive + SIG)
                with open(archive + ".manifest.json", encoding="utf-8") as handle:
                    manifest = json.load(handle)
                assert manifest["signer"] == public and manifest["verifications"][-1]["ok"] is True
                assert manifest["verifications"][-1]["record_signature"].startswith("-----BEGIN SSH SIGNATURE")
            forged[engine] = root / f"forged-{engine}"
            forged[engine].mkdir()
            copy = str(forged[engine] / os.path.basename(newer))
            for suffix in ("", ".manifest.json"):
                shutil.copyfile(newer + suffix, copy + suffix)
            if engine == "postgresql":
                forge_pg(pg, copy, age_key["recipient"], f"lifeboat_forge_{os.getpid()}")
            elif engine == "mongodb":
                forge_mongo(mongo, copy, age_key["recipient"])
            else:
                forge_files(copy, age_key["recipient"])
        yield {"root": root, "uploads": str(uploads), "key_file": str(key_file), "public": public, "forged": forged,
               "attacker": keypair(tmp_path_factory.mktemp("attacker"), "attacker"),
               "host": install_host(root / "host")}


def sign_as(key, manifest):
    if os.path.exists(manifest + ".sig"):
        os.unlink(manifest + ".sig")  # ssh-keygen does not overwrite a signature unasked
    subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "lifeboat-manifest", "-f", key, manifest], check=True,
                   capture_output=True)


def put_forgery(first_run, engine, newer):
    """The forged archive and its manifest (hashes rewritten, the genuine verification records kept) over newer."""
    forged = os.path.join(first_run["forged"][engine], os.path.basename(newer))
    for suffix in ("", ".manifest.json"):
        shutil.copyfile(forged + suffix, newer + suffix)


def tamper(case, first_run, engine, destination):
    """Apply ``case`` to the copy ``destination``; returns the archive the attacker wants restored."""
    older, newer = archives_of(destination)
    attacker = first_run["attacker"]
    if case == "forged_old_signature":
        put_forgery(first_run, engine, newer)  # the genuine signature stays beside it
    elif case == "forged_unsigned":
        put_forgery(first_run, engine, newer)
        os.unlink(newer + SIG)
    elif case == "swapped_signature":
        shutil.copyfile(older + SIG, newer + SIG)  # a genuine signature, of another manifest
    elif case == "attackers_key":
        put_forgery(first_run, engine, newer)
        sign_as(attacker["private"], newer + ".manifest.json")
    elif case == "signature_removed":
        os.unlink(newer + SIG)
    elif case == "public_key_replaced":
        put_forgery(first_run, engine, newer)
        with open(newer + ".manifest.json", encoding="utf-8") as handle:
            manifest = json.load(handle)
        manifest["signer"] = attacker["public"]
        with open(newer + ".manifest.json", "w", encoding="utf-8") as handle:
            handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        sign_as(attacker["private"], newer + ".manifest.json")
        (destination / "lifeboat-signer.pub").write_text(attacker["public"] + "\n")
    elif case == "replay_by_renaming":
        replay(older, newer)
    elif case == "forged_verification_records":
        # The older archive marked verified (a record copied from the newer one, and one written by hand), the
        # newer one marked failed: before issue 28, newest_verified restored the older data.
        with open(newer + ".manifest.json", encoding="utf-8") as handle:
            genuine = json.load(handle)["verifications"][-1]
        for archive, records in ((older, [genuine, {**genuine, "record_signature": None, "at": "2999-01-01T00:00:00Z"}]),
                                 (newer, [{**genuine, "ok": False, "at": "2999-01-01T00:00:00Z",
                                           "failure": "forged", "record_signature": None}])):
            with open(archive + ".manifest.json", encoding="utf-8") as handle:
                manifest = json.load(handle)
            manifest["verifications"] = ([] if archive == older else manifest["verifications"]) + records
            with open(archive + ".manifest.json", "w", encoding="utf-8") as handle:
                handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return older
    return newer


@pytest.fixture(scope="module")
def tampered(first_run, tmp_path_factory):
    """Every case, each in its own copy of each engine's destination: {(engine, case): (destination, victim)}."""
    made = {}
    for engine, job in ENGINES.items():
        for case in CASES:
            destination = tmp_path_factory.mktemp(f"{engine}-{case}") / job
            shutil.copytree(first_run["root"] / "backups" / job, destination)
            made[engine, case] = (destination, tamper(case, first_run, engine, destination))
    return made


def verify_args(server, age_key, **extra):
    connection = {server.engine: server.login(), "tools_dir": MONGO_TOOLS} if server else {}
    return {"age_identity_files": [age_key["identity"]], "record": False, **connection, **extra}


def restore_args(server, age_key, target, first_run, **extra):
    """Into the database target, or (a files job) the job's folder restored as the folder target."""
    if server is None:
        return {"path_map": {first_run["uploads"]: target}, "age_identity_files": [age_key["identity"]], **extra}
    return {**server.login(), "target_database": target, "age_identity_files": [age_key["identity"]],
            **({"tools_dir": MONGO_TOOLS} if server.engine == "mongodb" else {}), **extra}


def job_settings(engine, server, first_run):
    """What the job names besides its destination: its server and database, or its folder."""
    if server is None:
        return {"engine": engine, "paths": [first_run["uploads"]]}
    return {"engine": engine, **server.login(), **({"tools_dir": MONGO_TOOLS} if engine == "mongodb" else {})}


def assert_genuine_uploads(target):
    assert {str(path.relative_to(target)): path.read_bytes() for path in pathlib.Path(target).rglob("*")
            if path.is_file()} == UPLOADS


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_verify_level_every_restore_module_and_lifeboat_refuse(engine, case, server, tampered, first_run,
                                                                     age_key, tmp_path, unique_name):
    destination, victim = tampered[engine, case]
    job = ENGINES[engine]
    older, newer = archives_of(destination)
    module = f"{engine}_restore"
    target = f"{unique_name}_t" if server else str(tmp_path / "restored")
    if case == "forged_verification_records":
        # The forged records count for nothing: the older archive is still unverified, the newer still the newest
        # verified, and the ignored records are named.
        run = finish_module(start_module("backup_verify", verify_args(
            server, age_key, destination=str(destination), job=job, select="unverified", level="checksum"), tmp_path))
        assert run.rc == 0 and [r["archive"] for r in run.result["results"]] == [older], run.result
        chosen = finish_module(start_module(module, restore_args(
            server, age_key, target, first_run, destination=str(destination), job=job), tmp_path))
        try:
            assert chosen.rc == 0 and chosen.result["archive"] == newer, chosen.result
            assert chosen.result["signature"] == "ok"
            warnings = json.dumps(chosen.result.get("warnings"))  # plain strings, or ansible-core's warning events
            assert f"ignored 1 verification record(s) of {os.path.basename(newer)}" in warnings, chosen.result
            if server is None:
                assert_genuine_uploads(target)
        finally:
            drop(server, target)
        return

    # Every verify level refuses the archive by path, at the signature or at the name it carries.
    runs = [start_module("backup_verify", verify_args(server, age_key, archive=victim, level=level), tmp_path)
            for level in LEVELS]
    for level, run in zip(LEVELS, map(finish_module, runs), strict=True):
        assert run.rc != 0, (case, level, run.result)
        message = one_line(run.result["msg"])
        assert "restore" not in run.result["results"][0]["checks"], (case, level, run.result)
        if case == "replay_by_renaming":
            assert "describes" in message, message
        else:
            assert run.result["results"][0]["failed_check"] == "signature", (case, level, run.result)
    # The restore module refuses the archive given by path, and nothing is restored.
    refused = finish_module(start_module(
        module, restore_args(server, age_key, target, first_run, archive=victim), tmp_path))
    assert refused.rc != 0, (case, refused.result)
    one_line(refused.result["msg"])
    assert not restored_anything(server, target) and not forged_files_under(tmp_path)
    # Chosen from the destination (newest_verified): the tampered archive is refused, or passed over for an archive
    # a trusted key signed; the forgery never reaches the server.
    chosen = finish_module(start_module(
        module, restore_args(server, age_key, target, first_run, destination=str(destination), job=job), tmp_path))
    try:
        if chosen.rc == 0:
            assert chosen.result["archive"] == older and chosen.result["signature"] == "ok", (case, chosen.result)
            if server is None:
                assert_genuine_uploads(target)
        else:
            one_line(chosen.result["msg"])
            assert not restored_anything(server, target)
        assert not forged_files_under(tmp_path)
    finally:
        drop(server, target)
    # `lifeboat verify` on the host, the job's settings as the schedule role writes them (no signing option).
    host = first_run["host"]
    config = tmp_path / "lifeboat.yml"
    config.write_text(yaml.safe_dump({"jobs": {job: {
        **job_settings(engine, server, first_run), "destination": str(destination),
        **({"database": server.sample} if server else {}),
        "verify": {"age_identity_files": [age_key["identity"]], "select": "newest"}}}}))
    env = {**{key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE", "PYTHON"))},
           "LIFEBOAT_LIB": str(host / "lib"), "PYTHONPATH": str(host / "site"),
           "LIFEBOAT_SIGNING_KEY_FILE": first_run["key_file"]}
    for level in ("checksum", "restore"):
        done = lifeboat(host, "verify", "--config", str(config), "--level", level, env=env)
        assert done.returncode == 1, (case, level, done.stderr)
        assert ("describes" if case == "replay_by_renaming" else "signature") in done.stderr, done.stderr


@pytest.mark.parametrize("engine", list(ENGINES))
def test_restore_role_newest_verified_never_restores_a_forgery(
        engine, server, tampered, first_run, age_key, tmp_path, unique_name):
    job = ENGINES[engine]
    targets = [f"{unique_name}_{index}" if server else str(tmp_path / f"restored-{index}") for index in range(len(CASES))]
    items = [{"job": job, "destination": str(tampered[engine, case][0]), "age_identity_files": [age_key["identity"]],
              **({"target_database": target} if server else {"path_map": {first_run["uploads"]: target}})}
             for case, target in zip(CASES, targets, strict=True)]
    out = tmp_path / "out.json"
    play = tmp_path / "play.yml"
    keep = {"name": "Keep", "ansible.builtin.copy": {"content": "{{ restore_results | to_json }}", "dest": str(out)}}
    # The role fails the host at its end when an item failed: what each item did is kept all the same.
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"block": [{"name": "Restore", "ansible.builtin.include_role": {"name": "lifeboat.ops.restore"}}],
         "always": [keep]}]}]))
    job_options = {"name": job, **job_settings(engine, server, first_run)}
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LIFEBOAT_SIGNING_KEY_FILE", first_run["key_file"])
            done = playbook(tmp_path, str(play), {"restore_jobs": [job_options], "restore_items": items,
                                                  "restore_select": "newest_verified"})
        assert out.exists(), done.stdout[-3000:] + done.stderr[-2000:]
        results = json.loads(out.read_text())
        assert len(results) == len(CASES), done.stdout[-3000:]
        for case, result in zip(CASES, results, strict=True):
            _destination, victim = tampered[engine, case]
            older, newer = archives_of(tampered[engine, case][0])
            if case == "forged_verification_records":
                assert result["status"] == "ok" and result["archive"] == newer, (case, result)
            elif result["status"] == "ok":  # passed over for the archive a trusted key signed
                assert result["archive"] == older and result["signature"] == "ok", (case, result)
            else:
                assert "\n" not in result["reason"], (case, result)
            assert result.get("archive") != victim or case == "forged_verification_records", (case, result)
        assert "ignored 1 verification record(s)" in done.stdout + done.stderr  # the records case warned
        assert not forged_files_under(tmp_path)
    finally:
        for target in targets:
            drop(server, target)
