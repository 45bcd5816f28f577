# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No error for keep-alive clients, new-connection clients or open WebSockets across a deploy, a rollback and a
failed gate (switch_method haproxy, the default).

Three loads at once through the site's nginx: wrk (16 keep-alive connections, tests/integration/wrk_load.py), a
client that opens a new connection per request (load_loop.py), and ten WebSocket clients (ws_clients.py) opened on
the first release. Every change must see 0 errors of any kind and at least 5,000 requests; every WebSocket stays
open or is closed with 1001 after the drain window, no message cut. The p99 during a change is printed, not bounded
(the ratios are measured in bench/: on two cores the change's own work shows in it, switch or not). An nginx reload
per switch fails this (wrk counts the keep-alive connections it closes as read errors: bench/README.md).
"""

from __future__ import annotations

import datetime
import time
import typing as t

import pytest
from load_loop import LoadLoop  # pylint: disable=import-error
from proxy_bed import Upstream  # pylint: disable=import-error
from test_deploy import app, bed, release  # noqa: F401  pylint: disable=import-error,unused-import
from wrk_load import WrkLoad  # pylint: disable=import-error
from ws_clients import WsClients  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import _reverse_proxy

HOST = "ws.localhost"
DRAIN = 3


def traffic_moving(history: dict[str, t.Any], clock: float) -> tuple[float, float] | None:
    """From the switch's start to the old color's stop (the finish step's end), on the monotonic clock."""
    steps = {step["name"]: step for step in history.get("steps", [])}
    if "switch" not in steps or "finish" not in steps:
        return None

    def monotonic(step: dict[str, t.Any]) -> float:
        when = datetime.datetime.strptime(step["started"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        return when.timestamp() - clock

    return monotonic(steps["switch"]), monotonic(steps["finish"]) + steps["finish"]["seconds"]


@pytest.mark.parametrize("pause_ms", [0, 5], ids=["flat-out", "paced"])
def test_keep_alive_clients_and_websockets_see_no_error_across_a_switch(
        bed: dict[str, t.Any], app: dict[str, t.Any], run_module: t.Any, pause_ms: int) -> None:  # noqa: F811
    """wrk flat out (each connection sends its next request at once: the cores are saturated, so any other work
    of the host shows in p99) and paced (each connection waits 5 ms after an answer: idle keep-alive connections
    at every moment, which an nginx reload would close, and headroom on the cores)."""
    layout = bed["layout"]
    placeholder = Upstream("placeholder")
    try:
        _reverse_proxy.apply_sites([{"name": "ws", "server_names": [HOST], "tls": "none", "websocket": True,
                                     "upstreams": [placeholder.address]}], layout, bed["control"],
                                   _reverse_proxy.Acme(), purge=False)
    finally:
        placeholder.stop()
    app["args"].update(site="ws", drain_timeout=DRAIN, watch_probes=20)
    first = run_module("app_deploy", release(bed, app, "v1"))
    assert first.rc == 0, first.stdout + first.stderr
    clock = time.time() - time.monotonic()  # history steps carry UTC times; the loads, monotonic ones
    windows: dict[str, tuple[float, float]] = {}
    runs = {}
    with WrkLoad(layout.http_port, host=HOST, path="/version", connections=16, pause_ms=pause_ms) as wrk, \
            LoadLoop(layout.http_port, host=HOST, path="/version", rate=200, workers=2) as fresh, \
            WsClients(layout.http_port, count=10, host=HOST) as sockets:
        assert sockets.wait_connected(messages=3), sockets.summary()
        time.sleep(4)
        for change, args in (("deploy", release(bed, app, "v2")),
                             ("rollback", {**app["args"], "deploy_action": "rollback"}),
                             ("failed gate", release(bed, app, "v3", health_timeout=3,
                                                     environment={"APP_NEVER_HEALTHY": "1"}))):
            started = time.monotonic()
            runs[change] = run_module("app_deploy", args)
            windows[change] = (started, time.monotonic())
            time.sleep(2)
    for change in ("deploy", "rollback"):
        assert runs[change].rc == 0, (change, runs[change].result.get("msg"), runs[change].result.get("history"))
    assert runs["failed gate"].rc != 0 and runs["failed gate"].result["history"]["outcome"] == "rolled_back"
    first_change = windows["deploy"][0]
    before_wrk, before_fresh = wrk.before(first_change), fresh.window(0, first_change)
    print(f"before: wrk {before_wrk.describe()}; new connections {before_fresh.describe()}")
    for change, (start, end) in windows.items():
        during_wrk, during_fresh = wrk.window(start, end), fresh.window(start, end)  # nothing inside left out
        print(f"{change} ({end - start:.1f} s): wrk {during_wrk.describe()}; new connections "
              f"{during_fresh.describe()}")
        assert during_wrk.failed == 0 and during_fresh.failed == 0, (change, during_wrk, during_fresh)
        assert during_wrk.requests + during_fresh.requests >= 5000, (change, during_wrk.requests)
        # No timed bound here (the p99 ratios are bench/README.md's, bench/bench_deploy.py): on two cores the change's
        # own work (a dump, a container started and stopped) shows in p99 with or without a switch, and beside CI's
        # molecule scenarios the failed gate, which never switches, reached 5x. A stall is caught without timing it:
        # wrk counts a request unanswered for 2 s as a timeout error, and a queue shows as fewer requests.
        moving = traffic_moving(runs[change].result["history"], clock)
        if moving and moving[1] - moving[0] >= 2:  # at least one whole wrk segment inside
            switch_wrk = wrk.inside(*moving)
            print(f"{change}, switch to stop ({moving[1] - moving[0]:.1f} s): wrk {switch_wrk.describe()}")
            assert switch_wrk.failed == 0, (change, switch_wrk)
    assert wrk.total().failed == 0 and fresh.failed() == 0, (wrk.total().describe(), fresh.summary())
    # the WebSockets opened on v1: closed with 1001 once v1 stopped, after the drain window; none cut
    print(f"WebSockets: {sockets.summary()}")
    drain = runs["deploy"].result["history"]["finish"]["drain"]
    assert drain["open_after_drain"] == 10 and drain["seconds"] >= DRAIN - 0.2, drain
    for record in sockets.records:
        assert record.intact and record.gaps == 0, record.describe()
        assert record.ended == "open" or (record.ended == "closed" and record.close_code == 1001), record.describe()
        if record.ended == "closed":
            assert record.ended_at is not None and record.ended_at >= windows["deploy"][0] + DRAIN, record.describe()
