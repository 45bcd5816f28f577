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

from ansible_collections.lifeboat.ops.plugins.module_utils import _archive, _mongo, _mongo_staging
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
    return _mongo.restore(_mongo.RestoreRequest(connection=connection(mongo), archive_path=path, target_database=target,
                                                overwrite=True, tools_dir=os.environ["LIFEBOAT_TOOLS_BIN"]))


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
