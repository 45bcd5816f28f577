# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing the PostgreSQL client that matches the server, among several installed side by side."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _postgres, _postgres_restore
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError


@pytest.fixture
def clients(tmp_path, monkeypatch):
    """Stand-in pg_dump programs for majors 13, 15 and 16 in a Debian-like layout; none on PATH."""
    for major in (13, 15, 16):
        bindir = tmp_path / "postgresql" / str(major) / "bin"
        bindir.mkdir(parents=True)
        fake = bindir / "pg_dump"
        fake.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {major}.4 (Debian {major}.4-1)'\n")
        fake.chmod(0o755)
    monkeypatch.setattr(_postgres, "CLIENT_DIR_GLOBS", [str(tmp_path / "postgresql" / "*" / "bin")])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return tmp_path


@pytest.mark.parametrize(("server", "chosen"), [(15, 15), (13, 13), (14, 15), (16, 16)])
def test_matching_or_next_newer_client(clients, server, chosen):
    path, version = _postgres.pick_binary("pg_dump", server)
    assert path == str(clients / "postgresql" / str(chosen) / "bin" / "pg_dump")
    assert version.startswith(f"pg_dump (PostgreSQL) {chosen}.4")


def test_client_older_than_server_is_refused(clients):
    with pytest.raises(LifeboatError) as failure:
        _postgres.pick_binary("pg_dump", 17)
    assert str(failure.value) == (
        "pg_dump 16 is older than the server (PostgreSQL 17) and cannot work with it; "
        "install postgresql-client-17 or set pg_bin_dir to a version-17 client"
    )


def test_explicit_bin_dir(clients):
    path, _version = _postgres.pick_binary("pg_dump", 13, str(clients / "postgresql" / "13" / "bin"))
    assert path.endswith("/13/bin/pg_dump")
    with pytest.raises(LifeboatError, match="pg_dump not found in pg_bin_dir /nowhere"):
        _postgres.pick_binary("pg_dump", 13, "/nowhere")


@pytest.mark.parametrize("database", ["journal", "a" * 63, "ünïcödé_" * 8, 'we"ird name'])
def test_side_database_names_fit_and_are_recognised(database):
    name = _postgres_restore.side_prefix(database) + "0123abcd"
    assert len(name.encode()) <= 63, "PostgreSQL would cut a longer name and the prefix would no longer match"
    assert _postgres_restore.is_side_database(name, database)
    assert not _postgres_restore.is_side_database(name, database + "x")
    assert not _postgres_restore.is_side_database(name + "0", database)


def test_side_databases_of_one_target_are_not_those_of_a_similar_one():
    # The side database of "a_0123abcd" starts like one of "a": the whole-name match tells them apart.
    assert not _postgres_restore.is_side_database(_postgres_restore.side_prefix("a_0123abcd") + "deadbeef", "a")


@pytest.mark.parametrize(("stored", "elements"), [
    ('"$user", public, "My S"', ["$user", "public", "My S"]),
    ('"x; SELECT 1", "say ""hi"""', ["x; SELECT 1", 'say "hi"']),
    ("public", ["public"]),
])
def test_list_settings_are_split_into_their_elements(stored, elements):
    assert _postgres_restore._list_elements(stored) == elements  # pylint: disable=protected-access


def test_the_disk_is_checked_only_where_the_servers_own_pg_control_is(tmp_path):
    """A data directory path seen on this host may be another cluster's (a container, another server at the
    same path): only the system identifier of its pg_control tells. The match with the real server's own file
    is checked by the integration tests (disk_space checked)."""
    system_id = 7309541585061418934
    (tmp_path / "global").mkdir()
    (tmp_path / "global" / "pg_control").write_bytes(struct.pack("=Q", system_id) + bytes(64))
    assert _postgres_restore._is_local_cluster(str(tmp_path), system_id)  # pylint: disable=protected-access
    assert not _postgres_restore._is_local_cluster(str(tmp_path), system_id + 1)  # pylint: disable=protected-access
    assert not _postgres_restore._is_local_cluster(str(tmp_path / "absent"), system_id)  # pylint: disable=protected-access
