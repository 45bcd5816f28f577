# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""What a files archive holds, read from its tar stream as it passes: every entry's type, size, sha256, mode,
owner, link target and user xattrs, by root (a volume or a path), and the same read from a directory tree.

The dump feeds the stream it writes (the manifest's per-file index comes from the bytes that were stored, not from
a second read of the disk); verify feeds the stream it reads back and compares with the manifest. A restored tree
is walked into the same rows, so "restored equals archived" is one comparison of per-root sums.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import struct
import tarfile
import threading
import typing as t
import zlib

from ._structure import HASH_MODULUS, StructureError, hex_sum, row_digest

CHUNK = 1 << 20
QUEUED = 8  # chunks (the pipeline's are up to 1 MiB) waiting for the parser
_TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file",
          tarfile.GNUTYPE_SPARSE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
          tarfile.LNKTYPE: "hardlink", tarfile.FIFOTYPE: "fifo", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block"}
_XATTR = "SCHILY.xattr."
COMPARED_XATTRS = "user."  # other namespaces depend on the file system and the user that restores


def entry_row(entry: dict[str, t.Any], owners: bool) -> bytes:
    """The bytes that stand for one entry in a root's sum: a hard link counts as the file it shares."""
    kind = "file" if entry["type"] == "hardlink" else entry["type"]
    fields = [entry["path"], kind, str(entry.get("size", 0) if kind == "file" else 0), entry.get("sha256", ""),
              oct(entry["mode"]), entry.get("link", "") if kind == "symlink" else ""]
    if owners:
        fields += [str(entry["uid"]), str(entry["gid"])]
    fields += [f"{name}={value}" for name, value in sorted((entry.get("xattrs") or {}).items())
               if name.startswith(COMPARED_XATTRS)]
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def root_sums(entries: dict[str, list[dict[str, t.Any]]], owners: bool) -> dict[str, str]:
    return {label: hex_sum(sum(row_digest(entry_row(e, owners)) for e in rows) % HASH_MODULUS)
            for label, rows in entries.items()}


def counted(entries: t.Iterable[dict[str, t.Any]]) -> int:
    """What a root's count counts: every entry but directories (files, links, devices)."""
    return sum(1 for entry in entries if entry["type"] != "dir")


class _Stream:
    """The tar stream in the pieces it was fed in, never copied whole: tarfile's stream mode ("r|") copies the unread
    rest of its buffer on every read (each header, each small file), which made most of the index's CPU. Headers
    are decoded in place (:func:`_quick_member`) or by tarfile (:class:`_Headers`); file data is hashed from here."""

    def __init__(self, next_chunk: t.Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk  # b"" at the end
        self.at_end = False
        self._chunk = b""
        self._view = memoryview(self._chunk)
        self._pos = 0
        self._before = 0  # bytes of the stream before the current chunk

    def _more(self) -> bool:
        if self.at_end:
            return False
        data = self._next_chunk()
        self.at_end = not data
        self._before += len(self._chunk)
        self._chunk, self._view, self._pos = data, memoryview(data), 0
        return bool(data)

    def tell(self) -> int:
        return self._before + self._pos

    def gather(self, size: int) -> None:
        """Make the next size bytes (or all that is left) lie in the current chunk, joining the next chunks to its
        rest: a header cut by a chunk's end is then decoded in place too (the chunks of a producer that writes
        small pieces are cut there often), for a copy of the next chunk."""
        while len(self._chunk) - self._pos < size and not self.at_end:
            data = self._next_chunk()
            self.at_end = not data
            self._before += self._pos
            self._chunk = self._chunk[self._pos:] + data
            self._view, self._pos = memoryview(self._chunk), 0

    def window(self) -> tuple[bytes, int]:
        """The current chunk and where the stream is in it (for decoding in place), see :meth:`advance`."""
        return self._chunk, self._pos

    def advance(self, size: int) -> None:
        self._pos += size

    def read(self, size: int) -> bytes:
        """Up to size bytes (fewer only at the end of the stream), as a file's read."""
        if len(self._chunk) - self._pos >= size:
            self._pos += size
            return self._chunk[self._pos - size:self._pos]
        parts = []
        while size > 0 and (self._pos < len(self._chunk) or self._more()):
            part = self._chunk[self._pos:self._pos + size]
            self._pos += len(part)
            size -= len(part)
            parts.append(part)
        return b"".join(parts)

    def pieces(self, size: int) -> t.Iterator[memoryview]:
        """The next size bytes in the pieces they came in (views, not copies); a short stream is an error."""
        while size > 0:
            if self._pos == len(self._chunk) and not self._more():
                raise StructureError("the archive ends inside a file's data")
            part = self._view[self._pos:self._pos + size]
            self._pos += len(part)
            size -= len(part)
            yield part

    def sha256(self, size: int) -> str:
        """The sha256 of the next size bytes: one call for what lies in the current chunk (a small file, mostly)."""
        if len(self._chunk) - self._pos >= size:
            self._pos += size
            return hashlib.sha256(self._view[self._pos - size:self._pos]).hexdigest()
        digest = hashlib.sha256()
        for part in self.pieces(size):
            digest.update(part)
        return digest.hexdigest()

    def skip(self, size: int) -> None:
        if len(self._chunk) - self._pos >= size:
            self._pos += size
            return
        for _part in self.pieces(size):
            pass


class _Member(t.NamedTuple):
    """What the index reads of a member: tarfile's own TarInfo carries much more and costs more to make, ~20,000
    times per GB of small files. The field names are TarInfo's, so either kind of decoding gives one of these."""

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str
    pax_headers: t.Mapping[str, str]
    sparse: list[tuple[int, int]] | None = None

    @classmethod
    def of(cls, info: tarfile.TarInfo) -> _Member:
        return cls(info.name, info.type, info.mode, info.uid, info.gid, info.size, info.linkname, info.pax_headers,
                   t.cast("list[tuple[int, int]] | None", info.sparse))  # typeshed says int


class _Headers:
    """What tarfile's header decoding (``TarInfo.fromtarfile``: ustar, pax, GNU long names, sparse maps) reads
    from a TarFile: its stream, encoding, global pax headers and the offset where the next header begins."""

    def __init__(self, stream: _Stream) -> None:
        self.fileobj = stream
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"  # tarfile's own default: a name that is no UTF-8 still reads
        self.pax_headers: dict[str, str] = {}
        self.offset = 0

    def next(self) -> _Member | None:
        """The next member, or None at the end marker (or at the end of the stream, as tarfile and tar allow)."""
        member = None
        if not self.pax_headers:
            self.fileobj.gather(_HEADERS_IN_PLACE)
            member = _quick_member(self.fileobj)
        if member is not None:
            self.offset = self.fileobj.tell() + (_blocks(member.size) if member.type in _REGULAR else 0)
            return member
        try:
            return _Member.of(tarfile.TarInfo.fromtarfile(self))  # type: ignore[arg-type]  # duck-typed: reads these
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]  # the end marker: all an archive of nothing holds
            return None
        except tarfile.EmptyHeaderError:  # type: ignore[attr-defined]  # (typeshed lists neither)
            if self.offset == 0:
                raise StructureError("the archive is empty: no tar header, not even the end marker") from None
            return None
        except tarfile.HeaderError as exc:
            raise StructureError(f"the archive is not a readable tar stream at byte {self.offset}: {exc}") from None


def _blocks(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


# The member GNU tar --format=posix writes for each file: a pax header (path, size, mtime, xattrs), then a ustar
# header. tarfile takes ~50 us to decode the pair (most of the index's CPU with many small files); this decodes
# that common case in place and leaves anything else (long GNU names, sparse maps, global headers, a bad
# checksum, the end marker) to tarfile, which gives the same member.
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_MEMBER_TYPES = frozenset(bytes([kind]) for kind in b"01234567")  # files, links, devices, dirs, fifos
_USTAR_TYPES = _MEMBER_TYPES | {tarfile.XHDTYPE}
_REGULAR = frozenset(tarfile.REGULAR_TYPES)  # members whose data follows their header
_HEADERS_IN_PLACE = 4 * tarfile.BLOCKSIZE  # a pax header with a few records and the ustar header after it


def _octal(field: bytes) -> int:
    if field[0] >= 0x80:  # base-256: tarfile knows it
        raise ValueError(field)
    return int(field.strip(b" \0") or b"0", 8)


def _byte_sum(block: bytes) -> int:
    """``sum(block)`` of a header block, ~4x faster: Adler-32's low half is 1 + the byte sum modulo 65521, which is
    the sum itself when at most 256 of the 512 bytes are not zero (as in every header tar writes)."""
    if block.count(0) >= 256:
        return (zlib.adler32(block) & 0xFFFF) - 1
    return sum(block)


def _ustar(chunk: bytes, at: int) -> tuple[bytes, ...] | None:
    """A POSIX ustar header's fields at chunk[at:] (the type is fields[7]), if its checksum holds; else None."""
    fields = _USTAR.unpack_from(chunk, at)
    if fields[9] != b"ustar\x0000" or fields[7] not in _USTAR_TYPES:
        return None
    try:
        if _octal(fields[6]) != _byte_sum(chunk[at:at + tarfile.BLOCKSIZE]) - sum(fields[6]) + 256:
            return None
    except ValueError:
        return None
    return fields


def _pax_records(data: bytes) -> dict[str, str] | None:
    """``LENGTH KEY=VALUE\\n`` records, decoded as tarfile does; None if any asks for more than this decodes."""
    records, at = {}, 0
    while at < len(data):
        space = data.find(b" ", at)
        try:
            end = at + int(data[at:space])
        except ValueError:
            return None
        if space < 0 or end <= space + 1:
            return None
        key, equals, value = data[space + 1:end - 1].partition(b"=")
        if not equals or end > len(data) or data[end - 1:end] != b"\n":
            return None
        name = key.decode("utf-8", "surrogateescape")
        if name.startswith("GNU.sparse.") or name == "hdrcharset":
            return None
        records[name] = value.decode("utf-8", "surrogateescape")
        at = end
    return records


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _quick_member(stream: _Stream) -> _Member | None:
    """The next member if it is the common case (see above) and its headers lie in the stream's current chunk;
    the stream is then past them. Otherwise None, and the stream is where it was."""
    chunk, start = stream.window()
    if len(chunk) - start < tarfile.BLOCKSIZE:
        return None
    at, pax = start, {}
    fields = _ustar(chunk, at)
    try:
        if fields is not None and fields[7] == tarfile.XHDTYPE:
            size = _octal(fields[4])
            data = at + tarfile.BLOCKSIZE
            at = data + _blocks(size)
            records = _pax_records(chunk[data:data + size])
            if records is None or len(chunk) - at < tarfile.BLOCKSIZE:
                return None
            pax, fields = records, _ustar(chunk, at)
        if fields is None or fields[7] not in _MEMBER_TYPES:
            return None
        mode, uid, gid, size = _octal(fields[1]), _octal(fields[2]), _octal(fields[3]), _octal(fields[4])
        if pax:
            uid, gid, size = int(pax.get("uid", uid)), int(pax.get("gid", gid)), int(pax.get("size", size))
    except ValueError:
        return None
    if "path" in pax:
        name = pax["path"]
    else:
        prefix = _text(fields[14])
        name = f"{prefix}/{_text(fields[0])}" if prefix else _text(fields[0])
    linkname = pax["linkpath"] if "linkpath" in pax else _text(fields[8])
    stream.advance(at + tarfile.BLOCKSIZE - start)
    return _Member(name, fields[7], mode, uid, gid, size, linkname, pax)


_ZEROS = bytes(1 << 16)


def _file_sha256(stream: _Stream, member: _Member, name: str) -> str:
    """The sha256 of a regular member's content, read from the stream: a sparse file's holes hash as zeros."""
    if member.sparse is None:
        return stream.sha256(member.size)
    digest = hashlib.sha256()
    position = 0
    for offset, size in member.sparse:
        if offset < position or offset + size > member.size:
            raise StructureError(f"{name}: its sparse map is not in order")
        _hash_zeros(digest, offset - position)
        for part in stream.pieces(size):
            digest.update(part)
        position = offset + size
    _hash_zeros(digest, member.size - position)
    return digest.hexdigest()


def _hash_zeros(digest: t.Any, count: int) -> None:
    while count >= len(_ZEROS):
        digest.update(_ZEROS)
        count -= len(_ZEROS)
    digest.update(_ZEROS[:count])


class TarIndex:
    """Fed a plain tar stream chunk by chunk; parsed in a thread of its own (the parser pulls, the pipeline pushes),
    so the stream goes on while files are hashed here. The chunks are handed over in a short queue, not copied
    through a pipe: a pipe cost a write and a read of the whole stream (~0.3-0.5 s of CPU per GB, bench/README.md);
    the queue holds at most QUEUED chunks (memory stays flat), and the stream waits on no more than that."""

    def __init__(self, roots: t.Sequence[dict[str, t.Any]], expected: dict[str, t.Any] | None = None) -> None:
        # Longest member first: a root inside another's directory tree would otherwise be claimed by the outer one.
        self.roots = sorted(roots, key=lambda root: len(root["member"]), reverse=True)
        self.expected = expected
        self.entries: dict[str, list[dict[str, t.Any]]] = {root["label"]: [] for root in roots}
        self.bytes: dict[str, int] = {root["label"]: 0 for root in roots}
        self._latest: dict[str, dict[str, dict[str, t.Any]]] = {root["label"]: {} for root in roots}  # by path
        self._error: BaseException | None = None
        self._chunks: queue.Queue[bytes] = queue.Queue(QUEUED)
        self._broken = False  # the parser stopped (a malformed stream): what is fed from then on is dropped
        self._thread = threading.Thread(target=self._parse, daemon=True)
        self._thread.start()

    @property
    def tally(self) -> TarIndex:  # verify reads counts and hashes from a reader's tally
        return self

    @property
    def counts(self) -> dict[str, int]:
        return {label: counted(rows) for label, rows in self.entries.items()}

    @property
    def hashes(self) -> dict[str, str]:
        return root_sums(self.entries, owners=True)

    def feed(self, chunk: bytes) -> None:
        if chunk and not self._broken:  # b"" is the end: only _end() sends it
            self._chunks.put(chunk)  # a bytes object is never changed: handed over, not copied

    def _end(self) -> None:
        self._chunks.put(b"")
        self._thread.join()

    def _parse(self) -> None:
        stream = _Stream(self._chunks.get)
        try:
            headers = _Headers(stream)
            while True:
                if headers.offset < stream.tell():
                    raise StructureError(f"the archive's member before byte {stream.tell()} overruns its own size")
                stream.skip(headers.offset - stream.tell())
                member = headers.next()
                if member is None:
                    break
                self._add(stream, member)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self._error = exc
        finally:
            self._broken = True  # whatever follows the end marker (record padding) or a failure is not needed
            while not stream.at_end and self._chunks.get():  # take what was queued, so the feeder never waits
                pass

    def _root(self, name: str) -> tuple[dict[str, t.Any], str]:
        for root in self.roots:
            member = root["member"]
            if name.startswith(member) and (len(name) == len(member) or name[len(member)] == "/"):
                return root, name[len(member) + 1:]
        raise StructureError(f"the archive holds {name!r}, which is under none of its roots")

    def _add(self, stream: _Stream, member: _Member) -> None:
        name = member.name.rstrip("/")
        root, path = self._root(name)
        label, kind = root["label"], member.type
        entry: dict[str, t.Any] = {"path": path, "type": _TYPES.get(kind, "other"),
                                   "mode": member.mode & 0o7777, "uid": member.uid, "gid": member.gid}
        xattrs = {key[len(_XATTR):]: value for key, value in member.pax_headers.items() if key.startswith(_XATTR)}
        if xattrs:
            entry["xattrs"] = xattrs
        if kind == tarfile.SYMTYPE:
            entry["link"] = member.linkname
        elif kind == tarfile.LNKTYPE:
            target_root, target = self._root(member.linkname.rstrip("/"))
            shared = self._latest[target_root["label"]].get(target)
            entry["link"] = target if target_root is root else member.linkname
            if shared is not None:  # one inode: its content and xattrs are the shared file's
                entry["size"], entry["sha256"] = shared.get("size", 0), shared.get("sha256", "")
                if shared.get("xattrs"):
                    entry["xattrs"] = shared["xattrs"]
        elif kind in _REGULAR:
            entry["size"], entry["sha256"] = member.size, _file_sha256(stream, member, name)
            if member.sparse is not None:
                entry["sparse"] = True
            self.bytes[label] += member.size
        self.entries[label].append(entry)
        self._latest[label][path] = entry

    def abandon(self) -> None:
        """End the parse after a failed stream, whatever it found."""
        self._end()

    def finish(self) -> None:
        self._end()
        if self._error is not None:
            if isinstance(self._error, StructureError):
                raise self._error
            raise StructureError(f"the archive is not a readable tar stream: {self._error}")
        if self.expected is not None:
            self._compare(self.expected)

    def _compare(self, expected: dict[str, list[dict[str, t.Any]]]) -> None:
        problems = []
        for label in sorted(set(expected) | set(self.entries)):
            want = {e["path"]: e for e in expected.get(label, [])}
            have = {e["path"]: e for e in self.entries.get(label, [])}
            for path in sorted(set(want) | set(have)):
                shown = f"{label}/{path}" if path else label
                if path not in have:
                    problems.append(f"{shown} is in the manifest, not in the archive")
                elif path not in want:
                    problems.append(f"{shown} is in the archive, not in the manifest")
                else:
                    fields = [key for key in ("type", "size", "sha256", "mode", "uid", "gid", "link")
                              if want[path].get(key) != have[path].get(key)]
                    if fields:
                        problems.append(f"{shown}: {', '.join(fields)} differ from the manifest's")
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise StructureError(f"the archive's files do not match its manifest: {'; '.join(problems[:3])}{more}")


def walk(path: str) -> list[dict[str, t.Any]]:
    """The rows of a restored root (a directory tree, or a single file), as :class:`TarIndex` gives them."""
    rows = []
    top = os.lstat(path)
    if not stat.S_ISDIR(top.st_mode):
        return [_row(path, "", top)]
    for directory, dirs, files in os.walk(path):
        dirs.sort()
        relative = os.path.relpath(directory, path)
        relative = "" if relative == "." else relative
        rows.append(_row(directory, relative, os.lstat(directory)))
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            full = os.path.join(directory, name)
            rows.append(_row(full, os.path.join(relative, name) if relative else name, os.lstat(full)))
    return rows


def _row(full: str, relative: str, info: os.stat_result) -> dict[str, t.Any]:
    kinds = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"),
             (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"))
    kind = next((name for test, name in kinds if test(info.st_mode)), "other")
    entry: dict[str, t.Any] = {"path": relative, "type": kind, "mode": stat.S_IMODE(info.st_mode),
                               "uid": info.st_uid, "gid": info.st_gid}
    if kind == "symlink":
        entry["link"] = os.readlink(full)
    elif kind == "file":
        digest = hashlib.sha256()
        with open(full, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        entry["size"], entry["sha256"] = info.st_size, digest.hexdigest()
    try:
        names = [name for name in os.listxattr(full, follow_symlinks=False) if name.startswith(COMPARED_XATTRS)]
    except OSError:
        names = []
    if names:
        entry["xattrs"] = {name: os.getxattr(full, name, follow_symlinks=False).decode("utf-8", "surrogateescape")
                           for name in names}
    return entry
