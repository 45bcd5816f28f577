# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The healthcheck role's probe runner against real sockets on loopback: one alert per change, kept until delivered."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import typing as t

import pytest
from local_ports import free_port  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import _cli
from ansible_collections.lifeboat.ops.plugins.module_utils import _healthcheck as healthcheck
from prometheus_checks import promtool_check  # pylint: disable=import-error

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


class Server:
    """A loopback HTTP server: GET /health answers 200 "ok"; POST bodies are kept (the webhook receiver)."""

    def __init__(self, accept_posts: bool = True) -> None:
        received: list[t.Any] = []
        self.received = received
        self.requests: list[t.Any] = []
        self.accept_posts = accept_posts
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                outer.requests.append((self.path, self.headers.get("Authorization")))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok\n")

            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.accept_posts:
                    received.append(json.loads(body))
                self.send_response(204 if outer.accept_posts else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(name="hook")
def fixture_hook():
    server = Server()
    yield server
    server.stop()


def write_config(tmp_path, hook, app_port, **extra):
    config = {"host": "app1", "webhook_url": f"http://127.0.0.1:{hook.port}/alerts",
              "metrics_file": str(tmp_path / "health.prom"), "timeout": 2,
              "probes": [{"name": "app", "type": "http", "url": f"http://127.0.0.1:{app_port}/health",
                          "expect_body": "^ok"},
                         {"name": "hook-port", "type": "tcp", "host": "127.0.0.1", "port": hook.port},
                         {"name": "true", "type": "command", "command": ["true"]}], **extra}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return ["--config", str(tmp_path / "config.json"), "--state", str(tmp_path / "state.json")]


def test_one_alert_each_way(tmp_path, hook):
    app = Server()
    args = write_config(tmp_path, hook, app.port)
    assert _cli.main(["healthcheck", *args]) == 0
    assert hook.received == []
    assert 'lifeboat_healthcheck_up{probe="app",type="http"} 1' in (tmp_path / "health.prom").read_text()

    app.stop()
    assert _cli.main(["healthcheck", *args]) == 0
    assert _cli.main(["healthcheck", *args]) == 0  # still failing: no second alert
    assert [(a["probe"], a["state"], a["previous"], a["host"]) for a in hook.received] == [
        ("app", "failing", "healthy", "app1")]
    assert "Connection refused" in hook.received[0]["message"]
    metrics = (tmp_path / "health.prom").read_text()
    assert 'lifeboat_healthcheck_up{probe="app",type="http"} 0' in metrics
    assert 'lifeboat_healthcheck_status{probe="app",type="http"} 2' in metrics
    assert 'lifeboat_healthcheck_up{probe="hook-port",type="tcp"} 1' in metrics
    promtool_check(metrics)

    app = Server()
    write_config(tmp_path, hook, app.port)
    assert _cli.main(["healthcheck", *args]) == 0
    assert [(a["probe"], a["state"]) for a in hook.received] == [("app", "failing"), ("app", "healthy")]
    app.stop()


def test_an_undelivered_alert_is_sent_on_a_later_run_once(tmp_path, hook):
    args = write_config(tmp_path, hook, free_port())
    hook.accept_posts = False
    assert _cli.main(["healthcheck", *args]) == 1  # the receiver refuses: the run says so
    hook.accept_posts = True
    assert _cli.main(["healthcheck", *args]) == 0
    assert _cli.main(["healthcheck", *args]) == 0
    assert [(a["probe"], a["state"]) for a in hook.received] == [("app", "failing")]


def test_failures_before_alert(tmp_path, hook):
    args = write_config(tmp_path, hook, free_port(), failures_before_alert=3)
    for expected in (0, 0, 1, 1):
        assert _cli.main(["healthcheck", *args]) == 0
        assert len(hook.received) == expected


def test_command_output_and_bad_configs(tmp_path, hook, capsys):
    ok, detail = healthcheck.probe_command({"command": ["echo", "starting"], "expect_output": "^healthy$"}, 5)
    assert not ok and "does not match" in detail
    assert healthcheck.probe_command({"command": ["false"]}, 5)[0] is False
    assert healthcheck.probe_command({"command": ["/nonexistent/probe"]}, 5)[0] is False
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"probes": [{"name": "x", "type": "tcp", "host": "127.0.0.1"}]}))
    assert _cli.main(["healthcheck", "--check-config", str(bad)]) == 2
    assert capsys.readouterr().err == "<3>probe x: a tcp probe needs port\n"


def test_http_probe_checks_status_and_body(hook):
    url = f"http://127.0.0.1:{hook.port}/health"
    assert healthcheck.probe_http({"url": url, "expect_body": "^ok"}, 2) == (True, f"GET {url}: HTTP 200")
    assert healthcheck.probe_http({"url": url, "expect_status": [204]}, 2) == (
        False, f"GET {url}: HTTP 200, expected 204")
    assert healthcheck.probe_http({"url": url, "expect_body": "^healthy"}, 2) == (
        False, f"GET {url}: HTTP 200, but the body does not match '^healthy'")
    ok, detail = healthcheck.probe_tcp({"host": "127.0.0.1", "port": free_port()}, 2)
    assert not ok and "refused" in detail


def test_http_credentials_and_query_are_used_but_never_shown(hook):
    url = f"http://monitor:s3cret%21@127.0.0.1:{hook.port}/health?token=abc123"
    ok, detail = healthcheck.probe_http({"url": url, "expect_status": [204]}, 2)
    assert not ok and detail == f"GET http://127.0.0.1:{hook.port}/health?...: HTTP 200, expected 204"
    assert hook.requests == [("/health?token=abc123", "Basic bW9uaXRvcjpzM2NyZXQh")]  # monitor:s3cret!
    ok, detail = healthcheck.probe_http({"url": f"http://monitor:s3cret@127.0.0.1:{free_port()}/"}, 2)
    assert not ok and "s3cret" not in detail and "monitor" not in detail


def test_a_bad_webhook_url_is_one_journal_line_without_its_token(tmp_path, hook, capsys):
    """The URL's token never shows: before the shared poster, this URL made the run end in a traceback quoting it."""
    args = write_config(tmp_path, hook, free_port(), webhook_url="hooks.example.org/services/T0/B0/s3cretTOKEN")
    assert _cli.main(["healthcheck", *args]) == 1
    out = capsys.readouterr().out
    assert "<3>app: alert not delivered (the webhook URL is no http:// or https:// URL); trying again" in out
    assert "s3cretTOKEN" not in out
    assert json.loads((tmp_path / "state.json").read_text())["app"]["alerted"] == "healthy"  # still to be sent


def test_runs_as_installed_with_the_standard_library_and_the_library_only(tmp_path, hook):
    """The host program's layout (roles/host_program): lifeboat_ops/ (plugins/module_utils/*.py, as the role copies
    it) in LIFEBOAT_LIB and the lifeboat command, run with no site-packages (-S) and no checkout on the path (-I), as
    the service user's python3 would."""
    lib = tmp_path / "lib"
    (lib / "lifeboat_ops").mkdir(parents=True)
    for name in os.listdir(os.path.join(REPO, "plugins", "module_utils")):
        if name.endswith(".py"):
            shutil.copy(os.path.join(REPO, "plugins", "module_utils", name), lib / "lifeboat_ops" / name)
    (lib / "lifeboat_ops" / "__init__.py").write_text("")
    shutil.copy(os.path.join(REPO, "bin", "lifeboat"), tmp_path / "lifeboat")
    lifeboat = [sys.executable, "-I", "-S", str(tmp_path / "lifeboat"), "healthcheck"]
    environment = {"PATH": os.environ["PATH"], "LIFEBOAT_LIB": str(lib)}
    args = write_config(tmp_path, hook, free_port())
    old_umask = os.umask(0o077)
    try:
        done = subprocess.run([*lifeboat, *args], capture_output=True, text=True, check=False, cwd=tmp_path,
                              env=environment)
    finally:
        os.umask(old_umask)
    assert done.returncode == 0, done.stderr
    assert "<4>app: failing: GET http://127.0.0.1:" in done.stdout and "<5>app: alert sent: " in done.stdout
    assert [(a["probe"], a["state"]) for a in hook.received] == [("app", "failing")]
    assert stat.S_IMODE(os.stat(tmp_path / "health.prom").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "state.json").st_mode) == 0o600
    assert 'lifeboat_healthcheck_up{probe="app",type="http"} 0' in (tmp_path / "health.prom").read_text()
    checked = subprocess.run([*lifeboat, "--check-config", str(tmp_path / "config.json")], capture_output=True,
                             text=True, check=False, env=environment)
    assert (checked.returncode, checked.stdout) == (0, f"{tmp_path / 'config.json'}: 3 probe(s) valid\n")


def test_deploy_probe_fails_on_a_killed_run_and_warns_on_an_unwatched_one(tmp_path):
    """The deploy probe reads what app_deploy leaves: a lock record whose owner is dead (a run killed at a step) is
    failing, an orphaned run's outcome (unreported.json) that deployed is a warning, nothing is healthy."""
    state_dir = tmp_path / "deploy"
    probe = {"name": "deploys", "type": "deploy", "state_dir": str(state_dir), "switch_socket_dir": str(tmp_path)}
    assert healthcheck.run_probe(probe, 5)["ok"]
    app = state_dir / "journal"
    app.mkdir(parents=True)
    (app / "state.json").write_text(json.dumps({"app": "journal", "seq": 1, "live": None, "previous": None}))
    (app / "unreported.json").write_text(json.dumps({"app": "journal", "action": "deploy", "outcome": "deployed",
                                                     "history": "h.json"}))
    seen = healthcheck.run_probe(probe, 5)
    assert seen["ok"] and seen["warning"], seen
    assert "ran on after ansible-playbook stopped and ended deployed" in seen["detail"]
    (app / "deploy.lock").write_text(json.dumps({"pid": 4194305, "started": "2026-12-07T00:00:00Z", "step": "watch"}))
    seen = healthcheck.run_probe(probe, 5)
    assert not seen["ok"] and "a deploy of journal was killed at step watch (PID 4194305" in seen["detail"], seen


def test_stopped_containers_probe_fails_naming_a_container_a_killed_backup_left_stopped(tmp_path, monkeypatch):
    """The probe reads the host's notes of stopped containers: one whose run is gone is failing, with the container
    and since when (the engine cannot be asked here: the note alone says it may be stopped)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    probe = {"name": "stopped", "type": "stopped_containers", "dir": str(tmp_path / "stopped")}
    assert healthcheck.run_probe(probe, 5)["ok"]
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / ".lifeboat-stopped-uploads.4194305.json").write_text(json.dumps({
        "job": "uploads", "pid": 4194305, "stopped_at": "2026-12-07T03:00:12Z",
        "containers": [{"id": "abc", "name": "recipes-web-1"}]}))
    seen = healthcheck.run_probe(probe, 5)
    assert not seen["ok"], seen
    assert seen["detail"].startswith("container recipes-web-1 stopped since 2026-12-07T03:00:12Z by backup job "
                                     "uploads"), seen
