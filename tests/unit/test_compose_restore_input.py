# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A compose app's restore by job name: what it takes, decided in the library, and bad input in one line."""

from __future__ import annotations

import datetime as _dt

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import (
    _catalog,
    _compose_restore,
    _files_source,
    _sources,
    _verify,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

JOBS = [{"name": "recipes-db", "engine": "postgresql", "container": "recipes-db-1"},
        {"name": "recipes-mongo", "engine": "mongodb", "container": "recipes-mongo-1"},
        {"name": "recipes-files", "engine": "files", "volumes": ["recipes_uploads"], "paths": []}]


@pytest.mark.parametrize("wanted, chosen", [
    ([], ["recipes-db", "recipes-mongo", "recipes-files"]),
    (["files", "db"], ["recipes-db", "recipes-files"]),  # the project's order, whatever the item's
    (["recipes-mongo"], ["recipes-mongo"]),
])
def test_parts_are_named_with_or_without_the_project(wanted, chosen):
    assert [job["name"] for job in _compose_restore._chosen_parts("recipes", JOBS, wanted)] == chosen


def test_an_unknown_part_names_the_parts_there_are():
    with pytest.raises(LifeboatError) as error:
        _compose_restore._chosen_parts("recipes", JOBS, ["cache"])
    assert str(error.value) == "compose project recipes has no part 'cache'; its parts are db, mongo, files"


@pytest.mark.parametrize("text, moment", [
    ("2026-11-22T03:00:00Z", _dt.datetime(2026, 11, 22, 3, tzinfo=_dt.UTC)),
    ("2026-11-22 03:00:00", _dt.datetime(2026, 11, 22, 3, tzinfo=_dt.UTC)),  # UTC when no zone is given
    ("2026-11-22T04:00:00+01:00", _dt.datetime(2026, 11, 22, 3, tzinfo=_dt.UTC)),
    (None, None),
])
def test_as_of_is_an_iso_time(text, moment):
    assert _compose_restore.as_of_time(text) == moment


@pytest.mark.parametrize("request_args, message", [
    ({"as_of": "last tuesday", "root": "/b"},
     "as_of 'last tuesday' is no time; give it as 2026-11-22T03:00:00Z (ISO 8601)"),
    ({}, "give root (each part's archives in ROOT/PROJECT-PART) or destination (one directory for every part), not "
         "both or neither"),
    ({"root": "/b", "destination": "/c"}, "give root (each part's archives in ROOT/PROJECT-PART) or destination (one "
                                          "directory for every part), not both or neither"),
    ({"root": "/b", "select": "oldest"}, "select must be one of newest_verified, newest, not 'oldest'"),
    ({"root": "/b", "health_timeout": -1}, "health_timeout must be 0 or more seconds, not -1"),
])
def test_bad_input_is_one_line(request_args, message):
    with pytest.raises(LifeboatError) as error:
        _compose_restore.Request(project="recipes", **request_args).validate()
    assert str(error.value) == message


def test_a_part_without_a_backup_directory_says_to_back_up_first(tmp_path):
    with pytest.raises(LifeboatError) as error:
        _compose_restore.choose_archive(str(tmp_path / "recipes-db"), "recipes-db", "newest_verified", None, None)
    assert str(error.value) == (f"part recipes-db has no backup directory {tmp_path}/recipes-db; back the project up "
                                "first (or give root/destination where its archives are)")


@pytest.mark.parametrize("job, manifest", [
    ("lbt-cj-dashboard-548b4261-mongo", {"database": None, "counts": {"admin.system.users": 1, "dashboard.events": 3}}),
    ("a" * 80, {"database": None, "counts": {"d" * 20 + ".c": 1}}),
    ("journal", {"database": "journal", "counts": {"public.entries": 1}}),
])
def test_a_scratch_database_name_fits_63_bytes_with_each_database_of_a_whole_server(job, manifest):
    archive = _catalog.Archive(path=f"/b/{job}-20261122T030000Z.mongo.archive.zst", job=job,
                               started_at=_dt.datetime.now(_dt.UTC), manifest=manifest)
    prefix = _verify.scratch_prefix(archive)
    databases = [name.split(".")[0] for name in manifest["counts"]] if not manifest["database"] else [""]
    names = [f"{prefix}_01234567" + (f"_{database}" if database else "") for database in databases]
    assert all(len(name.encode()) <= 63 for name in names), names
    assert prefix.startswith("lifeboat_verify_" + job.replace("-", "_")[:8])


def test_a_failure_after_a_part_was_restored_names_the_parts_that_changed_and_where_their_data_went(monkeypatch):
    parts = [_compose_restore.Part(job="recipes-db", engine="postgresql", container="recipes-db-1", request="db"),
             _compose_restore.Part(job="recipes-mongo", engine="mongodb", container="recipes-mongo-1", request="mongo")]
    monkeypatch.setattr(_compose_restore, "plan", lambda request: {"app": {}, "parts": parts, "stop_apps": [],
                                                                   "stop_databases": []})

    class Engine:
        def restore_planned(self, request, plan):
            if request == "mongo":  # the second part fails (the real restores are all or nothing each)
                raise LifeboatError("the restored collections hold 3 documents, the archive 4")
            return {"counts": {"public.recipes": 120}, "safety_dump": "/s/recipes-before-restore.pgdump.zst"}

    monkeypatch.setattr(_sources, "get", lambda engine: Engine())
    with pytest.raises(LifeboatError) as error:
        _compose_restore.restore(_compose_restore.Request(project="recipes", root="/b"))
    assert str(error.value) == (
        "part recipes-mongo: the restored collections hold 3 documents, the archive 4; compose project recipes is "
        "restored only in part: recipes-db restored already from the set (what they held before is in "
        "/s/recipes-before-restore.pgdump.zst)")


def test_a_files_restore_that_fails_in_a_later_root_names_the_roots_it_replaced(monkeypatch):
    roots = [{"kind": "volume", "name": "uploads"}, {"kind": "path", "name": "/srv/app/compose.yml"}]
    targets = [_files_source.Target(item, item["kind"], item["name"], f"/x/{item['name']}", True, True)
               for item in roots]
    monkeypatch.setattr(_files_source, "load_trusted", lambda path, trust: {"job": "recipes-files"})
    monkeypatch.setattr(_files_source, "plan_restore", lambda request, manifest: targets)
    monkeypatch.setattr(_files_source, "safety_dump_options", lambda *args: None)
    monkeypatch.setattr(_files_source, "dump", lambda request: {"archive": "/b/recipes-files-before-restore.tar.zst"})

    def restore_one(request, manifest, target):
        if target.kind == "path":
            raise LifeboatError("restored path:/srv/app/compose.yml differs from the archive (mode); "
                                "path:/srv/app/compose.yml was left as it was")
        return 3

    monkeypatch.setattr(_files_source, "_restore_one", restore_one)
    with pytest.raises(LifeboatError) as error:
        _files_source.restore(_files_source.RestoreRequest(archive_path="/b/recipes-files.tar.zst", overwrite=True))
    assert str(error.value) == (
        "restored path:/srv/app/compose.yml differs from the archive (mode); path:/srv/app/compose.yml was left as it "
        "was; volume:uploads restored already (what they held is in /b/recipes-files-before-restore.tar.zst)")
