# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failures leave nothing behind and say why in one line; empty dumps and short restores are failures."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from testbed import MONGO_SOURCE, PG_SOURCE, children, finish_module, listing, resign, start_module


def wrong_password_file(tmp_path):
    path = tmp_path / "wrong.password"
    path.write_text("not-the-password\n")
    path.chmod(0o600)
    return str(path)


def assert_one_line_and_nothing_left(run, destination, expected):
    assert run.rc != 0
    message = run.result["msg"]
    assert "\n" not in message and "Traceback" not in run.stdout + run.stderr
    assert expected in message, message
    assert listing(destination) == [], listing(destination)


def test_postgresql_wrong_password(pg, run_module, tmp_path):
    run = run_module("postgresql_dump", {**pg.login(database=PG_SOURCE, destination=str(tmp_path / "out")),
                                         "login_password_file": wrong_password_file(tmp_path)})
    assert_one_line_and_nothing_left(run, tmp_path / "out", "password authentication failed")


def test_mongodb_wrong_password(mongo, run_module, tmp_path):
    run = run_module("mongodb_dump", {**mongo.login(database=MONGO_SOURCE, destination=str(tmp_path / "out")),
                                      "login_password_file": wrong_password_file(tmp_path)})
    assert_one_line_and_nothing_left(run, tmp_path / "out", "cannot connect to MongoDB at 127.0.0.1")
    assert "Authentication failed" in run.result["msg"]


def test_postgresql_unreachable(pg, run_module, tmp_path):
    run = run_module("postgresql_dump", {**pg.login(database=PG_SOURCE, destination=str(tmp_path / "out")),
                                         "login_port": 1, "connect_timeout": 3})
    assert_one_line_and_nothing_left(run, tmp_path / "out", f"cannot connect to PostgreSQL at 127.0.0.1:1/{PG_SOURCE}")


def test_mongodb_unreachable(mongo, run_module, tmp_path):
    run = run_module("mongodb_dump", {**mongo.login(database=MONGO_SOURCE, destination=str(tmp_path / "out")),
                                      "login_port": 1, "connect_timeout": 2})
    assert_one_line_and_nothing_left(run, tmp_path / "out", "cannot connect to MongoDB at 127.0.0.1:1")


def kill_child_when_streaming(process, name, destination, timeout=60):
    """SIGKILL the `name` process below `process` once its archive has received a megabyte."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        partial = [entry for entry in os.scandir(destination) if ".partial" in entry.name] if destination.is_dir() else []
        if not partial or partial[0].stat().st_size < 1 << 20:
            time.sleep(0.005)
            continue
        for pid, _argv in children(process.pid, name):
            os.kill(pid, signal.SIGKILL)
            return
    raise AssertionError(f"no {name} process streamed into {destination}")


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_dump_killed_halfway(engine, server, big_source, tmp_path):
    destination = tmp_path / "out"
    process = start_module(f"{engine}_dump", server.login(database=big_source,
                                                          destination=str(destination), compression="none"), tmp_path)
    kill_child_when_streaming(process, "pg_dump" if engine == "postgresql" else "mongodump", destination)
    run = finish_module(process)
    tool = "pg_dump" if engine == "postgresql" else "mongodump"
    assert_one_line_and_nothing_left(run, destination, f"{tool} failed: killed by signal 9")


@pytest.fixture
def small_tmpfs(tmpfs):
    return tmpfs("2m")


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_terminated_module_cleans_up(engine, server, big_source, tmp_path, monkeypatch):
    """A task timeout or a lost ssh session sends SIGTERM: no partial archive, no private file stays."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    destination = tmp_path / "out"
    process = start_module(f"{engine}_dump", server.login(database=big_source,
                                                          destination=str(destination), compression="none"), tmp_path)
    deadline = time.time() + 60
    while not [e for e in os.scandir(destination) if ".partial" in e.name] if destination.is_dir() else True:
        assert time.time() < deadline, "the dump never started writing"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    run = finish_module(process)
    assert_one_line_and_nothing_left(run, destination, "stopped by SIGTERM before the work was done")
    assert os.listdir(private_tmp) == []


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_destination_full(engine, server, big_source, run_module, small_tmpfs):
    run = run_module(f"{engine}_dump", server.login(database=big_source,
                                                    destination=str(small_tmpfs)))
    assert_one_line_and_nothing_left(run, small_tmpfs, "No space left on device")


def test_dump_of_nothing_from_a_database_with_rows_fails(pg, run_module, tmp_path):
    run = run_module("postgresql_dump", pg.login(database=PG_SOURCE, destination=str(tmp_path / "out"),
                                                 exclude_table_data=["*"]))
    assert_one_line_and_nothing_left(run, tmp_path / "out", f"pg_dump wrote no table data although {PG_SOURCE} has tables with rows")


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_restore_that_does_not_match_the_manifest_fails(engine, server, run_module, tmp_path, unique_name):
    """A manifest that promises more than the archive holds: the count check after the restore catches it."""
    source = server.sample
    dumped = run_module(f"{engine}_dump", server.login(database=source, destination=str(tmp_path)))
    assert dumped.rc == 0, dumped.result
    manifest_path = dumped.result["manifest"]
    manifest = json.loads(open(manifest_path, encoding="utf-8").read())
    name = sorted(manifest["counts"])[0]
    manifest["counts"][name] += 1
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    resign(manifest_path)  # a backup that wrote a wrong count (a bug), not a writer to the directory
    target = {"target_database": unique_name}
    try:
        run = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"], **target))
        assert run.rc != 0
        assert "is incomplete" in run.result["msg"] and name.split(".", 1)[1] in run.result["msg"], run.result["msg"]
        # What the failed restore created is gone: a half restore never passes for a whole one.
        assert "this restore created w" in run.result["msg"] and " dropped" in run.result["msg"]
        assert not server.has_database(unique_name)
    finally:
        server.drop(unique_name)


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_damaged_archive_is_refused_before_restoring(engine, server, run_module, tmp_path, unique_name):
    source = server.sample
    dumped = run_module(f"{engine}_dump", server.login(database=source, destination=str(tmp_path)))
    with open(dumped.result["archive"], "r+b") as handle:
        handle.seek(os.path.getsize(dumped.result["archive"]) // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    run = run_module(f"{engine}_restore", server.login(archive=dumped.result["archive"], target_database=unique_name))
    assert run.rc != 0
    assert "does not match its manifest" in run.result["msg"]
    assert not server.has_database(unique_name)


def test_mongodump_that_writes_nothing_is_a_failure(mongo, run_module, tmp_path):
    """A tool that exits 0 with an empty stream (a stand-in for a broken mongodump build) must not pass."""
    tools = tmp_path / "tools"
    tools.mkdir()
    fake = tools / "mongodump"
    fake.write_text("#!/bin/sh\necho 'writing nothing' >&2\nexit 0\n")
    fake.chmod(0o755)
    run = run_module("mongodb_dump", mongo.login(database=MONGO_SOURCE, destination=str(tmp_path / "out"),
                                                 tools_dir=str(tools)))
    assert_one_line_and_nothing_left(run, tmp_path / "out", f"mongodump wrote no documents although {MONGO_SOURCE}.")
