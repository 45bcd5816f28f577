# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): what clients see during a deploy, a rollback and a failed gate, per switch method.

Run with the test bed's venv:
  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_deploy.py [--methods haproxy nginx_reload naive]
      [--repeat 1] [--settle 5] [--after 2] [--connections 16] [--rate 300] [--workers 4] [--drain-timeout 3]

It starts a PostgreSQL 17 container and the deploy test app (scripts/testbed/images.sh builds both), a private nginx
on loopback (tests/integration/proxy_bed.py) with one site, and two loads through it at the same time:
  wrk   tests/integration/wrk_load.py: keep-alive, --connections (16) on 2 threads, as fast as it goes, /version
  loop  tests/integration/load_loop.py: a new connection per request, --workers threads sharing --rate requests/s
from --settle seconds before each change to --after seconds after it. Methods, one after the other:

  haproxy       _deploy.run with switch_method=haproxy (the switch without a reload: HAProxy's runtime API), its
                unix sockets in a short temporary directory (switch_socket_dir, lbt-sw-*: a socket path must stay
                under 108 bytes), drain_timeout --drain-timeout; the app's HAProxy, which the deploy leaves
                running, is stopped by its PID after the method's rounds (and at the end if the bench stops early)
  nginx_reload  _deploy.run with switch_method=nginx_reload (the site's upstream rewritten, nginx -t, reload); on a
                branch whose app_deploy has no switch_method option, the option is not passed (today's code path)
  naive         what `docker compose up -d` does when the image changed, done through the docker SDK (Docker
                Compose v2 is not installed here): stop and remove the container, create and start the new one on
                the same port (the site points at that port), wait for /health. Its "failed gate": the release that
                never gets healthy is started the same way, /health waited for --health-timeout seconds, then it is
                replaced by the previous release again (compose has no gate: this is what an operator does)

and per method, --repeat times: a deploy (a new release), a rollback (back to the release before), a failed gate (a
release whose /health answers 503: APP_NEVER_HEALTHY=1). A method that app_deploy rejects (no such choice, or the
first deploy fails) is skipped with one printed line saying why. "before" is the --settle seconds before the change,
"during" is from its start to --after seconds after its end (wrk: its 1 s segments that overlap that window); the
whole change includes the pre-deploy dump of the database and the new container's start. For the library's methods,
"switch" is also measured: from the history's switch step to the end of its finish step (watch, drain, the old
color's stop), wrk's whole 1 s segments inside it (when it lasts 2 s or more). Printed:
one line per change, then a Markdown table. Containers are named ``lbt-deploy-bench-<run id>-...`` and removed at
the end. Exits non-zero only on errors of the bench itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import shutil
import signal
import sys
import tempfile
import time
import typing as t
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "tests", "shared"))  # local_ports, which proxy_bed imports
METHODS = ("haproxy", "nginx_reload", "naive")
CHANGES = ("deploy", "rollback", "failed gate")


def importable() -> None:
    """The checkout as ansible_collections.lifeboat.ops (a symlink in a temporary collections tree, as
    tests/conftest.py makes), and the tree on ANSIBLE_COLLECTIONS_PATH for the test bed's helpers."""
    collections = tempfile.mkdtemp(prefix="lbt-deploy-bench-collections-")
    os.makedirs(os.path.join(collections, "ansible_collections", "lifeboat"))
    os.symlink(REPO, os.path.join(collections, "ansible_collections", "lifeboat", "ops"))
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", collections)
    sys.path.insert(0, collections)


def method_refusal(spec: dict[str, dict[str, t.Any]], method: str) -> tuple[str | None, bool]:
    """(why app_deploy rejects the method, or None; whether to pass switch_method at all)."""
    option = spec.get("switch_method")
    if option is None:
        if method == "nginx_reload":
            return None, False  # the only switch there is: an nginx reload
        return "app_deploy has no switch_method option on this branch", False
    choices = option.get("choices")
    if choices is not None and method not in choices:
        return f"app_deploy's switch_method accepts {', '.join(map(str, choices))}, not {method}", True
    return None, True


def traffic_moving(history: dict[str, t.Any], clock: float) -> tuple[float, float] | None:
    """From the switch step's start to the finish step's end (the old color stopped), on the monotonic clock."""
    steps = {step["name"]: step for step in (history or {}).get("steps", [])}
    if "switch" not in steps or "finish" not in steps:
        return None

    def monotonic(step: dict[str, t.Any]) -> float:
        when = datetime.datetime.strptime(step["started"], "%Y-%m-%dT%H:%M:%S.%fZ")
        return when.replace(tzinfo=datetime.UTC).timestamp() - clock

    return monotonic(steps["switch"]), monotonic(steps["finish"]) + steps["finish"]["seconds"]


def apart(work: t.Callable[..., t.Any], *args: t.Any) -> t.Any:
    """work(*args) in a thread of its own. A deploy lowers its priority (os.nice), which on Linux is the calling
    thread's, inherited by every thread and process that thread starts later: run in the bench's main thread, it left
    wrk, the new-connection client and the WebSocket clients of every later change at nice 10 (19 after two runs)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-change") as pool:
        return pool.submit(work, *args).result()


def cell(before: t.Any, during: t.Any, attribute: str, digits: int = 0) -> str:
    return f"{getattr(before, attribute):.{digits}f} / {getattr(during, attribute):.{digits}f}"


def kinds(figures: t.Any) -> str:
    errors = figures.errors
    return "/".join(str(errors[kind]) for kind in ("connect", "read", "write", "timeout"))


def statuses(figures: t.Any) -> str:
    return ", ".join(f"{status}: {count}" for status, count in figures.statuses.items()) or "0"


def main() -> int:  # pylint: disable=too-many-locals,too-many-statements
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load before each change")
    parser.add_argument("--after", type=float, default=2.0, help="seconds of load after each change (in 'during')")
    parser.add_argument("--connections", type=int, default=16, help="wrk's keep-alive connections")
    parser.add_argument("--rate", type=float, default=300.0, help="new-connection client: requests per second")
    parser.add_argument("--workers", type=int, default=4, help="new-connection client: threads")
    parser.add_argument("--ws-clients", type=int, default=8, help="WebSocket clients on /ws through the proxy")
    parser.add_argument("--health-timeout", type=int, default=3, help="seconds the failed gate waits")
    parser.add_argument("--drain-timeout", type=int, default=3, help="haproxy: seconds the old color is drained")
    options = parser.parse_args()
    importable()

    import docker  # pylint: disable=import-outside-toplevel
    import docker.errors  # pylint: disable=import-outside-toplevel
    from load_loop import LoadLoop  # pylint: disable=import-outside-toplevel
    from proxy_bed import Upstream, free_port, start_nginx  # pylint: disable=import-outside-toplevel
    from wrk_load import WrkLoad  # pylint: disable=import-outside-toplevel
    from ws_clients import WsClients  # pylint: disable=import-outside-toplevel

    from ansible_collections.lifeboat.ops.plugins.module_utils import (  # pylint: disable=import-outside-toplevel
        _deploy,
        _deploy_checks,
        _nginx,
        _reverse_proxy,
        _switch,
    )
    from containers import PG_PASSWORD, ContainerBed, image_names  # pylint: disable=import-outside-toplevel

    class BenchBed(ContainerBed):
        def name(self, purpose: str) -> str:
            return f"lbt-deploy-bench-{self.run_id}-{purpose}"

    run_id = uuid.uuid4().hex[:6]
    images = image_names()
    bed = BenchBed.connect(images, run_id)
    client = docker.from_env()
    root = tempfile.mkdtemp(prefix="lbt-deploy-bench-")
    sockets_dir = tempfile.mkdtemp(prefix="lbt-sw-")  # short: a unix socket's path must stay under 108 bytes
    nginx = start_nginx(root)
    placeholder = Upstream("placeholder")
    layout = _nginx.Layout(sites_dir=nginx.sites_dir, include_dir=os.path.join(root, "include"),
                           tls_dir=os.path.join(root, "tls"), webroot=os.path.join(root, "webroot"),
                           listen_address="127.0.0.1", http_port=free_port(), https_port=free_port())
    control = _nginx.Nginx(**nginx.control())
    _reverse_proxy.apply_sites([{"name": "app", "server_names": ["localhost"], "tls": "none", "websocket": True,
                                 "upstreams": [placeholder.address]}], layout, control, _reverse_proxy.Acme())
    prefix = f"lbt-deploy-bench-{run_id}"
    naive_name = f"{prefix}-naive"
    rows: list[dict[str, t.Any]] = []
    switches: list[dict[str, t.Any]] = []  # params of the haproxy runs: their HAProxy is stopped by PID

    def stop_switches() -> None:
        while switches:
            params = switches.pop()
            switch = _switch.switch_of(params["app"], params["state_dir"], params["switch_socket_dir"],
                                       params["bind_address"], {"blue": params["blue_port"],
                                                                "green": params["green_port"]})
            pid = switch.running_pid()
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                print(f"{params['app']}: its HAProxy (pid {pid}) stopped", flush=True)

    skipped: dict[str, str] = {}
    try:
        db = bed.postgres("db", user="journal_owner", database="journal", password=PG_PASSWORD)
        with db.connect_pg() as conn:
            conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 10000) g")
        environment = {"APP_DB_HOST": db.ip, "APP_DB_NAME": "journal", "APP_DB_USER": "journal_owner"}
        base = {name: spec.get("default") for name, spec in _deploy.app_deploy_spec().items()}
        base.update(
            state_dir=os.path.join(root, "state"), image=images["DEPLOY_APP_IMAGE"],
            environment=environment, secret_environment={"APP_DB_PASSWORD": PG_PASSWORD},
            databases=[{**{name: None for name in _deploy.app_deploy_spec()["databases"]["options"]}, "engine": "postgresql",
                        "database": "journal", "container": db.name, "connect_timeout": 10}],
            site="app", sites_dir=layout.sites_dir, include_dir=layout.include_dir, tls_dir=layout.tls_dir,
            webroot=layout.webroot, listen_address="127.0.0.1", http_port=layout.http_port,
            https_port=layout.https_port, nginx_binary="/usr/sbin/nginx", nginx_config=nginx.conf,
            nginx_prefix=nginx.prefix + "/", nginx_pid_file=nginx.pid_file, health_interval=0.2, watch_probes=20,
            watch_interval=0.1, stop_timeout=5)

        def point_site(port: int) -> None:
            _nginx.switch_upstream("app", [f"127.0.0.1:{port}"], 16, layout, control,
                                   _nginx.Probe(host="localhost", port=layout.http_port, tls=False, timeout=30))

        # ---- the library's switch methods
        def library(method: str, params: dict[str, t.Any]) -> dict[str, t.Callable[[int], tuple[float, float]]]:
            def release(index: int, action: str = "deploy", **extra: str) -> tuple[float, float]:
                start = time.monotonic()
                last["history"] = None
                result = apart(_deploy.run, {**params, "release": f"bench-{index}{'-bad' if extra else ''}",
                                             "deploy_action": action,
                                             "environment": {**environment, "APP_VERSION": str(index), **extra}})
                end = time.monotonic()
                last["history"] = result.history
                if extra:  # the failed gate: refused before the switch, the live release kept
                    if result.failure is None or "switch" in result.history:
                        raise SystemExit(f"{method}: the never-healthy release was not refused: {result.history}")
                elif result.failure or not result.changed:
                    raise SystemExit(f"{method} {action} failed: {result.failure or 'nothing changed'}")
                return start, end

            return {"deploy": release,
                    "rollback": lambda index: release(index, "rollback"),
                    "failed gate": lambda index: release(1000 + index, APP_NEVER_HEALTHY="1")}

        # ---- the naive baseline (the docker SDK doing what `docker compose up -d` does)
        naive_port = free_port()

        def naive_replace(version: str, **extra: str) -> None:
            try:
                old = client.containers.get(naive_name)
                old.stop(timeout=5)
                old.remove()
            except docker.errors.NotFound:
                pass
            client.containers.run(images["DEPLOY_APP_IMAGE"], name=naive_name, detach=True,
                                  environment={**environment, "APP_DB_PASSWORD": PG_PASSWORD,
                                               "APP_VERSION": version, **extra},
                                  ports={"8080/tcp": ("127.0.0.1", naive_port)})

        def naive_healthy(timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                status, _body, _ms, _error = _deploy_checks.http_get("127.0.0.1", naive_port, "/health")
                if status == 200:
                    return True
                time.sleep(0.05)
            return False

        naive_live = {"version": "naive-0", "previous": "naive-0"}

        def naive_change(index: int, change: str) -> tuple[float, float]:
            start = time.monotonic()
            if change == "deploy":
                naive_live["previous"], naive_live["version"] = naive_live["version"], f"naive-{index}"
                naive_replace(naive_live["version"])
                naive_healthy(60)
            elif change == "rollback":
                naive_live["previous"], naive_live["version"] = naive_live["version"], naive_live["previous"]
                naive_replace(naive_live["version"])
                naive_healthy(60)
            else:
                naive_replace(f"naive-bad-{index}", APP_NEVER_HEALTHY="1")
                if naive_healthy(options.health_timeout):
                    raise SystemExit("naive: the never-healthy release got healthy")
                naive_replace(naive_live["version"])
                naive_healthy(60)
            return start, time.monotonic()

        changes: dict[str, t.Callable[[int], tuple[float, float]]]
        last: dict[str, t.Any] = {"history": None}  # the library's history of the last change
        clock = time.time() - time.monotonic()  # history steps carry UTC times; the loads, monotonic ones
        for method in options.methods:
            if method == "naive":
                naive_replace(naive_live["version"])
                if not naive_healthy(60):
                    raise SystemExit("naive: the first container never got healthy")
                point_site(naive_port)
                changes = {"deploy": lambda index: naive_change(index, "deploy"),
                           "rollback": lambda index: naive_change(index, "rollback"),
                           "failed gate": lambda index: naive_change(index, "failed gate")}
            else:
                refusal, pass_option = method_refusal(_deploy.app_deploy_spec(), method)
                if refusal:
                    skipped[method] = refusal
                    print(f"{method}: skipped: {refusal}", flush=True)
                    continue
                params = {**base, "app": f"{prefix}-{method.replace('_', '-')}", "blue_port": free_port(),
                          "green_port": free_port(), "health_timeout": options.health_timeout}
                if pass_option:
                    params["switch_method"] = method
                else:
                    print(f"{method}: app_deploy has no switch_method option on this branch: its only switch, an "
                          "nginx reload, is used without the option", flush=True)
                if method == "haproxy":
                    params.update(switch_socket_dir=sockets_dir, drain_timeout=options.drain_timeout)
                    switches.append(params)
                try:
                    first = apart(_deploy.run, {**params, "release": "bench-0",
                                                "environment": {**environment, "APP_VERSION": "0"}})
                except _deploy.LifeboatError as error:
                    skipped[method] = f"app_deploy refused it: {error}"
                    print(f"{method}: skipped: {skipped[method]}", flush=True)
                    continue
                if first.failure is not None:
                    skipped[method] = f"its first deploy failed: {first.failure}"
                    print(f"{method}: skipped: {skipped[method]}", flush=True)
                    continue
                changes = library(method, params)
            for index in range(1, options.repeat + 1):
                for change in CHANGES:
                    with WrkLoad(layout.http_port, path="/version", connections=options.connections) as wrk, \
                            LoadLoop(layout.http_port, path="/version", rate=options.rate,
                                     workers=options.workers) as loop, \
                            WsClients(layout.http_port, count=options.ws_clients) as sockets:
                        if not sockets.wait_connected(messages=1):
                            print(f"  note: WebSocket clients did not all connect: {sockets.summary()}", flush=True)
                        time.sleep(options.settle)
                        outcome = ""
                        last["history"] = None
                        try:
                            start, end = changes[change](index)
                        except (_deploy.LifeboatError, SystemExit) as error:  # reported in its row, the bench goes on
                            start = end = time.monotonic()
                            outcome = f"FAILED: {error}"
                        time.sleep(options.after)
                    window = (start, end + options.after)
                    moving = traffic_moving(last["history"], clock) if method != "naive" else None
                    switch_wrk = wrk.inside(*moving) if moving and moving[1] - moving[0] >= 2 else None
                    row = {"method": method, "change": change, "round": index, "wall": end - start, "outcome": outcome,
                           "wrk_before": wrk.inside(start - options.settle - 1, start), "wrk_during": wrk.window(*window),
                           "loop_before": loop.window(start - options.settle, start),
                           "loop_during": loop.window(*window), "wrk_failures": len(wrk.failures),
                           "switch_seconds": moving[1] - moving[0] if moving else None, "wrk_switch": switch_wrk,
                           "ws": sockets.ended(), "ws_cut": sum(not record.intact for record in sockets.records),
                           "ws_versions": sorted({version for record in sockets.records
                                                  for version in record.versions})}
                    rows.append(row)
                    print(f"{method} {change} #{index}: {outcome or 'done'} {row['wall']:.2f} s; wrk before: "
                          f"{row['wrk_before'].describe()}; wrk during: {row['wrk_during'].describe()} "
                          f"{row['wrk_during'].versions}; new-connection before: {row['loop_before'].describe()}; "
                          f"during: {row['loop_during'].describe()} {row['loop_during'].versions}; WebSocket "
                          f"clients: {sockets.summary()}, versions {row['ws_versions']}"
                          + (f"; switch to stop ({row['switch_seconds']:.1f} s): wrk {switch_wrk.describe()}"
                             if switch_wrk is not None else ""), flush=True)
                    if row["wrk_during"].requests < 5000:
                        print(f"  note: {row['wrk_during'].requests} wrk requests during the change (< 5,000): "
                              "raise --after", flush=True)
            stop_switches()

        load = os.getloadavg()
        print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; wrk {options.connections} keep-alive "
              f"connections, new-connection client {options.rate:g}/s on {options.workers} threads; settle "
              f"{options.settle:g} s, after {options.after:g} s, {options.repeat} round(s)"
              + (", per change the round of median wall time" if options.repeat > 1 else "") + "; errors connect/read/write/timeout\n")
        print("| method | change | wall s | wrk req/s before / during | wrk requests during | wrk errors during | "
              "wrk non-2xx/3xx during | wrk p50 ms before / during | wrk p99 ms before / during | new-conn requests "
              "during | new-conn errors during | new-conn non-2xx/3xx during | new-conn p99 ms before / during | "
              "WebSocket clients: how they ended (cut messages) | wrk p99 during / before | switch to stop: s, wrk "
              "p99 ms | all rounds: wrk errors, wrk non-2xx/3xx, new-conn failed |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for method in options.methods:
            if method in skipped:
                print(f"| {method} | (skipped: {skipped[method]}) |" + " |" * 15)
                continue
            for change in CHANGES:
                chosen = [row for row in rows if row["method"] == method and row["change"] == change]
                if not chosen:
                    continue
                row = sorted(chosen, key=lambda row: row["wall"])[len(chosen) // 2]  # the median round by wall time
                wall = row["wall"]
                wb, wd, lb, ld = row["wrk_before"], row["wrk_during"], row["loop_before"], row["loop_during"]
                failed = sum(bool(row["outcome"]) for row in chosen)
                label = f"{change} ({failed} of {len(chosen)} FAILED: {next(r['outcome'] for r in chosen if r['outcome'])[8:120]})" \
                    if failed else change
                print(f"| {method} | {label} | {wall:.2f} | {cell(wb, wd, 'rate')} | {wd.requests} | {kinds(wd)} | "
                      f"{statuses(wd)} | {cell(wb, wd, 'p50_ms', 1)} | {cell(wb, wd, 'p99_ms', 1)} | {ld.requests} | "
                      f"{kinds(ld)} | {statuses(ld)} | {cell(lb, ld, 'p99_ms', 1)} | "
                      f"{', '.join(f'{how}: {count}' for how, count in row['ws'].items()) or '-'} ({row['ws_cut']}) | "
                      f"{wd.p99_ms / max(wb.p99_ms, 0.1):.2f}x | "
                      + (f"{row['switch_seconds']:.1f}, {row['wrk_switch'].p99_ms:.1f} | " if row["wrk_switch"] else "- | ")
                      + f"{sum(r['wrk_during'].errors[kind] for r in chosen for kind in ('connect', 'read', 'write', 'timeout'))}, "
                      f"{sum(sum(r['wrk_during'].statuses.values()) for r in chosen)}, "
                      f"{sum(r['loop_during'].failed for r in chosen)} |")
        return 0
    finally:
        try:
            stop_switches()
            for container in client.containers.list(all=True, filters={"name": prefix}):
                if container.name.startswith(prefix):
                    container.remove(force=True)
        finally:
            client.close()
            bed.close()
            nginx.stop()
            placeholder.stop()
            shutil.rmtree(sockets_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
