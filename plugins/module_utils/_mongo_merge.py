# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""A merge restore's guard against lost writes: a fingerprint of what was copied from a target, the writes made to it
since, and those carried over into the restored collection before it takes the target's name.
"""

from __future__ import annotations

import hashlib
import typing as t
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

from ._common import LifeboatError
from ._mongo import _pymongo, split_namespace
from ._mongo_staging import Staging, kept_name


def _ns_escape(namespace: str) -> str:
    """A literal namespace for mongorestore's patterns (its ns.Escape): backslashes and asterisks escaped."""
    return namespace.replace("\\", "\\\\").replace("*", "\\*")


def _copy_collection(client: t.Any, source: str, copy: str) -> Fingerprint:
    """Copy a collection's options, indexes and documents (their exact BSON) to a new name; returns what it copied."""
    _pymongo()  # a clear message when pymongo (which brings bson) is missing
    from bson import decode_all  # pylint: disable=import-outside-toplevel
    from bson.codec_options import CodecOptions  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    raw = CodecOptions(document_class=RawBSONDocument)
    db_name, name = split_namespace(source)
    copy_name = split_namespace(copy)[1]
    db = client[db_name]
    info: t.Mapping[str, t.Any] = next(iter(db.list_collections(filter={"name": name})), {})
    db.command({"create": copy_name, **{k: v for k, v in info.get("options", {}).items() if k != "uuid"}})
    for index in db[name].list_indexes():
        if index["name"] == "_id_":
            continue
        options = {k: v for k, v in index.items() if k not in ("v", "key", "ns")}
        db[copy_name].create_index(list(index["key"].items()), **options)
    target = db.get_collection(copy_name, codec_options=raw)
    copied = Fingerprint()
    for batch in db[name].find_raw_batches(sort=[("_id", 1)]):
        documents = decode_all(batch, raw)
        if documents:
            target.insert_many(documents, ordered=False)
            for document in documents:
                copied.add(document)
    copied.ids = array("Q", sorted(copied.ids))
    return copied


_DIGEST_MODULUS = 1 << 128


def _document_digest(document: t.Any) -> int:
    return int.from_bytes(hashlib.sha256(document.raw).digest()[:16], "big")


def _id_digest(document: t.Any) -> int:
    from bson import encode  # pylint: disable=import-outside-toplevel

    return int.from_bytes(hashlib.sha256(encode({"_id": document["_id"]})).digest()[:8], "big")


@dataclass
class Fingerprint:
    """What a merge copied from a target: the count, the sum of every document's digest (its exact BSON; a sum, so
    that the order of reading does not matter and inserts can be taken out) and the sorted digests of the _ids
    (8 bytes a document), which tell a document inserted later from one that was copied."""

    count: int = 0
    digest: int = 0
    ids: array = field(default_factory=lambda: array("Q"))  # type: ignore[type-arg]

    def add(self, document: t.Any) -> None:
        self.count += 1
        self.digest = (self.digest + _document_digest(document)) % _DIGEST_MODULUS
        self.ids.append(_id_digest(document))

    def holds_id(self, document: t.Any) -> bool:
        key = _id_digest(document)
        index = bisect_left(self.ids, key)
        return index < len(self.ids) and self.ids[index] == key


@dataclass
class Changes:
    """How a collection differs from the copy a merge took of it."""

    inserted: list[t.Any]  # documents whose _id the copy did not hold (their exact BSON)
    removed: int  # documents of the copy that are gone
    rewritten: bool  # documents of the copy changed in place (or removed and inserted again)

    @property
    def writes(self) -> int:
        return len(self.inserted) + self.removed

    def __bool__(self) -> bool:
        return bool(self.writes or self.rewritten)


def _changes(client: t.Any, namespace: str, copied: Fingerprint) -> Changes:
    """Read a collection whole and compare it with the copy: one pass, documents in any order."""
    from bson import decode_all  # pylint: disable=import-outside-toplevel
    from bson.codec_options import CodecOptions  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    raw = CodecOptions(document_class=RawBSONDocument)
    db, coll = split_namespace(namespace)
    inserted = []
    kept = 0
    digest = 0
    for batch in client[db][coll].find_raw_batches():
        for document in decode_all(batch, raw):
            if copied.holds_id(document):
                kept += 1
                digest = (digest + _document_digest(document)) % _DIGEST_MODULUS
            else:
                inserted.append(document)
    return Changes(inserted=inserted, removed=copied.count - kept,
                   rewritten=kept == copied.count and digest != copied.digest)


def concurrent_writes_error(changed: dict[str, Changes]) -> str:
    """The one line that stops a merge whose targets changed after their copy was taken."""
    writes = sum(change.writes for change in changed.values())
    where = ", ".join(sorted(changed))
    what = (f"{writes} write{'s' if writes != 1 else ''} arrived in {where} during the restore" if writes
            else f"documents of {where} were changed in place during the restore")
    return (f"{what}; stop the writers and run it again, or set drop: true to replace the collections (what is written "
            "meanwhile is then replaced too)")


def _check_unchanged(client: t.Any, copied: dict[str, Fingerprint]) -> None:
    """Before the swap of a merge: every target must still hold exactly what was copied, or the swap would drop
    what was written since."""
    changed = {target: change for target, fingerprint in sorted(copied.items())
               if (change := _changes(client, target, fingerprint))}
    if changed:
        raise LifeboatError(concurrent_writes_error(changed))


def _carry_late_writes(client: t.Any, staging: Staging, copied: dict[str, Fingerprint]) -> tuple[list[str], list[str]]:
    """After the swap of a merge: the targets moved aside must still hold exactly what was copied.

    Nothing writes to a collection under its aside name, so this closes the window between the last check and the
    swap: inserts made in it are added to the new target (notes); anything else (a change in place, a removal, an
    insert whose _id the archive also holds) keeps the old collection under a name no restore drops (problems).
    """
    from bson.codec_options import CodecOptions  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    notes, problems = [], []
    for target, fingerprint in sorted(copied.items()):
        aside = staging.aside(target)
        change = _changes(client, aside, fingerprint)
        if not change:
            continue
        db, coll = split_namespace(target)
        if not change.removed and not change.rewritten:
            try:
                raw = CodecOptions(document_class=RawBSONDocument)
                client.get_database(db, codec_options=raw)[coll].insert_many(change.inserted, ordered=False)
                notes.append(f"{len(change.inserted)} write{'s' if len(change.inserted) != 1 else ''} arrived in "
                             f"{target} between the last check and the swap; added to it after the swap")
                continue
            except _pymongo().errors.PyMongoError:  # an _id of the archive: neither document may be dropped
                pass
        kept = kept_name(split_namespace(aside)[1])
        client[db][split_namespace(aside)[1]].rename(kept)
        problems.append(f"{db}.{kept} (writes arrived in {target} between the last check and the swap)")
    return notes, problems
