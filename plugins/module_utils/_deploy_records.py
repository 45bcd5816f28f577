# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""What a deploy keeps on the host, under STATE_DIR/APP: the lock, the state, the secret key and the release hash,
and the outcome of a run nobody saw (its ansible-playbook died: how a run tells, and where it leaves its outcome).

Standard library only.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import hmac
import json
import os
import re
import select
import stat
import time
import typing as t

from . import _files
from ._common import LifeboatError, pid_alive, process_start

APP_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")  # it names the app's directory and its containers
UNREPORTED = "unreported.json"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ----------------------------------------------------------------------------------------------------------------- lock
@dataclasses.dataclass
class Lock:
    """One deploy of an app at a time: an fcntl lock held by the process that runs the whole deploy.

    The file records the owner (PID, its start time, the step it is at). The kernel drops the lock when the owner
    dies however it dies; a record left behind without a lock is a crashed run, reported as ``stale``.
    """

    path: str
    fd: int | None = None
    stale: dict[str, t.Any] | None = None
    started: str = ""

    @staticmethod
    def read_record(path: str) -> dict[str, t.Any] | None:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read().strip()
            return json.loads(text) if text else None
        except (OSError, ValueError):
            return None

    def busy(self) -> dict[str, t.Any] | None:
        """Who holds the lock now (read-only, for check mode), or None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.read_record(self.path) or {}
        finally:
            os.close(fd)
        return None

    def acquire(self, app: str) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self.read_record(self.path) or {}
            raise LifeboatError(f"another deploy of {app} holds the lock {self.path} (PID {owner.get('pid', '?')},"
                                f" since {owner.get('started', '?')}, step {owner.get('step', '?')}); wait for it to"
                                " end") from None
        self.fd = fd
        self.started = now()
        left = self.read_record(self.path)
        if left:  # the lock was free but a record remains: its owner ended without releasing (crash, kill -9)
            alive = pid_alive(left.get("pid")) and process_start(left.get("pid") or 0) == left.get("process_start")
            self.stale = {**left, "owner_alive": alive}
        self.update(step="lock")

    def update(self, **fields: t.Any) -> None:
        if self.fd is None:
            return
        record = {"pid": os.getpid(), "process_start": process_start(os.getpid()), "started": self.started,
                  "step_started": now(), **fields}
        data = json.dumps(record).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # an empty file: ended cleanly
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


# ---------------------------------------------------------------------------------------------------------------- state
def app_dir(params: dict[str, t.Any]) -> str:
    return os.path.join(params["state_dir"], params["app"])


def load_state(params: dict[str, t.Any]) -> dict[str, t.Any]:
    path = os.path.join(app_dir(params), "state.json")
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return {"app": params["app"], "seq": 0, "live": None, "previous": None}
    except (OSError, ValueError) as exc:
        raise LifeboatError(f"cannot read the deploy state {path}: {exc}; fix or remove it") from None
    if not isinstance(state, dict) or "live" not in state:
        raise LifeboatError(f"{path} is not a deploy state file of lifeboat.ops; fix or remove it")
    return state


def write_json(path: str, data: t.Any) -> None:
    """Atomically, mode 0600 (the state is the host's own business); _files removes its temporary file on failure."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    _files.write_file_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode(), 0o600)


def secret_key(params: dict[str, t.Any], check_mode: bool) -> bytes:
    """The app's own random key (0600 beside its state) for hashing the secret environment: a plain hash of a weak
    password in state.json could be guessed offline. Check mode writes nothing: without a key yet, a throwaway one."""
    path = os.path.join(app_dir(params), "secret-hash.key")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        key = os.urandom(32)
        if not check_mode:
            os.makedirs(app_dir(params), mode=0o700, exist_ok=True)
            _files.write_file_atomic(path, key, 0o600)
        return key


def config_hash(params: dict[str, t.Any], image_id: str, key: bytes) -> str:
    """What makes a release: the image and how it runs (the secret environment keyed-hashed, never stored)."""
    secrets = json.dumps(sorted((str(k), str(v)) for k, v in params["secret_environment"].items())).encode()
    relevant = {"image_id": image_id, "release": params.get("release") or params["image"],
                "environment": sorted((str(k), str(v)) for k, v in params["environment"].items()),
                "secret_environment": hmac.new(key, secrets, hashlib.sha256).hexdigest(),
                **{name: params[name] for name in ("command", "volumes", "networks", "container_port",
                                                   "blue_port", "green_port", "bind_address")}}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------- a run nobody saw
def ancestors(depth: int = 8) -> list[tuple[int, int, str | None]]:
    """This process's ancestors, nearest first, as (pid, its parent's pid, its start time), up to init."""
    found: list[tuple[int, int, str | None]] = []
    pid = os.getpid()
    while pid > 1 and len(found) < depth:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                parent = int(handle.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if pid != os.getpid():
            found.append((pid, parent, process_start(pid)))
        pid = parent
    return found


def result_unreadable(chain: list[tuple[int, int, str | None]]) -> bool:
    """Nobody is left to read this run's result: a process between it and the controller died or was orphaned
    (with a local connection the module's shell stays, its ansible-playbook worker is re-parented when
    ansible-playbook dies), or its standard output is a pipe without a reader. Over SSH a controller's death shows
    only when the session closes."""
    for pid, parent, started in chain:
        if process_start(pid) != started:
            return True
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                if int(handle.read().rpartition(")")[2].split()[1]) != parent:
                    return True
        except (OSError, ValueError, IndexError):
            return True
    try:
        if not stat.S_ISFIFO(os.fstat(1).st_mode):
            return False
        poller = select.poll()
        poller.register(1, 0)  # on a pipe whose read end is closed, poll reports POLLERR
        return any(event & select.POLLERR for _fd, event in poller.poll(0))
    except OSError:
        return False


def read_unreported(params: dict[str, t.Any]) -> dict[str, t.Any] | None:
    """The outcome of a run whose ansible-playbook died before it ended, if no run has reported it since."""
    try:
        with open(os.path.join(app_dir(params), UNREPORTED), encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


# -------------------------------------------------------------------------------------------------------------- history
class Steps:
    """The history entry's steps: each with its start, duration and outcome."""

    def __init__(self, entry: dict[str, t.Any], lock: Lock | None) -> None:
        self.entry, self.lock = entry, lock

    def run(self, name: str, work: t.Callable[[], t.Any]) -> t.Any:
        step: dict[str, t.Any] = {"name": name, "started": now()}
        self.entry["steps"].append(step)
        if self.lock is not None:
            self.lock.update(step=name, app=self.entry["app"])
        started = time.monotonic()
        try:
            value = work()
            step["ok"] = not (isinstance(value, dict) and value.get("ok") is False)
            return value
        except LifeboatError as exc:
            step["ok"], step["error"] = False, str(exc)
            raise
        finally:
            step["seconds"] = round(time.monotonic() - started, 3)
