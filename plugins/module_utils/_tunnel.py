# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The homes of the cloudflared_ingress and wait_ready modules (the cloudflare_tunnel role's checks and gate).

``cloudflared_ingress`` builds the config file cloudflared will read from the role's settings, checks its ingress with
the collection's own check (_ingress.check) and, when a cloudflared binary is given, with cloudflared itself
(``tunnel --config NEW ingress validate``, then ``ingress rule URL`` for every declared hostname, which must select
the rule our check says). It changes nothing: the role writes the config it returns only when both agreed.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import typing as t

from . import _ingress, _probes
from ._common import LifeboatError, PrivateDir, child_env, last_line
from ._module_frame import Outcome, Run

# `ingress rule URL` names the rule by its 0-based index ("Matched rule #0" is the first rule; a negative one is
# cloudflared's own internal rule), unlike `ingress validate`'s messages, which count from 1.
_MATCHED = re.compile(r"Matched rule #(-?\d+)")


def _loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_config(params: dict[str, t.Any]) -> dict[str, t.Any]:
    """The config file's content, in cloudflared's own key names (the credentials stay in their own file)."""
    metrics = params["metrics"]
    if not _loopback(metrics):
        raise LifeboatError(f"metrics {metrics!r} must be a loopback address and port, e.g. 127.0.0.1:20241")
    config: dict[str, t.Any] = {}
    if params.get("tunnel"):
        config["tunnel"] = params["tunnel"]
        config["credentials-file"] = params["credentials_file"]
    config["metrics"] = metrics
    config["no-autoupdate"] = True  # the package manager updates it, not cloudflared itself
    if params.get("origin_request"):
        config["originRequest"] = params["origin_request"]
    config["ingress"] = params["ingress"]
    return config


def cloudflared_agrees(binary: str, config_text: str, ingress: _ingress.Ingress) -> list[str]:
    """Run the real cloudflared on the candidate config; LifeboatError with its own message when it disagrees.

    Untested here: cloudflared cannot be had on the machines this collection is tested on (see docs/testing.md)."""
    checked = []
    with PrivateDir() as private:
        path = private.write_secret("config.yml", config_text)  # 0600, removed on exit

        def run(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([binary, "tunnel", "--config", path, "ingress", *argv], capture_output=True,
                                  text=True, env=child_env(), timeout=60, check=False)

        done = run("validate")
        if done.returncode != 0:
            raise LifeboatError(f"cloudflared refuses the new configuration: {last_line(done.stderr + done.stdout)}")
        checked.append("cloudflared ingress validate: OK")
        for url, index in ingress.probe_urls():
            done = run("rule", url)
            found = _MATCHED.search(done.stdout + done.stderr)
            if done.returncode != 0 or not found:
                raise LifeboatError(f"cloudflared ingress rule {url} failed: {last_line(done.stderr + done.stdout)}")
            matched = int(found.group(1))
            if matched != index:
                where = f"rule #{matched + 1}" if matched >= 0 else "one of its internal rules"
                raise LifeboatError(f"cloudflared sends {url} to {where}, not to {ingress.rules[index].label()}")
            checked.append(f"cloudflared ingress rule {url}: rule #{index + 1}")
    return checked


def cloudflared_ingress_spec() -> dict[str, t.Any]:
    return {
        "tunnel": {"type": "str"},
        "credentials_file": {"type": "path"},
        "ingress": {"type": "list", "elements": "dict", "required": True},
        "origin_request": {"type": "dict", "default": {}},
        "metrics": {"type": "str", "default": "127.0.0.1:20241"},
        "cloudflared": {"type": "path"},
    }


CLOUDFLARED_INGRESS_RULES: dict[str, t.Any] = {"required_together": [("tunnel", "credentials_file")]}


def cloudflared_ingress(run: Run) -> Outcome:
    config = build_config(run.params)
    ingress = _ingress.check(config)
    for warning in ingress.warnings:
        run.warn(warning)
    text = _ingress.render_yaml(config)
    checked = [f"{len(ingress.rules)} rule(s) pass the collection's check"]
    if run.params.get("cloudflared"):
        checked += cloudflared_agrees(run.params["cloudflared"], text, ingress)
    return Outcome(changed=False, result={
        "config": text,
        "rules": [rule.label() for rule in ingress.rules],
        "routes": [{"url": url, "rule": index + 1} for url, index in ingress.probe_urls()],
        "checked": checked,
    })


def wait_ready_spec() -> dict[str, t.Any]:
    return {
        "url": {"type": "str", "required": True},
        "timeout": {"type": "int", "default": 60},
        "interval": {"type": "float", "default": 1.0},
        "expect_status": {"type": "list", "elements": "int", "default": [200]},
    }


def wait_ready(run: Run) -> Outcome:
    result = _probes.wait_ready(run.params["url"], float(run.params["timeout"]), float(run.params["interval"]),
                                expect_status=tuple(run.params["expect_status"]))
    return Outcome(changed=False, result=result)
