# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private files never outlive their process: secrets in anonymous files, directories swept once their owner died."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _common
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError, PrivateDir
from ansible_collections.lifeboat.ops.plugins.module_utils._pipeline import run_tool


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_a_secret_reaches_only_the_child_that_names_it_and_no_disk(tmp_path):
    with PrivateDir(str(tmp_path)) as private:
        path = private.secret_file("tools.yaml", "uri: secret\n")
        assert path.startswith("/dev/fd/")
        assert os.listdir(private.path) == []  # nothing written to any directory
        seen: list[bytes] = []
        run_tool("cat", ["cat", path], on_stdout=seen.append)
        assert b"".join(seen) == b"uri: secret\n"

        def open_files(*extra: str) -> bytes:
            listed: list[bytes] = []
            run_tool("sh", ["sh", "-c", "for fd in /proc/$$/fd/*; do readlink $fd; done; true", *extra],
                     on_stdout=listed.append)
            return b"".join(listed)

        assert b"memfd:lifeboat-tools.yaml" in open_files(path)
        assert b"memfd:lifeboat-tools.yaml" not in open_files()  # a child that does not name it does not get it
    assert _common.secret_fds_for([path]) == ()  # closed with the PrivateDir
    assert not os.path.exists(private.path)


def test_private_directories_of_dead_owners_are_swept_by_the_next_one(tmp_path):
    gone = tmp_path / f".lifeboat-{dead_pid()}-abcd1234"
    gone.mkdir()
    (gone / "tools.yaml").write_text("uri: mongodb://u:secret@h/\n")
    mine = tmp_path / f".lifeboat-{os.getpid()}-efgh5678"
    mine.mkdir()
    legacy_fresh, legacy_stale = tmp_path / ".lifeboat-q1w2e3r4", tmp_path / ".lifeboat-t5y6u7i8"
    legacy_fresh.mkdir()
    legacy_stale.mkdir()
    stale = time.time() - _common.LEFTOVER_GRACE_SECONDS - 60
    os.utime(legacy_stale, (stale, stale))
    not_ours = tmp_path / ".lifeboat-last-run-journal.json"
    not_ours.write_text("{}")
    with PrivateDir(str(tmp_path)) as private:
        left = sorted(os.listdir(tmp_path))
        assert left == sorted([mine.name, legacy_fresh.name, not_ours.name, os.path.basename(private.path)])
        assert os.path.basename(private.path).startswith(f".lifeboat-{os.getpid()}-")


def test_a_directory_whose_owner_holds_its_lock_stays_even_when_its_pid_looks_dead(tmp_path):
    """A container's process: its PID means nothing here, its lock does."""
    container = tmp_path / f".lifeboat-{dead_pid()}-cont4iner"
    container.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_SH); print('locked', flush=True); "
                               "time.sleep(60)", str(container)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert _common.sweep_private_dirs(str(tmp_path)) == []
    finally:
        holder.kill()
        holder.wait()
    assert _common.sweep_private_dirs(str(tmp_path)) == [str(container)]


def test_a_missing_program_says_what_to_install_and_names_only_real_options(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LifeboatError) as caught:
        _common.find_binary("age")
    assert str(caught.value) == "age was not found in PATH; install the age package (apt install age)"
    with pytest.raises(LifeboatError) as caught:
        _common.find_binary("mongodump", ["/opt/tools"])
    assert str(caught.value) == ("mongodump was not found in /opt/tools or PATH; install the MongoDB Database Tools "
                                 "(mongodb-database-tools) or set tools_dir to their directory")
    assert "point the module" not in str(caught.value)


def test_only_the_descriptors_an_argv_names_exactly_are_passed(tmp_path):
    with PrivateDir(str(tmp_path)) as private:
        paths = [private.secret_file(f"s{index}", "x") for index in range(12)]
        numbers = [int(path.rpartition("/")[2]) for path in paths]
        assert _common.secret_fds_for(["tool", f"--config={paths[0]}"]) == (numbers[0],)
        assert _common.secret_fds_for(["tool", f"--config=/dev/fd/{numbers[0]}0"]) == tuple(
            number for number in numbers if number == numbers[0] * 10)
        assert _common.secret_fds_for(["tool", "--config=/dev/fd/1"]) == ()


def test_a_writer_takes_its_lock_even_while_a_sweeper_tests_it(tmp_path):
    """lock_owner_alive holds the file's lock for an instant: a writer locking then must wait, not go without."""
    path = tmp_path / ".app-20261101T030000Z.pgdump.zst.partial-1"
    path.write_bytes(b"x")
    tester = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('testing', flush=True); time.sleep(0.5)",
                               str(path)], stdout=subprocess.PIPE, text=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert tester.stdout.readline() == "testing\n"
        _common.hold_lock(fd)
        tester.wait()
        assert _common.lock_owner_alive(str(path)) is True
    finally:
        os.close(fd)
        tester.kill()
        tester.wait()
    assert _common.lock_owner_alive(str(path)) is False
