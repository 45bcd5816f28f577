# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The work of each module, one function per module: validated options in (a Run), an Outcome out.

The database modules' are in _postgres_module and _mongo_module, migration_validate's in _validate, backup_prune's
in _retention, backup_status's in _status: Ansible packs into a module's payload every module_util it imports, so
each module imports only the code of its own area.

_module_frame.run_module() calls them; errors are LifeboatErrors, which the frame turns into the module's one-line
failure. Warnings go through run.warn() so that they reach the user even when the task fails afterwards.
"""

from __future__ import annotations

import typing as t

from . import _docker_apps, _files_source, _params, _sources, _verify
from ._archive import load_trusted
from ._module_frame import Outcome, Run


def backup_verify(run: Run) -> Outcome:
    params = run.params
    trust = _params.trust(params)
    archives = _verify.select_archives(archive=params["archive"], destination=params["destination"],
                                       job=params["job"], select=params["select"], trust=trust)
    decryption = _params.decryption(params)
    level = _verify.resolve_level(params["level"], archives, decryption)
    if run.check_mode and level == "restore":
        level = "structure"
    request = _verify.VerifyRequest(
        archives=archives,
        level=level,
        decryption=decryption,
        connections={name: source.connection(params[name]) for name, source in _sources.SOURCES.items()
                     if params.get(name)},
        pg_bin_dir=params["pg_bin_dir"],
        tools_dir=params["tools_dir"],
        record=params["record"] and not run.check_mode,
        trust=trust,
        signing_key_file=_params.record_key(params),
    )
    results = _verify.verify(request)
    if results and request.unsigned_records_warning:
        run.warn(request.unsigned_records_warning)
    failures = [result for result in results if not result["ok"]]
    summary: dict[str, t.Any] = {"results": results, "passed_count": len(results) - len(failures),
                                 "failed_count": len(failures)}
    changed = bool(results) and request.record
    if failures:
        more = f" (and {len(failures) - 1} more archives failed)" if len(failures) > 1 else ""
        return Outcome(changed=changed, result=summary, failure=failures[0]["failure"] + more)
    if not results:
        summary["msg"] = "no archive to verify"
    return Outcome(changed=changed, result=summary)


def docker_app_info(run: Run) -> Outcome:
    return Outcome(changed=False, result=_docker_apps.describe(run.params["project"]))


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
