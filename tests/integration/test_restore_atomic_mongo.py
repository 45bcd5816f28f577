# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A MongoDB restore is all or nothing for the target, against the real FerretDB of the test bed.

For every overwrite mode, a restore over a database holding known data is failed four ways (a manifest count
off by one, mongorestore SIGKILLed, the module SIGTERMed, the server restarted); afterwards every collection of
the target has exactly its BSON from before, and no staging collection is left. A successful restore leaves
exactly the archive's content.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pymongo
import pytest
from bson import decode
from bson.raw_bson import RawBSONDocument
from local_ports import free_port  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from testbed import REPO_ROOT, finish_module, resign, start_module, wait_for_child

STAGING = "lifeboat_restore_"
MODES = {  # module options of each overwrite mode
    "absent": {},
    "drop": {"overwrite": True, "drop": True},
    "merge": {"overwrite": True},
}
BIG_DOCUMENTS = 90000  # mongorestore needs about 3.4 s for them on the test bed's FerretDB


def seed_source(mongo, database, documents, payload=16):
    """Two collections (one with a secondary index) whose dump takes a while to restore when ``documents`` is big."""
    mongo.drop(database)
    db = mongo.client[database]
    for start in range(0, documents, 10000):
        db.docs.insert_many([{"_id": n, "kind": n % 7, "payload": os.urandom(payload).hex()}
                             for n in range(start, min(start + 10000, documents))])
    db.small.insert_many([{"_id": f"s{n}", "value": n * 1.5} for n in range(50)])
    db.small.create_index([("value", 1)], name="value_1")


def seed_target(mongo, database, mode):
    """Known data: an unrelated collection always; for the overwrite modes, the archive's collections too."""
    mongo.drop(database)
    db = mongo.client[database]
    db.keep.insert_many([{"_id": n, "note": f"keep {n}", "when": time.time()} for n in range(30)])
    if mode != "absent":
        # Other _ids than the archive's, so that a merge adds documents rather than colliding.
        db.docs.insert_many([{"_id": -n, "old": True, "blob": os.urandom(16)} for n in range(1, 201)])
        db.docs.create_index([("old", 1)], name="old_1")
        db.small.insert_many([{"_id": f"old{n}", "value": -n} for n in range(10)])


def raw_documents(mongo, database, collection):
    """_id -> the document's exact BSON bytes."""
    codec = mongo.client.codec_options.with_options(document_class=RawBSONDocument)
    found = mongo.client.get_database(database, codec_options=codec)[collection].find()
    return {decode(document.raw)["_id"]: document.raw for document in found}


def staging_left(mongo):
    return sorted(f"{db}.{coll}" for db in mongo.client.list_database_names()
                  for coll in mongo.client[db].list_collection_names() if coll.startswith(STAGING))


def snapshot(mongo, database):
    """Exact BSON per collection (hash in _id order), counts and indexes; None when the database does not exist."""
    return mongo.fingerprint(database) if mongo.has_database(database) else None


@pytest.fixture(scope="module")
def archives(mongo, tmp_path_factory):
    """A big archive (its restore lasts several seconds) and a small one, with their sources' fingerprints."""
    directory = tmp_path_factory.mktemp("archives")
    result = {}
    dumps = {}
    for size, documents in (("big", BIG_DOCUMENTS), ("small", 500)):
        source = f"atomic_src_{size}_{os.getpid()}"
        seed_source(mongo, source, documents)
        dumps[size] = source, start_module("mongodb_dump", mongo.login(database=source, destination=str(directory)),
                                           directory)
    for size, (source, process) in dumps.items():  # the two dumps ran side by side
        run = finish_module(process)
        assert run.rc == 0, run.result
        result[size] = {"archive": run.result["archive"], "manifest": run.result["manifest"],
                        "source": source, "fingerprint": mongo.fingerprint(source)}
    yield result
    for item in result.values():
        mongo.drop(item["source"])


def restart_ferretdb(down_seconds):
    """Stop the test bed's authenticated FerretDB by its pid and start it again with the same script.

    SIGKILL, as a crash would: on SIGTERM FerretDB waits for its clients to disconnect, so mongorestore would finish.
    """
    state = os.environ["LIFEBOAT_TESTBED_DIR"]
    with open(os.path.join(state, "ferretdb-auth.pid"), encoding="utf-8") as handle:
        pid = int(handle.read().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 10
    while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(down_seconds)
    subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "testbed", "start-ferretdb.sh")],
                   check=True, capture_output=True, timeout=120)


def off_by_one(archive, tmp_path):
    """A copy of the archive whose manifest promises one document more in one collection (and in its total)."""
    copy = tmp_path / "copy" / os.path.basename(archive["archive"])
    copy.parent.mkdir()
    shutil.copy(archive["archive"], copy)
    with open(archive["manifest"], encoding="utf-8") as handle:
        manifest = json.load(handle)
    namespace = sorted(manifest["counts"])[0]
    manifest["counts"][namespace] += 1
    manifest["total_count"] += 1
    (copy.parent / os.path.basename(archive["manifest"])).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    resign(str(copy.parent / os.path.basename(archive["manifest"])))
    return str(copy), namespace


@pytest.mark.parametrize("failure", ["count", "kill", "term", "restart"])
@pytest.mark.parametrize("mode", list(MODES))
def test_failed_restore_leaves_the_target_as_it_was(mode, failure, mongo, archives, tmp_path, unique_name):
    seed_target(mongo, unique_name, mode)
    before = snapshot(mongo, unique_name)
    archive = archives["small" if failure == "count" else "big"]
    path, wrong = (off_by_one(archive, tmp_path) if failure == "count" else (archive["archive"], None))
    login = mongo.login()
    if failure == "restart":
        # The tools wait 30 s for a server by default and would outlast the restart; an operator's URI may say less.
        login = {"login_uri": f"mongodb://{mongo.user}@{mongo.host}:{mongo.port}/?authSource=admin"
                              "&serverSelectionTimeoutMS=1000", "login_password_file": mongo.password_file}
    process = start_module("mongodb_restore", {**login, "archive": path, "target_database": unique_name,
                                               **MODES[mode]}, tmp_path)
    try:
        if failure != "count":
            restorer = wait_for_child(process, "mongorestore")
            time.sleep(1.2)
            assert os.path.exists(f"/proc/{restorer}"), "mongorestore ended before it could be interrupted: seed more"
            if failure == "kill":
                os.kill(restorer, signal.SIGKILL)
            elif failure == "term":
                process.send_signal(signal.SIGTERM)
            else:
                restart_ferretdb(down_seconds=2.5)
        run = finish_module(process)
        assert run.rc != 0, run.result
        message = run.result["msg"]
        assert "\n" not in message and "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
        assert message.endswith("the target is unchanged: the staging collections this restore created were dropped"), message
        expected_cause = {
            "count": f"is incomplete: {unique_name}.{wrong.split('.', 1)[1]}" if wrong else "",
            "kill": "mongorestore was killed by signal 9 (SIGKILL) before the restore was complete",
            "term": "stopped by SIGTERM before the work was done",
            "restart": "mongorestore failed",
        }[failure]
        assert expected_cause in message, message
        assert snapshot(mongo, unique_name) == before
        assert staging_left(mongo) == []
    finally:
        if process.poll() is None:
            process.kill()
        mongo.drop(unique_name)


@pytest.mark.parametrize("mode", ["drop", "merge"])
def test_successful_restore_gives_exactly_the_archive(mode, mongo, archives, run_module, unique_name):
    archive = archives["small"]
    seed_target(mongo, unique_name, mode)
    before = mongo.fingerprint(unique_name)
    old = {coll: raw_documents(mongo, unique_name, coll) for coll in ("docs", "small")}
    try:
        run = run_module("mongodb_restore", mongo.login(archive=archive["archive"], target_database=unique_name,
                                                        **MODES[mode]))
        assert run.rc == 0, run.result
        assert run.result["mechanism"] == "staged-rename"
        after = mongo.fingerprint(unique_name)
        source = archive["fingerprint"]
        assert {k: after[k]["keep"] for k in after} == {k: before[k]["keep"] for k in before}
        if mode == "drop":
            for key in ("counts", "hashes", "indexes"):
                assert {c: after[key][c] for c in ("docs", "small")} == source[key], key
        else:
            for coll in ("docs", "small"):  # the old documents and the archive's, each with its exact BSON
                wanted = {**old[coll], **raw_documents(mongo, archive["source"], coll)}
                assert raw_documents(mongo, unique_name, coll) == wanted, coll
            assert after["indexes"]["docs"] == sorted(set(before["indexes"]["docs"]) | set(source["indexes"]["docs"]))
            assert after["indexes"]["small"] == source["indexes"]["small"]
        assert sorted(mongo.client[unique_name].list_collection_names()) == ["docs", "keep", "small"]
        assert staging_left(mongo) == []
    finally:
        mongo.drop(unique_name)


def test_module_killed_outright_leaves_staging_that_the_next_restore_drops(mongo, archives, run_module, tmp_path,
                                                                           unique_name):
    """SIGKILL of the module itself: nothing can clean up then, so the next restore into the database does."""
    seed_target(mongo, unique_name, "drop")
    before = snapshot(mongo, unique_name)
    process = start_module("mongodb_restore", mongo.login(archive=archives["big"]["archive"], target_database=unique_name,
                                                          **MODES["drop"]), tmp_path)
    try:
        wait_for_child(process, "mongorestore")
        time.sleep(1)
        process.kill()
        process.wait()
        left = staging_left(mongo)
        assert left and all(ns.startswith(f"{unique_name}.{STAGING}") for ns in left), left
        # The staging collections are no data: a backup taken now leaves them out.
        dumped = run_module("mongodb_dump", mongo.login(database=unique_name, destination=str(tmp_path / "out")))
        assert dumped.rc == 0, dumped.result
        assert not [ns for ns in dumped.result["counts"] if STAGING in ns]
        assert {k: v for k, v in snapshot(mongo, unique_name)["hashes"].items() if not k.startswith(STAGING)} \
            == before["hashes"]
        # The next restore (another collection of the same archive, into the same database) drops them.
        run = restore_small(run_module, mongo, archives, unique_name)
        assert run.rc == 0, run.result
        # Ansible 2.19 returns warnings as objects: look at their text.
        assert "dropped the staging collections" in json.dumps(run.result.get("warnings")), run.result
        assert staging_left(mongo) == []
        after = mongo.fingerprint(unique_name)
        assert {k: after["hashes"][k] for k in ("docs", "keep")} == {k: before["hashes"][k] for k in ("docs", "keep")}
    finally:
        if process.poll() is None:
            process.kill()
        mongo.drop(unique_name)


def restore_small(run_module, mongo, archives, database):
    """The restore that meets the leftovers: the small archive's ``small`` collection into ``database``, drop mode."""
    return run_module("mongodb_restore", mongo.login(
        archive=archives["small"]["archive"], target_database=database,
        ns_include=[f"{archives['small']['source']}.small"], **MODES["drop"]))


def left_by_a_dead_run(mongo, database, phase):
    """``database`` seeded, then what a restore whose process is gone left in ``phase``; the snapshot of before."""
    seed_target(mongo, database, "drop")
    before = snapshot(mongo, database)
    process = subprocess.Popen(["true"])  # its pid belongs to no process once it was reaped
    process.wait()
    fake_leftover_run(mongo, database, phase, {"pid": process.pid})
    return before


def fake_leftover_run(mongo, database, phase, owner):
    """What a restore killed in ``phase`` left: ``docs`` (existed) and ``fresh`` (new) staged with 5 documents each;
    for ``swapping``/``committed``, every rename of the swap done."""
    from ansible_collections.lifeboat.ops.plugins.module_utils._mongo_staging import Staging

    staging = Staging(targets={f"{database}.docs": True, f"{database}.fresh": False})
    staging.begin(mongo.client)
    db = mongo.client[database]
    db[staging.prefix].update_one({"_id": "run"}, {"$set": {**{f"owner.{k}": v for k, v in owner.items()},
                                                            "phase": phase}})
    for target in ("docs", "fresh"):
        db[f"{staging.prefix}_new_{target}"].insert_many([{"_id": n, "new": True} for n in range(5)])
    if phase != "staging":
        db.docs.rename(f"{staging.prefix}_old_docs")
        db[f"{staging.prefix}_new_docs"].rename("docs")
        db[f"{staging.prefix}_new_fresh"].rename("fresh")
    return staging


def test_swap_cut_short_by_sigkill_is_rolled_back_by_the_next_restore(mongo, archives, run_module, unique_name):
    """A run killed between its renames: one target moved aside and replaced, another created. The next restore
    puts the old one back and drops the new one, because the run never reached its commit mark."""
    before = left_by_a_dead_run(mongo, unique_name, "swapping")
    try:
        run = restore_small(run_module, mongo, archives, unique_name)
        assert run.rc == 0, run.result
        assert staging_left(mongo) == []
        after = mongo.fingerprint(unique_name)
        assert sorted(after["counts"]) == ["docs", "keep", "small"]
        for key in ("counts", "hashes", "indexes"):
            assert {k: after[key][k] for k in ("docs", "keep")} == {k: before[key][k] for k in ("docs", "keep")}, key
    finally:
        mongo.drop(unique_name)


def test_committed_swap_killed_before_its_cleanup_is_kept_by_the_next_restore(mongo, archives, run_module,
                                                                              unique_name):
    """A run killed after its commit mark: its targets are complete; the next restore keeps them (it must not put
    the old collection back) and drops only what was moved aside."""
    before = left_by_a_dead_run(mongo, unique_name, "committed")
    try:
        run = restore_small(run_module, mongo, archives, unique_name)
        assert run.rc == 0, run.result
        assert "dropped the staging collections" in json.dumps(run.result.get("warnings")), run.result
        assert staging_left(mongo) == []
        assert sorted(mongo.client[unique_name].list_collection_names()) == ["docs", "fresh", "keep", "small"]
        for target in ("docs", "fresh"):
            assert list(mongo.client[unique_name][target].find(sort=[("_id", 1)])) == \
                [{"_id": n, "new": True} for n in range(5)], target
        assert snapshot(mongo, unique_name)["hashes"]["keep"] == before["hashes"]["keep"]
    finally:
        mongo.drop(unique_name)


def test_leftovers_of_a_restore_on_another_host_are_left_alone_with_a_warning(
        mongo, archives, run_module, unique_name):
    """Whether a restore started elsewhere still runs cannot be seen from here: its collections stay, and it is said."""
    seed_target(mongo, unique_name, "drop")
    staging = fake_leftover_run(mongo, unique_name, "staging", {"host": "elsewhere.example"})
    left = staging_left(mongo)
    try:
        run = restore_small(run_module, mongo, archives, unique_name)
        assert run.rc == 0, run.result
        assert (f"staging collections {unique_name}.{staging.prefix}* belong to a restore started on elsewhere.example; "
                "left alone") in json.dumps(run.result.get("warnings")), run.result
        assert staging_left(mongo) == left
    finally:
        mongo.drop(unique_name)


def test_swap_failing_between_its_commit_marks_puts_every_database_back(mongo, archives, monkeypatch, unique_name):
    """Targets in two databases, and the server gone after the first database was marked committed: the restore
    says the target is unchanged, so neither database may keep the new content."""
    from ansible_collections.lifeboat.ops.plugins.module_utils import _mongo, _mongo_restore, _mongo_staging

    source = archives["small"]["source"]
    first, second = f"{unique_name}_a", f"{unique_name}_b"
    seed_target(mongo, first, "drop")
    seed_target(mongo, second, "drop")
    before = {db: snapshot(mongo, db) for db in (first, second)}
    set_phase = _mongo_staging.Staging._set_phase

    def lost_after_the_first_commit_mark(self, client, phase):
        if phase != "committed":
            return set_phase(self, client, phase)
        client[first][self.prefix].update_one({"_id": "run"}, {"$set": {"phase": phase}})
        raise pymongo.errors.AutoReconnect("connection closed")  # as when the server restarts right then

    monkeypatch.setattr(_mongo_staging.Staging, "_set_phase", lost_after_the_first_commit_mark)
    request = _mongo_restore.RestoreRequest(
        connection=_mongo.MongoConnection.from_options(host=mongo.host, port=mongo.port, user=mongo.user,
                                                       password_file=mongo.password_file, auth_database="admin"),
        archive_path=archives["small"]["archive"], ns_from=[f"{source}.docs", f"{source}.small"],
        ns_to=[f"{first}.docs", f"{second}.small"], overwrite=True, drop=True,
        tools_dir=os.environ["LIFEBOAT_TOOLS_BIN"])
    try:
        with pytest.raises(LifeboatError) as failure:
            _mongo_restore.restore(request)
        assert str(failure.value).endswith(
            "the target is unchanged: the staging collections this restore created were dropped"), failure.value
        assert {db: snapshot(mongo, db) for db in (first, second)} == before
        assert staging_left(mongo) == []
    finally:
        mongo.drop(first)
        mongo.drop(second)


def test_duplicate_keys_in_a_merge_say_which_and_how_to_replace(mongo, archives, run_module, unique_name):
    """E11000 from mongorestore arrives as one line of thousands of characters: cut to the first key and a count."""
    seed_target(mongo, unique_name, "merge")
    mongo.client[unique_name].docs.insert_many([{"_id": n, "clash": True} for n in (3, 7, 9)])
    before = snapshot(mongo, unique_name)
    try:
        run = run_module("mongodb_restore", mongo.login(archive=archives["small"]["archive"],
                                                        target_database=unique_name, **MODES["merge"]))
        assert run.rc != 0
        message = run.result["msg"]
        assert "\n" not in message and len(message) < 500, message
        assert message.startswith(f"3 documents of the archive have an _id that {unique_name}.docs already holds "
                                  "(the first: { _id: 3 }); set drop: true (with overwrite: true) to replace"), message
        assert message.endswith("the target is unchanged: the staging collections this restore created were dropped")
        assert snapshot(mongo, unique_name) == before
        assert staging_left(mongo) == []
    finally:
        mongo.drop(unique_name)


def test_check_mode_names_the_mechanism_and_the_disk_space(mongo, archives, run_module, unique_name):
    seed_target(mongo, unique_name, "merge")
    before = snapshot(mongo, unique_name)
    try:
        run = run_module("mongodb_restore", mongo.login(archive=archives["small"]["archive"], target_database=unique_name,
                                                        **MODES["merge"]), check_mode=True)
        assert run.rc == 0, run.result
        assert run.result["mechanism"] == "staged-rename"
        # The test bed's FerretDB runs on this host: its data directory's free space is what was compared.
        assert re.fullmatch(r"about [\d.]+ (KiB|MiB) needed, [\d.]+ GiB free", run.result["disk_space"]), run.result
        assert snapshot(mongo, unique_name) == before
    finally:
        mongo.drop(unique_name)


def test_restore_that_cannot_fit_is_refused_before_writing(archives, tmpfs, tmp_path, run_module):
    """A FerretDB of its own whose data lives on a 2 MB file system: the big archive cannot fit there."""
    data, port = tmpfs("2m"), free_port()
    (tmp_path / "state").mkdir()
    server = subprocess.Popen(
        [os.path.join(os.environ["LIFEBOAT_TOOLS_BIN"], "ferretdb"), "--handler=sqlite", f"--sqlite-url=file:{data}/",
         f"--state-dir={tmp_path / 'state'}", f"--listen-addr=127.0.0.1:{port}", "--debug-addr=-",
         "--telemetry=disable", "--log-level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=20000)
        client.admin.command("ping")
        options = {"login_host": "127.0.0.1", "login_port": port, "archive": archives["big"]["archive"],
                   "target_database": "wont_fit"}
        for check_mode in (True, False):
            run = run_module("mongodb_restore", options, check_mode=check_mode)
            assert run.rc != 0
            message = run.result["msg"]
            assert re.fullmatch(r"not enough disk space on the MongoDB server for this restore: it needs about "
                                r"[\d.]+ MiB for the staging collections and [\d.]+ (KiB|MiB) are free; "
                                r"free some space first", message), message
        assert "wont_fit" not in client.list_database_names()
        client.close()
    finally:
        server.terminate()
        server.wait()


def test_oplog_archive_goes_direct_and_only_where_nothing_is_overwritten(mongo, run_module, tmp_path, unique_name):
    """mongorestore --oplogReplay takes no renames, so no staging: such an archive never overwrites data."""
    mongo.client[unique_name].docs.insert_many([{"_id": n} for n in range(5)])
    # A name FerretDB cannot rename: no obstacle where nothing is renamed.
    mongo.client[unique_name]["with.dot"].insert_one({"_id": 1})
    dumped = run_module("mongodb_dump", mongo.login(database=unique_name, destination=str(tmp_path)))
    assert dumped.rc == 0, dumped.result
    with open(dumped.result["manifest"], encoding="utf-8") as handle:
        manifest = json.load(handle)
    manifest["options"]["oplog"] = True  # as mongodump --oplog of a replica set records it
    with open(dumped.result["manifest"], "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    resign(dumped.result["manifest"])
    try:
        over_data = run_module("mongodb_restore", mongo.login(archive=dumped.result["archive"], overwrite=True))
        assert over_data.rc != 0 and over_data.result["msg"] == (
            "this archive holds an oplog, which mongorestore replays only under the archive's own names, so it cannot "
            f"be restored all or nothing over {unique_name}.docs, which holds data; restore it into a server where "
            "its collections hold nothing"), over_data.result
        renamed = run_module("mongodb_restore", mongo.login(archive=dumped.result["archive"],
                                                            target_database=f"{unique_name}_x"))
        assert renamed.rc != 0 and renamed.result["msg"] == (
            "this archive holds an oplog, which mongorestore replays only under the archive's own names; leave "
            "target_database, ns_from, ns_to, ns_include and ns_exclude unset"), renamed.result
        assert mongo.client[unique_name].docs.count_documents({}) == 5
        mongo.drop(unique_name)
        planned = run_module("mongodb_restore", mongo.login(archive=dumped.result["archive"]), check_mode=True)
        assert planned.rc == 0 and planned.result["mechanism"] == "direct", planned.result
        # The direct path fails cleanly: mongorestore finds no oplog in an archive of FerretDB (no replica set).
        failed = run_module("mongodb_restore", mongo.login(archive=dumped.result["archive"]))
        assert failed.rc != 0 and failed.result["msg"] == (
            "mongorestore failed: Failed: no oplog file to replay; make sure you run mongodump with --oplog; the "
            "collections this restore created were dropped"), failed.result
        assert not mongo.has_database(unique_name)
    finally:
        mongo.drop(unique_name)
