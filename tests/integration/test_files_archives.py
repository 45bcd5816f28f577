# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker named volumes and host paths: files_backup, files_restore and backup_verify against the real engine.

The app container (scripts/testbed/images/app-writer) fills a named volume with what a files backup must keep:
owners, modes, a symlink, a hard link, a sparse file, a user xattr, a 4 MiB binary. Each test compares what it
finds on disk (sha256, mode, owner, link target, blocks) with what was there before, not what the module says.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time
import typing as t

import docker
import pytest
from bson.raw_bson import RawBSONDocument

from ansible_collections.lifeboat.ops.plugins.module_utils import _catalog, _verify
from testbed import listing, resign  # pylint: disable=import-error


def tree(path: str) -> dict[str, tuple]:
    """Every entry under path: type, mode, owner, link target or sha256, and for files whether they are sparse."""
    found = {}
    for directory, dirs, files in os.walk(path):
        for name in [*dirs, *files, ""] if directory == path else [*dirs, *files]:
            full = os.path.join(directory, name) if name else directory
            info = os.lstat(full)
            relative = os.path.relpath(full, path)
            what: tuple[t.Any, ...]
            if stat.S_ISLNK(info.st_mode):
                what = ("link", os.readlink(full))
            elif stat.S_ISREG(info.st_mode):
                with open(full, "rb") as handle:
                    what = ("file", hashlib.sha256(handle.read()).hexdigest(), info.st_nlink,
                            info.st_blocks * 512 < info.st_size)
            else:
                what = ("dir",)
            try:
                xattrs = sorted((n, os.getxattr(full, n, follow_symlinks=False)) for n in
                                os.listxattr(full, follow_symlinks=False) if n.startswith("user."))
            except OSError:
                xattrs = []
            found[relative] = (*what, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, tuple(xattrs))
    return found


def mountpoint(name: str) -> str:
    api = docker.APIClient(version="auto")
    try:
        return api.inspect_volume(name)["Mountpoint"]
    finally:
        api.close()


def volume_exists(name: str) -> bool:
    try:
        mountpoint(name)
        return True
    except docker.errors.NotFound:
        return False


@pytest.fixture(scope="module")
def app_volume(container_bed):
    """A stopped app container's volume (the writer done), as a volume backup of a consistent app sees it."""
    box = container_bed.app("files-app")
    container_bed.client.api.stop(box.id, timeout=10)
    return box.volume


def test_a_volume_round_trip_keeps_every_file_owner_mode_link_and_hole(
        app_volume, container_bed, run_module, tmp_path):
    before = tree(mountpoint(app_volume))
    assert before["sparse.img"][3] and before["uploads/note-1.txt"][2] == 2, before  # the fixture is what it says
    destination = tmp_path / "archives"
    backup = run_module("files_backup", {"destination": str(destination), "job": "dashboard-files",
                                         "volumes": [app_volume]})
    assert backup.rc == 0, backup.stdout + backup.stderr
    non_dirs = sum(1 for entry in before.values() if entry[0] != "dir")
    assert backup.result["counts"] == {f"volume:{app_volume}": non_dirs} and non_dirs == 9, backup.result["counts"]
    manifest = json.loads((destination / os.path.basename(backup.result["manifest"])).read_text())
    entries = {e["path"]: e for e in manifest["files"]["entries"][f"volume:{app_volume}"]}
    with open(os.path.join(mountpoint(app_volume), "uploads/photo.bin"), "rb") as handle:
        assert entries["uploads/photo.bin"]["sha256"] == hashlib.sha256(handle.read()).hexdigest()
    assert entries["private/secret.env"]["uid"] == 1000 and entries["private/secret.env"]["mode"] == 0o600

    for level in ("structure", "restore"):
        verified = run_module("backup_verify", {"destination": str(destination), "level": level})
        assert verified.rc == 0 and verified.result["passed_count"] == 1, verified.stdout
    assert listing(destination) == sorted([os.path.basename(backup.result["archive"]),
                                           os.path.basename(backup.result["manifest"]),
                                           os.path.basename(backup.result["manifest"]) + ".sig", "lifeboat-signer.pub"])

    copy = container_bed.name("files-copy")
    container_bed.volumes.append(copy)
    restored = run_module("files_restore", {"archive": backup.result["archive"], "volume_map": {app_volume: copy}})
    assert restored.rc == 0, restored.stdout + restored.stderr
    assert restored.result["restored"] == {f"volume:{copy}": non_dirs} and restored.result["safety_archive"] is None
    assert tree(mountpoint(copy)) == before

    again = run_module("files_restore", {"archive": backup.result["archive"], "volume_map": {app_volume: copy}})
    assert again.rc == 1 and "\n" not in again.result["msg"], again.result
    assert "is not empty" in again.result["msg"] and "overwrite: true" in again.result["msg"]


def test_overwrite_archives_what_was_there_first_and_replaces_it_whole(app_volume, run_module, tmp_path):
    target = tmp_path / "uploads-copy"
    target.mkdir()
    (target / "stale.txt").write_text("written after the backup\n")
    destination = tmp_path / "archives"
    backup = run_module("files_backup", {"destination": str(destination), "job": "uploads",
                                         "paths": [os.path.join(mountpoint(app_volume), "uploads")]})
    assert backup.rc == 0, backup.stdout
    source = os.path.join(mountpoint(app_volume), "uploads")
    restored = run_module("files_restore", {"archive": backup.result["archive"], "path_map": {source: str(target)},
                                            "overwrite": True, "safety_dump_dir": str(tmp_path / "safety")})
    assert restored.rc == 0, restored.stdout + restored.stderr
    assert tree(str(target)) == tree(source)
    safety = restored.result["safety_archive"]
    assert safety.startswith(str(tmp_path / "safety")) and os.path.isfile(safety)
    kept = json.loads(open(safety + ".manifest.json", encoding="utf-8").read())
    assert [e["path"] for e in kept["files"]["entries"][f"path:{target}"]] == ["", "stale.txt"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".lifeboat-")]


def test_bad_input_is_one_line_and_writes_nothing(app_volume, container_bed, run_module, tmp_path):
    destination = tmp_path / "archives"
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "a.txt").write_text("a\n")
    cases = {
        "does not exist on this host": {"volumes": ["lifeboat-no-such-volume"]},
        "must be absolute": {"paths": ["relative/uploads"]},
        "kernel file system": {"paths": ["/proc/self"]},
        "path /nonexistent-lifeboat does not exist": {"paths": ["/nonexistent-lifeboat"]},
        "give volumes or paths": {},
        "is inside path:": {"paths": [str(tmp_path)]},
    }
    for expected, args in cases.items():
        result = run_module("files_backup", {"destination": str(destination), "job": "bad", **args})
        assert result.rc == 1 and expected in result.result["msg"] and "\n" not in result.result["msg"], result
        assert "Traceback" not in result.stdout + result.stderr
    assert not destination.exists()  # refused before anything was made, the destination included

    good = run_module("files_backup", {"destination": str(destination), "job": "good", "paths": [str(inside)]})
    assert good.rc == 0, good.stdout
    running = container_bed.app("files-busy")
    in_use = run_module("files_restore", {"archive": good.result["archive"], "path_map": {str(inside): "/tmp/x"},
                                          "only": ["lifeboat-not-in-archive"]})
    assert in_use.rc == 1 and "the archive holds no lifeboat-not-in-archive" in in_use.result["msg"], in_use.result
    # a volume a running container mounts: refused even with overwrite
    busy = run_module("files_backup", {"destination": str(destination), "job": "busy",
                                       "volumes": [running.volume]})
    assert busy.rc == 0, busy.stdout
    refused = run_module("files_restore", {"archive": busy.result["archive"], "overwrite": True})
    assert refused.rc == 1 and f"in use by running container {running.name}" in refused.result["msg"], refused.result
    assert not os.path.exists(str(destination / "busy-before-restore"))
    assert not [n for n in listing(destination) if "before-restore" in n]


def test_a_full_destination_fails_in_one_line_and_leaves_nothing(app_volume, tmpfs):
    from ansible_collections.lifeboat.ops.plugins.module_utils import _sources  # pylint: disable=import-outside-toplevel

    destination = tmpfs("1m")
    source = _sources.get("files")
    with pytest.raises(Exception) as failure:
        source.dump(source.dump_request({"destination": str(destination), "job": "full", "volumes": [app_volume],
                                         "compression": "none"}))
    assert "No space left on device" in str(failure.value) and "\n" not in str(failure.value)
    assert listing(destination) == []


def test_a_file_that_changes_while_read_is_named_in_the_result_and_manifest(run_module, tmp_path):
    source = tmp_path / "live"
    source.mkdir()
    (source / "steady.txt").write_text("steady\n")
    growing = source / "growing.log"
    growing.write_bytes(os.urandom(64 << 20))
    stop = threading.Event()

    def append() -> None:
        with open(growing, "ab") as handle:
            while not stop.is_set():
                handle.write(b"x" * 4096)
                handle.flush()
                time.sleep(0.001)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        result = run_module("files_backup", {"destination": str(tmp_path / "archives"), "job": "live",
                                             "paths": [str(source)], "compression": "none"})
    finally:
        stop.set()
        writer.join()
    assert result.rc == 0, result.stdout
    assert [line for line in result.result["changed_while_read"] if line.startswith(f"{growing}: file changed")], result.result
    manifest = json.loads(open(result.result["manifest"], encoding="utf-8").read())
    assert manifest["files"]["changed_while_read"] == result.result["changed_while_read"]
    assert str(growing) in str(result.result["warnings"]), result.result


def test_every_byte_change_and_truncation_of_a_volume_archive_is_detected(app_volume, tmp_path):
    from ansible_collections.lifeboat.ops.plugins.module_utils import _sources  # pylint: disable=import-outside-toplevel

    destination = tmp_path / "archives"
    source = _sources.get("files")
    made = source.dump(source.dump_request({"destination": str(destination), "job": "flips",
                                            "volumes": [app_volume], "compression": "zstd"}))
    # No sha256 of the plain tar stream (a files archive proves it by the per-file sha256), and yet nothing slips by.
    assert made["manifest_data"]["archive"]["plain_sha256"] is None
    archive = made["archive"]
    pristine = open(archive, "rb").read()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    shutil.copy(made["manifest"], damaged / os.path.basename(made["manifest"]))
    copy = str(damaged / os.path.basename(archive))
    chance = random.Random(12)
    changes = [("flip", chance.randrange(len(pristine)), chance.randrange(1, 256)) for _flip in range(200)]
    changes += [("cut", chance.randrange(len(pristine)), 0) for _cut in range(20)]
    missed: dict[str, list[tuple[str, int]]] = {"checksum": [], "structure": []}
    for kind, offset, xor in changes:
        data = bytearray(pristine)
        if kind == "flip":
            data[offset] ^= xor
        else:
            del data[offset:]
        with open(copy, "wb") as handle:
            handle.write(data)
        archives = _catalog.scan(str(damaged)).archives
        for level, misses in missed.items():
            (result,) = _verify.verify(_verify.VerifyRequest(archives=archives, level=level, record=False))
            if result["ok"]:
                misses.append((kind, offset))
    assert missed == {"checksum": [], "structure": []}
    (intact,) = _verify.verify(_verify.VerifyRequest(archives=_catalog.scan(str(destination)).archives,
                                                     level="structure", record=False))
    assert intact["ok"], intact


def test_structure_finds_a_file_whose_bytes_differ_from_its_manifest(tmp_path):
    """An archive re-made behind the manifest's back (stored sums updated, one file's sha256 not): only the per-file
    check can see it, so this shows that structure reads every file."""
    from ansible_collections.lifeboat.ops.plugins.module_utils import _sources  # pylint: disable=import-outside-toplevel

    data = tmp_path / "data"
    data.mkdir()
    (data / "one.txt").write_text("one\n")
    source = _sources.get("files")
    made = source.dump(source.dump_request({"destination": str(tmp_path / "a"), "job": "one", "paths": [str(data)]}))
    manifest = json.loads(open(made["manifest"], encoding="utf-8").read())
    for entry in manifest["files"]["entries"][f"path:{data}"]:
        if entry["path"] == "one.txt":
            entry["sha256"] = "0" * 64
    open(made["manifest"], "w", encoding="utf-8").write(json.dumps(manifest))
    resign(made["manifest"])  # signed as it is now: what is left to find it is the per-file check
    (result,) = _verify.verify(_verify.VerifyRequest(archives=_catalog.scan(str(tmp_path / "a")).archives,
                                                     level="structure", record=False))
    assert not result["ok"] and result["failed_check"] == "structure", result
    assert "one.txt: sha256 differ" in result["failure"], result["failure"]


def test_research_dashboard_survives_losing_its_containers_and_volumes(container_bed, run_module, tmp_path):
    """MongoDB (FerretDB) with its data in a named volume plus an app volume: dump inside the container and archive
    the app volume, remove containers and volumes, restore into new ones: documents and files are the same."""
    database = container_bed.ferretdb("dash-db", volume=True)
    app = container_bed.app("dash-app")
    with database.mongo_client() as client:
        client.research.readings.insert_many([{"_id": i, "glucose": 90 + i % 40, "note": "ß" * (i % 7)}
                                              for i in range(500)])
        client.research.studies.insert_one({"_id": "s1", "title": "pilot", "tags": ["a", "b"]})
        documents_before = raw_documents(client, "research")
    files_before = tree(mountpoint(app.volume))
    container_bed.client.api.stop(app.id, timeout=10)
    destination = tmp_path / "archives"
    dump = run_module("mongodb_dump", {"destination": str(destination), "job": "dash-db", "container": database.name,
                                       "database": "research"})
    assert dump.rc == 0, dump.stdout + dump.stderr
    files = run_module("files_backup", {"destination": str(destination), "job": "dash-files",
                                        "volumes": [app.volume]})
    assert files.rc == 0, files.stdout + files.stderr

    for box in (database, app):  # docker compose down -v
        container_bed.client.api.remove_container(box.id, v=True, force=True)
        container_bed.client.api.remove_volume(box.volume, force=True)
    assert not volume_exists(app.volume)

    new_database = container_bed.ferretdb("dash-db-new", volume=True)
    restored_files = run_module("files_restore", {"destination": str(destination), "job": "dash-files",
                                                  "select": "newest"})
    assert restored_files.rc == 0, restored_files.stdout + restored_files.stderr
    assert tree(mountpoint(app.volume)) == files_before
    container_bed.volumes.append(app.volume)
    new_app = container_bed.app("dash-app-new", volume=app.volume)  # the writer leaves a volume that holds files
    assert tree(mountpoint(new_app.volume)) == files_before
    restored_db = run_module("mongodb_restore", {"destination": str(destination), "job": "dash-db",
                                                 "select": "newest", "container": new_database.name})
    assert restored_db.rc == 0, restored_db.stdout + restored_db.stderr
    with new_database.mongo_client() as client:
        assert raw_documents(client, "research") == documents_before


def raw_documents(client, database: str) -> dict[str, list[bytes]]:
    """Every document's exact BSON bytes per collection, in _id order."""
    handle = client.get_database(database, codec_options=client.codec_options.with_options(
        document_class=RawBSONDocument))
    return {name: sorted(doc.raw for doc in handle[name].find({})) for name in sorted(handle.list_collection_names())}


def running(client, container_id: str) -> bool:
    return client.api.inspect_container(container_id)["State"]["Running"]


def test_a_stop_labelled_app_is_running_again_after_success_failure_full_disk_and_sigterm(
        container_bed, run_module, tmpfs, tmp_path):
    from testbed import finish_module, start_module  # pylint: disable=import-error,import-outside-toplevel

    app = container_bed.app("files-stop", labels={"lifeboat.stop-during-backup": "true"})
    client = container_bed.client
    with open(os.path.join(mountpoint(app.volume), "big.bin"), "wb") as handle:
        handle.write(os.urandom(96 << 20))  # zstd -19 takes seconds on it: time to stop the module mid-read
    job = {"job": "stopper", "volumes": [app.volume]}

    done = run_module("files_backup", {"destination": str(tmp_path / "ok"), **job, "compression_level": 1})
    assert done.rc == 0, done.stdout
    manifest = json.loads(open(done.result["manifest"], encoding="utf-8").read())
    assert manifest["server"]["stopped_containers"] == done.result["stopped_containers"] == [app.name]
    # The app's downtime: at least the read of its volume, at most the whole run.
    assert 0 < done.result["downtime_seconds"] == manifest["server"]["downtime_seconds"] <= manifest["duration_seconds"]
    assert running(client, app.id)

    failed = run_module("files_backup", {"destination": str(tmp_path / "failed"), **job, "exclude": ["*"]})
    assert failed.rc == 1 and "nothing to back up" in failed.result["msg"], failed.result
    assert running(client, app.id)

    full = run_module("files_backup", {"destination": str(tmpfs("2m")), **job, "compression": "none"})
    assert full.rc == 1 and "No space left on device" in full.result["msg"], full.result
    assert running(client, app.id)

    process = start_module("files_backup", {"destination": str(tmp_path / "term"), **job, "compression_level": 19},
                           tmp_path)
    deadline = time.monotonic() + 60
    while running(client, app.id):
        assert time.monotonic() < deadline and process.poll() is None, "the module never stopped the app"
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(15)
    stopped = finish_module(process)
    assert stopped.rc == 1 and "SIGTERM" in stopped.result["msg"], stopped.result
    assert running(client, app.id)
    assert [name for name in listing(tmp_path / "term") if not name.startswith(".lifeboat-stopped")] == []
    assert [name for name in listing(tmp_path / "term") if name.endswith(".json")] == []


def test_the_data_directory_of_a_running_database_is_refused_in_one_line(pg17_container, run_module, tmp_path):
    result = run_module("files_backup", {"destination": str(tmp_path / "a"), "job": "pgdata",
                                         "volumes": [pg17_container.volume]})
    assert result.rc == 1 and "\n" not in result.result["msg"], result.result
    assert (f"data directory of running PostgreSQL container {pg17_container.name}" in result.result["msg"]
            and "container:" in result.result["msg"]), result.result["msg"]
    assert listing(tmp_path / "a") == []


def test_the_host_command_backs_up_verifies_reports_and_prunes_container_and_files_jobs(
        app_volume, pg17_container, tmp_path, tmp_path_factory):
    """Without Ansible: a PostgreSQL 17 job dumped in its container and verified at level structure by the
    container's pg_restore (the host's is 15), and a volume job; status counts both, prune keeps the verified."""
    from test_cli import install_host, lifeboat  # pylint: disable=import-error,import-outside-toplevel

    host = install_host(tmp_path_factory.mktemp("host"))
    destination = tmp_path / "archives"
    metrics = tmp_path / "lifeboat.prom"
    config = tmp_path / "lifeboat.yml"
    config.write_text(json.dumps({
        "defaults": {"destination": str(destination)},
        "metrics_file": str(metrics),
        "jobs": {"journal17": {"engine": "postgresql", "container": pg17_container.name},
                 "uploads": {"engine": "files", "volumes": [app_volume], "retention": {"keep_last": 1}}}}))
    for _round in range(2):
        made = lifeboat(host, "backup", "--config", str(config))
        assert made.returncode == 0, made.stdout + made.stderr
    verified = lifeboat(host, "verify", "--level", "structure", "--config", str(config))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    said = verified.stdout + verified.stderr
    assert "journal17: journal17-" in said and "uploads: uploads-" in said and said.count("ok (structure") >= 2, said
    status = lifeboat(host, "status", "--config", str(config))
    assert status.returncode == 0, status.stdout + status.stderr
    text = metrics.read_text()
    assert 'job="uploads"' in text and 'job="journal17"' in text
    pruned = lifeboat(host, "prune", "--job", "uploads", "--config", str(config))
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    kept = sorted(name for name in os.listdir(destination) if name.startswith("uploads-") and name.endswith(".zst"))
    assert len(kept) == 1, kept


def test_a_failed_restore_into_a_new_volume_leaves_no_volume_behind(app_volume, container_bed, run_module, tmp_path):
    backup = run_module("files_backup", {"destination": str(tmp_path / "a"), "job": "damaged", "volumes": [app_volume]})
    assert backup.rc == 0, backup.stdout
    with open(backup.result["archive"], "r+b") as handle:  # one byte changed: the restore's own read finds it
        handle.seek(backup.result["size"] // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    new = container_bed.name("files-never")
    failed = run_module("files_restore", {"archive": backup.result["archive"], "volume_map": {app_volume: new}})
    assert failed.rc == 1 and "\n" not in failed.result["msg"], failed.result
    assert not volume_exists(new)


KILL_IN_THE_SWAP = """
import os, signal, sys
from ansible_collections.lifeboat.ops.plugins.module_utils import _files_source

def then_killed(step):
    def run(*args):
        result = step(*args)
        os.kill(os.getpid(), signal.SIGKILL)
        return result
    return run

os.rename = then_killed(os.rename)  # only the swap renames in a restore of an existing folder
if hasattr(_files_source, "exchange_paths"):  # absent before the one-step swap: this script showed the old failure
    _files_source.exchange_paths = then_killed(_files_source.exchange_paths)
_files_source.restore(_files_source.RestoreRequest(archive_path=sys.argv[1], path_map={sys.argv[2]: sys.argv[3]},
                                                   overwrite=True, safety_dump_dir=sys.argv[4]))
"""


def test_a_restore_killed_in_its_swap_leaves_the_folder_whole_and_the_next_one_completes(run_module, tmp_path):
    """SIGKILL right after the first step that puts the restored folder in place: the folder's name holds a whole tree
    (the archive's), never nothing. Before: the folder was renamed aside first, and a kill then left no folder (an app
    started on it would have seen an empty one) and its files in a hidden directory the next restore swept away."""
    source = tmp_path / "uploads"
    (source / "photos").mkdir(parents=True)
    (source / "photos" / "cake.jpg").write_bytes(os.urandom(4096))
    (source / "notes.txt").write_text("restored\n")
    backup = run_module("files_backup", {"destination": str(tmp_path / "archives"), "job": "swap",
                                         "paths": [str(source)]})
    assert backup.rc == 0, backup.stdout
    live = tmp_path / "live" / "uploads"
    live.mkdir(parents=True)
    (live / "written-after-the-backup.txt").write_text("old\n")
    before = tree(str(live))
    child_path = os.pathsep.join(entry for entry in sys.path
                                 if os.path.isdir(os.path.join(entry, "ansible_collections")))
    killed = subprocess.run([sys.executable, "-c", KILL_IN_THE_SWAP, backup.result["archive"], str(source), str(live),
                             str(tmp_path / "safety")],
                            env={**os.environ, "PYTHONPATH": child_path}, capture_output=True, text=True, check=False)
    assert killed.returncode == -9, killed.stderr
    assert live.is_dir(), f"the kill left no {live}: {sorted(os.listdir(live.parent))}"
    assert tree(str(live)) in (tree(str(source)), before)

    again = run_module("files_restore", {"archive": backup.result["archive"], "path_map": {str(source): str(live)},
                                         "overwrite": True, "safety_dump_dir": str(tmp_path / "safety")})
    assert again.rc == 0, again.stdout + again.stderr
    assert tree(str(live)) == tree(str(source))
    assert not [name for name in os.listdir(live.parent) if name.startswith(".lifeboat-")]
