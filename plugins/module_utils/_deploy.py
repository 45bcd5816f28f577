# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Blue-green deploys of one Docker app: the whole run in one process, holding the app's lock.

A deploy is a short, named sequence, each step timed in the run's history entry:
``lock`` (fcntl lock + PID; a crashed run's stale lock is reported) -> ``state`` (the live color from the state file,
cross-checked against the Docker engine) -> ``reconcile`` (traffic put where the state says, a killed run's containers
cleared) -> ``backup`` (the app's databases dumped through the collection's own dump
library, then verified at level structure) -> ``start`` (the other color, through the docker SDK; the app's
environment travels in the API request, never argv) -> ``migrate`` (a command run in the new container) -> ``gate``
(consecutive health passes with a body match and a latency bound, then the data expectations) -> ``switch`` (the
app's HAProxy routed through its runtime API and proven through the front door, or with switch_method nginx_reload
the site's upstream file and a reload) -> ``watch`` (probes through the front door) -> the new release recorded ->
``finish`` (old color drained, stopped and kept, releases beyond keep_releases removed).
A failed gate or watch rolls back: traffic returns (if it moved), the new color is stopped and kept for inspection,
and with restore_data_on_rollback the pre-deploy archives are restored (after a safety dump) when a migration ran.

Public API: app_deploy_spec() (the module's and role's options), run(params, check_mode) -> Result. The parts beside
it: _deploy_records (lock, state, history steps, a run nobody saw), _deploy_docker (the engine and the containers),
_deploy_data (the pre-deploy dump, its restore, data expectations), _deploy_checks (health gate, watch),
_deploy_routing (the front door and the two switch methods), _deploy_status (the host's report).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
import typing as t
import urllib.parse

from . import _mongo_module, _nginx, _postgres_module, _reverse_proxy, _sources
from ._common import LifeboatError, one_line, register_secret
from ._deploy_checks import gate, health_gate, watch
from ._deploy_data import backup, restore
from ._deploy_docker import (
    LABEL_APP,
    LABEL_COLOR,
    LABEL_RELEASE,
    LABEL_SEQ,
    WARMING_CPU_SHARES,
    DockerHost,
    cross_check,
    migrate,
    port_free,
    prune,
    record_of,
    serve,
    stop_container,
)
from ._deploy_records import (
    APP_NAME,
    UNREPORTED,
    Lock,
    Steps,
    ancestors,
    app_dir,
    config_hash,
    load_state,
    now,
    read_unreported,
    result_unreadable,
    secret_key,
    write_json,
)
from ._deploy_routing import NginxReload, front_door, router_of
from ._deploy_status import DEFAULT_STATE_DIR, DEFAULT_SWITCH_SOCKET_DIR

COLORS = ("blue", "green")
ACTIONS = ("deploy", "rollback")
SWITCH_METHODS = ("haproxy", "nginx_reload")
# A deploy runs on the host that serves the live color: its own work takes CPU at a low priority (and the new color
# at a low weight: _deploy_docker.WARMING_CPU_SHARES), so that it does not queue the live color's requests.
DEPLOY_NICENESS = 10
ENGINES = _sources.DATABASES  # the engines with a server: dumped before, restored on a rollback


def _expectations_options() -> dict[str, t.Any]:
    """The data expectations' options, from h-expect's library when it is there (never a copy of them)."""
    try:
        from ._expectations import EXPECTATIONS_OPTIONS  # pylint: disable=import-outside-toplevel
    except ImportError:
        return {}
    # database defaults to the entry's own database here, so it is not required inside an entry
    return {**EXPECTATIONS_OPTIONS, "database": {**EXPECTATIONS_OPTIONS["database"], "required": False}}


def _database_options() -> dict[str, t.Any]:
    connection = {**_mongo_module.mongodb_connection_options(), **_postgres_module.postgres_connection_options()}
    expectations: dict[str, t.Any] = {"type": "dict"}
    if _expectations_options():
        expectations["options"] = _expectations_options()
    return {
        "engine": {"type": "str", "required": True, "choices": list(ENGINES)},
        "database": {"type": "str", "required": True},
        **connection,
        "expectations": expectations,
    }


def app_deploy_spec() -> dict[str, dict[str, t.Any]]:
    """The app_deploy module's options (and the deploy role's, generated from them)."""
    return {
        "app": {"type": "str", "required": True},
        "deploy_action": {"type": "str", "default": "deploy", "choices": list(ACTIONS)},
        "image": {"type": "str"},
        "release": {"type": "str"},
        "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
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
        "databases": {"type": "list", "elements": "dict", "default": [], "options": _database_options()},
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
        **_reverse_proxy.PROXY_OPTIONS,
        "watch_probes": {"type": "int", "default": 20},
        "watch_interval": {"type": "float", "default": 0.25},
        "watch_max_error_percent": {"type": "float", "default": 0.0},
        "watch_max_latency_ms": {"type": "int", "default": 2000},
        "keep_releases": {"type": "int", "default": 2},
        "restore_data_on_rollback": {"type": "bool", "default": False},
        "stop_timeout": {"type": "int", "default": 10},
        "switch_method": {"type": "str", "default": "haproxy", "choices": list(SWITCH_METHODS)},
        "switch_socket_dir": {"type": "path", "default": DEFAULT_SWITCH_SOCKET_DIR},
        "haproxy_binary": {"type": "path", "default": "/usr/sbin/haproxy"},
        "drain_timeout": {"type": "int", "default": 30},
    }


# What AnsibleModule checks of app_deploy's options together
APP_DEPLOY_RULES: dict[str, t.Any] = {"required_if": [["deploy_action", "deploy", ["image"]]]}


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


# ------------------------------------------------------------------------------------------------------------- run
@dataclasses.dataclass
class Result:
    changed: bool
    history: dict[str, t.Any]
    failure: str | None = None  # the one-line reason of a run that did not end with the wanted release live
    plan: list[str] = dataclasses.field(default_factory=list)  # check mode: what would happen


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
    base_niceness = os.getpriority(os.PRIO_PROCESS, 0)
    docker_host = DockerHost()
    if check_mode:
        holder = lock.busy()
        if holder is not None:
            raise LifeboatError(f"another deploy of {params['app']} holds the lock {lock.path} "
                                f"(PID {holder.get('pid', '?')}); wait for it to end")
    else:
        lock.acquire(params["app"])
    unreported = read_unreported(params)
    if not check_mode:
        os.nice(DEPLOY_NICENESS)  # background work beside the site it deploys (see WARMING_CPU_SHARES)
    try:
        if lock.stale:
            entry["stale_lock"] = lock.stale
        if unreported:
            entry["unreported"] = unreported
        steps = Steps(entry, None if check_mode else lock)
        state = load_state(params)
        live_container, leftovers = steps.run("state", lambda: cross_check(state, docker_host, params["app"]))
        entry["live_before"] = state.get("live")
        if leftovers:
            entry["leftovers"] = [c.name for c in leftovers]
        router = router_of(params, door, base_niceness)
        if not check_mode:
            entry["reconcile"] = steps.run("reconcile",
                                           lambda: reconcile(params, state, router, leftovers, docker_host))
        if params["deploy_action"] == "rollback":
            return _rollback(params, state, docker_host, router, steps, entry, check_mode)
        return _deploy(params, environment, state, live_container, leftovers, docker_host, router, steps, entry,
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
            give_back_niceness(base_niceness)


def give_back_niceness(niceness: int) -> None:
    """The caller's thread back at its niceness (a caller in the same process, e.g. bin/lifeboat or a test, goes on
    after the run); without CAP_SYS_NICE the OS refuses, and the thread stays at the deploy's niceness."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError:
        pass


CHANGING_STEPS = ("start", "migrate", "gate", "switch", "watch", "rollback", "finish", "restore")


class RunStopped(LifeboatError):
    """A run that raised, with its history entry (outcome refused or failed)."""

    def __init__(self, message: str, history: dict[str, t.Any]) -> None:
        super().__init__(message)
        self.history = history


def repairs(done: dict[str, t.Any] | None) -> list[str]:
    """What a reconcile changed, in words (nothing: an empty list)."""
    if not done:
        return []
    routing = done.get("routing") or {}
    said = []
    if (routing.get("switch") or {}).get("started"):
        said.append("started the app's switch (HAProxy), which was not running")
    if (routing.get("switch") or {}).get("note"):
        said.append(routing["switch"]["note"])  # it could not be started at the site's own priority
    if (routing.get("route") or {}).get("changed"):
        said.append("put traffic back on the live color (a killed run had moved it)")
    if routing.get("reloaded") or (routing.get("nginx") or {}).get("reloaded"):
        said.append("reloaded nginx with the site's upstream (a killed run had left it unloaded)")
    said += [f"stopped {name}, left running by a killed run" for name in done.get("stopped", [])]
    said += [f"removed {name}, left by a killed run" for name in done.get("removed", [])]
    return said


def reconcile(params: dict[str, t.Any], state: dict[str, t.Any], router: NginxReload, leftovers: list[t.Any],
              docker_host: DockerHost) -> dict[str, t.Any]:
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
    unrecorded = [c for c in docker_host.ours(params["app"]) if c.status != "running"
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
                c.status == "running" and c.labels.get(LABEL_COLOR) == color for c in docker_host.ours(params["app"])):
            time.sleep(0.05)
    return done


def _deploy(params: dict[str, t.Any], environment: dict[str, str], state: dict[str, t.Any], live_container: t.Any,
            leftovers: list[t.Any], docker_host: DockerHost, router: NginxReload, steps: Steps, entry: dict[str, t.Any],
            check_mode: bool) -> Result:
    image = docker_host.image(params["image"], pull=not check_mode)
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
            container = docker_host.client.containers.run(
                image.id, name=name, detach=True, environment=environment, command=params["command"] or None,
                ports={f"{params['container_port']}/tcp": (params["bind_address"], port)},
                volumes=params["volumes"] or None, network=(params["networks"] or [None])[0],
                restart_policy={"Name": "unless-stopped"}, cpu_shares=WARMING_CPU_SHARES,
                labels={LABEL_APP: params["app"], LABEL_COLOR: color, LABEL_SEQ: str(seq),
                        LABEL_RELEASE: entry["release"]})
            for network in params["networks"][1:]:
                docker_host.client.networks.get(network).connect(container)
        except docker_host.docker.errors.DockerException as exc:
            text = one_line(exc)
            leftover = docker_host.get(name)
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
            outcome = steps.run("migrate", lambda: migrate(params, docker_host, new))
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
        return _roll_back_failed(params, state, record, new, live, before, switched, router, docker_host, steps, entry,
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
        done["removed"] = prune(docker_host, params, new.id, previous_id)
        return done

    entry["finish"] = steps.run("finish", finish)
    entry["outcome"] = "deployed"
    return Result(True, entry)


def _roll_back_failed(params: dict[str, t.Any], state: dict[str, t.Any], record: dict[str, t.Any], new: t.Any,
                      live: dict[str, t.Any] | None, before: bytes | None, switched: bool, router: NginxReload,
                      docker_host: DockerHost, steps: Steps, entry: dict[str, t.Any], destination: str,
                      reason: str) -> Result:
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
    pruned = prune(docker_host, params, previous_id, (state.get("previous") or {}).get("container_id"),
                   spare=new.name)
    if pruned:
        entry["pruned"] = pruned
        kept += f"; removed {', '.join(pruned)} (beyond keep_releases {params['keep_releases']})"
    return Result(True, entry, failure=f"{reason}; traffic {'returned to' if switched else 'stayed on'} "
                                       f"{live['container'] if live else 'the previous upstream'}{kept}")


def _rollback(params: dict[str, t.Any], state: dict[str, t.Any], docker_host: DockerHost, router: NginxReload,
              steps: Steps, entry: dict[str, t.Any], check_mode: bool) -> Result:
    """deploy_action=rollback: back to the previous release, which is still on the host (stopped)."""
    live, target = state.get("live"), state.get("previous")
    if live is None or target is None:  # refused (a rollback that did nothing must not pass for one that did)
        now_serving = f"{live['container']} (release {live['release']}) still serves" if live else \
            f"no release of {params['app']} is live"
        raise LifeboatError(f"nothing to roll back: no previous release of {params['app']} is kept on this host "
                            f"(a rollback goes back one release, once); {now_serving}, nothing was changed")
    container = docker_host.get(target["container_id"])
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
    current = docker_host.get(live["container_id"])

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


def app_deploy(run_: t.Any) -> t.Any:
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
