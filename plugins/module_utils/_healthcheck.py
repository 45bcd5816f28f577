# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""``lifeboat healthcheck``: health probes (HTTP, TCP, command, TLS, PostgreSQL, MongoDB, Redis, data expectations,
deploys, stopped containers) for a systemd timer: alerts on each change, node_exporter metrics.

    lifeboat healthcheck --config /etc/lifeboat-healthcheck/healthcheck.json [--state FILE] [--nagios]
    lifeboat healthcheck --check-config FILE

Each run probes everything once. A probe turns failing after ``failures_before_alert`` failed runs in a row and
healthy again on its first success; a tls probe whose certificate has fewer than ``warn_days`` left (but not fewer
than ``critical_days``) is in warning at once. Each change posts one JSON alert to ``webhook_url``.

Exit code, as the timer's unit needs it: 0, or 1 when an alert could not be delivered, 2 for a bad configuration.
With ``--nagios`` (a monitoring agent's check), the worst probe's state as monitoring plugins do: 0 OK, 1 WARNING,
2 CRITICAL (failing), 3 UNKNOWN for a bad configuration; ``lifeboat_healthcheck_status`` holds the same numbers.
An alert that could not be delivered is tried again on the next runs until it is, so a change is never lost and
never sent twice. The state lives in $STATE_DIRECTORY (systemd's StateDirectory=). The Python standard library is
all it needs, plus psycopg or pymongo for those probes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import typing as t

from . import _files, _http_probe, _probes, _prometheus, _tls_expiry, _webhook

HEALTHY, WARNING, FAILING = "healthy", "warning", "failing"
# A state's Nagios number (the exit code with --nagios, lifeboat_healthcheck_status) and its alert severity.
STATUS = {HEALTHY: 0, WARNING: 1, FAILING: 2}
SEVERITY = {HEALTHY: "ok", WARNING: "warning", FAILING: "critical"}
TYPES = {"http": ("url",), "tcp": ("host", "port"), "command": ("command",), "tls": ("host", "port")}
# The databases' own protocols (plugins/module_utils/_probes.py): PostgreSQL needs psycopg, MongoDB pymongo.
TYPES.update({"postgresql": ("host",), "mongodb": ("host",), "redis": ("host",)})
KNOWN_KEYS = {"name", "type", "url", "expect_status", "expect_body", "validate_certs", "host", "port", "command",
              "expect_output", "timeout", "server_name", "ca_file", "min_days", "warn_days",
              "critical_days"}
KNOWN_KEYS.update({"user", "database", "password", "password_file", "ssl_mode", "auth_database", "tls"})
# Data expectations (plugins/module_utils/_expectations.py): its settings are checked by the library itself.
TYPES["database_expect"] = ("engine", "database")
# The host's blue-green deploys (plugins/module_utils/_deploy_status.py report, as the deploy_status module gives it).
TYPES["deploy"] = ()
KNOWN_KEYS.update({"state_dir", "switch_socket_dir"})
# Containers a killed backup or restore left stopped (plugins/module_utils/_stopped_notes.py, in notes_dir or `dir`).
TYPES["stopped_containers"] = ()
KNOWN_KEYS.add("dir")


class ConfigError(Exception):
    """A mistake in the configuration, in one line."""


def load_config(path: str) -> dict[str, t.Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("probes"), list):
        raise ConfigError(f"{path} must be a JSON object with a list 'probes'")
    metrics = config.get("metrics_file") or ""
    if metrics and not (metrics.startswith("/") and metrics.endswith(".prom")):
        raise ConfigError(f"metrics_file must be an absolute path ending in .prom, not {metrics!r}")
    names = set()
    for probe in config["probes"]:
        if not isinstance(probe, dict) or probe.get("type") not in TYPES or not probe.get("name"):
            raise ConfigError(f"each probe needs a name and a type ({', '.join(TYPES)}): {probe!r}")
        if probe["name"] in names:
            raise ConfigError(f"two probes are named {probe['name']!r}")
        names.add(probe["name"])
        unknown = sorted(set(probe) - KNOWN_KEYS) if probe["type"] != "database_expect" else []
        if unknown:
            raise ConfigError(f"probe {probe['name']}: unknown key(s) {', '.join(unknown)}")
        for key in TYPES[probe["type"]]:
            if probe.get(key) in (None, "", []):
                raise ConfigError(f"probe {probe['name']}: a {probe['type']} probe needs {key}")
        if probe["type"] == "tls":
            try:
                _tls_expiry.thresholds(probe)
            except ValueError as exc:
                raise ConfigError(f"probe {probe['name']}: {exc}") from exc
        if probe["type"] == "database_expect":
            try:
                _probes.expect_settings(probe)  # the library's own check of its settings
            except _probes.LifeboatError as exc:
                raise ConfigError(f"probe {probe['name']}: {exc}") from exc
        for key in ("expect_body", "expect_output"):
            if probe.get(key):
                try:
                    re.compile(probe[key])
                except re.error as exc:
                    raise ConfigError(f"probe {probe['name']}: {key} is no valid regular expression: {exc}") from exc
    return config


def probe_http(probe: dict[str, t.Any], timeout: float) -> tuple[bool, str]:
    """GET the URL: its whole answer (body up to 1 MiB) within ``timeout`` s, redirects followed."""
    context = None
    if probe.get("validate_certs") is False:
        context = ssl._create_unverified_context()  # validate_certs: false  # pylint: disable=protected-access
    expected = [int(code) for code in probe.get("expect_status") or [200]]
    url, shown, headers = _webhook.split_url(probe["url"])
    try:
        answer = _http_probe.get_url(url, timeout=timeout, context=context, body_limit=1 << 20,
                                     headers={"User-Agent": "lifeboat-healthcheck", **headers})
    except _http_probe.ProbeFailed as exc:
        return False, f"GET {shown}: {exc}"
    status, body = answer.status, answer.body
    if status not in expected:
        return False, f"GET {shown}: HTTP {status}, expected {', '.join(map(str, expected))}"
    if probe.get("expect_body") and not re.search(probe["expect_body"], body.decode("utf-8", "replace")):
        return False, f"GET {shown}: HTTP {status}, but the body does not match {probe['expect_body']!r}"
    return True, f"GET {shown}: HTTP {status}"


def probe_tcp(probe: dict[str, t.Any], timeout: float) -> tuple[bool, str]:
    where = f"{probe['host']}:{probe['port']}"
    try:
        with socket.create_connection((probe["host"], int(probe["port"])), timeout=timeout):
            return True, f"TCP {where}: connected"
    except OSError as exc:
        return False, f"TCP {where}: {exc.strerror or exc}"


def probe_command(probe: dict[str, t.Any], timeout: float) -> tuple[bool, str]:
    argv = [str(part) for part in probe["command"]]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"{argv[0]}: no answer within {timeout:g} s"
    except OSError as exc:
        return False, f"{argv[0]}: {exc.strerror or exc}"
    output = done.stdout.strip()
    if done.returncode != 0:
        last = (done.stderr.strip() or output).splitlines()[-1:] or [""]
        return False, f"{argv[0]} exited {done.returncode}: {last[0][:200]}"
    if probe.get("expect_output") and not re.search(probe["expect_output"], output):
        return False, f"{argv[0]}: output {output[:100]!r} does not match {probe['expect_output']!r}"
    return True, f"{argv[0]}: ok" + (f" ({output[:100]})" if output else "")


def probe_tls(probe: dict[str, t.Any], timeout: float) -> tuple[bool, str, dict[str, t.Any]]:
    """Days left of the certificate the server serves: failing under critical_days (min_days) or when it does not
    verify, passing with a warning under warn_days."""
    warn_days, critical_days = _tls_expiry.thresholds(probe)
    state, detail, expiry = _tls_expiry.probe(
        probe["host"], int(probe["port"]), probe.get("server_name") or "", probe.get("ca_file") or "",
        probe.get("validate_certs") is not False, warn_days, critical_days, timeout)
    extra: dict[str, t.Any] = {"warning": state == _tls_expiry.WARNING}
    if expiry is not None:
        extra["tls_not_after"] = expiry.not_after
    return state != _tls_expiry.CRITICAL, detail, extra


def probe_deploy(probe: dict[str, t.Any], _timeout: float) -> tuple[bool, str, dict[str, t.Any]]:
    """The host's deploys: failing while one needs a person (a run killed mid-way, a run that ended badly with
    nobody watching, a switch not routing to the live release), a warning while an unwatched run's deploy is
    unreported."""
    # imported here: the deploy library (and what it imports) matters only to hosts that probe their deploys
    from . import _deploy_status  # pylint: disable=import-outside-toplevel
    found = _deploy_status.report(probe.get("state_dir") or "/var/lib/lifeboat/deploy",
                                  probe.get("switch_socket_dir") or "/run/lifeboat-switch")
    return found["state"] != "CRITICAL", found["summary"], {"warning": found["state"] == "WARNING"}


PROBES: dict[str, t.Callable[[dict[str, t.Any], float], tuple[t.Any, ...]]] = {
    "http": probe_http, "tcp": probe_tcp, "command": probe_command, "tls": probe_tls,
}
PROBES.update({"postgresql": _probes.probe_postgresql, "mongodb": _probes.probe_mongodb, "redis": _probes.probe_redis})
PROBES["database_expect"] = _probes.probe_database_expect
PROBES["deploy"] = probe_deploy


def probe_stopped_containers(probe: dict[str, t.Any], _timeout: float) -> tuple[bool, str]:
    """Failing while a container that a killed backup or restore stopped may still be stopped, naming it and since when."""
    # imported here, like the deploy library: only hosts that probe their stopped containers need it
    from . import _stopped_notes as notes  # pylint: disable=import-outside-toplevel
    found = notes.left_stopped(probe.get("dir") or None)
    if not found:
        return True, "no container left stopped by a killed backup or restore"
    return False, "; ".join(notes.describe_left_stopped(entry) for entry in found)


PROBES["stopped_containers"] = probe_stopped_containers


def run_probe(probe: dict[str, t.Any], default_timeout: float) -> dict[str, t.Any]:
    timeout = float(probe.get("timeout") or default_timeout)
    started = time.monotonic()
    extra: dict[str, t.Any] = {}  # a probe's own findings (a certificate's expiry, a warning)
    try:
        ok, detail, *more = PROBES[probe["type"]](probe, timeout)
        extra = more[0] if more else {}
    except Exception as exc:  # noqa: BLE001 - a probe that breaks is a failing probe, never a crashed run
        ok, detail = False, f"probe error: {exc}"
    return {"ok": ok, "detail": detail, "duration": time.monotonic() - started, "warning": False, **extra}


def advance(previous: dict[str, t.Any] | None, ok: bool, threshold: int, now: float,
            warning: bool = False) -> dict[str, t.Any]:
    """The probe's next state. ``alerted`` is the state the last delivered alert announced (healthy at first).

    A passing run with a warning is WARNING at once; a failing run counts towards ``threshold``."""
    entry = dict(previous or {"state": None, "failures": 0, "alerted": HEALTHY, "changed_at": now})
    entry["failures"] = 0 if ok else int(entry.get("failures") or 0) + 1
    passing = WARNING if warning else HEALTHY
    state = passing if ok else (FAILING if entry["failures"] >= threshold else entry.get("state") or HEALTHY)
    if state != entry.get("state"):
        entry["changed_at"] = now
    entry["state"] = state
    return entry


def alert_for(host: str, name: str, probe: dict[str, t.Any], entry: dict[str, t.Any], detail: str) -> dict[str, t.Any]:
    state = entry["state"]
    verb = {FAILING: "is failing", WARNING: "has a warning"}.get(state, "is healthy again")
    return {
        "source": "lifeboat-healthcheck",
        "host": host,
        "probe": name,
        "type": probe["type"],
        "state": state,
        "severity": SEVERITY[state],
        "previous": entry["alerted"],
        "failures": entry["failures"],
        "at": datetime.datetime.fromtimestamp(entry["changed_at"], datetime.timezone.utc).isoformat(timespec="seconds"),
        "message": detail,
        "text": f"lifeboat: {name} on {host} {verb}: {detail}",
    }


def metrics_text(config: dict[str, t.Any], results: dict[str, dict[str, t.Any]], states: dict[str, t.Any],
                 now: float) -> str:
    families: list[tuple[str, str, t.Callable[[str], float]]] = [
        ("lifeboat_healthcheck_up", "1 when the probe's last run passed (a warning passes), else 0.",
         lambda name: 1 if results[name]["ok"] else 0),
        ("lifeboat_healthcheck_status", "Health of the probe: 0 OK, 1 WARNING, 2 CRITICAL (failing).",
         lambda name: STATUS.get(states[name]["state"], 0)),
        ("lifeboat_healthcheck_duration_seconds", "How long the probe's last run took.",
         lambda name: round(results[name]["duration"], 6)),
        ("lifeboat_healthcheck_last_change_timestamp_seconds",
         "When the probe last changed between healthy and failing.", lambda name: states[name]["changed_at"]),
    ]
    probes = [({"probe": probe["name"], "type": probe["type"]}, probe["name"]) for probe in config["probes"]]
    tls = [(labels, results[name]["tls_not_after"]) for labels, name in probes if "tls_not_after" in results[name]]
    return _prometheus.text(
        [(metric, help_text, [(labels, value(name)) for labels, name in probes]) for metric, help_text, value in families]
        + ([("lifeboat_healthcheck_tls_certificate_expiry_timestamp_seconds",
             "When the served certificate expires (Unix time; tls probes that got a certificate).", tls)] if tls else [])
        + [("lifeboat_healthcheck_timestamp_seconds", "When the probes last ran (Unix time).", [({}, now)])])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the probes' JSON configuration")
    parser.add_argument("--check-config", metavar="FILE", help="check FILE and exit")
    parser.add_argument("--state", help="state file (default $STATE_DIRECTORY/state.json)")
    parser.add_argument("--nagios", action="store_true",
                        help="exit with the worst probe's state: 0 OK, 1 WARNING, 2 CRITICAL (3 UNKNOWN: bad config)")


def run(args: argparse.Namespace) -> int:
    """Run the probes once (or check the configuration with --check-config); the exit code as the docstring says."""
    if not (args.check_config or args.config):
        sys.stderr.write("lifeboat healthcheck: error: give --config or --check-config\n")
        return 2
    try:
        config = load_config(args.check_config or args.config)
    except ConfigError as exc:
        sys.stderr.write(f"<3>{exc}\n")
        return 3 if args.nagios else 2
    if args.check_config:
        sys.stdout.write(f"{args.check_config}: {len(config['probes'])} probe(s) valid\n")
        return 0
    state_path = args.state or os.path.join(os.environ.get("STATE_DIRECTORY", "/var/lib/lifeboat-healthcheck"),
                                            "state.json")
    try:
        with open(state_path, encoding="utf-8") as handle:
            states = json.load(handle)
    except (OSError, ValueError):
        states = {}
    now = time.time()
    threshold = max(1, int(config.get("failures_before_alert") or 1))
    results, new_states, problems = {}, {}, 0
    for probe in config["probes"]:
        name = probe["name"]
        results[name] = run_probe(probe, float(config.get("timeout") or 10))
        entry = advance(states.get(name), results[name]["ok"], threshold, now, results[name]["warning"])
        priority = 6 if entry["state"] == HEALTHY and results[name]["ok"] else 4
        sys.stdout.write(f"<{priority}>{name}: {entry['state']}: {results[name]['detail']}\n")
        if entry["state"] != entry["alerted"] and config.get("webhook_url"):
            alert = alert_for(config.get("host") or os.uname().nodename, name, probe, entry, results[name]["detail"])
            problem = _webhook.post_json(config["webhook_url"], alert, user_agent="lifeboat-healthcheck")
            if problem:
                problems += 1
                sys.stdout.write(f"<3>{name}: alert not delivered ({problem}); trying again on the next run\n")
            else:
                entry["alerted"] = entry["state"]
                sys.stdout.write(f"<5>{name}: alert sent: {alert['text']}\n")
        elif not config.get("webhook_url"):
            entry["alerted"] = entry["state"]
        new_states[name] = entry
    _files.write_file_atomic(state_path, (json.dumps(new_states, indent=1, sort_keys=True) + "\n").encode(), 0o600)
    if config.get("metrics_file"):
        _prometheus.write_textfile(config["metrics_file"], metrics_text(config, results, new_states, now))
    if args.nagios:
        return max([STATUS.get(entry["state"], 0) for entry in new_states.values()], default=0)
    return 1 if problems else 0
