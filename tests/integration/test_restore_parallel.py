# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parallel restores: pg_restore -j from a directory-format archive unpacked in the one read, and mongorestore's
--numParallelCollections / --numInsertionWorkersPerCollection from the module's options.

The real tools run, behind a wrapper that notes the arguments each got before it hands over to them.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _pipeline, _postgres_restore, _sources


def noting_wrapper(folder, name, real, log):
    """``folder/name``: a script that appends its arguments to ``log``, then runs ``real`` with them."""
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return str(folder)


def test_mongorestore_gets_the_parallelism_options(mongo, run_module, tmp_path, unique_name):
    dumped = run_module("mongodb_dump", mongo.login(database=mongo.sample, destination=str(tmp_path / "a")))
    assert dumped.rc == 0, dumped.result
    log = tmp_path / "argv.log"
    tools = noting_wrapper(tmp_path / "tools", "mongorestore",
                           os.path.join(os.environ["LIFEBOAT_TOOLS_BIN"], "mongorestore"), log)
    try:
        run = run_module("mongodb_restore", mongo.login(archive=dumped.result["archive"], target_database=unique_name,
                                                        tools_dir=tools, parallel_collections=3,
                                                        insertion_workers_per_collection=2))
        assert run.rc == 0, run.result
        assert run.result["counts"] == run.result["expected_counts"]
        assert "--numParallelCollections=3 --numInsertionWorkersPerCollection=2" in log.read_text()
    finally:
        mongo.drop(unique_name)


def test_mongorestore_defaults_suit_a_small_host(mongo, run_module, tmp_path, unique_name):
    dumped = run_module("mongodb_dump", mongo.login(database=mongo.sample, destination=str(tmp_path / "a")))
    log = tmp_path / "argv.log"
    tools = noting_wrapper(tmp_path / "tools", "mongorestore",
                           os.path.join(os.environ["LIFEBOAT_TOOLS_BIN"], "mongorestore"), log)
    try:
        run = run_module("mongodb_restore", mongo.login(archive=dumped.result["archive"], target_database=unique_name,
                                                        tools_dir=tools))
        assert run.rc == 0, run.result
        assert "--numParallelCollections=2 --numInsertionWorkersPerCollection=1" in log.read_text()
    finally:
        mongo.drop(unique_name)


@pytest.mark.parametrize("option", ["parallel_collections", "insertion_workers_per_collection"])
def test_no_parallelism_is_refused_in_one_line(mongo, run_module, tmp_path, unique_name, option):
    dumped = run_module("mongodb_dump", mongo.login(database=mongo.sample, destination=str(tmp_path / "a")))
    run = run_module("mongodb_restore", mongo.login(archive=dumped.result["archive"], target_database=unique_name,
                                                    **{option: 0}))
    assert run.rc != 0 and run.result["msg"] == f"{option} must be 1 or more, not 0", run.result
    assert not mongo.has_database(unique_name)


def test_no_pg_restore_job_is_refused_in_one_line(pg, run_module, tmp_path, unique_name):
    """jobs: 0 is refused, not taken for the default 1 (the request builder once read it with `or 1`)."""
    dumped = run_module("postgresql_dump", pg.login(database=pg.sample, destination=str(tmp_path / "a")))
    run = run_module("postgresql_restore", pg.login(archive=dumped.result["archive"], target_database=unique_name,
                                                    jobs=0))
    assert run.rc != 0 and run.result["msg"] == "jobs must be 1 or more", run.result


def test_a_directory_format_archive_restores_with_jobs_in_one_read(
        pg, run_module, tmp_path, unique_name, monkeypatch):
    dumped = run_module("postgresql_dump", pg.login(database=pg.sample, destination=str(tmp_path / "a"),
                                                    format="directory", jobs=2))
    assert dumped.rc == 0, dumped.result
    assert dumped.result["archive"].endswith(".pgdir.tar.zst")
    log = tmp_path / "argv.log"
    bin_dir = noting_wrapper(tmp_path / "bin", "pg_restore",
                             os.path.join(os.environ["LIFEBOAT_PG_BINDIR"], "pg_restore"), log)
    opened = []
    real_open = os.open

    def counted(path, flags, *args, **kwargs):
        if flags == os.O_RDONLY:
            opened.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(_pipeline.os, "open", counted)
    try:
        result = _postgres_restore.restore(_postgres_restore.RestoreRequest(
            connection=_sources.get("postgresql").connection(pg.login()), archive_path=dumped.result["archive"],
            target_database=unique_name, jobs=2, pg_bin_dir=bin_dir))
        assert result["counts"] == dumped.result["counts"]
        assert opened.count(dumped.result["archive"]) == 1, opened
        assert [line for line in log.read_text().splitlines() if "--jobs=2" in line], log.read_text()
        assert pg.fingerprint(unique_name)["counts"] == pg.fingerprint(pg.sample)["counts"]
    finally:
        pg.drop(unique_name)
