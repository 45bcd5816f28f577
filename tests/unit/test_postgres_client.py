# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing the PostgreSQL client that matches the server, among several installed side by side."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _postgres
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
