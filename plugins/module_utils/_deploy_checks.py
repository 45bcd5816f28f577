# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""A deploy's probes: the health gate a new color must pass before the switch, and the watch through the front door
after it.
"""

from __future__ import annotations

import re
import time
import typing as t

from . import _http_probe, _nginx
from ._deploy_data import expectations


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
                    "reason": f"GET {params['health_path']} did not pass {params['health_passes']} times in a row "
                              f"within {params['health_timeout']} s (last: {last})"}
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


def gate(params: dict[str, t.Any], port: int, container: t.Any, backups: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    health = health_gate(params, port, container)
    if not health["ok"]:
        return {"ok": False, "health": health, "reason": f"health gate failed: {health['reason']}"}
    data = expectations(params, backups)
    if not data["ok"]:
        return {"ok": False, "health": health, "data": data, "reason": data["reason"]}
    return {"ok": True, "health": health, "data": data}
