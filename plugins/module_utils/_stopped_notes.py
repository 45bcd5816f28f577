# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The notes of containers a backup stopped (see _stopping.stopped), and what every run does with the notes a killed
run left: start those containers again first (:func:`restart_before_run`, :func:`restarting_first` for the modules,
``lifeboat restart-stopped`` for the systemd services' ``ExecStopPost=``), and say CRITICAL while one is still stopped
(:func:`left_stopped`, for the status checks).

The notes live in one directory per host, :func:`notes_dir` (``/var/lib/lifeboat/stopped``, or
``$LIFEBOAT_STOPPED_DIR``), so that every path finds them without a config file. Kept apart from _stopping (which
reads the source table to refuse live data directories): every database module does restart_before_run, and packs
only this.
"""

from __future__ import annotations

import errno
import json
import os
import typing as t

from ._clients import docker_api, docker_sdk
from ._common import LifeboatError, lock_owner_alive, one_line, pid_alive, process_start

STATE_PREFIX = ".lifeboat-stopped-"
STATE_SUFFIX = ".json"
# One directory per host, the same for a playbook run as root, the scheduled service's user and the status checks
# (the backup_schedule role makes it root:lifeboat 2770); the variable moves it (a test bed of its own).
NOTES_DIR = "/var/lib/lifeboat/stopped"
NOTES_DIR_VARIABLE = "LIFEBOAT_STOPPED_DIR"


class RestartError(LifeboatError):
    """Some containers could not be started again; ``started`` holds the names of those that were."""

    def __init__(self, message: str, started: list[str]) -> None:
        super().__init__(message)
        self.started = started


def notes_dir() -> str:
    """Where every run on this host writes its notes of the containers it stopped, and every run looks for them."""
    return os.environ.get(NOTES_DIR_VARIABLE) or NOTES_DIR


def _start_order(containers: list[dict[str, str]]) -> list[dict[str, str]]:
    # Started in the reverse of the stop order, as `docker compose stop`/`start` do: list the dependants (the app)
    # before what they depend on (its database), so that they stop first, before what they use goes away, and
    # start last, once it is back.
    return list(reversed(containers))


def _start_all(api: t.Any, containers: list[dict[str, str]]) -> tuple[list[str], list[str]]:
    """Start every container (in the start order), whatever fails: the names started and the failures."""
    docker = docker_sdk()
    started, failures = [], []
    for container in _start_order(containers):
        try:
            api.start(container["id"])  # a container that runs already is no error (304)
            started.append(container["name"])
        except docker.errors.NotFound:
            continue  # removed meanwhile (`docker compose down`): nothing left to start
        except Exception as exc:  # noqa: BLE001 - one container's failure must not keep the others stopped
            failures.append(f"{container['name']} ({one_line(exc)})")
    return started, failures


def _owner_alive(path: str, state: dict[str, t.Any]) -> bool:
    """Whether the process that wrote the state file still runs (the same process, not a reused PID)."""
    if lock_owner_alive(path):
        return True
    pid = state.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return False
    return state.get("process_start") is None or process_start(pid) == state.get("process_start")


def _notes(state_dir: str) -> list[str]:
    try:
        return sorted(os.path.join(state_dir, name) for name in os.listdir(state_dir)
                      if name.startswith(STATE_PREFIX) and name.endswith(STATE_SUFFIX))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LifeboatError(f"cannot list {state_dir}: {exc.strerror}") from exc


def _read_note(path: str) -> dict[str, t.Any]:
    """A note's content with its containers checked; FileNotFoundError when its run removed it meanwhile."""
    with open(path, encoding="utf-8") as handle:
        state = json.load(handle)
    state["containers"] = [{"id": str(c["id"]), "name": str(c["name"])} for c in state["containers"]]
    return dict(state)


def left_stopped(state_dir: str | None = None) -> list[dict[str, t.Any]]:
    """The notes of runs that are gone (killed) while the containers they name may still be stopped: each
    {"path", "job", "pid", "stopped_at", "destination", "containers": [names]}, or {"path", "problem"} for a note
    that cannot be read. Reads only: the status checks call it, which must change nothing."""
    found: list[dict[str, t.Any]] = []
    for path in _notes(state_dir or notes_dir()):
        try:
            state = _read_note(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            found.append({"path": path, "problem": str(getattr(exc, "strerror", None) or exc)})
            continue
        if _owner_alive(path, state):
            continue
        still = _still_stopped(state["containers"])
        if still:
            found.append({"path": path, "job": state.get("job"), "operation": state.get("operation") or "backup",
                          "pid": state.get("pid"),
                          "stopped_at": state.get("stopped_at"), "destination": state.get("destination"),
                          "containers": still})
    return found


def _still_stopped(containers: list[dict[str, str]]) -> list[str]:
    """The names of those that do not run, as the engine says (one started by hand, or removed, is no alarm); all of
    them when the engine cannot be asked: the note alone then says they may be stopped."""
    try:
        api = docker_api()
    except LifeboatError:
        return [c["name"] for c in containers]
    docker = docker_sdk()
    still = []
    try:
        for container in containers:
            try:
                if not api.inspect_container(container["id"])["State"]["Running"]:
                    still.append(container["name"])
            except docker.errors.NotFound:
                continue
            except Exception:  # noqa: BLE001 - the engine could not say: the note stands
                still.append(container["name"])
    finally:
        api.close()
    return still


def describe_left_stopped(entry: dict[str, t.Any]) -> str:
    """One line for a status check: the containers, since when, by which job, and what starts them."""
    if entry.get("unknown"):
        return f"cannot look for containers a killed backup or restore left stopped: {entry['problem']}"
    if "problem" in entry:
        return (f"{entry['path']} (a note of containers a backup or restore stopped) is unreadable ({entry['problem']}): start "
                "the containers it names with docker start and remove it")
    since = f" since {entry['stopped_at']}" if entry.get("stopped_at") else ""
    names = ", ".join(entry["containers"])
    return (f"container {names} stopped{since} by {stopped_by(entry)}, whose run (PID {entry['pid']}) was "
            "killed before it could start it again: the next backup or restore on this host starts it, or "
            "lifeboat restart-stopped")


def restart_left_stopped(state_dir: str | None = None) -> list[str]:
    """Start the containers of every note in ``state_dir`` (default notes_dir()) whose process is gone; remove those
    notes.

    Returns the names started; RestartError (with ``started``) when some could not be started, after trying all.
    """
    started, failures = _restart(state_dir or notes_dir())
    names = [name for name, _by in started]
    if failures:
        raise RestartError(f"could not start again: {'; '.join(failures)}", names)
    return names


def _restart(state_dir: str) -> tuple[list[tuple[str, str]], list[str]]:
    """restart_left_stopped's work: each container started with the run that had stopped it ("backup job app"), and
    the failures."""
    started: list[tuple[str, str]] = []
    failures: list[str] = []
    api = None
    try:
        for path in _notes(state_dir):
            try:
                state = _read_note(path)
                containers = state["containers"]
            except FileNotFoundError:
                continue  # its run ended meanwhile and removed it
            except (OSError, ValueError, KeyError, TypeError) as exc:
                failures.append(f"{path} is unreadable ({getattr(exc, 'strerror', None) or exc}); "
                                "start the containers it names by hand and remove it")
                continue
            if _owner_alive(path, state):
                continue
            api = api or docker_api()
            done, failed = _start_all(api, containers)
            started += [(name, stopped_by(state)) for name in done]
            if failed:
                failures += failed
                continue
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    failures.append(f"{path} could not be removed ({exc.strerror})")
    finally:
        if api is not None:
            api.close()
    return started, failures


def stopped_by(note: dict[str, t.Any]) -> str:
    """The run a note names, as "backup job app" or "restore job app-restore" (notes before 0.3.0 name no operation:
    only backups wrote them)."""
    return f"{note.get('operation') or 'backup'} job {note.get('job')}"


def restart_before_run(check_mode: bool = False) -> list[str]:
    """What every backup and restore does first on a host: start the containers an earlier run stopped and could not
    start again (it was killed). Returns one warning line per container (and one per failure: the run goes on, the
    status checks stay CRITICAL while one is still stopped)."""
    if check_mode:
        try:
            return [f"would start container {name} again (left stopped by a killed run of {stopped_by(entry)})"
                    for entry in left_stopped() if "problem" not in entry for name in entry["containers"]]
        except LifeboatError as exc:
            return [f"cannot look for containers a killed backup or restore left stopped: {exc}"]
    try:
        started, failures = _restart(notes_dir())
    except LifeboatError as exc:
        started, failures = [], [str(exc)]
    lines = [f"started container {name} again (a killed run of {by} had left it stopped)" for name, by in started]
    if failures:
        lines.append(f"containers left stopped by a killed backup or restore: could not start again: "
                     f"{'; '.join(failures)}: start them with docker start")
    return lines


def restarting_first(task: t.Callable[[t.Any], t.Any]) -> t.Callable[[t.Any], t.Any]:
    """A module's task (_module_frame.Task) that first does restart_before_run, its lines as the module's warnings."""

    def run_task(run: t.Any) -> t.Any:
        for line in restart_before_run(run.check_mode):
            run.warn(line)
        return task(run)

    return run_task
