# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The files modules' homes (files_backup, files_restore): each one's argument spec and its work, beside the files
source as _postgres_module and _mongo_module are beside theirs."""

from __future__ import annotations

import typing as t

from . import _files_source, _params, _sources
from ._archive import load_trusted
from ._module_frame import Outcome, Run


def files_backup_spec() -> dict[str, t.Any]:
    return {**_sources.get("files").job_options(), "job": {"type": "str", "required": True}}


def files_backup(run: Run) -> Outcome:
    source = _sources.get("files")
    request = source.dump_request(run.params)
    if run.check_mode:  # every refusal of the real run that needs no write; what it would stop
        roots = _files_source.plan_dump(request)
        stopping = _files_source.containers_to_stop(request, roots, _sources.database_source)
        return Outcome(changed=True, result={"roots": roots,
                                             "stopped_containers": [container["name"] for container in stopping]})
    result = source.dump(request)
    files = result["manifest_data"]["files"]
    for changed in files["changed_while_read"]:
        run.warn(f"{changed}: its copy in the archive may be inconsistent")
    server = result["manifest_data"]["server"]
    stopped = {key: server[key] for key in ("stopped_containers", "downtime_seconds") if key in server}
    return Outcome(changed=True, result={"roots": files["roots"], "changed_while_read": files["changed_while_read"],
                                         **stopped, **_params.dump_result(result, run)})


def files_restore_spec() -> dict[str, t.Any]:
    return {**_params.restore_archive_options(), **_files_source.files_restore_options()}


FILES_RESTORE_RULES: dict[str, t.Any] = _params.RESTORE_ARCHIVE_RULES


def files_restore(run: Run) -> Outcome:
    params = run.params
    archive, note, reason = _params.restore_archive(params)
    if note:
        run.warn(note)
    request = _files_source.RestoreRequest(
        archive_path=archive, decryption=_params.decryption(params), volume_map=params["volume_map"],
        path_map=params["path_map"], only=params["only"], overwrite=params["overwrite"],
        safety_dump_dir=params["safety_dump_dir"], trust=_params.trust(params))
    manifest = load_trusted(archive, request.trust)
    common = {"archive": archive, **({"archive_reason": reason} if reason else {}),
              **_params.signature_result(run, archive, request.trust)}
    if run.check_mode:
        targets = _files_source.plan_restore(request, manifest)
        return Outcome(changed=True, result={**common, "targets": [target.label for target in targets]})
    return Outcome(changed=True, result={**common, **_files_source.restore(request)})
