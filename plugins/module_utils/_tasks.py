# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of each module, one function per module: validated options in (a Run), an Outcome out.

The database modules' are in _postgres_module and _mongo_module, migration_validate's in _validate: Ansible packs
into a module's payload every module_util it imports, so each module imports only the code of its own area.

_module_frame.run_module() calls them; errors are LifeboatErrors, which the frame turns into the module's one-line
failure. Warnings go through run.warn() so that they reach the user even when the task fails afterwards.
"""

from __future__ import annotations

import typing as t

from . import (
    _catalog,
    _docker_apps,
    _files_source,
    _params,
    _retention,
    _sources,
    _status,
    _verify,
)
from ._archive import load_trusted
from ._common import LifeboatError
from ._module_frame import Outcome, Run

STATUS_FAIL_FROM = {"warning": _status.WARNING, "critical": _status.CRITICAL}


def backup_prune(run: Run) -> Outcome:
    params = run.params
    policy = _retention.Policy.from_options(params)
    _retention.check_destination(params["destination"])
    destination = _catalog.scan(params["destination"], params["job"])
    plan = _retention.plan_prune(destination, policy, remove_partials=params["remove_partials"], job=params["job"])
    removed_files = [] if run.check_mode else _retention.apply_prune(plan)
    result = plan.as_dict()
    result["warnings_found"] = result.pop("warnings")
    for warning in result["warnings_found"] + [f"{item['job']}: {item['reason']}" for item in result["held"]]:
        run.warn(warning)
    diff = None
    if run.diff:
        diff = {"before": "\n".join(plan.names(after=False)) + "\n",
                "after": "\n".join(plan.names(after=True)) + "\n",
                "before_header": params["destination"], "after_header": params["destination"]}
    if not run.check_mode:
        result["removed_files"] = removed_files
    return Outcome(changed=bool(plan.removals or plan.partials_to_remove), result=result, diff=diff)


def backup_status(run: Run) -> Outcome:
    params = run.params
    outcome = Outcome()
    try:
        options = _status.StatusOptions.from_options({name: params[name] for name in _status.options_spec()})
        metrics_file = params["metrics_file"]
        if metrics_file:
            _status.validate_metrics_path(metrics_file)
        report = _status.evaluate_root(params["destination"], params["jobs"], options)
        offsite_text = ""
        if params.get("offsite"):
            report, offsite_text = _with_offsite(report, params)
        outcome.result.update(report)
        if metrics_file:
            text = _status.metrics_text(report) + offsite_text
            before = _status.read_metrics(metrics_file)
            outcome.changed = not _status.same_metrics(before, text)
            outcome.result.update(metrics=text, metrics_file=metrics_file)
            if run.diff:
                outcome.diff = {"before": before or "", "after": text,
                                "before_header": metrics_file, "after_header": metrics_file}
            if not run.check_mode:
                _status.write_metrics(metrics_file, text)
    except LifeboatError as exc:
        # The report built so far is still worth returning (e.g. when only the metrics file could not be written).
        outcome.failure = str(exc)
        return outcome
    threshold = STATUS_FAIL_FROM.get(params["fail_on"])
    if threshold is not None and _status.SEVERITY_ORDER[report["state"]] >= _status.SEVERITY_ORDER[threshold]:
        outcome.failure = report["summary"]
    return outcome


def _with_offsite(report: dict[str, t.Any], params: t.Mapping[str, t.Any]) -> tuple[dict[str, t.Any], str]:
    """The report with its remote side (state, reasons, summary) and that side's metrics."""
    from . import _offsite  # pylint: disable=import-outside-toplevel  # boto3 only when a bucket is asked about

    remote = _offsite.Remote.from_options(params["offsite"])
    health = _offsite.offsite_health(params["destination"], remote, params["offsite_max_delay_hours"])
    report = {**report, "offsite": health}
    if _status.SEVERITY_ORDER[health["state"]] > _status.SEVERITY_ORDER[report["state"]]:
        report["state"] = health["state"]
        report["exit_code"] = _status.exit_code_for(health["state"])
        report["summary"] = f"{health['state']}: {health['reasons'][0]['message']}"
    return report, _offsite.offsite_metrics_text([(params["destination"], health)])


def backup_verify(run: Run) -> Outcome:
    params = run.params
    archives = _verify.select_archives(archive=params["archive"], destination=params["destination"],
                                       job=params["job"], select=params["select"])
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
        trust=_params.trust(params),
    )
    results = _verify.verify(request)
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
    if run.check_mode:
        request.validate()
        roots = _files_source.resolve_roots(request.volumes, request.paths)
        return Outcome(changed=True, result={"roots": roots})
    result = source.dump(request)
    files = result["manifest_data"]["files"]
    for changed in files["changed_while_read"]:
        run.warn(f"{changed}: its copy in the archive may be inconsistent")
    return Outcome(changed=True, result={"roots": files["roots"], "changed_while_read": files["changed_while_read"],
                                         **_params.dump_result(result)})


def files_restore(run: Run) -> Outcome:
    params = run.params
    archive, note, reason = _params.restore_archive(params)
    if note:
        run.warn(note)
    request = _files_source.RestoreRequest(
        archive_path=archive, decryption=_params.decryption(params), volume_map=params["volume_map"],
        path_map=params["path_map"], only=params["only"], overwrite=params["overwrite"],
        safety_dump_dir=params["safety_dump_dir"], trust=_params.trust(params))
    common = {"archive": archive, **({"archive_reason": reason} if reason else {})}
    if run.check_mode:
        targets = _files_source.plan_restore(request, load_trusted(archive, request.trust))
        return Outcome(changed=True, result={**common, "targets": [target.label for target in targets]})
    return Outcome(changed=True, result={**common, **_files_source.restore(request)})
