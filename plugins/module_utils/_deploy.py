# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Blue-green deploys of one Docker app: the whole run in one process, holding the app's lock.

A deploy is a short, named sequence, each step timed in the run's history entry:
``lock`` (fcntl lock + PID; a crashed run's stale lock is reported) -> ``state`` (the live color from the state file,
cross-checked against the engine) -> ``reconcile`` (traffic put where the state says, a killed run's containers
cleared) -> ``backup`` (the app's databases dumped through the collection's own dump
library, then verified at level structure) -> ``start`` (the other color, through the docker SDK; the app's
environment travels in the API request, never argv) -> ``migrate`` (a command run in the new container) -> ``gate``
(consecutive health passes with a body match and a latency bound, then the data expectations) -> ``switch`` (the
app's HAProxy routed through its runtime API and proven through the front door, or with switch_method nginx_reload
the site's upstream file and a reload) -> ``watch`` (probes through the front door) -> the new release recorded ->
``finish`` (old color drained, stopped and kept, releases beyond keep_releases removed).
A failed gate or watch rolls back: traffic returns (if it moved), the new color is stopped and kept for inspection,
and with restore_data_on_rollback the pre-deploy archives are restored (after a safety dump) when a migration ran.

Public API: DEPLOY_SPEC (the module's and role's options), run(params, check_mode) -> Result, Lock, load_state.
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
import socket
import ssl
import stat
import time
import typing as t
import urllib.parse

from . import (
    _files,
    _http_probe,
    _ingress,
    _mongo_module,
    _nginx,
    _params,
    _postgres_module,
    _reverse_proxy,
    _sources,
    _switch,
)
from ._archive import ArchiveOptions
from ._clients import docker_client, docker_sdk
from ._common import LifeboatError, lock_owner_alive, one_line, pid_alive, process_start, redact, register_secret

COLORS = ("blue", "green")
ACTIONS = ("deploy", "rollback")
SWITCH_METHODS = ("haproxy", "nginx_reload")
# A deploy runs on the host that serves the live color: its own work, and the new color until traffic reaches it,
# take CPU at a low weight, so that they do not queue the live color's requests on a small host. The new color gets
# its full weight (Docker's default 1024) the moment before the switch.
DEPLOY_NICENESS = 10
WARMING_CPU_SHARES = 128
SERVING_CPU_SHARES = 1024
ENGINES = _sources.DATABASES  # the engines with a server: dumped before, restored on a rollback
LABEL_APP = "lifeboat.deploy.app"  # every container a deploy starts carries these labels
LABEL_COLOR = "lifeboat.deploy.color"
LABEL_SEQ = "lifeboat.deploy.seq"
LABEL_RELEASE = "lifeboat.deploy.release"
APP_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


def _expectations_spec() -> dict[str, t.Any]:
    """The data expectations' options, from h-expect's library when it is there (never a copy of them)."""
    try:
        from ._expectations import EXPECTATIONS_SPEC  # pylint: disable=import-outside-toplevel
    except ImportError:
        return {}
    # database defaults to the entry's own database here, so it is not required inside an entry
    return {**EXPECTATIONS_SPEC, "database": {**EXPECTATIONS_SPEC["database"], "required": False}}


def _database_spec() -> dict[str, t.Any]:
    connection = {**_mongo_module.mongodb_connection_spec(), **_postgres_module.postgres_connection_spec()}
    expectations: dict[str, t.Any] = {"type": "dict"}
    if _expectations_spec():
        expectations["options"] = _expectations_spec()
    return {
        "engine": {"type": "str", "required": True, "choices": list(ENGINES)},
        "database": {"type": "str", "required": True},
        **connection,
        "expectations": expectations,
    }


DEPLOY_SPEC: dict[str, dict[str, t.Any]] = {
    "app": {"type": "str", "required": True},
    "deploy_action": {"type": "str", "default": "deploy", "choices": list(ACTIONS)},
    "image": {"type": "str"},
    "release": {"type": "str"},
    "state_dir": {"type": "path", "default": "/var/lib/lifeboat/deploy"},
    "container_port": {"type": "int", "default": 8080},
    "blue_port": {"type": "int", "default": 8081},
    "green_port": {"type": "int", "default": 8082},
    "bind_address": {"type": "str", "default": "127.0.0.1"},
    # raw, not dict: Ansible's dict check would split a string 'K=V K=V' (a survey field) into a mapping; check_input
    # refuses anything but a mapping of strings instead
    "environment": {"type": "raw", "default": {}},
    "secret_environment": {"type": "raw", "default": {}, "no_log": True},
    "command": {"type": "list", "elements": "str", "default": []},
    "volumes": {"type": "list", "elements": "str", "default": []},
    "networks": {"type": "list", "elements": "str", "default": []},
    "migration_command": {"type": "list", "elements": "str", "default": []},
    "databases": {"type": "list", "elements": "dict", "default": [], "options": _database_spec()},
    "backup_destination": {"type": "path"},
    "health_path": {"type": "str", "default": "/health"},
    "health_status": {"type": "list", "elements": "int", "default": [200]},
    "health_body": {"type": "str", "default": ""},
    "health_max_latency_ms": {"type": "int", "default": 2000},
    "health_passes": {"type": "int", "default": 3, "no_log": False},
    "health_interval": {"type": "float", "default": 0.5},
    "health_timeout": {"type": "int", "default": 60},
    "site": {"type": "str", "required": True},
    "tunnel_config": {"type": "path"},
    "keepalive": {"type": "int", "default": 16},
    **_reverse_proxy.COMMON_ARGUMENT_SPEC,
    "watch_probes": {"type": "int", "default": 20},
    "watch_interval": {"type": "float", "default": 0.25},
    "watch_max_error_percent": {"type": "float", "default": 0.0},
    "watch_max_latency_ms": {"type": "int", "default": 2000},
    "keep_releases": {"type": "int", "default": 2},
    "restore_data_on_rollback": {"type": "bool", "default": False},
    "stop_timeout": {"type": "int", "default": 10},
    "switch_method": {"type": "str", "default": "haproxy", "choices": list(SWITCH_METHODS)},
    "switch_socket_dir": {"type": "path", "default": "/run/lifeboat-switch"},
    "haproxy_binary": {"type": "path", "default": "/usr/sbin/haproxy"},
    "drain_timeout": {"type": "int", "default": 30},
}
DEPLOY_RULES: dict[str, t.Any] = {"required_if": [["deploy_action", "deploy", ["image"]]]}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ----------------------------------------------------------------------------------------------------------- input
def check_input(params: dict[str, t.Any]) -> None:
    """Everything that can be told wrong before anything starts, in one line each."""
    if not APP_NAME.match(params["app"] or ""):
        raise LifeboatError(f"app '{params['app']}' must be 1-63 letters, digits, '.', '_' or '-' (it names containers)")
    minimum = {"health_passes": 1, "health_timeout": 1, "health_max_latency_ms": 1, "watch_max_latency_ms": 1,
               "stop_timeout": 0, "keepalive": 0, "drain_timeout": 0}
    for name, least in minimum.items():
        if params[name] < least:
            raise LifeboatError(f"{name} must be {least} or more, not {params[name]}")
    for name in ("health_interval", "watch_interval", "watch_probes"):
        if params[name] < 0:
            raise LifeboatError(f"{name} must be 0 or more, not {params[name]}")
    if not 0 <= params["watch_max_error_percent"] <= 100:
        raise LifeboatError(f"watch_max_error_percent must be between 0 and 100, not {params['watch_max_error_percent']}")
    if params["keep_releases"] < 1:
        raise LifeboatError(f"keep_releases must be 1 or more, not {params['keep_releases']}")
    for name in ("blue_port", "green_port", "container_port"):
        if not 1 <= params[name] <= 65535:
            raise LifeboatError(f"{name} must be a TCP port (1-65535), not {params[name]}")
    if params["blue_port"] == params["green_port"]:
        raise LifeboatError("blue_port and green_port must differ: both colors run side by side during a switch")
    path = params["health_path"] or ""
    try:
        parsed = urllib.parse.urlsplit(path)
    except ValueError:  # e.g. "Invalid IPv6 URL"
        parsed = None
    if parsed is None or not path.startswith("/") or parsed.scheme or parsed.netloc or parsed.fragment or \
            re.search(r"[\s\x00-\x1f]", path):
        raise LifeboatError(f"health_path '{path}' must be a path on the app, starting with '/' (e.g. /health)")
    if not params["health_status"]:
        raise LifeboatError("health_status must list at least one HTTP status code (100-599)")
    for index, status in enumerate(params["health_status"]):
        if not 100 <= status <= 599:
            raise LifeboatError(f"health_status[{index}] is not an HTTP status code (100-599)")
    for name in ("environment", "secret_environment"):
        params[name] = environment_of(name, params[name])
    if params["health_body"]:
        try:
            re.compile(params["health_body"])
        except re.error as exc:
            raise LifeboatError(f"health_body is not a regular expression: {exc}") from None
    if params["deploy_action"] == "deploy" and params["migration_command"] and not all(params["migration_command"]):
        raise LifeboatError("migration_command has an empty argument")
    for entry in params["databases"]:
        if entry.get("expectations"):
            if not entry["expectations"].get("database"):
                entry["expectations"] = {**entry["expectations"], "database": entry["database"]}
            try:
                from ._expectations import parse  # pylint: disable=import-outside-toplevel
            except ImportError:
                raise LifeboatError("databases[].expectations needs the collection's _expectations library, which "
                                    "this installation lacks") from None
            parse(entry["expectations"])  # its mistakes are bad input: said before anything starts


ENV_NAME = re.compile(r"^[^=\x00]+$")


def environment_of(name: str, given: t.Any) -> dict[str, str]:
    """environment or secret_environment as the container gets it: a mapping of names to strings (numbers are
    written as they read, e.g. 5432 -> '5432'). Anything else is refused in one line that names the key and never
    shows the value: a string (e.g. a survey field 'K=V K=V'), a list, a nested mapping, a boolean, a null."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        kind = "a string" if isinstance(given, str) else f"a {type(given).__name__}"
        raise LifeboatError(f"{name} must be a mapping of NAME: value, not {kind} (give each variable as a key of it)")
    environment = {}
    for key, value in given.items():
        if not isinstance(key, str) or not ENV_NAME.match(key):
            raise LifeboatError(f"{name} has a key that is not a variable name (a non-empty string without '=')")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            kind = {bool: "a boolean (quote it: the app reads a string)", type(None): "null"}.get(
                type(value), f"a {'mapping' if isinstance(value, dict) else type(value).__name__}")
            raise LifeboatError(f"{name}.{key} must be a string or a number, not {kind}")
        environment[key] = value if isinstance(value, str) else str(value)
    return environment


def port_free(address: str, port: int) -> bool:
    """Nothing listens on the port (connections of a stopped listener left in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


# ------------------------------------------------------------------------------------------------------------ lock
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


# ----------------------------------------------------------------------------------------------------------- state
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


# ---------------------------------------------------------------------------------------------------------- docker
class Engine:
    """The docker SDK, with every error in one line."""

    def __init__(self) -> None:
        self.docker = docker_sdk()
        try:
            self.client = docker_client(timeout=120)
            self.client.ping()
        except self.docker.errors.DockerException as exc:
            raise LifeboatError(f"cannot reach the Docker engine: {one_line(exc)}") from None

    def image(self, reference: str, pull: bool = True) -> t.Any | None:
        """The image, pulled when it is not on the host (None when it is not and pull is false: check mode)."""
        try:
            return self.client.images.get(reference)
        except self.docker.errors.ImageNotFound:
            if not pull:
                return None
        except self.docker.errors.DockerException as exc:
            raise LifeboatError(f"cannot look up image {reference}: {one_line(exc)}") from None
        try:
            return self.client.images.pull(reference)
        except self.docker.errors.DockerException as exc:
            raise LifeboatError(f"image {reference} is not on this host and cannot be pulled: "
                                f"{one_line(exc)}") from None

    def ours(self, app: str) -> list[t.Any]:
        """The app's containers (running or not), newest release first."""
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL_APP}={app}"})
        return sorted(found, key=lambda c: int(c.labels.get(LABEL_SEQ, "0")), reverse=True)

    def get(self, container_id: str) -> t.Any | None:
        try:
            return self.client.containers.get(container_id)
        except self.docker.errors.NotFound:
            return None


def record_of(container: t.Any, params: dict[str, t.Any], image: t.Any, seq: int, color: str,
              config_hash: str) -> dict[str, t.Any]:
    return {"seq": seq, "release": params.get("release") or params["image"], "image": params["image"],
            "image_id": image.id, "image_digests": list(image.attrs.get("RepoDigests") or []), "color": color,
            "container": container.name, "container_id": container.id, "port": params[f"{color}_port"],
            "config_hash": config_hash, "deployed_at": now(), "migrated": False, "backups": []}


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


def cross_check(state: dict[str, t.Any], engine: Engine, app: str) -> tuple[t.Any | None, list[t.Any]]:
    """The live container, as the state says and the engine confirms; a mismatch stops the run in one line.

    Also returns the running containers of the app that are not live (a killed run's leftovers)."""
    live = state.get("live")
    running = [c for c in engine.ours(app) if c.status == "running"]
    if live is None:
        if running:
            raise LifeboatError(f"the state file of {app} names no live release, but container(s) "
                                f"{', '.join(c.name for c in running)} of it run; stop them or restore the state file")
        return None, []
    container = engine.get(live["container_id"])
    if container is None:
        raise LifeboatError(f"the state file says {live['container']} ({live['color']}) is live, but no such container "
                            "exists; restore it or remove the state file")
    if container.status != "running":
        raise LifeboatError(f"the state file says {live['container']} ({live['color']}) is live, but it is "
                            f"{container.status}; start it or fix the state file")
    if container.labels.get(LABEL_COLOR) != live["color"]:
        raise LifeboatError(f"container {container.name} is labelled {container.labels.get(LABEL_COLOR)}, the state "
                            f"file says {live['color']}; fix the state file")
    return container, [c for c in running if c.id != container.id]


# ---------------------------------------------------------------------------------------------------------- probes
def http_get(address: str, port: int, path: str, host: str | None = None,
             timeout: float = 5.0) -> tuple[int | None, str, float, str]:
    """(status or None, body, milliseconds, error) of one GET."""
    started = time.monotonic()  # timeout: the whole answer's deadline (connect, headers, body), not each read's
    try:
        answer = _http_probe.get(address, port, path, timeout=timeout,
                                 headers={"Host": host or f"{address}:{port}", "User-Agent": "lifeboat-deploy-probe"})
    except _http_probe.ProbeFailed as exc:
        return None, "", (time.monotonic() - started) * 1000, str(exc)
    return answer.status, answer.body.decode("utf-8", "replace"), (time.monotonic() - started) * 1000, ""


def judge(params: dict[str, t.Any], status: int | None, body: str, millis: float, error: str) -> str:
    """Why a health answer does not pass ('' when it passes)."""
    if status is None:
        return f"no answer ({error})"
    if status not in params["health_status"]:
        return f"HTTP {status}"
    if params["health_body"] and not re.search(params["health_body"], body):
        return f"HTTP {status}, body does not match {params['health_body']!r}"
    if millis > params["health_max_latency_ms"]:
        return f"HTTP {status} in {millis:.0f} ms, over {params['health_max_latency_ms']} ms"
    return ""


def health_gate(params: dict[str, t.Any], port: int, container: t.Any) -> dict[str, t.Any]:
    """health_passes consecutive passing answers within health_timeout, or a failure with the last reason."""
    deadline = time.monotonic() + params["health_timeout"]
    passes, attempts, last = 0, 0, "no probe yet"
    while True:
        status, body, millis, error = http_get(params["bind_address"], port, params["health_path"])
        attempts += 1
        last = judge(params, status, body, millis, error)
        passes = 0 if last else passes + 1
        if passes >= params["health_passes"]:
            return {"ok": True, "attempts": attempts, "passes": passes, "last_ms": round(millis, 1)}
        if last:
            container.reload()
            if container.status != "running":
                return {"ok": False, "attempts": attempts, "passes": 0,
                        "reason": f"container {container.name} is {container.status} (exit code "
                                  f"{container.attrs['State'].get('ExitCode')})"}
        if time.monotonic() >= deadline:
            return {"ok": False, "attempts": attempts, "passes": passes,
                    "reason": f"GET {params['health_path']} did not pass {params['health_passes']} times in a row within"
                              f" {params['health_timeout']} s (last: {last})"}
        time.sleep(params["health_interval"])


def watch(params: dict[str, t.Any], probe: _nginx.Probe) -> dict[str, t.Any]:
    """watch_probes requests through the front door; the error share and the latency bound decide."""
    count = params["watch_probes"]
    allowed = count * params["watch_max_error_percent"] / 100
    errors: list[str] = []
    slowest = 0.0
    for index in range(count):
        started = time.monotonic()
        ok, detail = probe.once()
        millis = (time.monotonic() - started) * 1000
        slowest = max(slowest, millis)
        if not ok or millis > params["watch_max_latency_ms"]:
            errors.append(detail if not ok else f"{millis:.0f} ms, over {params['watch_max_latency_ms']} ms")
        if len(errors) > allowed:
            return {"ok": False, "probes": index + 1, "errors": len(errors), "slowest_ms": round(slowest, 1),
                    "reason": f"the watch saw {len(errors)} failed probe(s) of {index + 1} through site "
                              f"{params['site']} (first: {errors[0]})"}
        if index + 1 < count:
            time.sleep(params["watch_interval"])
    return {"ok": True, "probes": count, "errors": len(errors), "slowest_ms": round(slowest, 1)}


# -------------------------------------------------------------------------------------------------------- the data
def db_params(entry: dict[str, t.Any], destination: str | None = None, job: str | None = None) -> dict[str, t.Any]:
    """A databases entry as the dump/restore library's options (their defaults filled in)."""
    specs = {**_postgres_module.postgres_dump_spec(), **_mongo_module.mongodb_dump_spec(), **_params.dump_archive_spec(),
             **_postgres_module.postgres_connection_spec(), **_mongo_module.mongodb_connection_spec()}
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
        connection = {key: value for key, value in db_params(entry).items()
                      if key in {**_postgres_module.postgres_connection_spec(), **_mongo_module.mongodb_connection_spec()}}
        outcome = check_expectations(entry["engine"], connection, wish).as_dict()
        checked.append({"database": entry["database"], **outcome})
        if not outcome["ok"]:
            return {"ok": False, "checked": checked,
                    "reason": f"data expectations of {entry['database']} failed: {'; '.join(outcome['failures'][:3])}"}
    return {"ok": True, "checked": checked}


# ------------------------------------------------------------------------------------------------------------- run
@dataclasses.dataclass
class Result:
    changed: bool
    history: dict[str, t.Any]
    failure: str | None = None  # the one-line reason of a run that did not end with the wanted release live
    plan: list[str] = dataclasses.field(default_factory=list)  # check mode: what would happen


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


def front_door(params: dict[str, t.Any]) -> tuple[_nginx.Layout, _nginx.Nginx, _nginx.Probe, str]:
    """The site's layout, its nginx, the probe through it, and the upstream file's path (the site must exist)."""
    layout, nginx = _reverse_proxy.layout_of(params), _reverse_proxy.nginx_of(params)
    if not _nginx.SITE_NAME.match(params["site"] or ""):
        raise LifeboatError(f"site '{params['site']}' is not a reverse_proxy site name")
    host, tls = _reverse_proxy.site_probe_target(layout, params["site"])
    probe = _nginx.Probe(host=host, port=layout.https_port if tls else layout.http_port,
                         address=params["probe_address"], tls=tls, path=params["health_path"],
                         expect_status=tuple(params["health_status"]), expect_body=params["health_body"] or "",
                         timeout=float(params["health_timeout"]))
    if params.get("tunnel_config"):
        tunnel_in_front(params["tunnel_config"], host, tls, layout, params["probe_address"])
    return layout, nginx, probe, layout.upstream_file(params["site"])


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def tunnel_in_front(config_path: str, host: str, tls: bool, layout: _nginx.Layout, probe_address: str) -> str:
    """The service a Cloudflare tunnel's ingress sends the site's hostname to, which must be the site's nginx.

    The switch happens behind the tunnel (the site's nginx and the app's switch), never in cloudflared's config: cloudflared reads a locally
    managed config only when it starts, and a restart drops the requests it is carrying. So a tunnel in front is
    checked, not changed: its ingress (validated as cloudflared validates it) must route the site's hostname to the
    site's own listener; a rule that points at a color's port would bypass every switch and rollback."""
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = _ingress.load_yaml(handle.read())
    except OSError as exc:
        raise LifeboatError(f"tunnel_config {config_path}: {exc.strerror}") from None
    try:
        ingress = _ingress.check(config)
    except LifeboatError as exc:
        raise LifeboatError(f"tunnel_config {config_path}: {exc}") from None
    rule = ingress.rules[ingress.match(f"https://{host}/")]
    scheme, port = ("https", layout.https_port) if tls else ("http", layout.http_port)
    wanted = {f"{scheme}://{name}:{port}" for name in (*LOOPBACK_NAMES, probe_address)}
    if port == (443 if tls else 80):
        wanted |= {f"{scheme}://{name}" for name in (*LOOPBACK_NAMES, probe_address)}
    if rule.service.rstrip("/") not in wanted:
        raise LifeboatError(f"tunnel_config {config_path}: {rule.label()} sends {host} past the site's nginx; point "
                            f"its service at {scheme}://127.0.0.1:{port} so that the switch (in nginx) moves its "
                            "traffic too")
    return rule.service


# --------------------------------------------------------------------------------------------------------- routing
def upstream_address(params: dict[str, t.Any], port: int) -> str:
    address = params["bind_address"]
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def ensure_upstream(params: dict[str, t.Any], door: tuple[t.Any, ...], servers: list[str],
                    probe: bool = True) -> dict[str, t.Any]:
    """The site's upstream names these servers and the running nginx has loaded it.

    The file on disk proves nothing: a run killed between writing it and the reload leaves it written and never
    loaded. So nginx is reloaded unless this very content was recorded after a reload that succeeded."""
    layout, nginx, site_probe, path = door
    content = _nginx.render_upstream(params["site"], servers, params["keepalive"]).encode()
    digest = hashlib.sha256(content).hexdigest()
    record = os.path.join(app_dir(params), "nginx-loaded")
    loaded = _nginx.read(record)
    if _nginx.read(path) == content and loaded is not None and loaded.decode().strip() == digest:
        return {"upstream": servers, "reloaded": False}
    applied = _nginx.switch_upstream(params["site"], servers, params["keepalive"], layout, nginx,
                                     site_probe if probe else None, force=True)
    os.makedirs(app_dir(params), mode=0o700, exist_ok=True)
    _files.write_file_atomic(record, f"{digest}\n".encode(), 0o600)
    return {"upstream": servers, "reloaded": True, "probe": applied.probe}


def answered_by(probe: _nginx.Probe) -> tuple[str | None, str]:
    """Which color answers a request through the front door (the switch tells a probe that asks), and the status."""
    context = None
    if probe.tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # nginx's chain, not trust
    try:
        answer = _http_probe.get(probe.address, probe.port, probe.path, timeout=min(5.0, probe.timeout),
                                 context=context, server_name=probe.host,
                                 headers={"Host": probe.host, "User-Agent": "lifeboat-deploy-probe",
                                          _switch.PROBE_HEADER: "1"})
    except _http_probe.ProbeFailed as exc:
        return None, f"no answer ({exc})"
    return answer.headers.get(_switch.COLOR_HEADER), f"HTTP {answer.status}"


class NginxReload:
    """switch_method nginx_reload: the site's upstream names the color's port; each switch reloads nginx (idle
    keep-alive client connections are closed by the reload)."""

    method = "nginx_reload"

    def __init__(self, params: dict[str, t.Any], door: tuple[t.Any, ...]) -> None:
        self.params, self.door = params, door

    def describe(self, port: int) -> str:
        return f"switch site {self.params['site']} ({self.door[3]}) to {upstream_address(self.params, port)}"

    def reconcile(self, live: dict[str, t.Any] | None) -> dict[str, t.Any]:
        """Traffic on the live color as the state says (a killed run may have left another upstream written)."""
        if live is None:
            return {}
        return ensure_upstream(self.params, self.door, [upstream_address(self.params, live["port"])], probe=False)

    def route(self, color: str, port: int) -> dict[str, t.Any]:
        done = ensure_upstream(self.params, self.door, [upstream_address(self.params, port)])
        return {"method": self.method, "color": color, "upstream": done["upstream"][0], "changed": done["reloaded"],
                "probe": done.get("probe", "")}

    def put_back(self, live: dict[str, t.Any] | None, before: bytes | None) -> None:
        if live is not None:
            self.route(live["color"], live["port"])
            return
        _layout, nginx, _probe, path = self.door
        _nginx.apply([_nginx.Planned(path, before)], nginx, None, force=True)

    def retire(self, color: str) -> dict[str, t.Any]:
        return {"color": color}  # the reload moved every new connection; the old workers finish theirs


class HaproxySwitch(NginxReload):
    """switch_method haproxy: nginx's upstream is the app's switch (loaded once); a switch is a runtime API call,
    proven through the front door, and the old color is drained before it stops."""

    method = "haproxy"

    def __init__(self, params: dict[str, t.Any], door: tuple[t.Any, ...]) -> None:
        super().__init__(params, door)
        self.switch = _switch.switch_of(params["app"], params["state_dir"], params["switch_socket_dir"],
                                        params["bind_address"], {"blue": params["blue_port"],
                                                                 "green": params["green_port"]},
                                        params["haproxy_binary"])

    def describe(self, port: int) -> str:
        color = "blue" if port == self.params["blue_port"] else "green"
        return (f"switch site {self.params['site']} to {color} ({upstream_address(self.params, port)}) through "
                f"its HAProxy switch ({self.switch.socket_path}), without a reload")

    def reconcile(self, live: dict[str, t.Any] | None) -> dict[str, t.Any]:
        """The switch runs, and routes to the live color (whatever a killed run left it routing to)."""
        done: dict[str, t.Any] = {"switch": self.switch.ensure(live["color"] if live else None)}
        if live is not None:
            done["route"] = self.switch.route(live["color"])
            done["nginx"] = ensure_upstream(self.params, self.door, [self.switch.upstream], probe=False)
        return done

    def route(self, color: str, port: int) -> dict[str, t.Any]:
        routed = self.switch.route(color)
        nginx = ensure_upstream(self.params, self.door, [self.switch.upstream], probe=False)
        return {"method": self.method, "color": color, "upstream": self.switch.upstream,
                "changed": routed["changed"], "nginx_reloaded": nginx["reloaded"], "proof": self.prove(color)}

    def prove(self, color: str, answers: int = 3) -> str:
        """``answers`` requests in a row through the site's nginx answered by ``color``, or a LifeboatError."""
        probe = self.door[2]
        deadline = time.monotonic() + float(self.params["reload_timeout"])
        seen, detail, streak = None, "", 0
        while streak < answers:
            seen, detail = answered_by(probe)
            streak = streak + 1 if seen == color else 0
            if streak < answers:
                if time.monotonic() >= deadline:
                    raise LifeboatError(f"site {self.params['site']} is not answered by {color} through its nginx "
                                        f"(last answer: {detail}, from {seen or 'no color'})")
                time.sleep(0.05)
        return f"{answers} answers from {color} through the front door ({detail})"

    def retire(self, color: str) -> dict[str, t.Any]:
        """Drain, then take out, a color that no longer takes new requests (route() moved them and proved it through
        the front door); one that still takes them is refused, never stopped."""
        if self.switch.states().get(color) == "ready":
            raise LifeboatError(f"{color} still takes requests through the switch; it is not stopped")
        return self.switch.drain(color, self.params["drain_timeout"])


def serve(container: t.Any) -> bool:
    """The color about to take traffic gets its full CPU weight."""
    container.update(cpu_shares=SERVING_CPU_SHARES)
    return True


def router_of(params: dict[str, t.Any], door: tuple[t.Any, ...]) -> NginxReload:
    return HaproxySwitch(params, door) if params["switch_method"] == "haproxy" else NginxReload(params, door)


def stop_container(container: t.Any, timeout: int) -> None:
    container.reload()
    if container.status == "running":
        container.stop(timeout=timeout)


def prune(engine: Engine, params: dict[str, t.Any], live_id: str | None, previous_id: str | None = None,
          spare: str | None = None) -> list[str]:
    """Stopped releases beyond keep_releases (the live one counts) removed, with their image when nothing else
    uses it. The previous release (the rollback target) is kept first, then the newest: a release that was rolled
    back is newer than the one it replaced, but it is not what a rollback goes back to. Failed releases (stopped
    after a rollback) count like any other; ``spare`` names the one that just failed, kept for inspection even
    beyond keep_releases until the next prune (so at most one release more than keep_releases stays)."""
    removed = []
    kept = 1 if live_id else 0
    ours = sorted(engine.ours(params["app"]), key=lambda container: container.id != previous_id)  # stable
    for container in ours:
        if container.id == live_id or container.status == "running" or container.name == spare:
            continue
        if kept < params["keep_releases"]:
            kept += 1
            continue
        image_id = container.attrs.get("Image")
        container.remove()
        removed.append(container.name)
        # one listing request: containers.list() inspects each container of the host, and one removed meanwhile
        # (by anyone) made the whole deploy fail with a 404
        in_use = any(c.get("ImageID") == image_id for c in engine.client.api.containers(all=True))
        if image_id and not in_use:
            try:
                engine.client.images.remove(image_id)
            except engine.docker.errors.APIError:
                pass  # tagged elsewhere or a parent of another image: not ours to force
    return removed


def run(params: dict[str, t.Any], check_mode: bool = False) -> Result:
    """One deploy (or rollback) of params['app'], the whole of it in this process. Raises LifeboatError (one line)
    for bad input or a refusal before anything started; a run that started and failed returns Result.failure.

    A run whose ansible-playbook died (its parent process is gone) goes on to its end, with every gate, rollback
    and drain as usual: stopping half-way would leave more to repair than finishing does. It then leaves its
    outcome in STATE_DIR/APP/unreported.json, which the next run returns (history.unreported) and reports."""
    check_input(params)
    register_secret(*(str(value) for value in params["secret_environment"].values()))
    environment = {str(key): str(value) for key, value in
                   {**params["environment"], **params["secret_environment"]}.items()}
    door = front_door(params)
    directory = app_dir(params)
    lock = Lock(os.path.join(directory, "deploy.lock"))
    entry: dict[str, t.Any] = {"app": params["app"], "action": params["deploy_action"], "started": now(),
                               "steps": [], "outcome": None, "check_mode": check_mode,
                               "switch_method": params["switch_method"]}
    chain = ancestors()
    if not check_mode:
        os.nice(DEPLOY_NICENESS)  # background work beside the site it deploys (see WARMING_CPU_SHARES)
    engine = Engine()
    if check_mode:
        holder = lock.busy()
        if holder is not None:
            raise LifeboatError(f"another deploy of {params['app']} holds the lock {lock.path} "
                                f"(PID {holder.get('pid', '?')}); wait for it to end")
    else:
        lock.acquire(params["app"])
    unreported = read_unreported(params)
    try:
        if lock.stale:
            entry["stale_lock"] = lock.stale
        if unreported:
            entry["unreported"] = unreported
        steps = Steps(entry, None if check_mode else lock)
        state = load_state(params)
        live_container, leftovers = steps.run("state", lambda: cross_check(state, engine, params["app"]))
        entry["live_before"] = state.get("live")
        if leftovers:
            entry["leftovers"] = [c.name for c in leftovers]
        router = router_of(params, door)
        if not check_mode:
            entry["reconcile"] = steps.run("reconcile", lambda: reconcile(params, state, router, leftovers, engine))
        if params["deploy_action"] == "rollback":
            return _rollback(params, state, engine, router, steps, entry, check_mode)
        return _deploy(params, environment, state, live_container, leftovers, engine, router, steps, entry,
                       check_mode)
    except LifeboatError as exc:
        # refused when it changed nothing (bad input, the lock, the site, the state, the backup); failed when it
        # stopped after it started changing things (e.g. the switch back failed)
        changing = [step["name"] for step in entry["steps"] if step["name"] in CHANGING_STEPS]
        entry["outcome"], entry["reason"] = ("failed" if changing else "refused"), str(exc)
        raise RunStopped(str(exc), entry) from None
    finally:
        entry["finished"] = now()
        if not check_mode:
            if entry["outcome"] not in (None, "unchanged"):
                stamp = entry["started"].replace(":", "").replace("-", "")
                history = os.path.join(directory, "history", f"{stamp}-{entry['action']}.json")
                if result_unreadable(chain):
                    entry["orphaned"] = True
                write_json(history, entry)
                if entry.get("orphaned"):
                    write_json(os.path.join(directory, UNREPORTED), {
                        key: entry.get(key) for key in ("app", "action", "outcome", "reason", "release", "started",
                                                        "finished")} | {"history": history, "pid": os.getpid()})
            if unreported and not entry.get("orphaned"):
                try:
                    os.unlink(os.path.join(directory, UNREPORTED))
                except FileNotFoundError:
                    pass
            lock.release()


UNREPORTED = "unreported.json"
CHANGING_STEPS = ("start", "migrate", "gate", "switch", "watch", "rollback", "finish", "restore")


class RunStopped(LifeboatError):
    """A run that raised, with its history entry (outcome refused or failed)."""

    def __init__(self, message: str, history: dict[str, t.Any]) -> None:
        super().__init__(message)
        self.history = history


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


def repairs(done: dict[str, t.Any] | None) -> list[str]:
    """What a reconcile changed, in words (nothing: an empty list)."""
    if not done:
        return []
    routing = done.get("routing") or {}
    said = []
    if (routing.get("switch") or {}).get("started"):
        said.append("started the app's switch (HAProxy), which was not running")
    if (routing.get("route") or {}).get("changed"):
        said.append("put traffic back on the live color (a killed run had moved it)")
    if routing.get("reloaded") or (routing.get("nginx") or {}).get("reloaded"):
        said.append("reloaded nginx with the site's upstream (a killed run had left it unloaded)")
    said += [f"stopped {name}, left running by a killed run" for name in done.get("stopped", [])]
    said += [f"removed {name}, left by a killed run" for name in done.get("removed", [])]
    return said


def reconcile(params: dict[str, t.Any], state: dict[str, t.Any], router: NginxReload, leftovers: list[t.Any],
              engine: Engine) -> dict[str, t.Any]:
    """Before anything else: traffic on the live color as the state says, and a killed run's containers gone.

    A run killed after it switched but before it recorded the new release leaves traffic on a color the state does
    not know as live; one killed while it stopped the old color leaves that color running. Traffic goes back to the
    live color first (which cross_check found running); only then are the others stopped: the previous release
    (the rollback target) is kept, a killed run's new color is removed."""
    done: dict[str, t.Any] = {"routing": router.reconcile(state.get("live"))}
    known = {(state.get("previous") or {}).get("container")}
    known |= {item.get("container") for item in state.get("failed", []) + state.get("rolled_back", [])}
    # a container numbered past the state's last release was made by a run killed before it recorded it (perhaps
    # created and never started): it would take the next run's name
    unrecorded = [c for c in engine.ours(params["app"]) if c.status != "running"
                  and int(c.labels.get(LABEL_SEQ, "0")) > int(state.get("seq", 0))]
    for container in unrecorded:
        container.remove(force=True)
        done.setdefault("removed", []).append(container.name)
    for container in leftovers:
        stop_container(container, params["stop_timeout"])
        if container.name in known:  # a release the state keeps (the rollback target, one kept for inspection)
            done.setdefault("stopped", []).append(container.name)
        else:
            container.remove(force=True)
            done.setdefault("removed", []).append(container.name)
    for color in COLORS if leftovers else ():  # the engine's port proxies may outlive their container a moment
        port = params[f"{color}_port"]
        deadline = time.monotonic() + 10
        while not port_free(params["bind_address"], port) and time.monotonic() < deadline and not any(
                c.status == "running" and c.labels.get(LABEL_COLOR) == color for c in engine.ours(params["app"])):
            time.sleep(0.05)
    return done


def _deploy(params: dict[str, t.Any], environment: dict[str, str], state: dict[str, t.Any], live_container: t.Any,
            leftovers: list[t.Any], engine: Engine, router: NginxReload, steps: Steps, entry: dict[str, t.Any],
            check_mode: bool) -> Result:
    image = engine.image(params["image"], pull=not check_mode)
    live = state.get("live")
    wanted_hash = config_hash(params, image.id, secret_key(params, check_mode)) if image is not None else ""
    entry.update(release=params.get("release") or params["image"], image=params["image"],
                 image_id=image.id if image is not None else None,
                 image_digests=list(image.attrs.get("RepoDigests") or []) if image is not None else [])
    if live and live["config_hash"] == wanted_hash:
        fixed = [f"stop leftover container {c.name} of a killed run" for c in leftovers] if check_mode else \
            repairs(entry.get("reconcile"))
        entry["outcome"] = "repaired" if fixed and not check_mode else "unchanged"
        said = f"release {live['release']} is already live ({live['container']})"
        return Result(bool(fixed), entry, plan=[said + ("" if fixed else ": nothing to do"), *fixed])
    color = "green" if live and live["color"] == "blue" else "blue"
    port = params[f"{color}_port"]
    seq = int(state.get("seq", 0)) + 1
    name = f"{params['app']}-{color}-{seq}"
    if not port_free(params["bind_address"], port) and not (check_mode and leftovers):
        raise LifeboatError(f"port {port} on {params['bind_address']} ({color}_port) is in use by another process; "
                            f"free it or choose another {color}_port")
    destination = params["backup_destination"] or os.path.join(app_dir(params), "backups")
    entry.update(color=color, container=name, port=port, seq=seq)
    if check_mode:
        plan = [f"take the deploy lock of {params['app']}"]
        if image is None:
            plan.append(f"pull image {params['image']} (not on this host)")
        plan.append("put traffic on the live color as the state says, whatever a killed run left")
        plan += [f"stop leftover container {c.name} of a killed run" for c in leftovers]
        plan += [f"dump database {e['database']} ({e['engine']}) to {destination} and verify it (structure)"
                 for e in params["databases"]]
        plan.append(f"start container {name} from image {params['image']} on {params['bind_address']}:{port}")
        if params["migration_command"]:
            plan.append(f"run the migration command in {name}: {' '.join(params['migration_command'])}")
        plan.append(f"gate: GET {params['health_path']} passes {params['health_passes']} times in a row within "
                    f"{params['health_timeout']} s" + (", then the data expectations" if any(
                        e.get("expectations") for e in params["databases"]) else ""))
        plan.append(router.describe(port))
        if params.get("tunnel_config"):
            plan.append(f"the tunnel ({params['tunnel_config']}) routes to site {params['site']}: its traffic moves "
                        "with the switch")
        plan.append(f"watch: {params['watch_probes']} probes through site {params['site']}")
        if live:
            plan.append(f"drain and stop {live['container']} (release {live['release']}) and keep it for a rollback")
        entry["outcome"] = "would_deploy"
        return Result(True, entry, plan=plan)

    if image is None:  # only check mode leaves an image unpulled
        raise LifeboatError(f"image {params['image']} is not on this host")
    backups = steps.run("backup", lambda: backup(params, destination, "pre-deploy"))
    entry["backups"] = backups

    def start() -> t.Any:
        try:
            container = engine.client.containers.run(
                image.id, name=name, detach=True, environment=environment, command=params["command"] or None,
                ports={f"{params['container_port']}/tcp": (params["bind_address"], port)},
                volumes=params["volumes"] or None, network=(params["networks"] or [None])[0],
                restart_policy={"Name": "unless-stopped"}, cpu_shares=WARMING_CPU_SHARES,
                labels={LABEL_APP: params["app"], LABEL_COLOR: color, LABEL_SEQ: str(seq),
                        LABEL_RELEASE: entry["release"]})
            for network in params["networks"][1:]:
                engine.client.networks.get(network).connect(container)
        except engine.docker.errors.DockerException as exc:
            text = one_line(exc)
            leftover = engine.get(name)
            if leftover is not None:
                leftover.remove(force=True)
            raise LifeboatError(f"cannot start {name}: {text}") from None
        return container

    new = steps.run("start", start)
    record = record_of(new, params, image, seq, color, wanted_hash)
    record["backups"] = backups
    state["seq"] = seq
    outcome: dict[str, t.Any] = {"ok": True}
    before = _nginx.read(router.door[3])
    switched = False
    try:
        if params["migration_command"]:
            record["migrated"] = True  # from its first statement on, the data may have changed
            outcome = steps.run("migrate", lambda: migrate(params, engine, new))
            entry["migration"] = outcome
        if outcome["ok"]:
            outcome = steps.run("gate", lambda: gate(params, port, new, backups))
            entry["gate"] = outcome
        if outcome["ok"]:
            gate_passed = time.monotonic()
            switched = True  # from here on traffic may have moved: a failure puts it back
            entry["switch"] = steps.run("switch", lambda: serve(new) and router.route(color, port))
            entry["switch"]["seconds_from_gate"] = round(time.monotonic() - gate_passed, 3)
            outcome = steps.run("watch", lambda: watch(params, router.door[2]))
            entry["watch"] = outcome
    except LifeboatError as exc:  # the new color runs: whatever broke, the run rolls back the same way
        outcome = {"ok": False, "reason": str(exc)}
    if not outcome["ok"]:
        return _roll_back_failed(params, state, record, new, live, before, switched, router, engine, steps, entry,
                                 destination, outcome["reason"])
    # The new release is live from here on: recorded before the old color stops, so that a run killed while it
    # stops finds the state as traffic is (the next run finishes the stop).
    state.update(previous=live, live=record, switch_method=params["switch_method"])
    write_json(os.path.join(app_dir(params), "state.json"), state)

    def finish() -> dict[str, t.Any]:
        done: dict[str, t.Any] = {"ok": True}
        if live_container is not None:
            done["drain"] = router.retire(live["color"]) if live else {}
            stop_container(live_container, params["stop_timeout"])
        previous_id = live_container.id if live_container is not None else None
        done["removed"] = prune(engine, params, new.id, previous_id)
        return done

    entry["finish"] = steps.run("finish", finish)
    entry["outcome"] = "deployed"
    return Result(True, entry)


def migrate(params: dict[str, t.Any], engine: Engine, container: t.Any) -> dict[str, t.Any]:
    api = engine.client.api
    try:
        exec_id = api.exec_create(container.id, params["migration_command"], stdout=True, stderr=True)["Id"]
        output = api.exec_start(exec_id).decode("utf-8", "replace")
        code = api.exec_inspect(exec_id).get("ExitCode")
    except engine.docker.errors.DockerException as exc:
        return {"ok": False, "reason": f"the migration command could not run: {one_line(exc)}"}
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    tail = redact(" / ".join(lines[-3:]))
    if code != 0:
        return {"ok": False, "exit_code": code, "output_tail": tail,
                "reason": f"the migration command exited with {code}: {tail}"}
    return {"ok": True, "exit_code": 0, "output_tail": tail}


def gate(params: dict[str, t.Any], port: int, container: t.Any, backups: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    health = health_gate(params, port, container)
    if not health["ok"]:
        return {"ok": False, "health": health, "reason": f"health gate failed: {health['reason']}"}
    data = expectations(params, backups)
    if not data["ok"]:
        return {"ok": False, "health": health, "data": data, "reason": data["reason"]}
    return {"ok": True, "health": health, "data": data}


def _roll_back_failed(params: dict[str, t.Any], state: dict[str, t.Any], record: dict[str, t.Any], new: t.Any,
                      live: dict[str, t.Any] | None, before: bytes | None, switched: bool, router: NginxReload,
                      engine: Engine, steps: Steps, entry: dict[str, t.Any], destination: str, reason: str) -> Result:
    """Traffic back (if it moved), the new color stopped and kept, the data restored when asked and needed."""

    def back() -> dict[str, t.Any]:
        done: dict[str, t.Any] = {"ok": True, "traffic_returned": False}
        if switched:
            router.put_back(live, before)
            done["traffic_returned"] = True
            if live is not None and router.method == "haproxy":
                done["drain"] = router.retire(record["color"])
        stop_container(new, params["stop_timeout"])
        done["kept_container"] = new.name
        if record["migrated"] and params["restore_data_on_rollback"] and record["backups"]:
            try:
                done["restored"] = restore(params, record["backups"], destination)
            except LifeboatError as exc:  # traffic is back already: say what is left to do, keep the history
                done.update(ok=False, restore_error=str(exc))
        return done

    entry["rollback"] = steps.run("rollback", back)
    record["status"] = "failed"
    state.setdefault("failed", []).append({"seq": record["seq"], "container": record["container"], "reason": reason})
    write_json(os.path.join(app_dir(params), "state.json"), state)
    entry["outcome"] = "rolled_back"
    entry["reason"] = reason
    kept = f"; {new.name} is stopped and kept for inspection"
    if entry["rollback"].get("restore_error"):
        kept += f"; the data restore failed: {entry['rollback']['restore_error']}"
    # Failed releases count against keep_releases like any other: they never pile up (the one that just failed
    # is spared for inspection, so at most one release more than keep_releases stays until the next deploy).
    previous_id = (live or {}).get("container_id")
    pruned = prune(engine, params, previous_id, (state.get("previous") or {}).get("container_id"),
                   spare=new.name)
    if pruned:
        entry["pruned"] = pruned
        kept += f"; removed {', '.join(pruned)} (beyond keep_releases {params['keep_releases']})"
    return Result(True, entry, failure=f"{reason}; traffic {'returned to' if switched else 'stayed on'} "
                                       f"{live['container'] if live else 'the previous upstream'}{kept}")


def _rollback(params: dict[str, t.Any], state: dict[str, t.Any], engine: Engine, router: NginxReload,
              steps: Steps, entry: dict[str, t.Any], check_mode: bool) -> Result:
    """deploy_action=rollback: back to the previous release, which is still on the host (stopped)."""
    live, target = state.get("live"), state.get("previous")
    if live is None or target is None:  # refused (a rollback that did nothing must not pass for one that did)
        now_serving = f"{live['container']} (release {live['release']}) still serves" if live else \
            f"no release of {params['app']} is live"
        raise LifeboatError(f"nothing to roll back: no previous release of {params['app']} is kept on this host "
                            f"(a rollback goes back one release, once); {now_serving}, nothing was changed")
    container = engine.get(target["container_id"])
    if container is None:
        raise LifeboatError(f"the previous release's container {target['container']} is gone; deploy that release "
                            "again instead")
    entry.update(release=target["release"], image=target["image"], image_id=target["image_id"],
                 color=target["color"], container=target["container"], rolled_back_from=live["release"])
    restore_data = params["restore_data_on_rollback"] and live.get("migrated") and live.get("backups")
    if check_mode:
        plan = ["put traffic on the live color as the state says, whatever a killed run left",
                f"start {target['container']} (release {target['release']})",
                f"gate: GET {params['health_path']} passes {params['health_passes']} times in a row",
                router.describe(target["port"]),
                f"drain and stop {live['container']} (release {live['release']}) and keep it"]
        if restore_data:
            plan.append("restore the pre-deploy archives of " + ", ".join(b["database"] for b in live["backups"]))
        entry["outcome"] = "would_roll_back"
        return Result(True, entry, plan=plan)
    container.reload()
    if not port_free(params["bind_address"], target["port"]) and container.status != "running":
        raise LifeboatError(f"port {target['port']} on {params['bind_address']} is in use by another process; "
                            f"{target['container']} cannot start on it")
    container.update(cpu_shares=WARMING_CPU_SHARES)
    steps.run("start", container.start)
    health = steps.run("gate", lambda: health_gate(params, target["port"], container))
    entry["gate"] = health
    if not health["ok"]:
        stop_container(container, params["stop_timeout"])
        entry["outcome"] = "failed"
        entry["reason"] = f"the previous release's health gate failed: {health['reason']}"
        return Result(True, entry, failure=f"{entry['reason']}; {live['container']} still serves")
    try:
        entry["switch"] = steps.run("switch", lambda: serve(container) and router.route(target["color"], target["port"]))
    except LifeboatError as exc:
        router.put_back(live, None)
        stop_container(container, params["stop_timeout"])
        entry["outcome"] = "failed"
        entry["reason"] = f"the switch to the previous release failed: {exc}"
        return Result(True, entry, failure=f"{entry['reason']}; {live['container']} still serves")
    state.update(live=target, previous=None, switch_method=params["switch_method"])
    state.setdefault("rolled_back", []).append({"seq": live["seq"], "container": live["container"], "at": now()})
    write_json(os.path.join(app_dir(params), "state.json"), state)
    current = engine.get(live["container_id"])

    def finish() -> dict[str, t.Any]:
        drained = router.retire(live["color"])
        if current is not None:
            stop_container(current, params["stop_timeout"])
        return {"ok": True, "drain": drained}

    entry["finish"] = steps.run("finish", finish)
    if restore_data:
        destination = params["backup_destination"] or os.path.join(app_dir(params), "backups")
        entry["restored"] = steps.run("restore", lambda: restore(params, live["backups"], destination))
    entry["outcome"] = "rolled_back"
    return Result(True, entry)


# ---------------------------------------------------------------------------------------------------------- status
STATUS_SPEC: dict[str, dict[str, t.Any]] = {
    "state_dir": DEPLOY_SPEC["state_dir"],
    "switch_socket_dir": DEPLOY_SPEC["switch_socket_dir"],
}


def report(state_dir: str, socket_dir: str) -> dict[str, t.Any]:
    """The deploys of a host as an operator needs them after a fault, read-only: per app, its live release and what
    needs a person (a run killed mid-way, an outcome nobody saw, a switch that is not routing to the live color).

    {state: OK|WARNING|CRITICAL, summary, apps: [{app, state, live, reasons: [{severity, message}]}]}"""
    apps: list[dict[str, t.Any]] = []
    problems: list[str] = []
    names = sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else []
    for name in names:
        directory = os.path.join(state_dir, name)
        if not APP_NAME.match(name) or not os.path.isdir(directory):
            continue
        params = {"state_dir": state_dir, "app": name}
        reasons: list[dict[str, str]] = []
        try:
            state = load_state(params)
        except LifeboatError as exc:
            state = {}
            reasons.append({"severity": "CRITICAL", "message": str(exc)})
        lock_path = os.path.join(directory, "deploy.lock")
        record = Lock.read_record(lock_path)
        owner_gone = record and not (pid_alive(record.get("pid")) and
                                     process_start(record.get("pid") or 0) == record.get("process_start"))
        if record and (lock_owner_alive(lock_path) is False or owner_gone):  # (a child it forked may hold it a while)
            reasons.append({"severity": "CRITICAL", "message": (
                f"a deploy of {name} was killed at step {record.get('step', '?')} (PID {record.get('pid', '?')}, "
                f"started {record.get('started', '?')}); run the deploy or a rollback again: it puts traffic where "
                "the state says and clears what the killed run left")})
        unreported = read_unreported(params)
        if unreported:
            outcome = unreported.get("outcome")
            reasons.append({"severity": "WARNING" if outcome == "deployed" else "CRITICAL", "message": (
                f"a {unreported.get('action')} of {name} ran on after ansible-playbook stopped and ended {outcome}"
                + (f": {unreported['reason']}" if unreported.get("reason") else "")
                + f" (history {unreported.get('history')}); the next run reports it")})
        live = state.get("live")
        if live and state.get("switch_method", "nginx_reload") == "haproxy":
            problem = switch_problem(_switch.switch_of(name, state_dir, socket_dir, "127.0.0.1",
                                                       {"blue": 0, "green": 0}), live["color"])
            if problem:
                reasons.append({"severity": "CRITICAL", "message": f"{problem}; run the deploy again (it repairs the "
                                                                   "switch before anything else)"})
        apps.append({"app": name, "state": _worst(reason["severity"] for reason in reasons),
                     "live": {key: live.get(key) for key in ("release", "container", "color", "deployed_at")}
                     if live else None, "reasons": reasons})
        problems += [f"{name}: {reason['message']}" for reason in reasons]
    worst = _worst(app["state"] for app in apps)
    summary = f"{worst}: " + ("; ".join(problems) if problems else
                              f"{len(apps)} app(s), each serving its live release" if apps else "no deployed app")
    return {"state": worst, "summary": summary, "apps": apps}


def switch_problem(switch: _switch.Switch, live_color: str) -> str | None:
    """Why the app's switch does not send new requests to the live color, or None when it does."""
    if switch.running_pid() is None:
        return f"the switch (HAProxy) of {switch.app} is not running: its site answers 502"
    try:
        serving = switch.serving()
    except LifeboatError as exc:
        return str(exc)
    return None if serving == live_color else \
        f"the switch of {switch.app} routes to {serving or 'no color'}, not to the live {live_color}"


def _worst(states: t.Iterable[str]) -> str:
    found = set(states)
    return next((state for state in ("CRITICAL", "WARNING") if state in found), "OK")


def status_task(run_: t.Any) -> t.Any:
    """The deploy_status module's task: the report; never a change."""
    from ._module_frame import Outcome  # pylint: disable=import-outside-toplevel

    return Outcome(changed=False, result=report(run_.params["state_dir"], run_.params["switch_socket_dir"]))


def warn_of_earlier_runs(run_: t.Any, history: dict[str, t.Any]) -> None:
    """What this run found of earlier ones: an outcome nobody saw (it is reported once, here), a killed run."""
    app = run_.params["app"]
    if history.get("unreported"):
        gone = history["unreported"]
        run_.warn(f"an earlier {gone.get('action')} of {app} (started {gone.get('started')}) ran on after "
                  f"ansible-playbook stopped and ended {gone.get('outcome')}"
                  + (f": {gone['reason']}" if gone.get("reason") else "") + f"; its history: {gone.get('history')}")
    if history.get("stale_lock"):
        stale = history["stale_lock"]
        run_.warn(f"a previous deploy of {app} (PID {stale.get('pid')}) ended without releasing its lock at step "
                  f"{stale.get('step')}; its record is in history.stale_lock")


def task(run_: t.Any) -> t.Any:
    """The app_deploy module's task (a _module_frame Task): the history entry and the plan, failed on a rollback."""
    from ._module_frame import Outcome  # pylint: disable=import-outside-toplevel

    params = run_.params
    try:
        result = run(params, run_.check_mode)
    except LifeboatError as exc:  # the play gets a history entry and one line for these too
        history = exc.history if isinstance(exc, RunStopped) else {
            "app": params["app"], "action": params["deploy_action"], "outcome": "refused", "reason": str(exc)}
        warn_of_earlier_runs(run_, history)  # a refused run has reported (and cleared) them too
        if history["outcome"] == "failed":
            return Outcome(changed=True, result={"history": history, "plan": []},
                           failure=f"{exc} (the run stopped at step {history['steps'][-1]['name']} after it started "
                                   f"changing things: check what site {params['site']} serves and the containers of "
                                   f"{params['app']})")
        return Outcome(changed=False, result={"history": history, "plan": []},
                       failure=f"{exc} (refused: traffic and releases stay as they were)")
    warn_of_earlier_runs(run_, result.history)
    return Outcome(changed=result.changed, result={"history": result.history, "plan": result.plan},
                   failure=result.failure)
