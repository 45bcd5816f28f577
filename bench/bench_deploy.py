# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): a blue-green deploy (_deploy.run) against a naive restart of the same image.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_deploy.py [--repeat 3]
It starts a PostgreSQL 17 container and the deploy test app (scripts/testbed/images.sh builds both), a private
nginx on loopback (tests/integration/proxy_bed.py) with one site, and a load loop through that nginx
(tests/integration/load_loop.py: one client, a new connection per request, --rate requests/s) that runs from
--settle seconds before each change to --settle seconds after it. Variants, interleaved, --repeat times each:

  blue-green  _deploy.run: backup + verify, start the other color, gate, switch (nginx reload), watch, stop old
  rollback    _deploy.run with deploy_action=rollback right after it: back to the release before (still on the host)
  naive       what `docker compose up -d` does when the image changed: stop and remove the container, create and
              start the new one on the same port (the site points at that port), then wait for /health

Reported per variant (medians): wall seconds of the change and of each step, for blue-green the time from "gate
passed" to "all traffic on the new color" (the switch: nginx -t, reload, new workers serving), requests sent,
non-2xx, connection errors, p99 latency before the change and during it. Containers are named
``lbt-deploy-bench-<run id>-...`` and removed at the end. Exits non-zero only on errors.
"""

from __future__ import annotations

import argparse
import calendar
import datetime
import os
import statistics
import sys
import tempfile
import time
import typing as t
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))


def importable() -> None:
    """The checkout as ansible_collections.lifeboat.ops (a symlink in a temporary collections tree, as
    tests/conftest.py makes), and the tree on ANSIBLE_COLLECTIONS_PATH for the test bed's helpers."""
    collections = tempfile.mkdtemp(prefix="lbt-deploy-bench-collections-")
    os.makedirs(os.path.join(collections, "ansible_collections", "lifeboat"))
    os.symlink(REPO, os.path.join(collections, "ansible_collections", "lifeboat", "ops"))
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", collections)
    sys.path.insert(0, collections)


def epoch(iso: str) -> float:
    parsed = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
    return calendar.timegm(parsed.timetuple()) + parsed.microsecond / 1e6


def main() -> int:  # pylint: disable=too-many-locals,too-many-statements
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=400.0, help="load loop requests per second")
    parser.add_argument("--workers", type=int, default=4, help="load loop client threads")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load before and after each change")
    options = parser.parse_args()
    importable()

    import docker  # pylint: disable=import-outside-toplevel
    from load_loop import LoadLoop  # pylint: disable=import-outside-toplevel
    from proxy_bed import Upstream, free_port, start_nginx  # pylint: disable=import-outside-toplevel

    from ansible_collections.lifeboat.ops.plugins.module_utils import (  # pylint: disable=import-outside-toplevel
        _deploy,
        _nginx,
        _reverse_proxy,
    )
    from containers import PG_PASSWORD, ContainerBed, image_names  # pylint: disable=import-outside-toplevel

    class BenchBed(ContainerBed):
        def name(self, purpose: str) -> str:
            return f"lbt-deploy-bench-{self.run_id}-{purpose}"

    run_id = uuid.uuid4().hex[:6]
    images = image_names()
    bed = BenchBed.connect(images, run_id)
    root = tempfile.mkdtemp(prefix="lbt-deploy-bench-")
    nginx = start_nginx(root)
    placeholder = Upstream("placeholder")
    layout = _nginx.Layout(sites_dir=nginx.sites_dir, include_dir=os.path.join(root, "include"),
                           tls_dir=os.path.join(root, "tls"), webroot=os.path.join(root, "webroot"),
                           listen_address="127.0.0.1", http_port=free_port(), https_port=free_port())
    control = _nginx.Nginx(**nginx.control())
    _reverse_proxy.apply_sites([{"name": "app", "server_names": ["localhost"], "tls": "none",
                                 "upstreams": [placeholder.address]}], layout, control, _reverse_proxy.Acme())
    naive_name = f"lbt-deploy-bench-{run_id}-naive"
    app = f"lbt-deploy-bench-{run_id}-app"
    try:
        db = bed.postgres("db", user="journal_owner", database="journal", password=PG_PASSWORD)
        with db.connect_pg() as conn:
            conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 10000) g")
        environment = {"APP_DB_HOST": db.ip, "APP_DB_NAME": "journal", "APP_DB_USER": "journal_owner"}
        params = {name: spec.get("default") for name, spec in _deploy.DEPLOY_SPEC.items()}
        params.update(
            app=app, state_dir=os.path.join(root, "state"), blue_port=free_port(), green_port=free_port(),
            image=images["DEPLOY_APP_IMAGE"], environment=environment,
            secret_environment={"APP_DB_PASSWORD": PG_PASSWORD},
            databases=[{**{name: None for name in _deploy.DEPLOY_SPEC["databases"]["options"]}, "engine": "postgresql",
                        "database": "journal", "container": db.name, "connect_timeout": 10}],
            site="app", sites_dir=layout.sites_dir, include_dir=layout.include_dir, tls_dir=layout.tls_dir,
            webroot=layout.webroot, listen_address="127.0.0.1", http_port=layout.http_port,
            https_port=layout.https_port, nginx_binary="/usr/sbin/nginx", nginx_config=nginx.conf,
            nginx_prefix=nginx.prefix + "/", nginx_pid_file=nginx.pid_file, health_interval=0.2, watch_probes=20,
            watch_interval=0.1, stop_timeout=5)
        first = _deploy.run({**params, "release": "bench-0", "environment": {**environment, "APP_VERSION": "0"}})
        assert first.failure is None, first.failure
        client = docker.from_env()
        naive_port = free_port()
        results: dict[str, list[dict[str, t.Any]]] = {"blue-green": [], "rollback": [], "naive": []}

        def blue_green(index: int, action: str = "deploy") -> tuple[dict[str, t.Any], float, float]:
            wall = time.monotonic()
            result = _deploy.run({**params, "release": f"bench-{index}", "deploy_action": action,
                                  "environment": {**environment, "APP_VERSION": str(index)}})
            if result.failure or not result.changed:
                raise SystemExit(f"{action} failed: {result.failure or 'nothing changed'}")
            history = result.history
            offset = time.time() - time.monotonic()
            switch = next(step for step in history["steps"] if step["name"] == "switch")
            start = epoch(switch["started"]) - offset
            steps = {step["name"]: step["seconds"] for step in history["steps"]}
            figures = {"wall": time.monotonic() - wall, **{f"step {name}": seconds for name, seconds in steps.items()}}
            if "seconds_from_gate" in history["switch"]:
                figures["gate_to_switched"] = history["switch"]["seconds_from_gate"]
            return figures, start, start + switch["seconds"]

        def rollback(_index: int) -> tuple[dict[str, t.Any], float, float]:
            return blue_green(_index, "rollback")

        def naive(index: int) -> tuple[dict[str, t.Any], float, float]:
            wall = time.monotonic()
            try:
                old = client.containers.get(naive_name)
                old.stop(timeout=5)
                old.remove()
            except docker.errors.NotFound:
                pass
            client.containers.run(images["DEPLOY_APP_IMAGE"], name=naive_name, detach=True,
                                  environment={**environment, "APP_DB_PASSWORD": PG_PASSWORD,
                                               "APP_VERSION": f"naive-{index}"},
                                  ports={"8080/tcp": ("127.0.0.1", naive_port)})
            while True:
                status, _body, _ms, _error = _deploy.http_get("127.0.0.1", naive_port, "/health")
                if status == 200:
                    break
                time.sleep(0.05)
            done = time.monotonic()
            return {"wall": done - wall}, wall, done

        # The naive variant's site points at its fixed port once, before its first round.
        def point_site(port: int) -> None:
            _nginx.switch_upstream("app", [f"127.0.0.1:{port}"], 16, layout, control,
                                   _nginx.Probe(host="localhost", port=layout.http_port, tls=False, timeout=30))

        for index in range(1, options.repeat + 1):
            # A rollback (back to the release before, still on the host) right after each blue-green deploy.
            for variant in (("blue-green", "rollback", "naive") if index % 2 else ("naive", "blue-green", "rollback")):
                if variant == "naive":
                    naive(0)  # the container to replace
                    point_site(naive_port)
                else:
                    live = _deploy.load_state(params)["live"]
                    point_site(live["port"])
                    client.containers.get(live["container"]).reload()
                with LoadLoop(layout.http_port, path="/version", rate=options.rate,
                              workers=options.workers) as load:
                    time.sleep(options.settle)
                    before_end = time.monotonic()
                    figures, start, end = {"blue-green": blue_green, "rollback": rollback, "naive": naive}[variant](index)
                    time.sleep(options.settle)
                figures.update(sent=load.sent, non_2xx=len(load.non_2xx), errors=len(load.errors),
                               p99_before_ms=load.p99_ms(before_end - options.settle, before_end),
                               p99_change_ms=load.p99_ms(start, end + 1.0))
                results[variant].append(figures)
                print(f"{variant} #{index}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in figures.items()), flush=True)
        print(f"\nload: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (uptime), "
              f"rate {options.rate:g}/s ({options.workers} clients), settle {options.settle:g} s, {options.repeat} rounds, medians:")
        for variant, rows in results.items():
            keys = [key for key in rows[0] if all(key in row for row in rows)]
            print(f"  {variant}: " + ", ".join(f"{key}={statistics.median(row[key] for row in rows):.3f}"
                                               for key in keys))
        return 0
    finally:
        try:
            client_ = docker.from_env()
            for container in client_.containers.list(all=True, filters={"label": f"{_deploy.LABEL_APP}={app}"}):
                container.remove(force=True)
            try:
                client_.containers.get(naive_name).remove(force=True)
            except docker.errors.NotFound:
                pass
        finally:
            bed.close()
            nginx.stop()
            placeholder.stop()


if __name__ == "__main__":
    sys.exit(main())
