# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The deploys of a host, read-only, as the deploy_status module and the healthcheck role report them; the
``deploy_status`` module's home (its spec and work here, away from the deploy's own code: a small payload).

Standard library only.
"""

from __future__ import annotations

import os
import typing as t

from . import _switch
from ._common import LifeboatError, lock_owner_alive, pid_alive, process_start
from ._deploy_records import APP_NAME, Lock, load_state, read_unreported

# Where app_deploy keeps its state and its switches' sockets (app_deploy_spec() takes the same defaults).
DEFAULT_STATE_DIR = "/var/lib/lifeboat/deploy"
DEFAULT_SWITCH_SOCKET_DIR = "/run/lifeboat-switch"


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
        apps.append({"app": name, "state": worst_of(reason["severity"] for reason in reasons),
                     "live": {key: live.get(key) for key in ("release", "container", "color", "deployed_at")}
                     if live else None, "reasons": reasons})
        problems += [f"{name}: {reason['message']}" for reason in reasons]
    worst = worst_of(app["state"] for app in apps)
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


def worst_of(states: t.Iterable[str]) -> str:
    found = set(states)
    return next((state for state in ("CRITICAL", "WARNING") if state in found), "OK")


def deploy_status_spec() -> dict[str, dict[str, t.Any]]:
    """The deploy_status module's options: where app_deploy keeps its state and its switches' sockets."""
    return {"state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
            "switch_socket_dir": {"type": "path", "default": DEFAULT_SWITCH_SOCKET_DIR}}


def deploy_status(run_: t.Any) -> t.Any:
    """The deploy_status module's task: the report; never a change."""
    from ._module_frame import Outcome  # pylint: disable=import-outside-toplevel

    return Outcome(changed=False, result=report(run_.params["state_dir"], run_.params["switch_socket_dir"]))
