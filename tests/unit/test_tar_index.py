# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files archive's index (_tar_index): GNU tar's own POSIX stream of an awkward tree, read as it passes. The
common member is decoded in place, anything else by tarfile: both must give the same rows, the rows must be the
tree's own (as walk() reads it from disk), however the stream is cut into chunks. The round trips through the
real Docker engine are in tests/integration/test_files_archives.py."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _files_source, _tar_index
from ansible_collections.lifeboat.ops.plugins.module_utils._structure import StructureError


@pytest.fixture
def awkward_tree(tmp_path):
    """Names past ustar's 100 bytes, not UTF-8 and not ASCII, links of every kind, a sparse file, a user xattr,
    a gid too large for the octal field (a pax record), files of 0, 512 and 513 bytes, a fifo."""
    root = tmp_path / "tree"
    deep = root / "dir with space" / ("n" * 60) / ("m" * 70)
    deep.mkdir(parents=True)
    (deep / ("f" * 120 + ".txt")).write_bytes(b"deep\n")
    (root / "\u00fcn\u00efc\u00f8d\u00e9 \u20ac.txt").write_text("\u00fcn\u00efc\u00f8d\u00e9\n", encoding="utf-8")
    with open(os.path.join(os.fsencode(root), b"bad\xff\xfename"), "wb"):
        pass
    (root / "empty").write_bytes(b"")
    (root / "exact512").write_bytes(bytes(range(256)) * 2)
    (root / "b513").write_bytes(os.urandom(513))
    (root / "big").write_bytes(os.urandom(3_000_000))
    os.symlink("target" * 30, root / "longlink")
    os.link(root / "big", root / "hard1")
    os.mkfifo(root / "fifo")
    with open(root / "sparse", "wb") as handle:
        handle.truncate(50_000_000)
        handle.seek(10_000_000)
        handle.write(b"data")
        handle.seek(30_000_000)
        handle.write(b"end")
    try:
        os.setxattr(root / "big", "user.note", "h\u00e9llo=x".encode())
    except OSError:
        pass  # a file system without user xattrs: the rest still counts
    if os.geteuid() == 0:
        os.chown(root / "empty", 123456, 7654321)
    return str(root)


def tar_stream(path: str) -> bytes:
    argv = ["tar", "--create", "--file=-", "--directory=/", *_files_source.TAR_CREATE, "--", path.lstrip("/")]
    return subprocess.run(argv, check=True, capture_output=True).stdout


def index_of(stream: bytes, path: str, chunk: int) -> _tar_index.TarIndex:
    index = _tar_index.TarIndex([_files_source.root("path", path, path)])
    for start in range(0, len(stream), chunk):
        index.feed(stream[start:start + chunk])
    index.finish()
    return index


@pytest.mark.parametrize("chunk", [1 << 20, 700, 512])
def test_in_place_and_tarfile_decoding_give_the_tree_as_it_is_on_disk(awkward_tree, monkeypatch, chunk):
    stream = tar_stream(awkward_tree)
    decoded_in_place = []
    in_place = _tar_index._quick_member
    monkeypatch.setattr(_tar_index, "_quick_member", lambda stream: decoded_in_place.append(in_place(stream))
                        or decoded_in_place[-1])
    quick = index_of(stream, awkward_tree, chunk)
    if chunk > 1024:  # whole headers in one read: most members are the common case
        assert sum(member is not None for member in decoded_in_place) >= 10, decoded_in_place
    monkeypatch.setattr(_tar_index, "_quick_member", lambda stream: None)
    slow = index_of(stream, awkward_tree, chunk)
    label = f"path:{awkward_tree}"
    assert quick.entries == slow.entries and quick.bytes == slow.bytes
    rows = {entry["path"]: entry for entry in quick.entries[label]}
    assert rows["sparse"]["size"] == 50_000_000 and rows["sparse"].get("sparse"), rows["sparse"]
    assert rows["big"]["type"] == "hardlink" or rows["hard1"]["type"] == "hardlink"
    on_disk = {label: _tar_index.walk(awkward_tree)}
    owners = os.geteuid() == 0
    assert _tar_index.root_sums(quick.entries, owners) == _tar_index.root_sums(on_disk, owners)
    assert quick.counts[label] == _tar_index.counted(on_disk[label]) == 11


def test_a_cut_or_damaged_stream_is_a_structure_error(awkward_tree):
    stream = tar_stream(awkward_tree)
    with pytest.raises(StructureError, match="ends inside a file's data"):
        index_of(stream[:len(stream) // 2], awkward_tree, 1 << 20)
    damaged = bytearray(stream)
    damaged[1024 + 100] ^= 0x10  # the mode field of the second header: its checksum no longer holds
    with pytest.raises(StructureError):
        index_of(bytes(damaged), awkward_tree, 1 << 20)
    with pytest.raises(StructureError, match="empty"):
        index_of(b"", awkward_tree, 1 << 20)


def test_a_parser_that_stopped_early_never_holds_up_the_stream(awkward_tree):
    """The chunks go to the parser through a short queue: once it stopped (a damaged header) or found the end marker,
    everything fed after must still be taken, or the pipeline would wait for ever on a full queue."""
    stream = tar_stream(awkward_tree)
    damaged = bytearray(stream)
    damaged[100] ^= 0x10  # the first header's checksum no longer holds
    # Damaged; whole, with many blocks of zeros after its end marker.
    for fed, whole in ((bytes(damaged), False), (stream + bytes(512 * 4 * _tar_index.QUEUED), True)):
        index = _tar_index.TarIndex([_files_source.root("path", awkward_tree, awkward_tree)])
        done = threading.Event()
        outcome: list[str] = []

        def feed_all(outcome: list[str], index=index, fed=fed, done=done) -> None:
            for start in range(0, len(fed), 512):
                index.feed(fed[start:start + 512])
            try:
                index.finish()
                outcome.append("finished")
            except StructureError:
                outcome.append("structure error")
            done.set()

        threading.Thread(target=feed_all, args=(outcome,), daemon=True).start()
        held_up = not done.wait(20)
        while not done.is_set():  # (only when this failed: free the feeder, so that the run goes on)
            with contextlib.suppress(queue.Empty):
                index._chunks.get(timeout=0.1)  # pylint: disable=protected-access
        assert not held_up, "the feeder was held up"
        assert outcome == ["finished" if whole else "structure error"]
