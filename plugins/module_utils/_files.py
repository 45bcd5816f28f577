# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Durable files: written under a temporary name, fsynced, and only then given their final name.

Archives (``ArchiveFile``: never over another file), small files such as manifests, run records, state and
metrics (``write_file_atomic``: replaces the old one whole), and the checksum of a file. Standard library only:
the host's probe runner (roles/healthcheck) imports it too.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import typing as t

from ._common import LifeboatError, hold_lock

CHUNK = 1 << 20


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise LifeboatError(f"cannot read archive {path}: {exc.strerror}") from exc
    return digest.hexdigest()


class ArchiveFile:
    """A hidden temporary file beside the final name; ``commit`` gives it that name, never over another file."""

    def __init__(self, final_path: str) -> None:
        self.final_path = final_path
        directory, name = os.path.split(final_path)
        self.directory = directory
        self.temp_path = os.path.join(directory, f".{name}.partial-{os.getpid()}")
        try:
            # Readable too: the pipeline hashes what the last stage wrote into it (_pipeline.write_stream).
            self.fd = os.open(self.temp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise LifeboatError(f"cannot create a file in {directory}: {exc.strerror}") from exc
        hold_lock(self.fd)  # the next run or prune removes the file only once nobody holds this (the writer died)
        self.committed = False

    def commit(self) -> None:
        os.close(self.fd)
        self.fd = -1
        try:
            # link() refuses to replace an existing file, so an older archive is never overwritten.
            os.link(self.temp_path, self.final_path)
            os.unlink(self.temp_path)
        except FileExistsError as exc:
            raise LifeboatError(f"{self.final_path} already exists; refusing to overwrite an archive") from exc
        except OSError as exc:
            # Some filesystems (vfat, some CIFS mounts) have no hard links: check, then rename.
            if os.path.lexists(self.final_path):
                raise LifeboatError(f"{self.final_path} already exists; refusing to overwrite an archive") from exc
            try:
                os.rename(self.temp_path, self.final_path)
            except OSError as rename_error:
                raise LifeboatError(f"cannot name the archive {self.final_path}: {rename_error.strerror}") from exc
        self.committed = True
        fsync_directory(self.directory)

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.committed:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> ArchiveFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange_paths(first: str, second: str) -> bool:
    """Swap two existing paths in one step (Linux renameat2 with RENAME_EXCHANGE), so that at no instant, a SIGKILL
    included, is either name missing. False where the C library, kernel or file system cannot: the caller then
    falls back to two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # no renameat2 in this C library (glibc < 2.28, some musl)
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel < 3.15 or a file system without the flag
        return False
    raise OSError(code, os.strerror(code), first, None, second)


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str, data: bytes | t.Iterable[bytes], mode: int = 0o600, group: str | None = None) -> None:
    """Write a small file (a manifest) under a temporary name, fsync it, rename it into place.

    ``data`` may come in pieces (a manifest of 20,000 files is written as it is encoded, never whole in memory).

    A rewrite keeps the owner of the file it replaces: root verifying archives that a service user wrote must not
    leave that user a manifest it can no longer read. ``group`` (when root) gives a new file root:GROUP instead: a
    password file nginx's workers read.
    """
    temp = f"{path}.partial-{os.getpid()}"
    try:
        previous = os.stat(path)
    except OSError:
        previous = None
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    hold_lock(fd)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not narrow it: metrics (0644) are read by another user
            if group and os.geteuid() == 0:
                import grp  # pylint: disable=import-outside-toplevel

                os.fchown(fd, 0, grp.getgrnam(group).gr_gid)
            elif previous is not None and os.geteuid() == 0 and (previous.st_uid, previous.st_gid) != (0, 0):
                os.fchown(fd, previous.st_uid, previous.st_gid)
            for piece in [data] if isinstance(data, bytes) else data:
                write_all(fd, piece)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(os.path.dirname(path) or ".")
