# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A restore given an archive's manifest restores the archive, and says so; a lone manifest is named as one."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils._archive import (
    check_describes,
    resolve_archive,
    verify_archive,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._codecs import Decryption
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError


def test_the_manifests_archive_is_restored(tmp_path):
    archive = tmp_path / "journal-20261122T030000Z.pgdump.zst"
    archive.write_bytes(b"x")
    manifest = tmp_path / f"{archive.name}.manifest.json"
    manifest.write_text("{}")
    assert resolve_archive(str(archive)) == (str(archive), None)
    assert resolve_archive(str(manifest)) == (
        str(archive), f"{manifest} is a manifest: restoring the archive it describes, {archive}")


def test_a_manifest_without_its_archive_is_named_as_such(tmp_path):
    manifest = tmp_path / "journal-20261122T030000Z.pgdump.zst.manifest.json"
    manifest.write_text("{}")
    with pytest.raises(LifeboatError, match=r"is the manifest of an archive, not an archive, and its archive "
                                            r"journal-20261122T030000Z\.pgdump\.zst is not beside it"):
        resolve_archive(str(manifest))
    with pytest.raises(LifeboatError, match=r"is the manifest of an archive, not an archive; give the archive "):
        verify_archive(str(manifest), "postgresql", Decryption())


def test_a_manifest_proves_only_the_file_it_names(tmp_path):
    archive = tmp_path / "journal-20261122T040000Z.pgdump.zst"
    archive.write_bytes(b"xyz")
    check_describes(str(archive), {"archive": {"file": archive.name, "size": 3}})
    with pytest.raises(LifeboatError, match=r"manifest describes journal-20261122T030000Z\.pgdump\.zst, not "
                                            r"journal-20261122T040000Z\.pgdump\.zst: the archive was renamed"):
        check_describes(str(archive), {"archive": {"file": "journal-20261122T030000Z.pgdump.zst", "size": 3}})
    with pytest.raises(LifeboatError, match=r"has 3 bytes, its manifest says 4; the file is damaged or was replaced"):
        check_describes(str(archive), {"archive": {"file": archive.name, "size": 4}})
