# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of each module, one function per module: validated options in (a Run), an Outcome out.

_module_frame.run_module() calls them; errors are LifeboatErrors, which the frame turns into the module's one-line
failure. Warnings go through run.warn() so that they reach the user even when the task fails afterwards.
"""

from __future__ import annotations

import typing as t

from . import (
    _catalog,
    _docker_apps,
    _files_source,
    _mongo,
    _params,
    _postgres,
    _retention,
    _sources,
    _status,
    _validate,
    _verify,
)
from ._archive import load_trusted
from ._common import LifeboatError
from ._module_frame import Outcome, Run
from ._validate_core import Options

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


def migration_validate(run: Run) -> Outcome:
    params = run.params
    source = _validate.endpoint(params["source"], params["engine"], "source")
    target = _validate.endpoint(params["target"], params["engine"], "target")
    options = Options(
        checks=tuple(params["checks"]),
        required=tuple(params["required_checks"]),
        objects=tuple(params["objects"]),
        exclude_objects=tuple(params["exclude_objects"]),
        count_tolerance_percent=params["count_tolerance_percent"],
        content_mode=params["content_mode"],
        sample_size=params["sample_size"],
        chunk_rows=params["chunk_rows"],
        bisect_threshold=params["bisect_threshold"],
        max_differences=params["max_differences"],
        timing_queries=params["timing_queries"],
        timing_runs=params["timing_runs"],
        timing_max_ratio=params["timing_max_ratio"],
        require_authentication=params["require_authentication"],
        require_tls=params["require_tls"],
        expected_users=params["expected_users"],
        health_checks=params["health_checks"],
    )
    request = _validate.ValidateRequest(
        engine=params["engine"], source=source, target=target, options=options,
        report_path=params["report_path"], check_mode=run.check_mode,
        scratch_database=params["scratch_database"],
    )
    result = _validate.validate(request)
    # In check mode an archive source is only inspected, not restored: its checks cannot pass yet.
    passed = result["passed"] or (run.check_mode and params["source"].get("archive"))
    return Outcome(result=result, failure=None if passed else result["summary"])


def mongodb_dump(run: Run) -> Outcome:
    request = _params.mongodb_dump_request(run.params)
    if run.check_mode:
        plan = _mongo.plan_dump(request)
        return Outcome(changed=True, result={"collections": plan["collections"], "server": plan["server"]})
    result = _mongo.dump(request)
    return Outcome(changed=True, result={"server": result["manifest_data"]["server"], **_params.dump_result(result)})


def postgresql_dump(run: Run) -> Outcome:
    request = _params.postgres_dump_request(run.params)
    if run.check_mode:
        plan = _postgres.plan_dump(request)
        return Outcome(changed=True, result={key: plan[key] for key in ("tables", "server_version", "pg_dump_version")})
    result = _postgres.dump(request)
    manifest = result["manifest_data"]
    return Outcome(changed=True, result={"server_version": manifest["server"]["version"],
                                         "pg_dump_version": manifest["tool"]["version"],
                                         **_params.dump_result(result)})


def _restore(run: Run, engine: t.Any, build: t.Callable[[str], t.Any],
             planned: t.Callable[[dict[str, t.Any]], dict[str, t.Any]],
             restored: t.Callable[[dict[str, t.Any]], dict[str, t.Any]]) -> Outcome:
    """A restore module's work, the same for every engine: choose the archive, plan (all check mode does), restore.

    ``engine`` is ``_postgres`` or ``_mongo``; ``build(archive)`` its RestoreRequest; ``planned`` and ``restored``
    pick what the module returns of the plan and of the restore (the restore's values win where both name a key).
    """
    archive, note, reason = _params.restore_archive(run.params)
    if note:
        run.warn(note)
    request = build(archive)
    # Check mode reads the archive whole (all it can prove); a restore reads it once, checking while it restores.
    plan = engine.plan_restore(request, read_archive=run.check_mode)
    common = {"archive": archive, **({"archive_reason": reason} if reason else {}), **planned(plan)}
    if run.check_mode:
        return Outcome(changed=True, result=common)
    result = engine.restore(request, plan)
    for warning in result["warnings"]:
        run.warn(warning)
    return Outcome(changed=True, result={**common, **restored(result)})


def mongodb_restore(run: Run) -> Outcome:
    params = run.params
    connection = _params.mongo_connection(params)  # before the archive: a wrong container is the first error

    def build(archive: str) -> _mongo.RestoreRequest:
        return _mongo.RestoreRequest(
            connection=connection,
            archive_path=archive,
            decryption=_params.decryption(params),
            target_database=params["target_database"],
            ns_from=params["ns_from"],
            ns_to=params["ns_to"],
            ns_include=params["ns_include"],
            ns_exclude=params["ns_exclude"],
            drop=params["drop"],
            overwrite=params["overwrite"],
            safety_dump=_params.safety_dump_options(params),
            tools_dir=params["tools_dir"],
            trust=_params.trust(params),
            parallel_collections=params["parallel_collections"],
            insertion_workers_per_collection=params["insertion_workers_per_collection"],
        )

    return _restore(run, _mongo, build,
                    lambda plan: {"expected_counts": plan["expected"], "existing": plan["existing"],
                                  "mechanism": plan["mechanism"], "disk_space": plan["disk_space"]},
                    lambda result: {key: result[key] for key in ("counts", "restored_documents", "safety_dumps")})


def postgresql_restore(run: Run) -> Outcome:
    params = run.params
    connection = _params.pg_connection(params, None)

    def build(archive: str) -> _postgres.RestoreRequest:
        return _postgres.RestoreRequest(
            connection=connection,
            archive_path=archive,
            target_database=params["target_database"],
            decryption=_params.decryption(params),
            overwrite=params["overwrite"],
            recreate=params["recreate"],
            jobs=params["jobs"],
            no_owner=params["no_owner"],
            no_privileges=params["no_privileges"],
            maintenance_database=params["maintenance_database"],
            safety_dump=_params.safety_dump_options(params),
            pg_bin_dir=params["pg_bin_dir"],
            trust=_params.trust(params),
        )

    return _restore(run, _postgres, build,
                    lambda plan: {"expected_counts": plan["manifest"]["counts"],
                                  **{key: plan[key] for key in _postgres.TARGET_SUMMARY}},
                    lambda result: {key: result[key] for key in ("created", "counts", "safety_dump",
                                                                 "leftovers_dropped", *_postgres.TARGET_SUMMARY)})


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
