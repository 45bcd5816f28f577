# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Reading the inside of a plain dump stream: rows or documents per table or collection, and their content hash.

PostgreSQL archives are read through the engine's own tool (``pg_restore -f -`` turns every format into
SQL with one ``COPY ... FROM stdin`` block per table); MongoDB archives are framed BSON (the mongodump
archive format: magic number, a prelude of collection metadata, then namespace segments), which these
readers walk without a server.

Content hashes are order-free: the sum of a 128-bit BLAKE2b digest per row or document, so a restored
table read back in any order hashes the same as the archive did.
"""

from __future__ import annotations

import hashlib
import struct
import typing as t

from ._common import LifeboatError, first_few

HASH_MODULUS = 1 << 128


def row_digest(row: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(row, digest_size=16).digest(), "big")


def hex_sum(total: int) -> str:
    return f"{total % HASH_MODULUS:032x}"


class StructureError(LifeboatError):
    """The plain stream is not a well-formed dump of its kind."""


class _Tally:
    def __init__(self, content: bool) -> None:
        self.content = content
        self.counts: dict[str, int] = {}
        self.sums: dict[str, int] = {}

    def add(self, name: str, row: bytes) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.content:
            self.sums[name] = (self.sums.get(name, 0) + row_digest(row)) % HASH_MODULUS

    def touch(self, name: str) -> None:
        self.counts.setdefault(name, 0)
        if self.content:
            self.sums.setdefault(name, 0)

    @property
    def hashes(self) -> dict[str, str]:
        return {name: hex_sum(total) for name, total in self.sums.items()}


def split_identifiers(text: str) -> list[str]:
    """Split a qualified name on its dots, undoing PostgreSQL's double-quote quoting (doubled quotes inside)."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == '"' and text[i + 1:i + 2] == '"':
                current.append('"')
                i += 1
            elif char == '"':
                quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


class CopyBlock(t.NamedTuple):
    schema: str
    table: str
    columns: list[str]

    @property
    def name(self) -> str:
        """The name the manifest's counts use (schema.table, unquoted)."""
        return f"{self.schema}.{self.table}"


def parse_copy_statement(line: str) -> CopyBlock:
    """``COPY public.t (a, "B c") FROM stdin;`` as pg_dump writes it."""
    body = line[len("COPY "):]
    if not body.endswith(" FROM stdin;"):
        raise StructureError(f"unexpected COPY statement in the dump: {line[:120]}")
    body = body[: -len(" FROM stdin;")]
    target, _sep, column_list = body.partition(" (")
    names = split_identifiers(target)
    if len(names) != 2:
        raise StructureError(f"unexpected table name in the dump's COPY statement: {target[:120]}")
    columns = [split_identifiers(col.strip())[0] for col in column_list.rstrip(")").split(",")] if column_list else []
    return CopyBlock(names[0], names[1], columns)


class PgSqlReader:
    """Reads ``pg_restore -f -`` output: rows per COPY block, optionally their content hash."""

    def __init__(self, content: bool = False) -> None:
        self.tally = _Tally(content)
        self.blocks: dict[str, CopyBlock] = {}
        self.client_encoding: str | None = None
        self._pending = b""
        self._block: CopyBlock | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        block = self._block
        if block is not None:
            if line == b"\\.":
                self._block = None
            else:
                self.tally.add(block.name, line)
        elif line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
            block = parse_copy_statement(line.decode("utf-8", "replace"))
            self.blocks[block.name] = block
            self.tally.touch(block.name)
            self._block = block
        elif line.startswith(b"SET client_encoding = '"):
            self.client_encoding = line.split(b"'")[1].decode("ascii", "replace")

    def finish(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = b""
        if self._block is not None:
            raise StructureError(f"the data of {self._block.name} ends before its end marker: the dump is cut short")


class MongoArchiveReader:
    """Walks a mongodump archive: documents per namespace, optionally their content hash."""

    MAGIC = struct.pack("<I", 0x8199E26D)
    TERMINATOR = -1

    def __init__(self, content: bool = False) -> None:
        self.tally = _Tally(content)
        self.metadata: list[dict[str, t.Any]] = []
        self.finished_namespaces: set[str] = set()
        self._buffer = bytearray()
        self._state = "magic"
        self._namespace = ""
        self._bytes_seen = 0

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        buffer, offset = self._buffer, 0
        while True:
            if self._state == "magic":
                if len(buffer) - offset < 4:
                    break
                if bytes(buffer[offset:offset + 4]) != self.MAGIC:
                    raise StructureError("the plain stream is not a mongodump archive (wrong magic number)")
                offset += 4
                self._state = "prelude-header"
                continue
            if len(buffer) - offset < 4:
                break
            (size,) = struct.unpack_from("<i", buffer, offset)
            if size == self.TERMINATOR:
                offset += 4
                self._terminator()
                continue
            if size < 5 or size > 64 * 1024 * 1024:
                raise StructureError(
                    f"a document at byte {self._bytes_seen + offset} of the mongodump archive has an impossible "
                    f"length ({size})"
                )
            if len(buffer) - offset < size:
                break
            document = bytes(buffer[offset:offset + size])
            offset += size
            if document[-1] != 0:
                raise StructureError(f"a document at byte {self._bytes_seen + offset - size} is not BSON")
            self._document(document)
        del buffer[:offset]
        self._bytes_seen += offset

    def _terminator(self) -> None:
        if self._state in ("prelude-header", "prelude", "segment-body", "segment-eof"):
            self._state = "segment-header"
        else:
            raise StructureError("the mongodump archive has an end marker where a namespace header belongs")

    def _document(self, document: bytes) -> None:
        bson = _bson()
        state = self._state
        if state == "prelude-header":
            self._state = "prelude"
        elif state == "prelude":
            meta = bson.decode(document)
            self.metadata.append(meta)
            self.tally.touch(f"{meta.get('db')}.{meta.get('collection')}")
        elif state == "segment-header":
            header = bson.decode(document)
            self._namespace = f"{header.get('db')}.{header.get('collection')}"
            if header.get("EOF"):
                self.finished_namespaces.add(self._namespace)
                self._state = "segment-eof"
            else:
                self._state = "segment-body"
        elif state == "segment-body":
            self.tally.add(self._namespace, document)
        else:
            raise StructureError(f"the end of {self._namespace} in the mongodump archive is followed by documents")

    def finish(self) -> None:
        if self._state == "magic" or self._buffer:
            raise StructureError("the mongodump archive ends in the middle of a document: it is cut short")
        if self._state != "segment-header":
            raise StructureError("the mongodump archive ends inside a namespace segment: it is cut short")
        unfinished = sorted(
            f"{meta.get('db')}.{meta.get('collection')}" for meta in self.metadata
            if meta.get("type", "collection") == "collection"
            and f"{meta.get('db')}.{meta.get('collection')}" not in self.finished_namespaces
        )
        if unfinished:
            raise StructureError(
                f"the mongodump archive has no end for {first_few(unfinished, separator=', ')}: it is cut short")


def _bson() -> t.Any:
    try:
        import bson  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LifeboatError("the Python driver pymongo (its bson package) is needed on this host") from exc
    return bson
