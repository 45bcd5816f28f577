# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""A deploy's data: the app's databases dumped (and verified) before a release starts, restored after a failed
migration, and their data expectations checked in the gate, all through the collection's own libraries.
"""

from __future__ import annotations

import typing as t

from . import _mongo_module, _params, _postgres_module, _sources
from ._archive import ArchiveOptions
from ._common import LifeboatError


def db_params(entry: dict[str, t.Any], destination: str | None = None, job: str | None = None) -> dict[str, t.Any]:
    """A databases entry as the dump/restore library's options (their defaults filled in)."""
    specs = {**_postgres_module.postgres_dump_options(), **_mongo_module.mongodb_dump_options(),
             **_params.dump_archive_options(),
             **_postgres_module.postgres_connection_options(), **_mongo_module.mongodb_connection_options()}
    filled = {name: spec.get("default") for name, spec in specs.items()}
    filled.update({key: value for key, value in entry.items() if value is not None and key != "expectations"})
    if destination:
        filled.update(destination=destination, job=job)
    return filled


def backup(params: dict[str, t.Any], destination: str, label: str) -> list[dict[str, t.Any]]:
    """Each database dumped by the collection's own library, then verified at level structure."""
    from . import _verify  # pylint: disable=import-outside-toplevel

    done = []
    for entry in params["databases"]:
        job = f"{params['app']}-{entry['database']}-{label}"
        source = _sources.get(entry["engine"])
        request = source.dump_request(db_params(entry, destination, job))
        result = source.dump(request)
        # The structure check reads the archive with the clients where the dump ran (the server's container: its
        # pg_restore matches the server's version, the host's may be older).
        archives = _verify.select_archives(archive=result["archive"])
        checked = _verify.verify(_verify.VerifyRequest(archives=archives, level="structure",
                                                       connections={entry["engine"]: request.connection}))[0]
        if not checked["ok"]:
            raise LifeboatError(f"the pre-deploy backup of {entry['database']} failed its verification: "
                                f"{checked['failure']}")
        done.append({"engine": entry["engine"], "database": entry["database"], "archive": result["archive"],
                     "manifest": result["manifest"], "counts": result["manifest_data"].get("counts", {}),
                     "verified": "structure"})
    return done


def restore(params: dict[str, t.Any], backups: list[dict[str, t.Any]], destination: str) -> list[dict[str, t.Any]]:
    """The pre-deploy archives back into their databases, each after a safety dump of what is there now."""

    entries = {(e["engine"], e["database"]): e for e in params["databases"]}
    done = []
    for item in backups:
        entry = entries.get((item["engine"], item["database"]))
        if entry is None:
            raise LifeboatError(f"database {item['database']} of the pre-deploy backup is no longer in databases")
        safety = ArchiveOptions(destination=destination, job=f"{params['app']}-{item['database']}-before-rollback")
        source = _sources.get(item["engine"])
        result = source.restore_whole(db_params(entry), item["database"], item["archive"], safety)
        done.append({"database": item["database"], "archive": item["archive"], "counts": result.get("counts"),
                     "safety_dump": result.get("safety_dump")})
    return done


def expectations(params: dict[str, t.Any], backups: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """The data expectations of each database (h-expect's library); the pre-deploy manifest is the baseline."""
    wanted = [entry for entry in params["databases"] if entry.get("expectations")]
    if not wanted:
        return {"ok": True, "checked": []}
    try:
        from ._expectations import check_expectations  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise LifeboatError("databases[].expectations needs the collection's _expectations library, which this "
                            "installation lacks") from None
    manifests = {item["database"]: item["manifest"] for item in backups}
    checked = []
    for entry in wanted:
        wish = dict(entry["expectations"])
        if not wish.get("baseline_manifest") and entry["database"] in manifests:
            wish["baseline_manifest"] = manifests[entry["database"]]
        connection_options = {**_postgres_module.postgres_connection_options(),
                              **_mongo_module.mongodb_connection_options()}
        connection = {key: value for key, value in db_params(entry).items() if key in connection_options}
        outcome = check_expectations(entry["engine"], connection, wish).as_dict()
        checked.append({"database": entry["database"], **outcome})
        if not outcome["ok"]:
            return {"ok": False, "checked": checked,
                    "reason": f"data expectations of {entry['database']} failed: {'; '.join(outcome['failures'][:3])}"}
    return {"ok": True, "checked": checked}
