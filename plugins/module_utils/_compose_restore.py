# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""A whole Docker Compose app restored by its backup job's name (a ``compose_project`` job).

The backup role backs up a compose project as parts, each a job of its own (``PROJECT-SERVICE`` for a database
dumped in its container, ``PROJECT-files`` for the other volumes, bind mounts and compose files; see
_docker_apps). This puts them back together, deciding everything here:

- the parts are the project's as its containers show them now (the containers must exist: after ``docker compose
  up``, or ``docker compose create`` to restore before the app starts); ``parts`` picks some of them;
- the set is one archive per part: the newest verified (``select``) that started at or before ``as_of``;
- nothing is written before every part was planned: a database that holds tables or a volume or path that holds
  something else than the archive needs ``overwrite`` (which replaces it whole: PostgreSQL ``recreate``, MongoDB
  ``drop``), a target that already holds exactly the archive's files is left as it is;
- the order: the app's containers that mount a restored volume or path are stopped, the databases are restored
  into their running containers, the database containers that mount a restored path are stopped too, the volumes
  and paths are restored, and everything stopped is started again, always (on failure too, and after a SIGKILL by
  the next run: the stopped-notes of _stopping), then waited for until it runs (healthy, where it has a
  healthcheck).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
import typing as t
from dataclasses import dataclass, field

from . import _catalog, _docker_apps, _files_source, _signing, _sources, _tar_index
from ._archive import load_trusted
from ._clients import docker_api, docker_sdk
from ._codecs import Decryption
from ._common import LifeboatError, TargetHoldsData, first_few, one_line
from ._module_frame import Outcome, Run
from ._params import decryption, decryption_options, trust
from ._stopped_notes import notes_dir
from ._stopping import STOP_TIMEOUT_SECONDS, _mounts_read, stopped

HEALTH_POLL_SECONDS = 1.0


@dataclass
class Request:
    project: str
    root: str | None = None  # the backup root: each part's archives in ROOT/PART (the backup role's default)
    destination: str | None = None  # one directory that holds every part's archives (a job's own destination)
    parts: list[str] = field(default_factory=list)  # PROJECT-SERVICE / SERVICE, PROJECT-files / files; all if empty
    as_of: str | None = None  # the newest archives started at or before this time (ISO 8601, UTC when no zone)
    select: str = "newest_verified"
    overwrite: bool = False
    safety_dump_dir: str | None = None
    decryption: Decryption = field(default_factory=Decryption)
    trust: _signing.Trust = field(default_factory=_signing.host_trust)
    health_timeout: int = 120
    # What a database part's restore takes besides its container (the restore module's options: age, signatures).
    engine_params: dict[str, t.Any] = field(default_factory=dict)

    def validate(self) -> None:
        if bool(self.root) == bool(self.destination):
            raise LifeboatError("give root (each part's archives in ROOT/PROJECT-PART) or destination (one directory "
                                "for every part), not both or neither")
        if self.select not in _catalog.RESTORE_SELECTIONS:
            raise LifeboatError(f"select must be one of {', '.join(_catalog.RESTORE_SELECTIONS)}, not '{self.select}'")
        if self.health_timeout < 0:
            raise LifeboatError(f"health_timeout must be 0 or more seconds, not {self.health_timeout}")
        as_of_time(self.as_of)


def as_of_time(text: str | None) -> _dt.datetime | None:
    if text is None or text == "":
        return None
    moment = _catalog.parse_time(str(text).strip().replace(" ", "T"))
    if moment is None:
        raise LifeboatError(f"as_of {text!r} is no time; give it as 2026-11-22T03:00:00Z (ISO 8601)")
    return moment


@dataclass
class Part:
    job: str  # PROJECT-SERVICE or PROJECT-files, as the backup named it
    engine: str
    container: str | None  # a database part's container
    archive: str = ""
    reason: str = ""
    manifest: dict[str, t.Any] = field(default_factory=dict)
    plan: dict[str, t.Any] = field(default_factory=dict)
    request: t.Any = None
    unchanged: list[str] = field(default_factory=list)  # a files part's roots that already hold the archive's files
    restore_roots: list[str] = field(default_factory=list)  # a files part's roots to restore
    start_first: bool = False  # a database part whose container does not run: started for the restore, stopped after

    @property
    def database(self) -> bool:
        """A database dumped in its container (restored into it), or else the app's volumes and paths."""
        return self.engine in _sources.DATABASES


def _describe(project: str) -> dict[str, t.Any]:
    try:
        return _docker_apps.describe(project)
    except _docker_apps.NoSuchProject:
        raise LifeboatError(f"no container of compose project {project} exists on this host: bring it up first "
                            "(docker compose up --detach; or docker compose create, to restore before the app "
                            "starts); the restore finds the project's parts and their containers from them") from None


def _chosen_parts(project: str, jobs: list[dict[str, t.Any]], wanted: list[str]) -> list[dict[str, t.Any]]:
    """The parts to restore, in the project's order: all, or those ``wanted`` names (PROJECT-SERVICE or SERVICE)."""
    by_name = {job["name"]: job for job in jobs}
    chosen = []
    for name in wanted:
        full = name if name in by_name else f"{project}-{name}"
        if full not in by_name:
            known = ", ".join(job["name"][len(project) + 1:] for job in jobs)
            raise LifeboatError(f"compose project {project} has no part {name!r}; its parts are {known}")
        chosen.append(full)
    return [job for job in jobs if not wanted or job["name"] in chosen]


def choose_archive(directory: str, job: str, select: str, as_of: _dt.datetime | None,
                   trust: _signing.Trust) -> tuple[str, str]:
    """The archive of ``job`` in ``directory`` a restore of the set takes (the newest, verified with
    select=newest_verified, started at or before ``as_of``), and why."""
    if not os.path.isdir(directory):
        raise LifeboatError(f"part {job} has no backup directory {directory}; back the project up first (or give "
                            "root/destination where its archives are)")
    archives = [archive for archive in _catalog.scan(directory, job, trust).archives if archive.readable]
    if as_of is not None:
        archives = [archive for archive in archives if archive.started_at <= as_of]
    when = f" started at or before {as_of:%Y-%m-%dT%H:%M:%SZ}" if as_of else ""
    if not archives:
        raise LifeboatError(f"no archive of part {job}{when} in {directory}; run the backup first or give as_of")
    if select == "newest_verified":
        proven = [archive for archive in archives if archive.verified]
        if not proven:
            raise LifeboatError(f"none of the {len(archives)} archives of part {job}{when} in {directory} passed a "
                                "verification; verify them (lifeboat.ops.verify) or give select: newest")
        chosen = proven[-1]
        proof = f"verified at level {(chosen.last_verification or {}).get('level')}"
    else:
        chosen = archives[-1]
        proof = "verified" if chosen.verified else "not verified"
    newer = [archive.name for archive in archives if archive.started_at > chosen.started_at]
    reason = f"the newest {'verified ' if select == 'newest_verified' else ''}archive of part {job}{when} ({proof})"
    if newer:
        reason += f"; passed over {len(newer)} newer: {first_few(newer, separator=', ')}"
    return chosen.path, reason


def _holds_archive(path: str, expected: list[dict[str, t.Any]]) -> bool:
    """Whether ``path`` holds exactly what the archive's manifest lists for a root (so restoring it changes nothing)."""
    if not os.path.lexists(path):
        return False
    owners = os.geteuid() == 0
    try:
        found = _tar_index.walk(path)
    except OSError:
        return False
    return _tar_index.root_sums({"x": found}, owners) == _tar_index.root_sums({"x": expected}, owners)


def _files_plan(request: Request, part: Part) -> None:
    """Which roots of a files part to restore; a root that already holds the archive's files is left as it is, one
    that holds other data is refused unless ``overwrite``."""
    api = docker_api() if any(item["kind"] == "volume" for item in part.manifest["files"]["roots"]) else None
    docker = docker_sdk()
    try:
        for item in part.manifest["files"]["roots"]:
            path = item["name"]
            if api is not None and item["kind"] == "volume":
                try:
                    path = os.path.normpath(api.inspect_volume(item["name"])["Mountpoint"])
                except docker.errors.NotFound:
                    path = ""
            if path and _holds_archive(path, part.manifest["files"]["entries"][item["label"]]):
                part.unchanged.append(item["label"])
                continue
            if path and _files_source._holds(path) and not request.overwrite:  # pylint: disable=protected-access
                raise LifeboatError(f"part {part.job}: {item['label']} holds other data than the archive; set "
                                    "overwrite: true in the restore item to replace it (what it holds is archived "
                                    "first), or restore the part on its own with volume_map/path_map into a new place")
            part.restore_roots.append(item["name"])
    finally:
        if api is not None:
            api.close()
    part.request = _files_source.RestoreRequest(
        archive_path=part.archive, decryption=request.decryption, only=list(part.restore_roots),
        overwrite=request.overwrite, safety_dump_dir=request.safety_dump_dir, trust=request.trust)


def _database_plan(request: Request, part: Part) -> None:
    """A database part's request into its container, planned (the target's refusals come here, before anything is
    stopped). Replacing a database means replacing it whole: the app is put back as the set holds it."""
    params = {**request.engine_params, "container": part.container, "safety_dump_dir": request.safety_dump_dir}
    try:
        source = _sources.get(part.engine)
        part.request, part.plan = source.plan_into_container(params, part.archive, request.overwrite)
    except TargetHoldsData as exc:
        # Here overwrite replaces the database whole (recreate, drop): the engine's hint about those options goes.
        raise LifeboatError(f"part {part.job} (container {part.container}): {exc.holding}; set overwrite: true in the "
                            f"restore item (it replaces the database with the archive's) to {exc.overwrite_does}"
                            ) from None
    except LifeboatError as exc:
        raise LifeboatError(f"part {part.job} (container {part.container}): {exc}") from None


def _containers_using(services: list[dict[str, t.Any]], volumes: list[str], paths: list[str]
                      ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The project's running containers that mount a restored volume or path: the app's, and the databases'."""
    apps: list[dict[str, str]] = []
    databases: list[dict[str, str]] = []
    if not volumes and not paths:
        return apps, databases
    api = docker_api()
    docker = docker_sdk()
    try:
        for service in services:
            try:
                info = api.inspect_container(service["id"])
            except docker.errors.NotFound:
                continue
            if info["State"].get("Running") and _mounts_read(info, volumes, paths):
                (databases if service["engine"] else apps).append({"id": info["Id"], "name": service["container"]})
    finally:
        api.close()
    return apps, databases


def plan(request: Request) -> dict[str, t.Any]:
    """Everything decided before anything is stopped or written: the parts, their archives, the containers to stop."""
    request.validate()
    app = _describe(request.project)
    as_of = as_of_time(request.as_of)
    running = {service["container"]: service["running"] for service in app["services"]}
    parts = []
    for job in _chosen_parts(request.project, app["jobs"], request.parts):
        part = Part(job=job["name"], engine=job["engine"], container=job.get("container"))
        directory = request.destination or os.path.join(str(request.root), part.job)
        part.archive, part.reason = choose_archive(directory, part.job, request.select, as_of, request.trust)
        part.manifest = load_trusted(part.archive, request.trust)
        if not part.database:
            _files_plan(request, part)
        elif running.get(str(part.container)):
            _database_plan(request, part)
        else:  # made by `docker compose create`, or stopped: started for the restore (see _started_for_restore)
            part.start_first = True
        parts.append(part)
    roots = [item for part in parts if not part.database for item in part.manifest["files"]["roots"]
             if item["name"] in part.restore_roots]
    apps, databases = _containers_using(app["services"], [r["name"] for r in roots if r["kind"] == "volume"],
                                        [r["name"] for r in roots if r["kind"] == "path"])
    return {"app": app, "parts": parts, "stop_apps": apps, "stop_databases": databases}


def _wait_running(names: list[str], timeout: float) -> dict[str, str]:
    """Wait until each container runs, and is healthy where it has a healthcheck: {name: running|healthy}."""
    if not names:
        return {}
    api = docker_api()
    docker = docker_sdk()
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    try:
        while True:
            waiting = []
            for name in names:
                try:
                    state = api.inspect_container(name)["State"]
                except docker.errors.NotFound:
                    states[name] = "removed"
                    continue
                health = (state.get("Health") or {}).get("Status")
                if not state.get("Running"):
                    states[name] = f"not running ({state.get('Status')}, exit code {state.get('ExitCode')})"
                    if state.get("Status") in ("exited", "dead"):
                        continue
                    waiting.append(name)
                elif health and health != "healthy":
                    states[name] = health
                    if health != "unhealthy":
                        waiting.append(name)
                else:
                    states[name] = "healthy" if health else "running"
            if not waiting or time.monotonic() >= deadline:
                return states
            time.sleep(HEALTH_POLL_SECONDS)
    except docker.errors.DockerException as exc:
        raise LifeboatError(f"cannot ask the Docker engine how the containers run: {one_line(exc)}") from None
    finally:
        api.close()


def _part_result(part: Part, restored: dict[str, t.Any] | None) -> dict[str, t.Any]:
    result: dict[str, t.Any] = {"part": part.job, "engine": part.engine, "archive": part.archive,
                                "archive_reason": part.reason}
    if not part.database:
        result.update({"targets": part.restore_roots, "unchanged": part.unchanged})
        if restored is not None:
            result.update({"restored": restored["restored"], "safety_archive": restored["safety_archive"]})
        return result
    result.update({"container": part.container, "database": part.plan.get("database"),
                   "expected_counts": part.plan.get("expected") or part.manifest.get("counts")})
    if restored is not None:
        result["counts"] = restored["counts"]
        # PostgreSQL dumps the one database it replaces, MongoDB each database whose collections it replaces.
        single = restored.get("safety_dump")
        result["safety_dumps"] = list(restored.get("safety_dumps") or ([single] if single else []))
    return result


@contextlib.contextmanager
def _started_for_restore(request: Request, parts: list[Part]) -> t.Iterator[list[str]]:
    """Start the database containers that do not run (a project made with `docker compose create`), wait until each
    server answers, plan their restores, and stop them again afterwards, as they were found, whatever happens."""
    waiting = [part for part in parts if part.start_first]
    if not waiting:
        yield []
        return
    api = docker_api()
    docker = docker_sdk()
    started: list[str] = []
    try:
        for part in waiting:
            try:
                api.start(part.container)
            except docker.errors.DockerException as exc:
                raise LifeboatError(f"part {part.job}: cannot start its database container {part.container} for the "
                                    f"restore: {one_line(exc)}") from None
            started.append(str(part.container))
        for part in waiting:
            _wait_answering(request, part)
            _database_plan(request, part)
        yield started
    finally:
        for name in reversed(started):
            try:
                api.stop(name, timeout=STOP_TIMEOUT_SECONDS)
            except docker.errors.DockerException:
                pass  # gone meanwhile; a container left running holds no risk
        api.close()


def _wait_answering(request: Request, part: Part) -> None:
    """Wait until the server in the part's container answers (a new data directory is initialised first)."""
    source = _sources.get(part.engine)
    deadline = time.monotonic() + max(request.health_timeout, 1)
    while True:
        try:
            source.database_names(source.connection({**request.engine_params, "container": part.container}))
            return
        except Exception as exc:  # noqa: BLE001 - not up yet: the driver's or the container's error, said at the end
            if time.monotonic() >= deadline:
                reason = source.describe_error(exc)
                raise LifeboatError(f"part {part.job}: the database in container {part.container}, started for the "
                                    f"restore, did not answer within {request.health_timeout}s "
                                    f"({reason or one_line(exc)}): docker logs {part.container} says why") from None
        time.sleep(HEALTH_POLL_SECONDS)


def restore(request: Request, warn: t.Callable[[str], None] = lambda line: None) -> dict[str, t.Any]:
    """Restore the project's set (see the module's docstring for the order); the result names every part, its
    archive and counts, the containers stopped, the app's downtime and how each container runs afterwards."""
    decided = plan(request)
    parts: list[Part] = decided["parts"]
    results: dict[str, dict[str, t.Any]] = {}
    job = f"{request.project}-restore"
    destination = request.destination or request.root
    current: Part | None = None
    try:
        with contextlib.ExitStack() as stack:
            for_databases = stack.enter_context(contextlib.ExitStack())
            started = for_databases.enter_context(_started_for_restore(request, parts))
            apps = stack.enter_context(stopped(decided["stop_apps"], notes_dir(), job, destination, "restore"))
            for current in (part for part in parts if part.database):
                restored = _sources.get(current.engine).restore_planned(current.request, current.plan)
                for line in restored.get("warnings") or []:
                    warn(f"part {current.job}: {line}")
                results[current.job] = _part_result(current, restored)
            current = None
            # Stopped again before the volumes and paths: one that mounts a restored path must not run meanwhile.
            for_databases.close()
            databases = stack.enter_context(stopped(decided["stop_databases"], notes_dir(), f"{job}-databases",
                                                    destination, "restore"))
            for current in (part for part in parts if not part.database):
                unpacked = _files_source.restore(current.request) if current.restore_roots else None
                results[current.job] = _part_result(current, unpacked)
            current = None
    except LifeboatError as exc:
        raise LifeboatError(_partly_restored(request.project, exc, current, list(results.values()))) from exc
    stopped_names = list(apps) + list(databases)
    waited = stopped_names + [str(part.container) for part in parts if part.container and not part.start_first]
    states = _wait_running(list(dict.fromkeys(waited)), request.health_timeout)
    downtimes = [getattr(names, "downtime_seconds", None) for names in (apps, databases)]  # _stopping.StoppedNames
    downtime = max([d for d in downtimes if d is not None], default=None)
    result = {"project": request.project, "parts": [results[part.job] for part in parts],
              "stopped_containers": stopped_names, "downtime_seconds": downtime, "containers": states,
              "started_for_restore": started}
    failing = {name: state for name, state in states.items() if state not in ("running", "healthy")}
    if failing:
        result["failure"] = (f"compose project {request.project} was restored, but "
                             f"{'; '.join(f'container {name} is {state}' for name, state in failing.items())} "
                             f"{request.health_timeout}s after it was started again: docker logs NAME says why")
    return result


def _partly_restored(project: str, exc: LifeboatError, failed: Part | None, done: list[dict[str, t.Any]]) -> str:
    """A failure's line that names the part it failed in and the parts restored before it: those hold their
    archive's data now (all or nothing each), and where what they held went."""
    message = str(exc)
    if failed is not None and not message.startswith(f"part {failed.job}"):
        message = f"part {failed.job}: {message}"
    changed = [result for result in done if "counts" in result or "restored" in result]  # not those left unchanged
    if not changed:
        return message
    kept = [path for result in changed for path in [*result.get("safety_dumps", []), result.get("safety_archive")]
            if path]
    message += (f"; compose project {project} is restored only in part: {', '.join(r['part'] for r in changed)} "
                "restored already from the set")
    if kept:
        message += f" (what they held before is in {', '.join(kept)})"
    return message


def preview(request: Request) -> dict[str, t.Any]:
    """What check mode says: the parts, their archives, what would be stopped."""
    decided = plan(request)
    return {"project": request.project, "parts": [_part_result(part, None) for part in decided["parts"]],
            "stopped_containers": [c["name"] for c in decided["stop_apps"] + decided["stop_databases"]],
            "started_for_restore": [str(part.container) for part in decided["parts"] if part.start_first]}


def compose_restore_spec() -> dict[str, t.Any]:
    """compose_restore's options (the restore role's compose items forward them)."""
    return {
        "project": {"type": "str", "required": True},
        "root": {"type": "path"},
        "destination": {"type": "path"},
        "parts": {"type": "list", "elements": "str", "default": []},
        "as_of": {"type": "str"},
        "select": {"type": "str", "default": "newest_verified", "choices": list(_catalog.RESTORE_SELECTIONS)},
        "overwrite": {"type": "bool", "default": False},
        "safety_dump_dir": {"type": "path"},
        "health_timeout": {"type": "int", "default": 120},
        **decryption_options(),
    }


COMPOSE_RESTORE_RULES: dict[str, t.Any] = {"mutually_exclusive": [["root", "destination"]],
                                           "required_one_of": [["root", "destination"]]}


def compose_restore(run: Run) -> Outcome:
    params = run.params
    request = Request(project=params["project"], root=params["root"], destination=params["destination"],
                      parts=list(params["parts"] or []), as_of=params["as_of"], select=params["select"],
                      overwrite=params["overwrite"], safety_dump_dir=params["safety_dump_dir"],
                      decryption=decryption(params), trust=trust(params), health_timeout=params["health_timeout"],
                      engine_params={key: params[key] for key in decryption_options()})
    if run.check_mode:
        return Outcome(changed=True, result=preview(request))
    result = restore(request, run.warn)
    failure = result.pop("failure", None)
    return Outcome(changed=True, result=result, failure=failure)
