# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Containers stopped while their volumes are read, and always started again.

A files job reads Docker named volumes and host paths. What a running app or database writes there meanwhile
makes an archive that no longer fits together, so the job stops the containers it names (``stop_containers``)
and the running ones labelled ``lifeboat.stop-during-backup`` (value ``true`` or the job's name) that mount
what it reads, and starts them again afterwards:

- on success, on any failure and on SIGTERM/SIGHUP (the pipeline turns those into an exception) by
  :func:`stopped` itself;
- after a SIGKILL (or a power cut of the process) by :func:`restart_left_stopped`: before it stops anything,
  :func:`stopped` writes a note naming the job, its PID, when and the containers, and removes it only once all run
  again. The notes live in one directory per host, :func:`notes_dir` (``/var/lib/lifeboat/stopped``, or
  ``$LIFEBOAT_STOPPED_DIR``), so that every path finds them without a config file: the first thing each backup and
  restore (module, role, ``lifeboat backup``/``verify``) does is :func:`restart_before_run`; ``lifeboat
  restart-stopped`` is the systemd services' ``ExecStopPost=`` net; the status checks report what is still stopped
  (:func:`left_stopped`) as CRITICAL.

:func:`refuse_live_data_dirs` refuses to archive the data directory of a running database container: its files
change under the reader and make no consistent copy; the dump of that database does. Which containers serve a
database is the table of sources' to say (``_sources.database_source``, a floor above this one): the caller hands it
in.

The Docker Engine API is reached with the docker SDK (``DOCKER_HOST`` honoured), never the docker CLI.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import time
import typing as t

from ._clients import docker_api, docker_sdk
from ._common import LifeboatError, hold_lock, one_line, process_start
from ._files import write_file_atomic
from ._stopped_notes import STATE_PREFIX, STATE_SUFFIX, _start_all
from ._termination import termination_deferred

STOP_LABEL = "lifeboat.stop-during-backup"
# Like `docker stop`: the container's stop signal, then SIGKILL when it has not exited after this long.
STOP_TIMEOUT_SECONDS = 60
# (Docker API client, a container's inspect data) -> (the source of the database it serves or None, how that was found)
DatabaseOf = t.Callable[[t.Any, dict[str, t.Any]], tuple[t.Any, str]]


def _name(info: dict[str, t.Any]) -> str:
    return str(info.get("Name") or (info.get("Names") or ["?"])[0]).lstrip("/")


def _related(path: str, other: str) -> bool:
    """Whether one of the two paths is the other or lies under it (reading one reads part of the other)."""
    first, second = os.path.normpath(path).rstrip("/") + "/", os.path.normpath(other).rstrip("/") + "/"
    return first.startswith(second) or second.startswith(first)


def _mounts_read(info: dict[str, t.Any], volumes: t.Sequence[str], paths: t.Sequence[str]
                 ) -> list[tuple[dict[str, t.Any], str, str, bool]]:
    """The container's mounts the job reads: (mount, what the job names, the directory read as the container
    sees it, whether the job reads a directory above the mount (all of it and more))."""
    found = []
    for mount in info.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Name") in volumes:
            found.append((mount, f"volume {mount['Name']}", mount["Destination"], False))
            continue
        source = mount.get("Source") or ""
        for path in paths:
            if source and _related(source, path):
                # A path under the mount's source is that part of the container's view; one above it, all of it.
                under = _related(path, source) and len(os.path.normpath(path)) > len(os.path.normpath(source))
                above = len(os.path.normpath(path)) < len(os.path.normpath(source))
                inside = os.path.join(mount["Destination"], os.path.relpath(path, source)) if under \
                    else mount["Destination"]
                found.append((mount, f"path {path}", inside, above))
                break
    return found


def containers_to_stop(job: str, names: t.Sequence[str], volumes: t.Sequence[str],
                       paths: t.Sequence[str]) -> list[dict[str, str]]:
    """The running containers a files job stops, in the order it stops them: those it names (in that order), then
    the running ones labelled STOP_LABEL=true or =JOB that mount one of ``volumes`` or a bind mount at, under or
    over one of ``paths`` (by name). Each is {"id", "name"}."""
    docker = docker_sdk()
    api = docker_api()
    chosen: dict[str, dict[str, str]] = {}
    try:
        for reference in names:
            try:
                info = api.inspect_container(reference)
            except docker.errors.NotFound:
                raise LifeboatError(f"container {reference} does not exist on this host") from None
            if info["State"].get("Running"):
                chosen.setdefault(info["Id"], {"id": info["Id"], "name": _name(info)})
        labelled = []
        for summary in api.containers(filters={"label": STOP_LABEL}):
            value = str((summary.get("Labels") or {}).get(STOP_LABEL, "")).strip()
            if value.lower() != "true" and value != job:
                continue
            info = api.inspect_container(summary["Id"])
            if info["State"].get("Running") and _mounts_read(info, volumes, paths):
                labelled.append({"id": info["Id"], "name": _name(info)})
        for entry in sorted(labelled, key=lambda item: item["name"]):
            chosen.setdefault(entry["id"], entry)
    except (docker.errors.DockerException, OSError) as exc:  # OSError: the connection's (requests')
        raise LifeboatError(f"cannot list the containers to stop: {one_line(exc)}") from None
    finally:
        api.close()
    return list(chosen.values())


def refuse_live_data_dirs(volumes: t.Sequence[str], paths: t.Sequence[str], stopping: t.Collection[str],
                          database_of: DatabaseOf) -> None:
    """A one-line error when one of ``volumes``/``paths`` is (or holds, or is part of) the data directory of a
    running database container that is not among ``stopping`` (ids); ``database_of`` recognises one."""
    docker = docker_sdk()
    api = docker_api()
    try:
        for summary in api.containers():  # the running ones
            if summary["Id"] in stopping:
                continue
            info = api.inspect_container(summary["Id"])
            read = _mounts_read(info, volumes, paths)
            if not read or not info["State"].get("Running"):
                continue
            source, _evidence = database_of(api, info)
            if source is None:
                continue
            environment = dict(item.split("=", 1) for item in info["Config"].get("Env") or [] if "=" in item)
            data_dir = source.container_data_dir(environment)
            for _mount, what, seen, above in read:
                if not _related(seen, data_dir):
                    continue
                if os.path.normpath(seen) == os.path.normpath(data_dir):
                    relation = "holds" if above else "is"
                elif len(os.path.normpath(seen)) < len(os.path.normpath(data_dir)):
                    relation = "holds"
                else:
                    relation = "holds part of" if above else "is part of"
                name = _name(info)
                raise LifeboatError(
                    f"{what} {relation} the data directory of running {source.label} container {name}: back it up "
                    f"with a {source.name} job with container: {name} (a dump), or stop it during the backup "
                    "(stop_containers)")
    except (docker.errors.DockerException, OSError) as exc:  # OSError: the connection's (requests')
        raise LifeboatError(f"cannot list the running containers: {one_line(exc)}") from None
    finally:
        api.close()


class StoppedNames(list[str]):
    """The names of the containers stopped, in stop order; ``downtime_seconds`` once all run again: from the first
    stop to the last start, the app's downtime for this backup (None while they are stopped, or if none was)."""

    downtime_seconds: float | None = None


def _state_path(state_dir: str, job: str) -> str:
    return os.path.join(state_dir, f"{STATE_PREFIX}{job}.{os.getpid()}{STATE_SUFFIX}")


@contextlib.contextmanager
def stopped(containers: list[dict[str, str]], state_dir: str, job: str, destination: str | None = None,
            operation: str = "backup") -> t.Iterator[list[str]]:
    """Stop ``containers`` in order while the block runs and always start them again (see _start_order).

    The note (in ``state_dir``, normally notes_dir()) comes first: a process killed at any later point leaves what
    restart_left_stopped needs, and what a status check says: which ``operation`` (backup, restore) of which job.
    """
    if not containers:
        yield StoppedNames()
        return
    docker = docker_sdk()
    path = _state_path(state_dir, job)
    state = {"job": job, "operation": operation, "pid": os.getpid(), "process_start": process_start(os.getpid()),
             "stopped_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "destination": destination, "containers": [{"id": c["id"], "name": c["name"]} for c in containers]}
    api = docker_api()  # the engine answers before anything is written or stopped
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        # Group-readable: in the role's root:lifeboat 2770 directory the scheduled service's user reads (and
        # removes) a note a playbook run as root left. It names containers, nothing secret.
        write_file_atomic(path, (json.dumps(state, indent=2) + "\n").encode(), 0o640)
        lock = os.open(path, os.O_RDONLY)
    except OSError as exc:
        api.close()
        raise LifeboatError(f"cannot write {path} (it names the containers to start again should lifeboat be "
                            f"killed), so none was stopped: {exc.strerror}") from exc
    hold_lock(lock)  # alive as long as this process is, in any PID namespace (see _common.lock_owner_alive)
    body_error: BaseException | None = None
    names = StoppedNames()
    first_stop = time.monotonic()
    try:
        for container in containers:
            try:
                api.stop(container["id"], timeout=STOP_TIMEOUT_SECONDS)
            except docker.errors.NotFound:
                continue  # gone meanwhile: nothing to stop, nothing to start
            except LifeboatError:
                raise  # SIGTERM while waiting for the engine (the pipeline's handler): started again below
            except Exception as exc:  # noqa: BLE001 - the engine's or its connection's error, said in one line
                raise LifeboatError(f"cannot stop container {container['name']}: {one_line(exc)}") from None
        names = StoppedNames(c["name"] for c in containers)
        yield names
    except BaseException as exc:
        body_error = exc
        raise
    finally:
        try:
            # A second SIGTERM must not leave half of them stopped: it waits until all were started.
            with termination_deferred() as arrived:
                _started, failures = _start_all(api, containers)
                names.downtime_seconds = round(time.monotonic() - first_stop, 3)
                if not failures:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass  # all run again: a later restart-stopped finds them running and removes it
        finally:
            os.close(lock)
            api.close()
        if failures:
            message = f"could not start again container {'; '.join(failures)}: start it with docker start"
            if body_error is not None:
                message += f" (the job had failed too: {one_line(body_error)})"
            raise LifeboatError(message) from body_error
        for name in arrived:  # delivered now, to the handler that was there before
            signal.raise_signal(signal.Signals[name])
