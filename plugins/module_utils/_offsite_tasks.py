# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The offsite_* modules' homes: each module's argument spec (``<module>_spec()``) and its work (``<module>(run)``,
validated options in, an Outcome out)."""

from __future__ import annotations

import typing as t

from . import _catalog, _offsite, _retention
from ._module_frame import Outcome, Run


def _remote(params: t.Mapping[str, t.Any]) -> _offsite.Remote:
    return _offsite.Remote.from_options(params)


def offsite_copy_spec() -> dict[str, t.Any]:
    return {
        "destination": {"type": "path", "required": True},
        "job": {"type": "str"},
        "only_verified": {"type": "bool", "default": True},
        **_offsite.remote_options(),
    }


def offsite_copy(run: Run) -> Outcome:
    params = run.params
    remote = _remote(params)
    _retention.check_destination(params["destination"])
    try:
        result = _offsite.copy_destination(params["destination"], remote, params["job"], check_mode=run.check_mode,
                                           only_verified=params["only_verified"])
    except _offsite.LifeboatError as exc:
        if not run.check_mode:
            _offsite.record_copy(params["destination"], ok=False, failure=str(exc), job=params["job"])
        raise
    if not run.check_mode:
        _offsite.record_copy(params["destination"], ok=True, job=params["job"])
    for skipped in result.skipped:
        run.warn(f"{skipped['name']} not copied: {skipped['reason']}")
    return Outcome(changed=bool(result.copied), result={**result.as_dict(), "url": remote.url()})


def offsite_verify_spec() -> dict[str, t.Any]:
    return {"job": {"type": "str"}, "download": {"type": "bool", "default": False}, **_offsite.remote_options()}


def offsite_verify(run: Run) -> Outcome:
    params = run.params
    remote = _remote(params)
    checks, listing = _offsite.verify_remote(remote, params["job"], download=params["download"])
    failed = [check for check in checks if not check.ok]
    result = {"url": remote.url(), "results": [check.as_dict() for check in checks],
              "open_uploads": [upload["Key"] for upload in listing.uploads], "foreign": listing.foreign}
    outcome = Outcome(result=result)
    if not checks:
        outcome.failure = f"no archive in {remote.url()}{' of job ' + params['job'] if params['job'] else ''}"
    elif failed:
        outcome.failure = (f"{len(failed)} of {len(checks)} remote archives failed: "
                           f"{failed[0].name}: {failed[0].problem}")
    return outcome


def offsite_prune_spec() -> dict[str, t.Any]:
    return {
        "destination": {"type": "path", "required": True},
        "job": {"type": "str"},
        **_retention.policy_options(),
        "remote_keep": {"type": "dict"},
        **_offsite.remote_options(),
    }


def offsite_prune(run: Run) -> Outcome:
    params = run.params
    remote = _remote(params)
    policy = _retention.Policy.from_options(params)
    remote_policy = _retention.Policy.from_options(params["remote_keep"]) if params["remote_keep"] else None
    _retention.check_destination(params["destination"])
    plan = _offsite.prune_remote(remote, params["destination"], policy, params["job"], remote_policy,
                                 check_mode=run.check_mode)
    for item in plan.held:
        run.warn(f"{item['job']}: {item['reason']}")
    for item in plan.locked:
        run.warn(f"{item['name']} is locked until {item['locked_until']}: not removed")
    return Outcome(changed=bool(plan.remove or plan.uploads_aborted), result={**plan.as_dict(), "url": remote.url()})


def offsite_fetch_spec() -> dict[str, t.Any]:
    return {
        "directory": {"type": "path", "required": True},
        "job": {"type": "str"},
        "archive": {"type": "str"},
        "select": {"type": "str", "default": "newest_verified", "choices": ["newest_verified", "newest"]},
        **_offsite.remote_options(),
    }


OFFSITE_FETCH_RULES: dict[str, t.Any] = {"required_one_of": [("job", "archive")]}


def offsite_fetch(run: Run) -> Outcome:
    params = run.params
    remote = _remote(params)
    name = params["archive"]
    if not name:
        if not params["job"]:
            raise _offsite.LifeboatError("give job (its newest verified archive is fetched) or archive (a file name)")
        name = _offsite.newest_remote(remote, params["job"], params["select"])
    if not _catalog.ARCHIVE_NAME.match(name) or "/" in name:
        raise _offsite.LifeboatError(f"archive '{name}' is not an archive file name (JOB-YYYYmmddTHHMMSSZ.KIND...)")
    if run.check_mode:
        return Outcome(changed=True, result={"archive": f"{params['directory']}/{name}", "url": remote.url(name)})
    path = _offsite.fetch_archive(remote, name, params["directory"])
    return Outcome(changed=True, result={"archive": path, "url": remote.url(name)})
