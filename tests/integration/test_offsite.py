# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-site copies against a real S3-compatible server (versitygw, POSIX backend): offsite_copy, offsite_verify,
offsite_fetch, offsite_prune and restores from the bucket, with the local destination gone."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from s3server import ACCESS_KEY, SECRET_KEY, free_port  # pylint: disable=import-error
from test_backup_status import promtool_check  # pylint: disable=import-error
from test_prune import dated_series, verify  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import _manifest, _offsite, _signing
from testbed import (  # pylint: disable=import-error
    PG_SOURCE,
    REPO_ROOT,
    finish_module,
    module_env,
    run_with_runner,
    sample_jobs,
    start_module,
    wait_until,
)


@pytest.fixture
def remote(s3_server, tmp_path):
    """Options of the offsite_* modules for a new bucket of the real server, keys in a 0600 file."""
    return {"bucket": s3_server.bucket(), "prefix": "db1/jobs", "endpoint_url": s3_server.endpoint,
            "path_style": True, "credentials_file": s3_server.credentials_file(str(tmp_path))}


def keys(s3_server, options) -> dict[str, int]:
    """What the prefix holds, name -> size, read straight from the store."""
    s3 = s3_server.client()
    found = s3.list_objects_v2(Bucket=options["bucket"], Prefix=options["prefix"] + "/").get("Contents", [])
    return {entry["Key"].split("/")[-1]: entry["Size"] for entry in found}


def one_line_failure(run, fragment: str) -> None:
    assert run.rc != 0, run.result
    message = run.result.get("msg", "")
    assert fragment in message and "\n" not in message and "Traceback" not in run.stdout + run.stderr, run.result


def tree(path) -> dict[str, str]:
    found = {}
    for directory, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(directory, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def backed_up_and_verified(run_module, engine, server, destination) -> str:
    """A real dump of the engine's sample database (or a files archive), verified, in ``destination``."""
    if engine == "files":
        made = run_module("files_backup", {"destination": str(destination), "job": "files", "paths": [server]})
    else:
        made = run_module(f"{engine}_dump", server.login(database=server.sample, destination=str(destination),
                                                         job=engine))
    assert made.rc == 0, made.stdout + made.stderr
    verified = run_module("backup_verify", {"destination": str(destination), "level": "structure"})
    assert verified.rc == 0, verified.stdout
    return made.result["archive"]


@pytest.mark.parametrize("engine", ["postgresql", "mongodb", "files"])
def test_round_trip_through_the_bucket_with_the_local_destination_gone(
        engine, pg, mongo, s3_server, remote, run_module, tmp_path, unique_name):
    source_dir = tmp_path / "site"
    if engine == "files":
        (source_dir / "uploads").mkdir(parents=True)
        (source_dir / "uploads" / "photo.bin").write_bytes(os.urandom(3 << 20))
        (source_dir / "notes.txt").write_text("off-site\n")
    server = {"postgresql": pg, "mongodb": mongo, "files": str(source_dir)}[engine]
    destination = tmp_path / "backups"
    archive = backed_up_and_verified(run_module, engine, server, destination)
    name = os.path.basename(archive)

    copy = run_module("offsite_copy", {"destination": str(destination), **remote}, check_mode=True)
    assert copy.rc == 0 and copy.result["copied"] == [name] and not keys(s3_server, remote), copy.result
    copy = run_module("offsite_copy", {"destination": str(destination), **remote})
    assert copy.rc == 0 and copy.result["copied"] == [name] and copy.result["changed"], copy.stdout + copy.stderr
    assert set(keys(s3_server, remote)) == {name, name + ".manifest.json", name + ".manifest.json.sig"}
    again = run_module("offsite_copy", {"destination": str(destination), **remote})
    assert again.rc == 0 and again.result["present"] == [name] and not again.result["changed"], again.result
    manifest = _manifest.load(archive)
    assert any(line.startswith("aws s3 cp --endpoint-url") and f"s3://{remote['bucket']}/db1/jobs/{name}" in line
               for line in manifest["offsite"]["fetch_commands"]), manifest["offsite"]
    checked = run_module("offsite_verify", {**remote, "download": True})
    assert checked.rc == 0 and [r["ok"] for r in checked.result["results"]] == [True], checked.result

    shutil.rmtree(destination)
    fetched = run_module("offsite_fetch", {**remote, "job": engine, "directory": str(tmp_path / "fetched")})
    assert fetched.rc == 0, fetched.stdout + fetched.stderr
    assert fetched.result["archive"] == str(tmp_path / "fetched" / name)
    assert sorted(os.listdir(tmp_path / "fetched")) == [  # no partial file left
        name, name + ".manifest.json", name + ".manifest.json.sig"]
    target = f"{unique_name}_{engine}"
    try:
        if engine == "files":
            restored = run_module("files_restore", {"archive": fetched.result["archive"],
                                                    "path_map": {str(source_dir): str(tmp_path / "copy")}})
            assert restored.rc == 0, restored.stdout + restored.stderr
            assert tree(tmp_path / "copy") == tree(source_dir) and len(tree(source_dir)) == 2
        else:
            restored = run_module(f"{engine}_restore", server.login(archive=fetched.result["archive"],
                                                                    target_database=target))
            assert restored.rc == 0, restored.stdout + restored.stderr
            source, copy_ = server.fingerprint(server.sample), server.fingerprint(target)
            assert copy_["counts"] == source["counts"] and copy_["hashes"] == source["hashes"]
            assert sum(source["counts"].values()) > 1000
    finally:
        if engine != "files":
            server.drop(target)


def test_an_object_rewritten_in_the_bucket_is_found_by_verify_and_by_the_fetch_before_a_restore(
        pg, s3_server, remote, run_module, tmp_path):
    destination = tmp_path / "backups"
    archive = backed_up_and_verified(run_module, "postgresql", pg, destination)
    name = os.path.basename(archive)
    assert run_module("offsite_copy", {"destination": str(destination), **remote}).rc == 0
    s3 = s3_server.client()
    original = s3.get_object(Bucket=remote["bucket"], Key=f"db1/jobs/{name}")["Body"].read()
    altered = bytearray(original)
    altered[len(altered) // 2] ^= 0x01
    # A well-formed rewrite through the S3 API, with a correct checksum of its own new bytes.
    s3.put_object(Bucket=remote["bucket"], Key=f"db1/jobs/{name}", Body=bytes(altered), ChecksumAlgorithm="SHA256")

    checked = run_module("offsite_verify", remote)
    one_line_failure(checked, f"{name} remotely has SHA-256")
    assert checked.result["results"][0]["ok"] is False

    fetched = run_module("offsite_fetch", {**remote, "archive": name, "directory": str(tmp_path / "fetched")})
    one_line_failure(fetched, "does not match its manifest's sha256")
    assert "nothing was restored" in fetched.result["msg"]
    assert name not in os.listdir(tmp_path / "fetched") and not [
        entry for entry in os.listdir(tmp_path / "fetched") if entry.endswith(".manifest.json")]


def big_files_archive(run_module, tmp_path, megabytes: int) -> tuple[str, str]:
    """A verified files archive of incompressible bytes, large enough for many 5 MiB parts."""
    source = tmp_path / "big"
    source.mkdir()
    (source / "blob.bin").write_bytes(os.urandom(megabytes << 20))
    destination = tmp_path / "backups"
    made = run_module("files_backup", {"destination": str(destination), "job": "big", "paths": [str(source)],
                                       "compression": "none"})
    assert made.rc == 0, made.stdout
    assert run_module("backup_verify", {"destination": str(destination), "level": "checksum"}).rc == 0
    return str(destination), made.result["archive"]


def parts_uploaded(s3, bucket: str, key: str) -> int:
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    return max((len(s3.list_parts(Bucket=bucket, Key=key, UploadId=u["UploadId"]).get("Parts", []))
                for u in uploads), default=0)


def test_a_killed_upload_leaves_no_manifest_and_the_next_run_resumes_it(s3_server, remote, run_module, tmp_path):
    destination, archive = big_files_archive(run_module, tmp_path, 160)
    name = os.path.basename(archive)
    options = {"destination": destination, **remote, "part_size_mib": 5}
    s3 = s3_server.client()
    process = start_module("offsite_copy", options, tmp_path)
    try:
        wait_until(lambda: parts_uploaded(s3, remote["bucket"], f"db1/jobs/{name}") >= 2, 60)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert name + ".manifest.json" not in keys(s3_server, remote), "a killed upload must not look complete"
    checked = run_module("offsite_verify", remote)
    assert checked.rc != 0 and checked.result["open_uploads"] == [f"db1/jobs/{name}"], checked.result

    resumed = run_module("offsite_copy", options)
    assert resumed.rc == 0, resumed.stdout + resumed.stderr
    assert resumed.result["resumed_parts"] >= 2 and resumed.result["copied"] == [name], resumed.result
    checked = run_module("offsite_verify", {**remote, "download": True})
    assert checked.rc == 0 and checked.result["open_uploads"] == [], checked.result


def test_a_server_stopped_mid_upload_fails_in_one_line_and_the_next_run_completes(
        s3_server, remote, run_module, tmp_path):
    destination, archive = big_files_archive(run_module, tmp_path, 160)
    name = os.path.basename(archive)
    options = {"destination": destination, **remote, "part_size_mib": 5}
    s3 = s3_server.client()
    process = start_module("offsite_copy", options, tmp_path)
    try:
        wait_until(lambda: parts_uploaded(s3, remote["bucket"], f"db1/jobs/{name}") >= 2, 60)
    finally:
        s3_server.stop()
    try:
        failed = finish_module(process)
    finally:
        s3_server.start()
    one_line_failure(failed, "failed")
    assert name + ".manifest.json" not in keys(s3_server, remote)
    done = run_module("offsite_copy", options)
    assert done.rc == 0 and done.result["copied"] == [name], done.stdout + done.stderr
    assert run_module("offsite_verify", {**remote, "download": True}).rc == 0


@pytest.mark.parametrize("part_size_mib", [64, 5])  # one request, and a multipart upload of 5 parts
def test_an_archive_changed_after_its_backup_is_refused_and_leaves_nothing_in_the_bucket(
        s3_server, remote, run_module, tmp_path, part_size_mib):
    """One byte flipped in the last part after verification: the store refuses the single request, and the
    multipart upload is aborted before completion (the whole file's SHA-256 is over the bytes the parts sent)."""
    destination, archive = big_files_archive(run_module, tmp_path, 22)
    name = os.path.basename(archive)
    with open(archive, "r+b") as handle:
        handle.seek(os.path.getsize(archive) - 100)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    copied = run_module("offsite_copy", {"destination": destination, **remote, "part_size_mib": part_size_mib})
    one_line_failure(copied, "does not match its manifest's sha256")
    assert keys(s3_server, remote) == {}, "nothing of a changed archive may become an object"
    assert parts_uploaded(s3_server.client(), remote["bucket"], f"db1/jobs/{name}") == 0, "the upload is aborted"


@pytest.fixture
def real_archive(pg, run_module, tmp_path):
    made = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(tmp_path / "made"), job="prune"))
    assert made.rc == 0, made.result.get("msg")
    return made.result["archive"]


def test_days_of_failed_local_backups_never_drop_the_newest_verified_remote_copy(
        real_archive, s3_server, remote, run_module, tmp_path):
    destination = str(tmp_path / "backups")
    series = dated_series(real_archive, destination, 6)
    for archive in series[:3]:
        verify(archive)
    copied = run_module("offsite_copy", {"destination": destination, **remote})
    assert len(copied.result["copied"]) == 3, copied.result
    for archive in series[3:]:  # three days whose backups fail their verification
        verify(archive, ok=False)
    assert run_module("offsite_copy", {"destination": destination, **remote}).result["copied"] == []

    prune = run_module("offsite_prune", {"destination": destination, **remote, "keep_last": 1})
    assert prune.rc == 0 and prune.result["removed"] == [] and prune.result["held"], prune.result
    assert "held locally" in prune.result["held"][0]["reason"]
    assert len([k for k in keys(s3_server, remote) if not k.endswith((".json", ".sig"))]) == 3

    # The local side loses its failed archives and then everything: still nothing goes remotely.
    for archive in series[3:]:
        for path in archive.files():
            os.unlink(path)
    prune = run_module("offsite_prune", {"destination": destination, **remote, "keep_last": 1})
    assert prune.rc == 0, prune.result
    assert [entry["name"] for entry in prune.result["removed"]] == [a.name for a in series[:2]]
    assert set(keys(s3_server, remote)) == {series[2].name, series[2].name + ".manifest.json",
                                            series[2].name + ".manifest.json.sig"}
    shutil.rmtree(destination)
    os.makedirs(destination)
    prune = run_module("offsite_prune", {"destination": destination, **remote, "keep_last": 1})
    assert prune.rc == 0 and prune.result["removed"] == [] and "no archive" in prune.result["held"][0]["reason"]
    assert series[2].name in keys(s3_server, remote)


def test_locked_objects_are_reported_not_deleted(real_archive, s3_server, tmp_path, run_module):
    options = {"bucket": s3_server.bucket(locked=True), "prefix": "db1/jobs", "endpoint_url": s3_server.endpoint,
               "path_style": True, "credentials_file": s3_server.credentials_file(str(tmp_path)),
               "lock_mode": "COMPLIANCE", "lock_days": 1}
    destination = str(tmp_path / "backups")
    series = dated_series(real_archive, destination, 2)
    for archive in series:
        verify(archive)
    assert run_module("offsite_copy", {"destination": destination, **options}).rc == 0
    head = s3_server.client().head_object(Bucket=options["bucket"], Key=f"db1/jobs/{series[0].name}")
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] > _manifest.utc_now()
    prune = run_module("offsite_prune", {"destination": destination, **options, "keep_last": 1})
    assert prune.rc == 0 and prune.result["removed"] == [], prune.result
    assert [entry["name"] for entry in prune.result["locked"]] == [series[0].name]
    assert series[0].name in keys(s3_server, options) and "locked until" in str(prune.result["warnings"])


@pytest.mark.parametrize("part_size_mib", [64, 5])  # one request, and a multipart upload (the archive is > 5 MiB)
def test_lock_mode_on_a_bucket_without_object_lock_is_named_as_such(
        real_archive, s3_server, remote, run_module, tmp_path, part_size_mib):
    """The store refuses a locked upload to a bucket made without object lock (S3's InvalidRequest): that is said,
    not read as bytes that changed after the backup, and nothing is uploaded."""
    destination = str(tmp_path / "backups")
    (archive,) = dated_series(real_archive, destination, 1)
    verify(archive)
    if part_size_mib == 5:
        with open(archive.path, "ab") as handle:  # past one part; the manifest's sha256 follows (as a bigger dump)
            handle.write(os.urandom(6 << 20))
        manifest = _manifest.load(archive.path)
        manifest["archive"].update(sha256=_offsite.digest_file(archive.path, 1 << 20).sha256,
                                   size=os.path.getsize(archive.path))
        _manifest.write(_manifest.manifest_path(archive.path), manifest)
    options = {**remote, "lock_mode": "GOVERNANCE", "lock_days": 1, "part_size_mib": part_size_mib}
    copy = run_module("offsite_copy", {"destination": destination, **options})
    one_line_failure(copy, f"bucket '{remote['bucket']}' has no object lock")
    assert "lock_mode" in copy.result["msg"] and "manifest's sha256" not in copy.result["msg"], copy.result
    assert keys(s3_server, remote) == {}
    assert s3_server.client().list_multipart_uploads(Bucket=remote["bucket"]).get("Uploads", []) == []


def test_credentials_reach_no_argv_result_or_manifest(pg, s3_server, remote, run_module, tmp_path):
    destination = tmp_path / "backups"
    archive = backed_up_and_verified(run_module, "postgresql", pg, destination)
    copy = run_module("offsite_copy", {"destination": str(destination), **remote})
    assert copy.rc == 0
    fetched = run_module("offsite_fetch", {**remote, "job": "postgresql", "directory": str(tmp_path / "f")})
    for run in (copy, fetched):
        assert SECRET_KEY not in run.stdout + run.stderr
    for path in (archive, fetched.result["archive"]):
        assert SECRET_KEY not in open(_manifest.manifest_path(path), encoding="utf-8").read()
    # From the environment (no file): works, and the secret is in no message even when the keys are wrong.
    from_env = {key: value for key, value in remote.items() if key != "credentials_file"}
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    try:
        assert run_module("offsite_verify", from_env).rc == 0
        os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY + "-wrong"
        wrong = run_module("offsite_verify", from_env)
        one_line_failure(wrong, "the secret key is wrong")
        assert SECRET_KEY not in wrong.stdout + wrong.stderr
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]


def test_bad_input_fails_in_one_line_and_deletes_nothing(pg, s3_server, remote, run_module, tmp_path):
    destination = tmp_path / "backups"
    backed_up_and_verified(run_module, "postgresql", pg, destination)
    assert run_module("offsite_copy", {"destination": str(destination), **remote}).rc == 0
    before = keys(s3_server, remote)
    prune = {"destination": str(destination), "keep_last": 1}

    wrong_keys = tmp_path / "wrong"
    wrong_keys.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = nope\n")
    wrong_keys.chmod(0o600)
    open_keys = tmp_path / "open"
    shutil.copy(remote["credentials_file"], open_keys)
    open_keys.chmod(0o644)
    unknown_key = tmp_path / "unknown"
    unknown_key.write_text("[default]\naws_access_key_id = nobody\naws_secret_access_key = nope\n")
    unknown_key.chmod(0o600)
    cases = [
        ({"endpoint_url": f"http://127.0.0.1:{free_port()}"}, "cannot connect to"),
        ({"credentials_file": str(wrong_keys)}, "the secret key is wrong"),
        ({"credentials_file": str(unknown_key)}, "failed:"),
        ({"credentials_file": str(open_keys)}, "chmod 600"),
        ({"bucket": "no-such-bucket-here"}, "does not exist"),
    ]
    for change, fragment in cases:
        for module, extra in (("offsite_copy", {"destination": str(destination)}), ("offsite_prune", prune)):
            run = run_module(module, {**remote, **change, **extra})
            one_line_failure(run, fragment)
    s3_server.client().put_object(Bucket=remote["bucket"], Key="db1/jobs/notes.txt", Body=b"someone else's")
    for module, extra in (("offsite_copy", {"destination": str(destination)}), ("offsite_prune", prune)):
        one_line_failure(run_module(module, {**remote, **extra}), "holds 1 objects that are not lifeboat archives")
    assert keys(s3_server, remote) == {**before, "notes.txt": 14}
    # The last copy failed: status says so (WARNING), with the reason.
    status = run_module("backup_status", {"destination": str(destination), "offsite": remote})
    assert status.result["offsite"]["state"] == "WARNING", status.result
    assert "the last copy to" in status.result["offsite"]["reasons"][0]["message"]


def test_remote_status_counts_the_newest_verified_copy_and_old_versions(pg, s3_server, run_module, tmp_path):
    options = {"bucket": s3_server.bucket(versioned=True), "prefix": "db1/jobs", "endpoint_url": s3_server.endpoint,
               "path_style": True, "credentials_file": s3_server.credentials_file(str(tmp_path))}
    destination = tmp_path / "backups"
    archive = backed_up_and_verified(run_module, "postgresql", pg, destination)
    assert run_module("offsite_copy", {"destination": str(destination), **options}).rc == 0
    remote = _offsite.Remote.from_options(options)
    status = _offsite.remote_status(remote)
    assert status["newest_verified"] == os.path.basename(archive) and status["archives"] == 1
    assert status["stored_bytes"] == sum(keys(s3_server, options).values())
    # A second version of the manifest (as a copy after a new verification writes): the old one is accounted for.
    s3 = s3_server.client()
    key = f"db1/jobs/{os.path.basename(archive)}.manifest.json"
    s3.put_object(Bucket=options["bucket"], Key=key, Body=s3.get_object(Bucket=options["bucket"], Key=key)["Body"].read())
    assert _offsite.remote_status(remote)["noncurrent_version_bytes"] > 0


def test_the_restore_playbook_restores_from_the_bucket_and_minus_vvv_shows_no_key(
        pg, s3_server, remote, run_module, run_playbook, tmp_path, unique_name):
    destination = tmp_path / "backups"
    archive = backed_up_and_verified(run_module, "postgresql", pg, destination)
    assert run_module("offsite_copy", {"destination": str(destination), **remote}).rc == 0
    shutil.rmtree(destination)
    target = f"{unique_name}_from_bucket"
    job = {"name": "postgresql", "engine": "postgresql", **pg.login(), "database": PG_SOURCE,
           "destination": str(tmp_path / "restore-here"), "offsite": remote}
    try:
        restore = run_playbook("restore", {"backup_jobs": [job], "restore_items": [
            {"job": "postgresql", "target_database": target}]}, "-vvv")
        assert restore.returncode == 0, restore.stdout[-3000:] + restore.stderr
        assert SECRET_KEY not in restore.stdout + restore.stderr
        source, copy_ = pg.fingerprint(PG_SOURCE), pg.fingerprint(target)
        assert copy_["counts"] == source["counts"] and copy_["hashes"] == source["hashes"]
        assert os.path.basename(archive) in os.listdir(tmp_path / "restore-here")
    finally:
        pg.drop(target)


def test_the_host_command_copies_prunes_fetches_and_the_status_module_sees_the_remote_side(
        pg, s3_server, remote, run_module, tmp_path):
    from test_cli import install_host, lifeboat  # pylint: disable=import-error,import-outside-toplevel

    host = install_host(tmp_path / "host")
    destination = tmp_path / "backups"
    config = tmp_path / "lifeboat.yml"
    offsite = {"enabled": True, **remote}
    config.write_text(json.dumps({"jobs": {"journal": {
        "engine": "postgresql", "database": PG_SOURCE, "destination": str(destination), **pg.login(),
        "verify": {"level": "structure"}, "retention": {"keep_last": 1}, "offsite": offsite}}}))
    unreachable = tmp_path / "unreachable.yml"
    unreachable.write_text(config.read_text().replace(remote["endpoint_url"], f"http://127.0.0.1:{free_port()}"))
    for command, config_file in (("backup", config), ("verify", config), ("copy", unreachable), ("copy", config)):
        done = lifeboat(host, command, "--config", str(config_file))
        assert done.returncode == (1 if config_file == unreachable else 0), done.stdout + done.stderr
    assert "copied journal-" in done.stdout + done.stderr
    status = run_module("backup_status", {"destination": str(destination), "offsite": remote,
                                          "metrics_file": str(tmp_path / "lifeboat.prom")})
    assert status.rc == 0 and status.result["offsite"]["state"] == "OK", status.result
    assert status.result["offsite"]["remote"]["verified"] == 1
    metrics = (tmp_path / "lifeboat.prom").read_text()
    assert "lifeboat_offsite_verified_archives{" in metrics and "lifeboat_offsite_stored_bytes{" in metrics
    # The host's own status: the remote side per job (age and count of the newest verified copy, bytes), in its
    # exit code and its metrics; the failed copy before the good one stays recorded for the metrics.
    shown = lifeboat(host, "status", "--config", str(config), "--metrics-file", str(tmp_path / "host.prom"))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    line = [text for text in shown.stdout.splitlines() if text.startswith("journal: off site OK: ")]
    assert line and "newest verified copy journal-" in line[0] and "h old; 1 verified of 1 archives" in line[0], shown.stdout
    host_metrics = (tmp_path / "host.prom").read_text()
    assert promtool_check(host_metrics).returncode == 0, promtool_check(host_metrics).stderr
    stored = sum(size for name, size in keys(s3_server, remote).items())
    labels = f'{{destination="{destination}",job="journal",url="s3://{remote["bucket"]}/db1/jobs/"}}'
    for sample in (f"lifeboat_offsite_status{labels} 0", f"lifeboat_offsite_verified_archives{labels} 1",
                   f"lifeboat_offsite_stored_bytes{labels} {stored}", f"lifeboat_offsite_last_copy_success{labels} 1",
                   f"lifeboat_offsite_last_copy_failure_timestamp_seconds{labels} "):
        assert sample in host_metrics, host_metrics

    # A second day: the bucket mirrors keep_last=1 once the new archive is verified and copied.
    time.sleep(1.1)  # archive names carry the start second
    for command in ("backup", "verify", "copy"):
        done = lifeboat(host, command, "--config", str(config))
        assert done.returncode == 0, done.stdout + done.stderr
    assert "removed journal-" in done.stdout + done.stderr
    names = [name for name in keys(s3_server, remote) if not name.endswith((".json", ".sig"))]
    assert len(names) == 1
    shutil.rmtree(destination)
    fetched = lifeboat(host, "fetch", "--job", "journal", "--config", str(config), "--directory", str(tmp_path / "f"))
    assert fetched.returncode == 0 and sorted(os.listdir(tmp_path / "f")) == [
        names[0], names[0] + ".manifest.json", names[0] + ".manifest.json.sig"]
    assert SECRET_KEY not in done.stdout + done.stderr + fetched.stdout + fetched.stderr

    # The newest local verified archive not in the bucket for longer than allowed: CRITICAL.
    late = run_module("backup_status", {"destination": str(tmp_path / "f"), "offsite": {**remote, "prefix": "other"},
                                        "offsite_max_delay_hours": 0.0001})
    assert late.result["offsite"]["state"] == "CRITICAL" and "has not reached" in late.result["summary"], late.result
    config.write_text(config.read_text().replace('"prefix": "db1/jobs"', '"prefix": "other", "max_delay_hours": 0.0001')
                      .replace(str(destination), str(tmp_path / "f")))
    shown = lifeboat(host, "status", "--config", str(config))
    assert shown.returncode == 2 and "journal: off site CRITICAL: " in shown.stdout, shown.stdout + shown.stderr
    assert "has not reached" in shown.stdout.splitlines()[0], shown.stdout


def test_the_backup_playbook_copies_each_verified_archive_off_site(pg, mongo, s3_server, remote, run_playbook,
                                                                   tmp_path):
    jobs = sample_jobs(pg, mongo, offsite={**remote, "enabled": True})
    backup = run_playbook("backup", {"backup_root": str(tmp_path / "backups"), "backup_jobs": jobs,
                                     "backup_retention": {"keep_last": 2}})
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr
    found = keys(s3_server, remote)
    for job in ("journal", "nightscout"):
        (name,) = [entry for entry in os.listdir(tmp_path / "backups" / job)
                   if not entry.endswith((".json", ".sig", ".pub"))]
        assert {name, name + ".manifest.json"} <= set(found), found
        remote_manifest = json.loads(s3_server.client().get_object(
            Bucket=remote["bucket"], Key=f"db1/jobs/{name}.manifest.json")["Body"].read())
        assert remote_manifest["verifications"][-1]["ok"] is True  # copied after its verification


def test_the_schedule_runs_the_copy_after_verify_and_before_prune_with_a_config_lifeboat_accepts(
        pg, s3_server, remote, tmp_path):
    from test_forwarded_options import run_play  # pylint: disable=import-error,import-outside-toplevel

    role = os.path.join(REPO_ROOT, "roles", "backup_schedule")
    jobs = [{"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login(),
             "offsite": {**remote, "enabled": True, "remote_keep": {"keep_monthly": 12}}},
            {"name": "plain", "engine": "postgresql", "database": PG_SOURCE, **pg.login()}]
    config, units = tmp_path / "lifeboat.yml", tmp_path / "units"
    units.mkdir()
    # Task vars: the role's defaults file (vars_files) would win over inventory variables.
    # The key the role makes on a host: the session's here (lifeboat check needs it to exist).
    _signing.ensure_signing_key(_signing.default_key_file())
    variables = {"backup_schedule_root": str(tmp_path / "sched"), "backup_schedule_jobs": "{{ schedule_jobs }}",
                 "backup_schedule_signing_key_file": _signing.default_key_file()}
    play = {"vars_files": [os.path.join(role, "defaults", "main.yml"), os.path.join(role, "vars", "main.yml"),
                           # the host program the role includes: where `lifeboat` is
                           os.path.join(REPO_ROOT, "roles", "host_program", "vars", "main.yml")],
            "tasks": [{"name": "Config", "ansible.builtin.template": {
                "src": os.path.join(role, "templates", "lifeboat.yml.j2"), "dest": str(config), "mode": "0600"},
                "vars": variables}] + [
                {"name": f"Unit {job['name']}", "ansible.builtin.template": {
                    "src": os.path.join(role, "templates", "lifeboat-backup.service.j2"),
                    "dest": str(units / f"{job['name']}.service"), "mode": "0644"},
                 "vars": {**variables, "job": job}} for job in jobs]}
    # The status unit reads the bucket when a job copies off site (network), and only then.
    play["tasks"] += [{"name": f"Status unit {name}", "ansible.builtin.template": {
        "src": os.path.join(role, "templates", "lifeboat-status.service.j2"), "dest": str(units / f"status-{name}"),
        "mode": "0644"}, "vars": {**variables, "backup_schedule_jobs": schedule}}
        for name, schedule in (("offsite", "{{ schedule_jobs }}"), ("local", "{{ schedule_jobs[1:] }}"))]
    done, _results = run_play(tmp_path, play, {"schedule_jobs": jobs})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    check = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), "check", "--config",
                            str(config)], capture_output=True, text=True, env=module_env(), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    steps = [line.split()[1] for line in (units / "journal.service").read_text().splitlines()
             if line.startswith("ExecStart=")]
    assert steps == ["backup", "verify", "copy", "prune"]
    assert "copy" not in (units / "plain.service").read_text().split("ExecStart=")[-1]
    assert SECRET_KEY not in config.read_text() + (units / "journal.service").read_text()
    status_units = {name: (units / f"status-{name}").read_text() for name in ("offsite", "local")}
    assert "PrivateNetwork=yes" not in status_units["offsite"] and "PrivateNetwork=yes" in status_units["local"]
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n" in status_units["offsite"], status_units["offsite"]
    assert "RestrictAddressFamilies=AF_UNIX\n" in status_units["local"], status_units["local"]


def test_a_signed_archive_keeps_its_signature_through_the_bucket(s3_server, remote, run_module, tmp_path):
    """The copy adds where it went to the manifest; the signature made at backup time still holds after the copy and
    after the fetch, checked by the restore and by hand, and a trusted key of another host still refuses it."""
    key = tmp_path / "signing"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "backup", "-f", str(key)], check=True)
    public = (tmp_path / "signing.pub").read_text().strip()
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "other", "-f", str(other)], check=True)
    source = tmp_path / "data"
    source.mkdir()
    (source / "notes.txt").write_text("kept\n")
    destination = tmp_path / "backups"
    made = run_module("files_backup", {"paths": [str(source)], "destination": str(destination), "job": "files",
                                       "signing_key_file": str(key)})
    assert made.rc == 0, made.result
    name = os.path.basename(made.result["archive"])
    verified = run_module("backup_verify", {"destination": str(destination), "level": "structure",
                                            "trusted_signers": [public]})
    assert verified.rc == 0, verified.result
    copy = run_module("offsite_copy", {"destination": str(destination), **remote})
    assert copy.rc == 0 and copy.result["copied"] == [name], copy.result
    assert set(keys(s3_server, remote)) == {name, name + ".manifest.json", name + ".manifest.json.sig"}
    shutil.rmtree(destination)

    fetched = run_module("offsite_fetch", {**remote, "job": "files", "directory": str(tmp_path / "fetched")})
    assert fetched.rc == 0, fetched.result
    archive = fetched.result["archive"]
    manifest = _manifest.load(archive)
    assert manifest["offsite"]["fetch_commands"] and os.path.exists(archive + ".manifest.json.sig")
    target = tmp_path / "restored"
    args = {"archive": archive, "path_map": {str(source): str(target)}}
    wrong = run_module("files_restore", {**args, "trusted_signers": [(tmp_path / "other.pub").read_text().strip()]})
    assert wrong.rc != 0 and "does not carry a valid signature" in wrong.result["msg"] and not target.exists()
    restored = run_module("files_restore", {**args, "trusted_signers": [public]})
    assert restored.rc == 0 and (target / "notes.txt").read_text() == "kept\n", restored.result
    # By hand, with the manifest's own command (it leaves out what verify and the copy added after the backup).
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'lifeboat namespaces="lifeboat-manifest" {public}\n')
    (check,) = [line for line in manifest["restore_commands"] if line.startswith("python3 -c")]
    done = subprocess.run(check.replace("ALLOWED_SIGNERS", str(allowed)), shell=True, cwd=os.path.dirname(archive),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Good" in done.stdout, done


def test_content_md5_for_stores_without_flexible_checksums(s3_server, remote, run_module, tmp_path):
    """checksum: md5 (forced here against versitygw, which has both): every request carries Content-MD5 that the
    store checks, the ETag is compared after upload, and remote verify reads the objects back; a rewrite is found."""
    s3 = s3_server.client()
    with pytest.raises(s3.exceptions.ClientError, match=r"BadDigest|InvalidDigest"):  # the store checks Content-MD5
        s3.put_object(Bucket=remote["bucket"], Key="probe", Body=b"x", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")
    destination, archive = big_files_archive(run_module, tmp_path, 12)
    name = os.path.basename(archive)
    md5 = {**remote, "checksum": "md5", "part_size_mib": 5}
    copy = run_module("offsite_copy", {"destination": destination, **md5})
    assert copy.rc == 0 and copy.result["copied"] == [name], copy.stdout + copy.stderr
    for key, etag_ends in ((name, "-3"), (name + ".manifest.json", "")):
        head = s3.head_object(Bucket=remote["bucket"], Key=f"db1/jobs/{key}", ChecksumMode="ENABLED")
        assert "ChecksumSHA256" not in head and head["ETag"].strip('"').endswith(etag_ends) and (
            etag_ends or "-" not in head["ETag"]), head
    checked = run_module("offsite_verify", md5)
    assert checked.rc == 0 and [r["ok"] for r in checked.result["results"]] == [True], checked.result
    fetched = run_module("offsite_fetch", {**md5, "job": "big", "directory": str(tmp_path / "fetched")})
    with open(archive, "rb") as handle:
        body = bytearray(handle.read())
    with open(fetched.result["archive"], "rb") as handle:
        assert fetched.rc == 0 and handle.read() == body, fetched.result
    # Rewritten through the API (plain, as a store without flexible checksums keeps it): verify reads and refuses.
    body[7] ^= 0x01
    s3.put_object(Bucket=remote["bucket"], Key=f"db1/jobs/{name}", Body=bytes(body))
    one_line_failure(run_module("offsite_verify", md5), f"{name} remotely has SHA-256")


def archive_names(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if ".pgdump" in name and not name.endswith((".json", ".sig")))


def test_a_failed_copy_publishes_the_archive_it_made_and_the_local_retention_still_runs(
        pg, s3_server, remote, tmp_path):
    root = tmp_path / "backups"
    job = {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login(),
           "offsite": {**remote, "enabled": True}}
    variables = {"backup_root": str(root), "backup_retention": {"keep_last": 1}, "backup_verify_level": "structure"}
    status, _rc, _artifact, stdout = run_with_runner(tmp_path / "copied", "backup", {**variables, "backup_jobs": [job]})
    assert status == "successful", stdout[-3000:]
    (first,) = archive_names(root / "journal")
    assert first in keys(s3_server, remote)
    time.sleep(1.1)  # archive names carry the start second

    # The store is gone: the job fails for its copy, says so in one line, and still publishes the archive it made
    # (verified, kept locally); the local retention (keep_last 1) ran under its own guards.
    endpoint = f"http://127.0.0.1:{free_port()}"
    gone = {**job, "offsite": {**job["offsite"], "endpoint_url": endpoint}}
    status, _rc, artifact, stdout = run_with_runner(tmp_path / "gone", "backup", {**variables, "backup_jobs": [gone]})
    assert status == "failed", stdout[-3000:]
    outcome = artifact["lifeboat_backup_outcome"]["localhost"]
    (made,) = outcome["archives"]
    assert made["name"] == "journal" and made["verification"] == {"level": "structure", "ok": True}, outcome
    (line,) = outcome["failed"]
    assert line.startswith("journal: off-site copy failed: ") and f"cannot connect to {endpoint}" in line, line
    assert "\n" not in line and line in stdout
    assert archive_names(root / "journal") == [os.path.basename(made["archive"])] != [first]
    assert first in keys(s3_server, remote)  # the bucket still holds the previous copy


def test_the_status_playbook_reads_each_jobs_bucket_and_publishes_the_remote_side(pg, s3_server, remote, tmp_path):
    root = tmp_path / "backups"
    job = {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login(),
           "offsite": {**remote, "enabled": True}}
    plain = {"name": "plain", "engine": "postgresql", "database": PG_SOURCE, **pg.login()}
    variables = {"backup_root": str(root), "backup_verify_level": "structure"}
    status, _rc, _artifact, stdout = run_with_runner(
        tmp_path / "backup", "backup", {**variables, "backup_jobs": [job, plain]})
    assert status == "successful", stdout[-3000:]
    (name,) = archive_names(root / "journal")

    # The inventory the backup ran with: each job with an enabled offsite gets its remote side in the one line
    # (AWX's job output) and in the artifact; a job without one is not read remotely.
    status, _rc, artifact, stdout = run_with_runner(
        tmp_path / "status", "status", {**variables, "backup_jobs": [job, plain]})
    assert status == "successful", stdout[-3000:]
    outcome = artifact["lifeboat_status_outcome"]["localhost"]
    (side,) = outcome["offsite"]
    assert (side["job"], side["state"], side["url"]) == ("journal", "OK", f"s3://{remote['bucket']}/db1/jobs/"), side
    assert side["remote"]["newest_verified"] == name and side["remote"]["verified"] == 1, side
    assert side["last_copy"]["ok"] is True, side
    expected = f"journal: off site OK: newest verified copy {name}, "
    assert side["summary"].startswith(expected) and "1 verified of 1 archives" in side["summary"], side
    assert outcome["state"] == "OK" and outcome["summary"].endswith(" | " + side["summary"]), outcome
    (line,) = [text for text in stdout.splitlines() if '"msg": "OK: ' in text]
    assert expected in line, stdout[-3000:]

    # The bucket cannot be read: CRITICAL, the host fails, and the line and the artifact say why.
    endpoint = f"http://127.0.0.1:{free_port()}"
    gone = {**job, "offsite": {**job["offsite"], "endpoint_url": endpoint}}
    status, _rc, artifact, stdout = run_with_runner(
        tmp_path / "gone", "status", {**variables, "backup_jobs": [gone, plain]})
    assert status == "failed", stdout[-3000:]
    outcome = artifact["lifeboat_status_outcome"]["localhost"]
    assert outcome["status"] == "failed" and outcome["state"] == "CRITICAL", outcome
    (side,) = outcome["offsite"]
    assert side["state"] == "CRITICAL" and f"cannot connect to {endpoint}" in side["summary"], side
    assert f"journal: off site CRITICAL: listing s3://{remote['bucket']}/db1/jobs/ failed: cannot connect" in stdout
