# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A manifest rewritten by root (a verification run by hand) keeps the owner the backup service gave it."""

from __future__ import annotations

import os

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils._files import write_file_atomic


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_rewrite_by_root_keeps_the_owner(tmp_path):
    path = tmp_path / "journal-20261122T030000Z.pgdump.manifest.json"
    path.write_text("{}")
    os.chown(path, 65534, 65534)
    write_file_atomic(str(path), b'{"verifications": []}\n')
    stat = os.stat(path)
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (65534, 65534, 0o600)
    assert path.read_bytes() == b'{"verifications": []}\n'


def test_a_new_file_belongs_to_its_writer(tmp_path):
    path = tmp_path / "new.manifest.json"
    write_file_atomic(str(path), b"{}\n")
    assert os.stat(path).st_uid == os.geteuid()
    assert sorted(os.listdir(tmp_path)) == ["new.manifest.json"]
