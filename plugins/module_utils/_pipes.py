# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Moving a stream's bytes between pipes and files with few copies: bigger pipes, tee(2), early writeback, pumps.

The pipeline's threads run these; a pump hands every chunk to its taker (a hasher, a parser of the plain stream).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import time
import typing as t

from ._common import LifeboatError
from ._files import CHUNK, write_all

_F_SETPIPE_SZ = 1031  # Linux: bigger pipes mean fewer, larger reads.
_FOLLOW_PAUSE = 0.01  # seconds: how long the hasher of the written file waits for the writer to catch up
_FOLLOW_CHUNK = 4 << 20  # bytes of the written file read back at a time, into one reused buffer
# A producer that writes small pieces (GNU tar: 10 KiB records) would wake the tee pump for each of them: 100,000
# wake-ups, reads and hand-overs a GB. After a piece smaller than this, the pump waits a little, so that the next
# tee(2) finds more; the producer is not held up meanwhile (its pipe has room: the piece was small).
_GATHER_BELOW = 256 << 10
_GATHER_PAUSE = 0.001  # seconds


def grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass  # not Linux or over pipe-max-size: the default pipe still works


def _libc_function(name: str, argtypes: list[t.Any], restype: t.Any) -> t.Callable[[int, int, int, int], int] | None:
    """A Linux system call the os module lacks, from libc (None where libc has no such function)."""
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, restype
    return t.cast("t.Callable[[int, int, int, int], int]", function)


# tee(2): duplicates what waits in one pipe into another without copying it.
_TEE = _libc_function("tee", [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint], ctypes.c_ssize_t)
# sync_file_range(2): starts writeback of a range of a file without waiting for it.
_SYNC_FILE_RANGE = _libc_function("sync_file_range", [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong,
                                                      ctypes.c_uint], ctypes.c_int)
_SYNC_FILE_RANGE_WRITE = 2
_WRITEBACK_STEP = 32 << 20  # bytes of the file handed to writeback at a time while the stream still runs


def _start_writeback(fd: int, offset: int, size: int) -> None:
    """Let the disk take what was written so far while the stream goes on, so that the fsync at the end (which
    the raw `dump | zstd > file` never pays) waits for the last piece only; a failure here is the fsync's to tell."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, size, _SYNC_FILE_RANGE_WRITE)


def _tee(source: int, sink: int) -> int | None:
    """Up to CHUNK bytes of the pipe ``source`` duplicated into the pipe ``sink`` (both left in place in
    ``source``); 0 at the end of ``source``; None when tee(2) cannot be used here (then copy instead)."""
    if _TEE is None:
        return None
    while True:
        size = _TEE(source, sink, CHUNK, 0)
        if size >= 0:
            return size
        code = ctypes.get_errno()
        if code == errno.EINTR:
            continue
        if code in (errno.EINVAL, errno.ENOSYS):  # not two pipes, or no tee(2): nothing was duplicated
            return None
        raise OSError(code, os.strerror(code))  # EPIPE: BrokenPipeError, as a write would raise


def _read_exactly(fd: int, size: int) -> bytes:
    chunk = os.read(fd, size)
    if len(chunk) == size:
        return chunk
    parts = [chunk]
    size -= len(chunk)
    while size > 0:
        part = os.read(fd, size)
        if not part:
            raise LifeboatError("a pipe ended before the bytes it held were read")  # tee(2) saw them: never
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def pump_teed(source: int, sink: int, take: t.Callable[[bytes], None]) -> None:
    """Pass the pipe ``source`` on into the pipe ``sink`` and give every chunk to ``take`` too. With tee(2) the
    bytes reach ``sink`` without passing through this process (no write; the reader downstream is fed
    at the kernel's pace, not at this process's), and one read here takes them out of ``source``."""
    while True:
        size = _tee(source, sink)
        if size is None:
            chunk = os.read(source, CHUNK)
            if chunk:
                write_all(sink, chunk)
        else:
            chunk = _read_exactly(source, size) if size else b""
        if not chunk:
            return
        take(chunk)
        if len(chunk) < _GATHER_BELOW:
            time.sleep(_GATHER_PAUSE)


def follow_file(fd: int, writer: t.Any, take: t.Callable[[memoryview], None]) -> None:
    """Every byte ``writer`` writes into the file ``fd``, read back (from the page cache) as the file grows and to
    its end once the writer exited: the stored bytes never pass through a pipe of ours, and what is hashed is
    what the file holds. ``take`` gets a view of a buffer that the next read overwrites."""
    offset = flushed = 0
    buffer = bytearray(_FOLLOW_CHUNK)  # reused: no new allocation (and its page faults) for every read
    view = memoryview(buffer)
    while True:
        ended = writer.proc.poll() is not None  # asked before reading: nothing it wrote can be missed
        size = os.preadv(fd, [buffer], offset)
        if size:
            offset += size
            take(view[:size])
            if offset - flushed >= _WRITEBACK_STEP:
                _start_writeback(fd, flushed, offset - flushed)
                flushed = offset
        elif ended:
            return
        else:
            time.sleep(_FOLLOW_PAUSE)


def as_pipe(stream: t.IO[bytes] | None) -> t.IO[bytes]:
    """A stage's stdin or stdout, started as a pipe (PIPE): never None, which the type of Popen cannot say."""
    return t.cast("t.IO[bytes]", stream)


def pump(source: int, sinks: t.Callable[[bytes], None]) -> None:
    while chunk := os.read(source, CHUNK):
        sinks(chunk)
