# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A files job's paths are checked before anything is read: each refusal is one line that names the real problem."""

from __future__ import annotations

import os

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _files_source
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError


@pytest.mark.parametrize("through", ["itself", "a parent"])
def test_a_symlink_loop_is_named_as_such(tmp_path, through):
    """Before: "not readable by this user; run the job as a user that may read it", even as root."""
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    path = str(tmp_path / "a") if through == "itself" else str(tmp_path / "a" / "uploads")
    with pytest.raises(LifeboatError) as refused:
        _files_source.check_path(path)
    assert str(refused.value) == (f"symlink loop at {path}: its links never reach a file or folder; give the real "
                                  "path")


def test_a_link_to_a_folder_is_still_taken(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert _files_source.check_path(str(tmp_path / "link")) == str(tmp_path / "link")
