# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the counts of a staged MongoDB restore come from, against the real FerretDB and mongorestore.

A staging collection that mongorestore alone wrote (into a new or dropped target) is counted by the inserts the
server acknowledged, which mongorestore reports per collection: no second read of every document. A merge (its
staging starts as a copy of the target) and a collection mongorestore does not report are counted on the server.
Either way a count that differs from the manifest is found before the swap and the target keeps what it had.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _archive, _mongo, _mongo_restore
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from testbed import resign  # pylint: disable=import-error

ODD = "odd (name) 2, with spaces"  # the name sits inside mongorestore's "finished restoring NS (N documents...)"
STAGING = re.compile(r"lifeboat_restore_[0-9a-f]{8}_new_")
UNCHANGED = "the target is unchanged: the staging collections this restore created were dropped"


@pytest.fixture(scope="module")
def archive(mongo, tmp_path_factory):
    """An archive of three collections: 300 documents, 40 under an awkward name, and an empty one."""
    source = f"counts_src_{os.getpid()}"
    mongo.drop(source)
    db = mongo.client[source]
    db.docs.insert_many([{"_id": n, "word": f"w{n}"} for n in range(300)])
    db[ODD].insert_many([{"_id": f"o{n}", "n": n} for n in range(40)])
    db.create_collection("empty")
    made = _mongo.dump(_mongo.DumpRequest(
        connection=connection(mongo), database=source, tools_dir=os.environ["LIFEBOAT_TOOLS_BIN"],
        archive=_archive.ArchiveOptions(destination=str(tmp_path_factory.mktemp("counts")), job="counts")))
    assert made["manifest_data"]["counts"] == {f"{source}.docs": 300, f"{source}.{ODD}": 40, f"{source}.empty": 0}
    yield {"path": made["archive"], "manifest": made["manifest"], "source": source,
           "fingerprint": mongo.fingerprint(source)}
    mongo.drop(source)


def connection(mongo):
    return _mongo.MongoConnection.from_options(host=mongo.host, port=mongo.port, user=mongo.user,
                                               password_file=mongo.password_file, auth_database="admin")


def restore(mongo, path, target, **options):
    request = _mongo_restore.RestoreRequest(connection=connection(mongo), archive_path=path,
                                            target_database=target, tools_dir=os.environ["LIFEBOAT_TOOLS_BIN"],
                                            **options)
    return _mongo_restore.restore(request)


def seed_target(mongo, target):
    mongo.drop(target)
    mongo.client[target].docs.insert_many([{"_id": -n, "old": True} for n in range(1, 21)])
    mongo.client[target].keep.insert_many([{"_id": n} for n in range(5)])


@pytest.fixture
def server_counts(monkeypatch):
    """The staging collections the restore counted on the server (the real count still runs). The plan's count of
    a target that holds data (for its overwrite message and result) is not a check of the restore: left out."""
    counted: list[str] = []
    real = _mongo._count

    def spy(client, namespace):
        if STAGING.search(namespace):
            counted.append(STAGING.sub("", namespace))
        return real(client, namespace)

    monkeypatch.setattr(_mongo_restore, "_count", spy)
    return counted


def one_more(archive, tmp_path, collection="docs"):
    """A copy of the archive whose manifest promises one document more in ``collection``."""
    copy = tmp_path / "copy" / os.path.basename(archive["path"])
    copy.parent.mkdir()
    shutil.copy(archive["path"], copy)
    with open(archive["manifest"], encoding="utf-8") as handle:
        manifest = json.load(handle)
    manifest["counts"][f"{archive['source']}.{collection}"] += 1
    manifest["total_count"] += 1
    (copy.parent / os.path.basename(archive["manifest"])).write_text(json.dumps(manifest))
    resign(str(copy.parent / os.path.basename(archive["manifest"])))
    return str(copy)


@pytest.mark.parametrize("mode", ["new", "drop"])
def test_a_staged_restore_counts_what_the_server_acknowledged_without_reading_it_again(mode, mongo, archive,
                                                                                       server_counts, unique_name):
    options = {"overwrite": True, "drop": True} if mode == "drop" else {}
    if mode == "drop":
        seed_target(mongo, unique_name)
    try:
        result = restore(mongo, archive["path"], unique_name, **options)
        assert server_counts == []  # every collection, the awkward name and the empty one too, was reported
        assert result["counts"] == {f"{unique_name}.docs": 300, f"{unique_name}.{ODD}": 40, f"{unique_name}.empty": 0}
        after = mongo.fingerprint(unique_name)
        for key in ("counts", "hashes"):
            assert {c: after[key][c] for c in ("docs", ODD, "empty")} == archive["fingerprint"][key], key
    finally:
        mongo.drop(unique_name)


@pytest.mark.parametrize("mode", ["new", "drop"])
def test_an_acknowledged_count_off_by_one_leaves_the_target_as_it_was(mode, mongo, archive, server_counts, tmp_path,
                                                                      unique_name):
    options = {"overwrite": True, "drop": True} if mode == "drop" else {}
    if mode == "drop":
        seed_target(mongo, unique_name)
    before = mongo.fingerprint(unique_name) if mode == "drop" else None
    try:
        with pytest.raises(LifeboatError) as failure:
            restore(mongo, one_more(archive, tmp_path), unique_name, **options)
        message = str(failure.value)
        assert f"is incomplete: {unique_name}.docs: 301 in the archive, 300 after restore" in message, message
        assert message.endswith(UNCHANGED) and "\n" not in message, message
        assert server_counts == []  # found by the acknowledged counts alone
        if mode == "drop":
            assert mongo.fingerprint(unique_name) == before
        else:
            assert not mongo.has_database(unique_name)
        assert not [c for c in mongo.client[archive["source"]].list_collection_names() if c.startswith("lifeboat_")]
    finally:
        mongo.drop(unique_name)


def test_a_merge_is_counted_on_the_server(mongo, archive, server_counts, tmp_path, unique_name):
    """Its staging collection starts as a copy of the target, which mongorestore's figures do not cover."""
    seed_target(mongo, unique_name)
    before = mongo.fingerprint(unique_name)
    try:
        with pytest.raises(LifeboatError) as failure:
            restore(mongo, one_more(archive, tmp_path), unique_name, overwrite=True)
        # 20 documents of the target and the 301 the manifest promises; the server holds 20 + 300.
        assert f"{unique_name}.docs: 321 in the archive, 320 after restore" in str(failure.value), failure.value
        assert mongo.fingerprint(unique_name) == before
        # The only target that existed (its copy is the start of the staging); the others were new: acknowledged.
        assert server_counts == [f"{unique_name}.docs"]
        server_counts.clear()
        result = restore(mongo, archive["path"], unique_name, overwrite=True)
        assert result["counts"][f"{unique_name}.docs"] == 320 == mongo.client[unique_name].docs.count_documents({})
        assert server_counts == [f"{unique_name}.docs"]
    finally:
        mongo.drop(unique_name)


def test_a_collection_mongorestore_does_not_report_is_counted_on_the_server(mongo, archive, server_counts,
                                                                            monkeypatch, tmp_path, unique_name):
    monkeypatch.setattr(_mongo_restore, "_FINISHED", re.compile(r"(?!)"))  # as if no collection's line were readable
    try:
        result = restore(mongo, archive["path"], unique_name)
        assert len(server_counts) == 3
        assert result["counts"] == {f"{unique_name}.docs": 300, f"{unique_name}.{ODD}": 40, f"{unique_name}.empty": 0}
        mongo.drop(unique_name)
        server_counts.clear()
        with pytest.raises(LifeboatError) as failure:
            restore(mongo, one_more(archive, tmp_path), unique_name)
        assert f"{unique_name}.docs: 301 in the archive, 300 after restore" in str(failure.value), failure.value
        assert len(server_counts) == 3 and not mongo.has_database(unique_name)
    finally:
        mongo.drop(unique_name)


def test_two_collections_renamed_onto_one_are_refused_and_the_target_is_untouched(mongo, archive, server_counts,
                                                                                  unique_name):
    """mongorestore refuses it (so one line per staging collection is all there is; the restore would sum two)."""
    source = archive["source"]
    try:
        with pytest.raises(LifeboatError) as failure:
            restore(mongo, archive["path"], None, ns_include=[f"{source}.docs", f"{source}.{ODD}"],
                    ns_from=[f"{source}.docs", f"{source}.{ODD}"], ns_to=[f"{unique_name}.docs"] * 2)
        message = str(failure.value)
        assert "cannot restore with conflicting namespace destinations" in message, message
        assert message.endswith(UNCHANGED), message
        assert server_counts == [] and not mongo.has_database(unique_name)
    finally:
        mongo.drop(unique_name)
