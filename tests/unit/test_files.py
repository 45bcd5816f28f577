# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one atomic writer (manifests, run records, reports, the probe runner's state, metrics): the old file or the
new one, whole, with the mode asked for, and nothing left behind. ArchiveFile's tests are in test_pipeline.py."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _files
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError


def test_write_file_atomic_replaces_whole_with_the_mode_asked_for(tmp_path):
    path = tmp_path / "state.json"
    old_umask = os.umask(0o022)
    try:
        _files.write_file_atomic(str(path), b"old\n")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # the default: private
        _files.write_file_atomic(str(path), b"new" * 100000, 0o640)
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new" * 100000
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_bytes(b"old\n")

    def fail(fd: int, data: bytes) -> None:
        os.write(fd, data[:2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files, "write_all", fail)
    with pytest.raises(OSError, match="No space left"):
        _files.write_file_atomic(str(path), b"new content\n")
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    """A process killed in the middle of a write (SIGKILL: no cleanup runs) never leaves a half file in place."""
    path = tmp_path / "state.json"
    path.write_bytes(b"old\n")
    script = ("import os, signal, sys\n"
              "from ansible_collections.lifeboat.ops.plugins.module_utils import _files\n"
              "def die(fd, data):\n"
              "    os.write(fd, data[:3])\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "_files.write_all = die\n"
              "_files.write_file_atomic(sys.argv[1], b'new content\\n')\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], env={**os.environ, "PYTHONPATH": os.pathsep.join(
        entry for entry in sys.path if os.path.isdir(os.path.join(entry, "ansible_collections")))}, check=False)
    assert done.returncode == -9
    assert path.read_bytes() == b"old\n"
    names = sorted(os.listdir(tmp_path))
    assert names[0] == "state.json" and len(names) == 2
    assert re.fullmatch(r"state\.json\.partial-[0-9]+", names[1])  # the dead writer's, under a name nobody reads


def test_sha256_file_and_its_one_line_error(tmp_path):
    path = tmp_path / "a"
    path.write_bytes(b"abc")
    assert _files.sha256_file(str(path)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(LifeboatError, match=r"^cannot read archive .*/missing: No such file or directory$"):
        _files.sha256_file(str(tmp_path / "missing"))


def test_exchange_paths_swaps_a_folder_and_a_file_in_one_step(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "inside").write_text("in the folder\n")
    (tmp_path / "file").write_text("a file\n")
    assert _files.exchange_paths(str(tmp_path / "folder"), str(tmp_path / "file")) is True
    assert (tmp_path / "folder").read_text() == "a file\n"
    assert (tmp_path / "file" / "inside").read_text() == "in the folder\n"


def test_exchange_paths_names_what_is_missing_and_falls_back_where_it_cannot(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    with pytest.raises(FileNotFoundError):
        _files.exchange_paths(str(tmp_path / "here"), str(tmp_path / "not-there"))

    class NoRenameat2:  # a C library without it (glibc < 2.28): the caller renames twice instead
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

    monkeypatch.setattr(_files.ctypes, "CDLL", NoRenameat2)
    assert _files.exchange_paths(str(tmp_path / "here"), str(tmp_path / "not-there")) is False
