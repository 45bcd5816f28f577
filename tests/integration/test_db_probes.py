# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database probes (plugins/module_utils/_probes.py) against the real servers: the test bed's PostgreSQL and
FerretDB, and a redis-server from Debian that this test starts on a free loopback port and stops by PID."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import typing as t

import pytest
from local_ports import free_port  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import _probes
from testbed import REPO_ROOT, metric  # pylint: disable=import-error

HOSTILE = "p@ss:w/rd?#&%'\"{{x}}\\ "


def secret_file(path: t.Any, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


class Redis:
    """redis-server with a hostile requirepass, its configuration on stdin (no password on its command line)."""

    def __init__(self, state: t.Any) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: bash scripts/testbed/redis.sh installs it"
        self.port = free_port()
        quoted = HOSTILE.replace("\\", "\\\\").replace('"', '\\"')
        config = (f"port {self.port}\nbind 127.0.0.1\ndir {state}\nsave \"\"\nappendonly no\n"
                  f"requirepass \"{quoted}\"\n")
        self.process = subprocess.Popen([binary, "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        assert self.process.stdin is not None  # stdin=PIPE
        self.process.stdin.write(config.encode())
        self.process.stdin.close()
        deadline = time.monotonic() + 20
        while _probes.probe_redis({"port": self.port, "password": HOSTILE}, 1)[0] is False:
            assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture(name="redis")
def fixture_redis(tmp_path):
    server = Redis(tmp_path)
    yield server
    server.stop()


def assert_down(result: tuple[bool, str], *expected: str) -> None:
    ok, detail = result
    assert ok is False and "\n" not in detail and HOSTILE not in detail, detail
    assert any(part in detail for part in expected), detail


def test_postgresql_up_wrong_password_and_stopped(pg, tmp_path):
    settings = {"host": pg.host, "port": pg.port, "user": pg.user, "password_file": pg.password_file}
    assert _probes.probe_postgresql(settings, 5) == (True, f"PostgreSQL {pg.host}:{pg.port}: SELECT 1 ok")
    wrong = {**settings, "password_file": secret_file(tmp_path / "wrong", HOSTILE)}
    assert_down(_probes.probe_postgresql(wrong, 5), "password authentication failed")
    assert_down(_probes.probe_postgresql({**settings, "port": free_port()}, 5), "Connection refused")
    loose = tmp_path / "loose"
    loose.write_text("x\n")
    loose.chmod(0o644)
    assert _probes.probe_postgresql({**settings, "password_file": str(loose)}, 5) == (
        False, f"PostgreSQL {pg.host}:{pg.port}: password file {loose} is readable by others; chmod 600 it")


def test_mongodb_up_wrong_password_and_stopped(mongo, tmp_path):
    settings = {"host": mongo.host, "port": mongo.port, "user": mongo.user, "password_file": mongo.password_file}
    assert _probes.probe_mongodb(settings, 5) == (True, f"MongoDB {mongo.host}:{mongo.port}: ping ok")
    wrong = {**settings, "password_file": secret_file(tmp_path / "wrong", HOSTILE)}
    assert_down(_probes.probe_mongodb(wrong, 5), "Authentication failed", "auth")
    started = time.monotonic()
    assert_down(_probes.probe_mongodb({**settings, "port": free_port()}, 2), "Connection refused")
    assert time.monotonic() - started < 10  # the timeout bounds server selection


def test_redis_up_refused_password_and_stopped(redis, tmp_path):
    where = f"Redis 127.0.0.1:{redis.port}"
    settings = {"host": "127.0.0.1", "port": redis.port, "password_file": secret_file(tmp_path / "pw", HOSTILE)}
    assert _probes.probe_redis(settings, 5) == (True, f"{where}: PONG")
    assert_down(_probes.probe_redis({**settings, "password": "wrong", "password_file": None}, 5), "AUTH refused: WRONGPASS")
    assert_down(_probes.probe_redis({"host": "127.0.0.1", "port": redis.port}, 5), "PING answered 'NOAUTH")
    redis.stop()
    assert _probes.probe_redis(settings, 5) == (False, f"{where}: Connection refused")


def test_the_runner_reports_each_probe_as_metrics(pg, mongo, redis, tmp_path):
    """`lifeboat healthcheck` with the three types: up while the servers answer, Redis down (a journal line) once stopped."""
    probes = [
        {"name": "db", "type": "postgresql", "host": pg.host, "port": pg.port, "user": pg.user,
         "password_file": pg.password_file},
        {"name": "ns-db", "type": "mongodb", "host": mongo.host, "port": mongo.port, "user": mongo.user,
         "password_file": mongo.password_file},
        {"name": "cache", "type": "redis", "host": "127.0.0.1", "port": redis.port,
         "password_file": secret_file(tmp_path / "redis.pw", HOSTILE)},
    ]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"metrics_file": str(tmp_path / "health.prom"), "probes": probes}))
    healthcheck = [sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), "healthcheck"]

    def run() -> tuple[str, str]:
        done = subprocess.run([*healthcheck, "--config", str(config), "--state", str(tmp_path / "s.json")],
                              capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout, (tmp_path / "health.prom").read_text()

    checked = subprocess.run([*healthcheck, "--check-config", str(config)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr
    out, metrics = run()
    for name, kind in (("db", "postgresql"), ("ns-db", "mongodb"), ("cache", "redis")):
        assert metric(metrics, "lifeboat_healthcheck_up", probe=name, type=kind) == 1, out
    redis.stop()
    out, metrics = run()
    assert metric(metrics, "lifeboat_healthcheck_up", probe="cache", type="redis") == 0
    assert metric(metrics, "lifeboat_healthcheck_up", probe="db", type="postgresql") == 1
    assert f"<4>cache: failing: Redis 127.0.0.1:{redis.port}: Connection refused\n" in out
    assert HOSTILE not in out + metrics
