# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Blue-green deploys (app_deploy / _deploy) on the real Docker engine, behind a real nginx, with a real PostgreSQL.

The app is scripts/testbed/images/deploy-app (DEPLOY_APP_IMAGE); its database a PostgreSQL 17 container with a
hostile password. A load loop runs through the proxy across deploys and rollbacks and counts every failed request.
Containers are named ``lbt-deploy-<run id>-...`` and removed by the fixtures.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
import signal
import socket
import tempfile
import time
import typing as t
import uuid

import docker
import pytest
import yaml
from load_loop import LoadLoop  # pylint: disable=import-error
from proxy_bed import Upstream, free_port, start_nginx  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import (
    _deploy_docker,
    _nginx,
    _reverse_proxy,
    _switch,
)
from containers import PG_PASSWORD, ContainerBed, ContainerBedError, image_names  # pylint: disable=import-error
from testbed import ModuleRun  # pylint: disable=import-error

ROWS = 40


class DeployBed(ContainerBed):
    def name(self, purpose: str) -> str:
        return f"lbt-deploy-{self.run_id}-{purpose}"


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[dict[str, t.Any]]:
    root = str(tmp_path_factory.mktemp("deploy"))
    images = image_names()
    try:
        containers = DeployBed.connect(images)
        containers.client.images.get(images["DEPLOY_APP_IMAGE"])
    except (ContainerBedError, docker.errors.ImageNotFound) as error:
        pytest.fail(f"{error} (run scripts/testbed/images.sh)", pytrace=False)
    nginx = start_nginx(root)
    sockets = tempfile.mkdtemp(prefix="lbt-sw-")  # short: a unix socket's path must stay under 108 bytes
    placeholder = Upstream("placeholder")
    http_port = free_port()
    layout = _nginx.Layout(sites_dir=nginx.sites_dir, include_dir=os.path.join(root, "include"),
                           tls_dir=os.path.join(root, "tls"), webroot=os.path.join(root, "webroot"),
                           listen_address="127.0.0.1", http_port=http_port, https_port=free_port())
    control = _nginx.Nginx(**nginx.control())
    _reverse_proxy.apply_sites([{"name": "app", "server_names": ["localhost"], "tls": "none",
                                 "upstreams": [placeholder.address]}], layout, control, _reverse_proxy.Acme())
    db = containers.postgres("db", user="journal_owner", database="journal", password=PG_PASSWORD)
    tags = []
    for release in ("v1", "v2", "v3", "v4", "v5", "v6"):  # one image, several releases (tags)
        tag = f"lbt-deploy-{containers.run_id}-app:{release}"
        containers.client.images.get(images["DEPLOY_APP_IMAGE"]).tag(tag)
        tags.append(tag)
    yield {"root": root, "nginx": nginx, "layout": layout, "control": control, "containers": containers, "db": db,
           "images": images, "tag": f"lbt-deploy-{containers.run_id}-app", "sockets": sockets}
    shutil.rmtree(sockets, ignore_errors=True)
    for tag in tags:
        try:
            containers.client.images.remove(tag)
        except docker.errors.APIError:
            pass
    containers.close()
    nginx.stop()
    placeholder.stop()


def stop_switch(args: dict[str, t.Any]) -> None:
    """The app's HAProxy, which the deploy started and leaves running (it is the site's way to the app): by PID."""
    switch = _switch.switch_of(args["app"], args["state_dir"], args["switch_socket_dir"], "127.0.0.1",
                               {"blue": args["blue_port"], "green": args["green_port"]})
    pid = switch.running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)


def seed(db: t.Any, table: str = "notes") -> None:
    with db.connect_pg() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, body text NOT NULL)")
        conn.execute(f"INSERT INTO {table} (body) SELECT 'note ' || g FROM generate_series(1, {ROWS}) g")


def fingerprint(db: t.Any) -> tuple[int, str, list[str]]:
    """Rows, a hash of the whole content, and the columns of notes."""
    with db.connect_pg() as conn:
        count, digest = conn.execute("SELECT count(*), md5(string_agg(n::text, '|' ORDER BY id)) FROM notes n").fetchone()
        columns = [row[0] for row in conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                                  "table_name = 'notes' ORDER BY ordinal_position")]
    return count, digest, columns


@pytest.fixture
def app(bed: dict[str, t.Any], tmp_path: t.Any) -> t.Iterator[dict[str, t.Any]]:
    """A fresh app name, its own ports and state; the site back on the placeholder; its containers removed after."""
    name = f"lbt-deploy-{bed['containers'].run_id}-{uuid.uuid4().hex[:6]}"
    seed(bed["db"])
    layout, db = bed["layout"], bed["db"]
    args = {
        "app": name, "state_dir": str(tmp_path / "state"), "blue_port": free_port(), "green_port": free_port(),
        "environment": {"APP_DB_HOST": db.ip, "APP_DB_NAME": "journal", "APP_DB_USER": "journal_owner"},
        "secret_environment": {"APP_DB_PASSWORD": PG_PASSWORD},
        "databases": [{"engine": "postgresql", "database": "journal", "container": db.name}],
        "site": "app", "sites_dir": layout.sites_dir, "include_dir": layout.include_dir, "tls_dir": layout.tls_dir,
        "webroot": layout.webroot, "listen_address": "127.0.0.1", "http_port": layout.http_port,
        "https_port": layout.https_port, "nginx_binary": "/usr/sbin/nginx", "nginx_config": bed["nginx"].conf,
        "nginx_prefix": bed["nginx"].prefix + "/", "nginx_pid_file": bed["nginx"].pid_file,
        "health_interval": 0.2, "health_timeout": 20, "watch_probes": 10, "watch_interval": 0.1, "stop_timeout": 5,
        "switch_socket_dir": bed["sockets"], "drain_timeout": 5,
    }
    yield {"name": name, "args": args, "state": str(tmp_path / "state" / name)}
    stop_switch(args)
    client = bed["containers"].client
    for container in client.containers.list(all=True, filters={"label": f"{_deploy_docker.LABEL_APP}={name}"}):
        container.remove(force=True)


def release(bed: dict[str, t.Any], app: dict[str, t.Any], version: str, **extra: t.Any) -> dict[str, t.Any]:
    args = {**app["args"], "image": f"{bed['tag']}:{version}", "release": version, **extra}
    args["environment"] = {**app["args"]["environment"], "APP_VERSION": version, **extra.get("environment", {})}
    return args


def containers_of(bed: dict[str, t.Any], name: str) -> dict[str, str]:
    client = bed["containers"].client
    return {c.name: c.status for c in client.containers.list(all=True, filters={"label": f"{_deploy_docker.LABEL_APP}={name}"})}


def no_secret(run: ModuleRun, *places: str) -> None:
    for text in (run.stdout, run.stderr, *places):
        assert PG_PASSWORD not in text
        assert "p@ss:w/rd" not in text


def one_line(run: ModuleRun) -> str:
    assert run.rc != 0, run.stdout
    message = run.result["msg"]
    assert "\n" not in message and "Traceback" not in message, message
    return message


def serving(bed: dict[str, t.Any]) -> str:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", bed["layout"].http_port, timeout=5)
    connection.request("GET", "/", headers={"Host": "localhost"})
    response = connection.getresponse()
    return f"{response.status} {response.read().decode().strip()}"


def history_files(app: dict[str, t.Any]) -> list[str]:
    directory = os.path.join(app["state"], "history")
    return [open(os.path.join(directory, name), encoding="utf-8").read() for name in sorted(os.listdir(directory))]


def test_deploys_and_rollbacks_under_load_lose_no_request(bed: dict[str, t.Any], app: dict[str, t.Any],
                                                          run_module: t.Any) -> None:
    first = run_module("app_deploy", release(bed, app, "v1"))
    assert first.rc == 0, first.stdout + first.stderr
    assert first.result["history"]["outcome"] == "deployed" and first.result["history"]["color"] == "blue"
    assert serving(bed) == f"200 version v1, {ROWS} notes"
    # the module ran at nice 10; the switch it started serves the site afterwards at the niceness it was started from
    switch = first.result["history"]["reconcile"]["routing"]["switch"]
    assert switch["started"] and os.getpriority(os.PRIO_PROCESS, switch["pid"]) == os.getpriority(os.PRIO_PROCESS, 0)
    with LoadLoop(bed["layout"].http_port, path="/version", rate=150) as load:
        # check mode: the plan, nothing started
        planned = run_module("app_deploy", release(bed, app, "v2"), check_mode=True)
        assert planned.rc == 0 and planned.result["changed"], planned.stdout
        assert any("start container" in step for step in planned.result["plan"])
        assert set(containers_of(bed, app["name"])) == {first.result["history"]["container"]}
        windows = {"deploy": [time.monotonic()]}
        second = run_module("app_deploy", release(bed, app, "v2"))
        windows["deploy"].append(time.monotonic())
        assert second.rc == 0, second.stdout + second.stderr
        history = second.result["history"]
        assert history["outcome"] == "deployed" and history["color"] == "green", history
        assert [step["name"] for step in history["steps"]] == ["state", "reconcile", "backup", "start", "gate",
                                                               "switch", "watch", "finish"]
        assert history["backups"][0]["verified"] == "structure" and os.path.exists(history["backups"][0]["archive"])
        assert serving(bed) == f"200 version v2, {ROWS} notes"
        assert containers_of(bed, app["name"]) == {first.result["history"]["container"]: "exited",
                                                   history["container"]: "running"}
        # idempotence: the live release again changes nothing
        again = run_module("app_deploy", release(bed, app, "v2"))
        assert again.rc == 0 and not again.result["changed"] and again.result["history"]["outcome"] == "unchanged"
        windows["rollback"] = [time.monotonic()]
        back = run_module("app_deploy", {**app["args"], "deploy_action": "rollback"})
        windows["rollback"].append(time.monotonic())
        assert back.rc == 0 and back.result["changed"], back.stdout + back.stderr
        assert serving(bed) == f"200 version v1, {ROWS} notes"
        twice = run_module("app_deploy", {**app["args"], "deploy_action": "rollback"})  # nothing left to go back to
        assert one_line(twice).startswith("nothing to roll back: ") and not twice.result["changed"], twice.stdout
        assert twice.result["history"]["outcome"] == "refused"
        assert serving(bed) == f"200 version v1, {ROWS} notes"
    print(f"load across a deploy and a rollback: {load.summary()}; served {load.bodies}")
    # The loop's rate falls on a busy machine; what matters is that requests were in flight across each switch.
    during = {name: sum(start <= at <= end for at, _seconds in load.latencies) for name, (start, end) in windows.items()}
    assert min(during.values()) >= 20 and load.failed() == 0, (during, load.non_2xx[:3], load.errors[:3])
    assert set(load.bodies) == {"v1", "v2"}
    # the hostile password: in no result, no history, no container's command line
    client = bed["containers"].client
    for name in containers_of(bed, app["name"]):
        attrs = client.api.inspect_container(name)
        assert PG_PASSWORD not in json.dumps([attrs["Args"], attrs["Path"], attrs["Config"]["Cmd"]])
    for run in (first, planned, second, again, back, twice):
        no_secret(run, *history_files(app))


def test_after_a_rollback_the_next_deploy_keeps_the_release_it_replaced(
        bed: dict[str, t.Any], app: dict[str, t.Any], run_module: t.Any) -> None:
    """v1, v2, rollback to v1, v3: keep_releases 2 must keep v1 (what a rollback of v3 goes back to), not v2, which
    is newer but was rolled back (found by bench_deploy: "the previous release's container ... is gone")."""
    for step in ("v1", "v2", "rollback", "v3"):
        args = {**app["args"], "deploy_action": "rollback"} if step == "rollback" else release(bed, app, step)
        done = run_module("app_deploy", args)
        assert done.rc == 0 and done.result["changed"], (step, done.stdout + done.stderr)
    back = run_module("app_deploy", {**app["args"], "deploy_action": "rollback"})
    assert back.rc == 0 and back.result["changed"], back.result.get("msg")
    assert serving(bed) == f"200 version v1, {ROWS} notes"
    assert sorted(containers_of(bed, app["name"]).values()) == ["exited", "running"]


def test_a_release_that_never_gets_healthy_is_refused_before_the_switch(bed: dict[str, t.Any], app: dict[str, t.Any],
                                                                        run_module: t.Any) -> None:
    assert run_module("app_deploy", release(bed, app, "v1")).rc == 0
    with LoadLoop(bed["layout"].http_port, path="/version", rate=150) as load:
        failed = run_module("app_deploy", release(bed, app, "v3", health_timeout=3,
                                                  environment={"APP_NEVER_HEALTHY": "1"}))
    message = one_line(failed)
    history = failed.result["history"]
    assert "health gate failed" in message and history["container"] in message and "kept" in message, message
    assert history["outcome"] == "rolled_back" and "switch" not in history
    assert history["rollback"]["traffic_returned"] is False
    assert containers_of(bed, app["name"])[history["container"]] == "exited"  # kept for inspection
    assert serving(bed) == f"200 version v1, {ROWS} notes"
    print(f"load across a refused release: {load.summary()}")
    assert load.sent >= 20 and load.failed() == 0 and set(load.bodies) == {"v1"}  # its rate falls on a busy machine
    no_secret(failed, *history_files(app))


def test_a_release_that_breaks_after_the_switch_is_rolled_back_with_its_data(bed: dict[str, t.Any],
                                                                             app: dict[str, t.Any],
                                                                             run_module: t.Any) -> None:
    assert run_module("app_deploy", release(bed, app, "v1")).rc == 0
    before = fingerprint(bed["db"])
    failed = run_module("app_deploy", release(bed, app, "v4", environment={"APP_FAIL_AFTER": "6"},
                                              migration_command=["python3", "/usr/local/bin/deploy-app", "migrate"],
                                              restore_data_on_rollback=True, watch_probes=20))
    message = one_line(failed)
    assert "history" in failed.result, message
    history = failed.result["history"]
    assert "the watch saw" in message and "HTTP 500" in message and "returned to" in message, message
    assert history["migration"]["ok"] and history["rollback"]["traffic_returned"]
    restored = history["rollback"]["restored"][0]
    assert restored["counts"] and restored["safety_dump"] and os.path.exists(restored["safety_dump"])
    assert fingerprint(bed["db"]) == before  # rows, content hash and columns of the pre-deploy archive
    assert "tag" not in before[2]
    assert serving(bed) == f"200 version v1, {ROWS} notes"
    assert containers_of(bed, app["name"])[history["container"]] == "exited"
    no_secret(failed, *history_files(app))


def test_data_expectations_refuse_before_the_switch_or_create_the_missing_index(
        bed: dict[str, t.Any], app: dict[str, t.Any], run_module: t.Any) -> None:
    assert run_module("app_deploy", release(bed, app, "v1")).rc == 0
    missing = dict(app["args"]["databases"][0], expectations={"present": ["notes", "attachments"]})
    with LoadLoop(bed["layout"].http_port, path="/version", rate=100) as load:
        refused = run_module("app_deploy", release(bed, app, "v2", databases=[missing]))
    message = one_line(refused)
    assert "data expectations of journal failed" in message and "attachments" in message, message
    assert "switch" not in refused.result["history"] and serving(bed) == f"200 version v1, {ROWS} notes"
    assert load.failed() == 0 and set(load.bodies) == {"v1"}, load.summary()
    index = {"on": "notes", "keys": ["body"]}
    strict = dict(app["args"]["databases"][0], expectations={"present": ["notes"], "indexes": [index]})
    refused = run_module("app_deploy", release(bed, app, "v2", databases=[strict]))
    assert "notes" in one_line(refused) and "index" in refused.result["msg"], refused.result["msg"]
    created = dict(strict, expectations={**strict["expectations"], "create_missing_indexes": True})
    passed = run_module("app_deploy", release(bed, app, "v2", databases=[created]))
    assert passed.rc == 0, passed.stdout
    checked = passed.result["history"]["gate"]["data"]["checked"][0]
    assert checked["ok"] and checked["created_indexes"] and serving(bed) == f"200 version v2, {ROWS} notes"
    assert checked["counts"]["public.notes"] == ROWS


def test_the_lock_refuses_a_second_deploy_and_reports_a_stale_one(bed: dict[str, t.Any], app: dict[str, t.Any],
                                                                  run_module: t.Any) -> None:
    os.makedirs(app["state"], mode=0o700)
    lock_path = os.path.join(app["state"], "deploy.lock")
    holder = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(holder, json.dumps({"pid": os.getpid(), "started": "now", "step": "gate"}).encode())
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another deploy, alive, at its gate
    try:
        refused = run_module("app_deploy", release(bed, app, "v1"))
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    assert f"another deploy of {app['name']} holds the lock" in one_line(refused) and f"PID {os.getpid()}" in \
        refused.result["msg"]
    assert containers_of(bed, app["name"]) == {}
    # A crashed run: its record stays, nobody holds the lock (PID 2**22+1 cannot exist).
    with open(lock_path, "w", encoding="utf-8") as handle:
        json.dump({"pid": 4194305, "started": "2026-12-01T00:00:00Z", "step": "switch", "app": app["name"]}, handle)
    recovered = run_module("app_deploy", release(bed, app, "v1"))
    assert recovered.rc == 0, recovered.stdout
    stale = recovered.result["history"]["stale_lock"]
    assert stale["pid"] == 4194305 and stale["step"] == "switch" and stale["owner_alive"] is False
    assert "ended without releasing its lock at step switch" in str(recovered.result["warnings"])
    assert open(lock_path, encoding="utf-8").read() == ""  # released cleanly


def test_a_failing_pre_deploy_backup_starts_nothing(bed: dict[str, t.Any], app: dict[str, t.Any],
                                                    run_module: t.Any) -> None:
    assert run_module("app_deploy", release(bed, app, "v1")).rc == 0
    containers = bed["containers"]
    stopped_db = containers.postgres("db-stopped", user="journal_owner", database="journal", password=PG_PASSWORD)
    containers.client.containers.get(stopped_db.name).stop(timeout=5)
    args = release(bed, app, "v2")
    args["databases"] = [{"engine": "postgresql", "database": "journal", "container": stopped_db.name}]
    failed = run_module("app_deploy", args)
    assert "is not running" in one_line(failed), failed.result["msg"]
    assert list(containers_of(bed, app["name"]).values()) == ["running"]  # only v1
    assert serving(bed) == f"200 version v1, {ROWS} notes"


def tunnel_config(path: t.Any, service: str) -> str:
    path.write_text(yaml.safe_dump({"tunnel": "6ff42ae2-765d-4adf-8112-31c55c1551ef",
                                    "credentials-file": "/etc/cloudflared/app.json",
                                    "ingress": [{"hostname": "localhost", "service": service},
                                                {"service": "http_status:404"}]}))
    return str(path)


def test_a_tunnel_in_front_must_route_to_the_site_nginx(bed: dict[str, t.Any], app: dict[str, t.Any],
                                                        run_module: t.Any, tmp_path: t.Any) -> None:
    """A tunnel that sends the hostname straight to a color would bypass every switch: refused before anything
    starts. One that sends it to the site's nginx deploys, and its config file is left as it was."""
    past = tunnel_config(tmp_path / "past.yml", f"http://127.0.0.1:{app['args']['blue_port']}")
    refused = run_module("app_deploy", release(bed, app, "v1", tunnel_config=past))
    assert refused.rc != 0
    assert (f"tunnel_config {past}: rule #1 (localhost -> http://127.0.0.1:{app['args']['blue_port']}) sends "
            "localhost past the site's nginx; point its service at "
            f"http://127.0.0.1:{bed['layout'].http_port}") in one_line(refused), refused.result["msg"]
    assert containers_of(bed, app["name"]) == {}
    broken = tmp_path / "broken.yml"
    broken.write_text("ingress:\n  - hostname: localhost\n    service: http://127.0.0.1:1\n")
    refused = run_module("app_deploy", release(bed, app, "v1", tunnel_config=str(broken)))
    assert f"tunnel_config {broken}: " in one_line(refused) and "must match all URLs" in one_line(refused), refused.result
    assert containers_of(bed, app["name"]) == {}

    front = tunnel_config(tmp_path / "front.yml", f"http://localhost:{bed['layout'].http_port}")
    before = pathlib.Path(front).read_bytes()
    planned = run_module("app_deploy", release(bed, app, "v1", tunnel_config=front), check_mode=True)
    assert planned.rc == 0 and any("the tunnel" in step for step in planned.result["plan"]), planned.result
    deployed = run_module("app_deploy", release(bed, app, "v1", tunnel_config=front))
    assert deployed.rc == 0 and deployed.result["history"]["outcome"] == "deployed", deployed.stdout
    assert serving(bed) == f"200 version v1, {ROWS} notes"
    assert pathlib.Path(front).read_bytes() == before


def occupied_port() -> t.Generator[int, None, None]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.mark.parametrize(("change", "expected"), [
    ({"image": "lbt-deploy-no-such-image:404"}, "image lbt-deploy-no-such-image:404 is not on this host and cannot "
                                                "be pulled"),
    ({"blue_port": "OCCUPIED"}, "is in use by another process; free it or choose another blue_port"),
    ({"site": "nosuchsite"}, "site nosuchsite does not exist"),
    ({"health_path": "health check"}, "health_path 'health check' must be a path on the app"),
    ({"health_path": "http://[::1/health"}, "must be a path on the app"),
    ({"watch_probes": -1}, "watch_probes must be 0 or more, not -1"),
    ({"health_timeout": -5}, "health_timeout must be 1 or more, not -5"),
])
def test_bad_input_is_one_line_and_starts_nothing(bed: dict[str, t.Any], app: dict[str, t.Any], run_module: t.Any,
                                                  change: dict[str, t.Any], expected: str) -> None:
    holder = occupied_port()
    port = next(holder)
    try:
        args = release(bed, app, "v1", **{key: port if value == "OCCUPIED" else value for key, value in change.items()})
        failed = run_module("app_deploy", args)
    finally:
        holder.close()
    assert expected in one_line(failed), failed.result["msg"]
    assert containers_of(bed, app["name"]) == {}
    assert not os.path.exists(os.path.join(app["state"], "state.json"))
    no_secret(failed)


def test_the_playbook_deploys_then_changes_nothing_and_publishes_the_outcome(
        bed: dict[str, t.Any], app: dict[str, t.Any], run_playbook: t.Any, tmp_path: t.Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from testbed import Unsafe, UnsafeDumper  # pylint: disable=import-error

    args = release(bed, app, "v1")
    host_vars = {f"deploy_{name}" if not name.startswith("deploy_") else name: value for name, value in args.items()
                 if name != "secret_environment"}
    secrets = tmp_path / "secrets.yml"  # as AWX writes credentials: !unsafe, never templated
    secrets.write_text(yaml.dump({"deploy_secret_environment": {"APP_DB_PASSWORD": Unsafe(PG_PASSWORD)}},
                                 Dumper=UnsafeDumper))
    monkeypatch.setenv("ANSIBLE_SHOW_CUSTOM_STATS", "1")
    first = run_playbook("deploy", host_vars, "-e", f"@{secrets}", "-vvv")
    assert first.returncode == 0, first.stdout[-3000:]
    assert "lifeboat_deploy_outcome" in first.stdout and '"outcome": "deployed"' in first.stdout
    assert serving(bed) == f"200 version v1, {ROWS} notes"
    second = run_playbook("deploy", host_vars, "-e", f"@{secrets}")
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout[-3000:]
    assert '"outcome": "unchanged"' in second.stdout
    for done in (first, second):
        assert PG_PASSWORD not in done.stdout + done.stderr and "p@ss:w/rd" not in done.stdout + done.stderr
