# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mongorestore's failures cut to one line that says what happened and what to change, and the disk space check
where the server's disk is out of sight (the integration tests in test_restore_atomic_mongo.py get the same
messages from the real tools and a real FerretDB on a full file system)."""

from __future__ import annotations

import re

import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.ops.plugins.module_utils._mongo import MongoConnection
from ansible_collections.lifeboat.ops.plugins.module_utils._mongo_restore import (
    _check_disk_space,
    _restore_failure,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._mongo_staging import Staging, staging_run
from ansible_collections.lifeboat.ops.plugins.module_utils._pipeline import StageFailed
from ansible_collections.lifeboat.ops.plugins.modules import mongodb_restore

STAGING = Staging(targets={"shop.orders": True}, run_id="0123abcd")
# What mongorestore 100.x prints against MongoDB when a merge hits existing _ids: one line, one entry per duplicate.
MONGODB_LINE = (
    "mongorestore failed: Failed: shop.lifeboat_restore_0123abcd_new_orders: error restoring from archive on stdin: "
    "bulk write exception: write errors: ["
    + ", ".join(f"E11000 duplicate key error collection: shop.lifeboat_restore_0123abcd_new_orders index: _id_ dup key: "
                f"{{ _id: ObjectId('65a0000000000000000000{n:02d}') }}" for n in range(40))
    + "]"
)
# FerretDB 1.24 names the collection only.
FERRETDB_LINE = ("mongorestore failed: Failed: shop.lifeboat_restore_0123abcd_new_orders: error restoring from archive "
                 "on stdin: bulk write exception: write errors: [E11000 duplicate key error collection: "
                 "shop.lifeboat_restore_0123abcd_new_orders, E11000 duplicate key error collection: "
                 "shop.lifeboat_restore_0123abcd_new_orders]")


def test_mongodb_duplicate_keys_become_the_first_key_and_a_count():
    assert len(MONGODB_LINE) > 3000
    message = _restore_failure(LifeboatError(MONGODB_LINE), STAGING)
    assert message == (
        "mongorestore stopped at 40 duplicate keys in shop.orders (the first: { _id: ObjectId('65a000000000000000000000') "
        "}); set drop: true (with overwrite: true) to replace the target's collections instead of merging the archive "
        "into them"
    )


def test_ferretdb_duplicate_keys_name_the_collection_and_a_count():
    message = _restore_failure(LifeboatError(FERRETDB_LINE), STAGING)
    assert message.startswith("mongorestore stopped at 2 duplicate keys in shop.orders; set drop: true")


def test_duplicates_found_in_the_archive_name_the_first_key():
    message = _restore_failure(LifeboatError(FERRETDB_LINE), STAGING, ("shop.orders", 7, 3))
    assert message.startswith("3 documents of the archive have an _id that shop.orders already holds "
                              "(the first: { _id: 7 }); set drop: true (with overwrite: true)")


def test_a_killed_mongorestore_is_named_with_its_signal():
    message = _restore_failure(StageFailed("mongorestore", "mongorestore failed: killed by signal 9", signal=9), STAGING)
    assert message == "mongorestore was killed by signal 9 (SIGKILL) before the restore was complete"


def test_messages_name_only_options_that_exist():
    documented = set(yaml.safe_load(mongodb_restore.DOCUMENTATION)["options"]) | {"overwrite"}
    for line in (MONGODB_LINE, FERRETDB_LINE):
        named = set(re.findall(r"set (\w+): ", _restore_failure(LifeboatError(line), STAGING)))
        named |= set(re.findall(r"\(with (\w+): ", _restore_failure(LifeboatError(line), STAGING)))
        assert named and named <= documented, named


def test_staging_names_are_recognised_and_nothing_else():
    assert staging_run("lifeboat_restore_0123abcd") == "0123abcd"
    assert staging_run("lifeboat_restore_0123abcd_new_orders.2024") == "0123abcd"
    assert staging_run("lifeboat_restore_0123abcd_old_x") == "0123abcd"
    assert staging_run("lifeboat_restore_notahex0_new_x") is None
    assert staging_run("orders") is None
    assert STAGING.staged("shop.orders") == "shop.lifeboat_restore_0123abcd_new_orders"
    assert STAGING.aside("shop.orders") == "shop.lifeboat_restore_0123abcd_old_orders"


class _FakeDatabase:
    def __init__(self, stats):
        self.stats = stats

    def command(self, name, *args):
        return self.stats if name == "dbStats" else {"size": 1000, "totalIndexSize": 24}


class _FakeClient:
    """What a remote FerretDB answers: dbStats without the filesystem fields MongoDB adds."""

    def __init__(self, stats):
        self.admin = _FakeDatabase(stats)

    def __getitem__(self, name):
        return self.admin


def test_disk_space_of_a_server_elsewhere_is_not_checked_and_says_so():
    remote = MongoConnection(uri="mongodb://db.example.org:27017/", display="db.example.org:27017")
    manifest = {"archive": {"plain_size": 5 * 1024 * 1024}}
    said = _check_disk_space(_FakeClient({"ok": 1}), remote, manifest, ["shop.orders"])
    assert said == "not checked: the server's disk is not visible from here (the restore needs about 5.0 MiB)"


def test_disk_space_reported_by_mongodb_refuses_what_cannot_fit():
    remote = MongoConnection(uri="mongodb://db.example.org:27017/", display="db.example.org:27017")
    stats = {"fsTotalSize": 10 * 1024 * 1024, "fsUsedSize": 8 * 1024 * 1024}
    manifest = {"archive": {"plain_size": 3 * 1024 * 1024}}
    with pytest.raises(LifeboatError, match=r"^not enough disk space on the MongoDB server for this restore: it needs "
                                            r"about 3\.0 MiB for the staging collections and 2\.0 MiB are free"):
        _check_disk_space(_FakeClient(stats), remote, manifest, [])
    assert _check_disk_space(_FakeClient(stats), remote, {"archive": {"plain_size": 1024}}, []) == \
        "about 1.0 KiB needed, 2.0 MiB free"
