# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A MongoDB merge restore never loses a write the server acknowledged, against the real FerretDB and mongorestore.

A writer inserts (w=1) into a target collection every 20 ms while an archive is merged into it (overwrite without
drop, whose staging starts as a copy of the target). Whatever the restore does (abort because the target changed,
or swap), every insert the writer got acknowledged is in the target afterwards. On the code before the check, the
merge swapped in the copy taken when it began and dropped what had been written meanwhile.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pymongo
import pytest
from bson import ObjectId

from ansible_collections.lifeboat.ops.plugins.module_utils import _archive, _mongo, _mongo_restore, _mongo_staging
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

STAGING = "lifeboat_"
ARCHIVE_DOCUMENTS = 20000  # mongorestore takes a few seconds for them on the test bed: the writer gets ~100 in
TARGET_DOCUMENTS = 500
ABORTED = re.compile(r"^(\d+) writes? arrived in (\S+) during the restore; stop the writers and run it again, or set "
                     r"drop: true to replace the collections")


@pytest.fixture(scope="module")
def archive(mongo, tmp_path_factory):
    """An archive of one database: ``entries`` (glucose readings, _ids 0..N-1) and ``settings``."""
    source = f"mongomerge_src_{os.getpid()}"
    mongo.drop(source)
    db = mongo.client[source]
    for start in range(0, ARCHIVE_DOCUMENTS, 5000):
        db.entries.insert_many([{"_id": n, "sgv": 100 + n % 80, "type": "sgv"} for n in range(start, start + 5000)])
    db.settings.insert_many([{"_id": f"s{n}", "value": n} for n in range(20)])
    made = _mongo.dump(_mongo.DumpRequest(
        connection=connection(mongo), database=source, tools_dir=os.environ["LIFEBOAT_TOOLS_BIN"],
        archive=_archive.ArchiveOptions(destination=str(tmp_path_factory.mktemp("merge")), job="merge")))
    yield made["archive"]
    mongo.drop(source)


def connection(mongo):
    return _mongo.MongoConnection.from_options(host=mongo.host, port=mongo.port, user=mongo.user,
                                               password_file=mongo.password_file, auth_database="admin")


def merge(mongo, path, target):
    request = _mongo_restore.RestoreRequest(connection=connection(mongo), archive_path=path, target_database=target,
                                            overwrite=True, tools_dir=os.environ["LIFEBOAT_TOOLS_BIN"])
    return _mongo_restore.restore(request)


def seed_target(mongo, target):
    """Readings already there (other _ids than the archive's, so the merge adds to them) and an indexed field."""
    mongo.drop(target)
    entries = mongo.client[target].entries
    entries.insert_many([{"_id": -n, "sgv": 90, "type": "sgv"} for n in range(1, TARGET_DOCUMENTS + 1)])
    entries.create_index([("sgv", 1)], name="sgv_1")


class Writer(threading.Thread):
    """Inserts one reading every 20 ms with w=1; remembers the _id of every insert the server acknowledged."""

    def __init__(self, mongo, target):
        super().__init__(daemon=True)
        self.client = pymongo.MongoClient(mongo.host, mongo.port, username=mongo.user, password=mongo.password,
                                          authSource="admin", w=1, serverSelectionTimeoutMS=10000)
        self.collection = self.client[target].entries
        self.acknowledged: list[ObjectId] = []
        self.refused = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(0.02):
            reading = {"_id": ObjectId(), "sgv": 120, "type": "sgv", "date": time.time()}
            try:
                if self.collection.insert_one(reading).acknowledged:
                    self.acknowledged.append(reading["_id"])
            except pymongo.errors.PyMongoError:
                self.refused += 1  # not acknowledged: the writer knows it did not happen

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)
        self.client.close()


def staging_left(mongo, database):
    return [name for name in mongo.client[database].list_collection_names() if name.startswith(STAGING)]


@pytest.mark.parametrize("run", range(3))
def test_a_merge_with_a_writer_every_20_ms_loses_no_acknowledged_insert(run, mongo, archive):
    target = f"mongomerge_writers_{os.getpid()}_{run}"
    seed_target(mongo, target)
    writer = Writer(mongo, target)
    try:
        writer.start()
        time.sleep(0.3)
        outcome: dict | LifeboatError
        try:
            outcome = merge(mongo, archive, target)
        except LifeboatError as exc:
            outcome = exc
        time.sleep(0.3)  # writes after the restore land in what it left
        writer.stop()
        held = {document["_id"] for document in mongo.client[target].entries.find({}, {"_id": 1})}
        lost = [oid for oid in writer.acknowledged if oid not in held]
        print(f"run {run}: {len(writer.acknowledged)} inserts acknowledged, {len(lost)} lost, "
              f"{writer.refused} refused; restore: {outcome}")
        assert len(writer.acknowledged) > 20, "the writer did not write during the restore"
        assert lost == [], f"{len(lost)} of {len(writer.acknowledged)} acknowledged inserts are gone"
        assert staging_left(mongo, target) == []
        archived = mongo.client[target].entries.count_documents({"_id": {"$gte": 0}})
        if isinstance(outcome, LifeboatError):
            message = str(outcome)
            assert "\n" not in message
            assert ABORTED.match(message), message
            assert ABORTED.match(message).group(2) == f"{target}.entries"
            assert archived == 0  # aborted: the target is as the writer left it, none of the archive in it
            assert mongo.client[target].entries.count_documents({"_id": {"$lt": 0}}) == TARGET_DOCUMENTS
        else:
            assert outcome["concurrent_writes"] == "checked"
            assert archived == ARCHIVE_DOCUMENTS
    finally:
        writer.stop()
        mongo.drop(target)


@pytest.fixture(scope="module")
def small_archive(mongo, tmp_path_factory):
    """The same shape, 300 readings: for the writes placed at one exact moment of the swap."""
    source = f"mongomerge_small_{os.getpid()}"
    mongo.drop(source)
    mongo.client[source].entries.insert_many([{"_id": n, "sgv": 100 + n % 80, "type": "sgv"} for n in range(300)])
    made = _mongo.dump(_mongo.DumpRequest(
        connection=connection(mongo), database=source, tools_dir=os.environ["LIFEBOAT_TOOLS_BIN"],
        archive=_archive.ArchiveOptions(destination=str(tmp_path_factory.mktemp("small")), job="small")))
    yield made["archive"]
    mongo.drop(source)


def ids(mongo, target):
    return {document["_id"] for document in mongo.client[target].entries.find({}, {"_id": 1})}


def test_a_merge_without_writers_is_checked_and_swapped(mongo, small_archive, unique_name):
    target = f"mongomerge_{unique_name}"
    seed_target(mongo, target)
    try:
        result = merge(mongo, small_archive, target)
        assert result["concurrent_writes"] == "checked"
        assert result["warnings"] == []
        assert len(ids(mongo, target)) == TARGET_DOCUMENTS + 300
        assert staging_left(mongo, target) == []
    finally:
        mongo.drop(target)


def test_an_insert_between_the_last_check_and_the_swap_is_added_after_it(
        mongo, small_archive, unique_name, monkeypatch):
    target = f"mongomerge_{unique_name}"
    seed_target(mongo, target)
    real = _mongo_restore._check_unchanged

    def check_then_write(client, copied):
        real(client, copied)
        mongo.client[target].entries.insert_one({"_id": "late", "sgv": 1})  # after the check, before the rename

    monkeypatch.setattr(_mongo_restore, "_check_unchanged", check_then_write)
    try:
        result = merge(mongo, small_archive, target)
        assert result["warnings"] == [f"1 write arrived in {target}.entries between the last check and the swap; "
                                      "added to it after the swap"]
        assert "late" in ids(mongo, target)
        assert len(ids(mongo, target)) == TARGET_DOCUMENTS + 300 + 1
        assert staging_left(mongo, target) == []
    finally:
        mongo.drop(target)


def test_a_change_in_place_between_the_last_check_and_the_swap_keeps_the_collection_before_it(
        mongo, small_archive, unique_name, monkeypatch):
    target = f"mongomerge_{unique_name}"
    seed_target(mongo, target)
    real = _mongo_restore._check_unchanged

    def check_then_update(client, copied):
        real(client, copied)
        mongo.client[target].entries.update_one({"_id": -1}, {"$set": {"sgv": 999}})

    monkeypatch.setattr(_mongo_restore, "_check_unchanged", check_then_update)
    try:
        with pytest.raises(LifeboatError) as failure:
            merge(mongo, small_archive, target)
        message = str(failure.value)
        assert "\n" not in message
        kept = [name for name in mongo.client[target].list_collection_names() if name.startswith("lifeboat_kept_")]
        assert len(kept) == 1 and f"{target}.{kept[0]}" in message, message
        assert mongo.client[target][kept[0]].find_one({"_id": -1})["sgv"] == 999  # the write is on the server
        assert staging_left(mongo, target) == kept
        # The next restore leaves the kept collection alone.
        seed = mongo.client[target].entries.count_documents({})
        monkeypatch.setattr(_mongo_restore, "_check_unchanged", real)
        mongo.client[target].entries.delete_many({"_id": {"$gte": 0}})
        merge(mongo, small_archive, target)
        assert mongo.client[target].entries.count_documents({}) == seed
        assert mongo.client[target][kept[0]].find_one({"_id": -1})["sgv"] == 999
    finally:
        mongo.drop(target)


def test_a_write_while_the_target_is_moved_aside_is_added_to_it(mongo, small_archive, unique_name, monkeypatch):
    """Between the two renames of the swap the target's name is free: an insert creates the collection anew."""
    target = f"mongomerge_{unique_name}"
    seed_target(mongo, target)
    real = _mongo_staging._rename
    written = []

    def rename_then_write(client, source, destination):
        real(client, source, destination)
        if source == f"{target}.entries" and not written:
            written.append(mongo.client[target].entries.insert_one({"_id": "in the gap", "sgv": 2}).inserted_id)

    monkeypatch.setattr(_mongo_staging, "_rename", rename_then_write)
    try:
        result = merge(mongo, small_archive, target)
        assert f"1 document written to {target}.entries while the restore swapped it were added to it" in \
            result["warnings"]
        assert "in the gap" in ids(mongo, target)
        assert len(ids(mongo, target)) == TARGET_DOCUMENTS + 300 + 1
        assert staging_left(mongo, target) == []
    finally:
        mongo.drop(target)
