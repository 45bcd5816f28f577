# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Staged MongoDB restores: mongorestore writes under staging names, renamed over the targets only when complete.

Names, in the database of each target collection (renameCollection across databases is a copy on MongoDB and
unsupported on FerretDB 1.24; within a database it is a metadata change on both; FerretDB 1.24 supports neither
dropTarget nor renaming a collection whose name holds a dot, hence no dots and no dropTarget here):

- ``lifeboat_restore_<8 hex>``             the run's marker: who runs it, and how far the swap got
- ``lifeboat_restore_<8 hex>_new_<coll>``  what mongorestore writes (for a merge: a copy of the target first)
- ``lifeboat_restore_<8 hex>_old_<coll>``  a target moved aside during the swap, dropped once all are in place
- ``lifeboat_restore_<8 hex>_add<n>_<coll>`` a target created anew by a write made while its name was free (between
  the two renames of the swap): its documents are inserted into the target once the swap put it in place
- ``lifeboat_kept_<8 hex>_<coll>``          documents a restore could not put back without losing or overwriting
  a write: left for the operator, never dropped by a restore

The swap moves every existing target aside, renames every staged collection onto its target, marks the run
committed, then drops what was moved aside. Until the commit mark, rolling back (here, or in the next restore
after a SIGKILL) puts every target back exactly as it was, plus any write made to it meanwhile.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
import typing as t
from dataclasses import dataclass, field

from ._common import LifeboatError

PREFIX = "lifeboat_restore_"
_STAGING_NAME = re.compile(r"^lifeboat_restore_([0-9a-f]{8})(?:_(new|old|add\d+)_(.+))?$", re.DOTALL)
KEPT_PREFIX = "lifeboat_kept_"
NAMESPACE_EXISTS = 48  # the server's error code for a rename onto a name that is taken
MAX_STRAYS = 10  # renames retried while writers keep creating the target anew
# FerretDB's limit on a collection name (MongoDB allows 255 bytes for the whole namespace).
MAX_COLLECTION_NAME_BYTES = 235
RETRY_SECONDS = 60


def staging_run(collection: str) -> str | None:
    """The run id of a staging name (``lifeboat_restore_<id>...``), or None for any other collection."""
    match = _STAGING_NAME.match(collection)
    return match.group(1) if match else None


def _split(namespace: str) -> tuple[str, str]:
    db, coll = namespace.split(".", 1)
    return db, coll


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks after boot): tells a live owner from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _owner() -> dict[str, t.Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "boot_id": _boot_id(),
            "start_ticks": _start_ticks(os.getpid())}


def _owner_alive(owner: dict[str, t.Any]) -> bool | None:
    """True or False for a run of this host; None when it ran elsewhere (its liveness cannot be seen)."""
    if owner.get("host") != socket.gethostname():
        return None
    if owner.get("boot_id") != _boot_id():
        return False
    ticks = _start_ticks(int(owner.get("pid") or 0))
    return ticks is not None and ticks == owner.get("start_ticks")


@dataclass
class Staging:
    """One staged restore: which targets it writes (and whether each existed before), under which names."""

    targets: dict[str, bool]
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    extra_databases: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.run_id}"

    def staged(self, target: str) -> str:
        db, coll = _split(target)
        return f"{db}.{self.prefix}_new_{coll}"

    def aside(self, target: str) -> str:
        db, coll = _split(target)
        return f"{db}.{self.prefix}_old_{coll}"

    def stray(self, target: str, number: int) -> str:
        db, coll = _split(target)
        return f"{db}.{self.prefix}_add{number}_{coll}"

    def _strays_of(self, names: t.Iterable[str], target: str) -> list[str]:
        db, coll = _split(target)
        pattern = re.compile(re.escape(self.prefix) + r"_add\d+_" + re.escape(coll), re.DOTALL)
        return sorted(f"{db}.{name}" for name in names if pattern.fullmatch(name))

    def databases(self) -> list[str]:
        return sorted({_split(target)[0] for target in self.targets} | set(self.extra_databases))

    def check_names(self, ferretdb: bool) -> None:
        for target in self.targets:
            if ferretdb and "." in _split(target)[1]:
                raise LifeboatError(
                    f"FerretDB cannot rename {target} (a collection name with a dot), which a restore needs to put the "
                    "complete, counted data in place; restore it under a name without dots with ns_from/ns_to"
                )
            name = _split(self.stray(target, MAX_STRAYS))[1]  # the longest name a target may take
            if len(name.encode()) > MAX_COLLECTION_NAME_BYTES:
                raise LifeboatError(
                    f"collection name {target} is too long to be restored under a staging name "
                    f"({len(name.encode())} of at most {MAX_COLLECTION_NAME_BYTES} bytes); restore it under a shorter "
                    "name with ns_from/ns_to"
                )

    def _targets_of(self, db: str) -> dict[str, bool]:
        return {ns: existed for ns, existed in self.targets.items() if _split(ns)[0] == db}

    def begin(self, client: t.Any) -> None:
        """Write the marker first: staging collections are never without an owner the next run can check."""
        for db in self.databases():
            client[db][self.prefix].insert_one({
                "_id": "run", "owner": _owner(), "started": time.time(), "phase": "staging",
                "targets": [{"name": _split(ns)[1], "existed": existed} for ns, existed in self._targets_of(db).items()],
            })

    def _set_phase(self, client: t.Any, phase: str) -> None:
        for db in self.databases():
            client[db][self.prefix].update_one({"_id": "run"}, {"$set": {"phase": phase}})

    def swap(self, client: t.Any) -> list[str]:
        """Move the existing targets aside and put the staged ones in their place; then mark the run committed.

        The caller drops what was moved aside (``drop``); should that fail, the next restore does it. Returns notes
        on writes made to a target while its name was free, which are kept (see ``_rename_in``).
        """
        self._set_phase(client, "swapping")
        for target, existed in sorted(self.targets.items()):
            if existed:
                _rename(client, target, self.aside(target))
        notes = []
        for target in sorted(self.targets):
            notes += self._rename_in(client, target)
        self._set_phase(client, "committed")
        return notes

    def _rename_in(self, client: t.Any, target: str) -> list[str]:
        """Rename the staged collection onto its target, keeping what writers wrote under the target's name.

        A write to a name that does not exist creates the collection: while the target is moved aside (or before a
        new target is renamed in) a writer's insert makes a new one, onto which no rename is possible (FerretDB has no
        dropTarget, and it would drop the write). That collection is moved to an ``add`` name, and its documents are
        inserted into the target once the staged collection holds the name.
        """
        strays: list[str] = []
        while True:
            try:
                _rename(client, self.staged(target), target)
                break
            except Exception as exc:  # pymongo's OperationFailure; this module imports no driver
                if getattr(exc, "code", None) != NAMESPACE_EXISTS or len(strays) >= MAX_STRAYS:
                    raise
                strays.append(self.stray(target, len(strays)))
                _rename(client, target, strays[-1])
        return [note for stray in strays if (note := _fold(client, stray, target))]

    def rollback(self, client: t.Any, settle_seconds: float = 0, undo_commit: bool = False) -> None:
        """Put back every target of a swap that did not reach its commit mark, then drop this run's names.

        Idempotent, and it reads the state from the server: a rollback cut short is completed by the next one.
        ``settle_seconds``: a killed mongorestore's last insert may still run on the server and create its staging
        collection again after the drop; keep dropping until nothing of this run reappears for that long.
        ``undo_commit``: the swap failed in this process, so databases already marked committed are put back too
        (the marks are one per database: a failure between two of them must not leave one database replaced).
        """
        undone = ("swapping", "committed") if undo_commit else ("swapping",)
        for db in self.databases():
            marker = client[db][self.prefix].find_one({"_id": "run"}) or {}
            if marker.get("phase") in undone:
                self._put_back(client, db)
        self.drop(client)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_seconds:
            time.sleep(0.25)
            if any(staging_run(name) == self.run_id for db in self.databases() for name in client[db].list_collection_names()):
                self.drop(client)
                quiet_since = time.monotonic()

    def _put_back(self, client: t.Any, db: str) -> None:
        names = set(client[db].list_collection_names())
        for target, existed in sorted(self._targets_of(db).items()):
            coll, aside, staged = _split(target)[1], _split(self.aside(target))[1], _split(self.staged(target))[1]
            strays = self._strays_of(names, target)
            if aside in names:
                if coll in names and staged in names:  # made by a write while the old one was aside: keep the write
                    strays.append(self.stray(target, MAX_STRAYS + len(strays)))
                    _rename(client, target, strays[-1])
                elif coll in names:  # the staged collection, renamed in
                    client[db].drop_collection(coll)
                _rename(client, f"{db}.{aside}", target)
            elif not existed and coll in names and staged not in names:
                client[db].drop_collection(coll)  # it was the staged collection, renamed in
            for stray in strays:
                if _split(target)[1] in client[db].list_collection_names():
                    _fold(client, stray, target)
                else:
                    _rename(client, stray, target)

    def drop(self, client: t.Any) -> None:
        """Drop the staging, aside and marker collections of this run (the marker last)."""
        for db in self.databases():
            names = client[db].list_collection_names()
            for name in sorted(names, key=lambda n: n == self.prefix):
                if staging_run(name) == self.run_id:
                    client[db].drop_collection(name)
            if not client[db].list_collection_names():
                client.drop_database(db)  # FerretDB keeps empty databases; a database without collections holds nothing

    @classmethod
    def recover_leftovers(cls, client: t.Any, databases: t.Iterable[str]) -> list[str]:
        """Roll back and drop what restores that died (SIGKILL, lost host) left in ``databases``.

        Returns one note per run handled or left alone (a run of another host whose liveness cannot be seen).
        """
        notes = []
        for db in sorted(set(databases)):
            runs = {run for name in client[db].list_collection_names() if (run := staging_run(name))}
            for run_id in sorted(runs):
                marker = client[db][f"{PREFIX}{run_id}"].find_one({"_id": "run"}) or {}
                alive = _owner_alive(marker.get("owner", {})) if marker else False
                if alive is None:
                    notes.append(f"staging collections {db}.{PREFIX}{run_id}* belong to a restore started on "
                                 f"{marker['owner'].get('host')}; left alone (drop them if that restore is not running)")
                    continue
                if alive:
                    continue
                targets = {f"{db}.{item['name']}": bool(item.get("existed")) for item in marker.get("targets", [])}
                cls(targets=targets, run_id=run_id, extra_databases=(db,)).rollback(client)
                notes.append(f"dropped the staging collections {db}.{PREFIX}{run_id}* of a restore that did not finish")
        return notes


def kept_name(name: str) -> str:
    """``lifeboat_restore_<run>_<kind>_<coll>`` -> ``lifeboat_kept_<run>_<kind>_<coll>``: out of every restore's reach."""
    return KEPT_PREFIX + name.removeprefix(PREFIX)


def _fold(client: t.Any, source: str, target: str) -> str | None:
    """Insert the documents of ``source`` (their exact BSON) into ``target`` and drop it; when one of them has an _id
    the target already holds, keep ``source`` (``kept_name``) instead. A note, or None."""
    from bson.codec_options import CodecOptions  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    db_name, coll = _split(source)
    db = client.get_database(db_name, codec_options=CodecOptions(document_class=RawBSONDocument))
    documents = list(db[coll].find())
    try:
        if documents:
            db[_split(target)[1]].insert_many(documents, ordered=False)
    except Exception as exc:  # noqa: BLE001 - a duplicate key: neither copy may be dropped
        kept = kept_name(coll)
        db[coll].rename(kept)
        return (f"{len(documents)} documents written to {target} while the restore swapped it could not all be added "
                f"to it ({' '.join(str(exc).split())[:120]}); they are kept in {db_name}.{kept}")
    db.drop_collection(coll)
    return (f"{len(documents)} document{'s' if len(documents) != 1 else ''} written to {target} while the restore "
            "swapped it were added to it") if documents else None


def _rename(client: t.Any, source: str, target: str) -> None:
    db, coll = _split(source)
    client[db][coll].rename(_split(target)[1])


def with_retries(connect: t.Callable[[], t.Any], action: t.Callable[[t.Any], t.Any], seconds: float = RETRY_SECONDS
                 ) -> t.Any:
    """Run ``action(client)``, reconnecting for up to ``seconds`` while the server is away (a restart)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client = connect()
            try:
                return action(client)
            finally:
                client.close()
        except Exception:  # connection and driver errors alike: the deadline decides
            if time.monotonic() >= deadline:
                raise
            time.sleep(1)
