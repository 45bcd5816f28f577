# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup killed with SIGKILL while it holds a stop-labelled container stopped, on each path (the module, the
backup playbook, ``lifeboat backup``): until a run comes, the status checks say CRITICAL and name the container; the
next run of any path (another path than the killed one, and a job that stops nothing) starts it first. The real
Docker engine's ``State.Running`` decides, never a log line.

The notes live in one directory per host (``_stopped_notes.notes_dir()``): here one per test (LIFEBOAT_STOPPED_DIR), so
that a test elsewhere in the session never starts these containers nor reports them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils import _stopping
from testbed import PG_SOURCE, REPO_ROOT, collections_root, module_env, start_module

JOB = "uploads"


def running(bed, *boxes):
    return [bed.client.api.inspect_container(box.id)["State"]["Running"] for box in boxes]


@pytest.fixture
def notes(tmp_path, monkeypatch):
    directory = tmp_path / "notes"
    monkeypatch.setenv("LIFEBOAT_STOPPED_DIR", str(directory))  # the documented variable
    return directory


@pytest.fixture
def slow_app(container_bed, unique_name):
    """A stop-labelled app whose volume takes a while to archive (200 MB that do not compress): a run can be caught,
    and killed, while it holds the app stopped."""
    app = container_bed.app(f"compose-every-{unique_name}", labels={_stopping.STOP_LABEL: "true"})
    code, output = container_bed.client.containers.get(app.id).exec_run(
        ["sh", "-c", "head -c 200000000 /dev/urandom > /data/big.bin"])
    assert code == 0, output
    return app


def files_job(root):
    return {"name": JOB, "engine": "files", "volumes": [], "destination": str(root / JOB)}


def notes_under(*places):
    """The notes of stopped containers anywhere under ``places`` (an older version wrote them in the destination)."""
    return [os.path.join(top, name) for place in places for top, _dirs, names in os.walk(place) for name in names
            if name.startswith(_stopping.STATE_PREFIX)]


def kill_while_stopped(bed, box, places, process, seconds=180.0):
    """SIGKILL the process that holds ``box`` stopped (the note's PID: a module is a child of ansible-playbook),
    once the engine says it is stopped."""
    deadline = time.monotonic() + seconds
    pid = None
    while pid is None:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no note of a stopped container appeared"
        for path in notes_under(*places):
            try:
                pid = json.loads(open(path, encoding="utf-8").read())["pid"]
            except (OSError, ValueError):
                continue  # being written
        time.sleep(0.02)
    while running(bed, box) != [False]:
        assert time.monotonic() < deadline, "the container was never stopped"
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    if pid != process.pid:  # ansible-playbook: its module died under it
        process.kill()
    process.communicate(timeout=120)
    time.sleep(1)
    assert running(bed, box) == [False], "the run ended before it was killed: the volume read too fast"
    assert len(notes_under(*places)) == 1


def lifeboat(*args, config):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), *args, "--config", config],
                          capture_output=True, text=True, env={**os.environ, "LIFEBOAT_LIB": "/nonexistent"},
                          timeout=600, check=False)


def start_lifeboat(*args, config):
    return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), *args, "--config", config],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "LIFEBOAT_LIB": "/nonexistent"})


def start_playbook(tmp_path, playbook, host_vars):
    inventory = tmp_path / f"inventory-{playbook}.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
    env = {**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}
    return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                             f"lifeboat.ops.{playbook}", "-i", str(inventory)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def playbook(tmp_path, name, host_vars):
    process = start_playbook(tmp_path, name, host_vars)
    stdout, stderr = process.communicate(timeout=900)
    return process.returncode, stdout + stderr


def write_config(tmp_path, root, app, pg):
    config = {"jobs": {
        JOB: {"engine": "files", "volumes": [app.volume], "destination": str(root / JOB)},
        "journal": {"engine": "postgresql", "database": PG_SOURCE, "destination": str(root / "journal"),
                    "login_host": pg.host, "login_port": pg.port, "login_user": pg.user,
                    "login_password_file": pg.password_file}}}
    path = tmp_path / "lifeboat.yml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def pg_job(pg):
    return {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login()}


def assert_critical_naming(text, app):
    assert "CRITICAL" in text and f"container {app.name} stopped since 20" in text, text
    assert f"by backup job {JOB}" in text, text


def test_lifeboat_backup_killed_then_the_backup_playbook_starts_it_first(
        container_bed, slow_app, notes, tmp_path, pg, run_playbook):
    root = tmp_path / "backups"
    config = write_config(tmp_path, root, slow_app, pg)
    assert lifeboat("backup", "--job", "journal", config=config).returncode == 0  # a fresh archive to report on
    kill_while_stopped(container_bed, slow_app, [notes, root], start_lifeboat("backup", "--job", JOB, config=config))

    # In between: every status check is CRITICAL and names the container, and starts nothing.
    status = lifeboat("status", "--job", "journal", config=config)
    assert status.returncode == 2, status.stdout + status.stderr
    assert_critical_naming(status.stdout, slow_app)
    done = run_playbook("status", {"backup_status_destinations": [str(root / "journal")]})
    assert done.returncode != 0, done.stdout
    assert_critical_naming(done.stdout, slow_app)
    assert running(container_bed, slow_app) == [False]

    # The next run, through another path and of a job that stops nothing: the container runs again first.
    code, output = playbook(tmp_path, "backup", {"backup_root": str(root), "backup_verify_level": "structure",
                                                 "backup_jobs": [pg_job(pg)]})
    assert code == 0, output
    assert running(container_bed, slow_app) == [True]
    assert f"started container {slow_app.name} again" in output, output
    assert notes_under(notes, root) == []
    status = lifeboat("status", "--job", "journal", config=config)
    assert status.returncode == 0, status.stdout


def test_the_backup_playbook_killed_then_lifeboat_backup_starts_it_first(
        container_bed, slow_app, notes, tmp_path, pg):
    root = tmp_path / "backups"
    config = write_config(tmp_path, root, slow_app, pg)
    job = {**files_job(root), "volumes": [slow_app.volume]}
    assert lifeboat("backup", "--job", "journal", config=config).returncode == 0  # a fresh archive to report on
    code, output = playbook(tmp_path, "status", {"backup_status_destinations": [str(root / "journal")]})
    assert code == 0, output  # before: fresh, nothing stopped
    kill_while_stopped(container_bed, slow_app, [notes, root], start_playbook(tmp_path, "backup", {
        "backup_root": str(root), "backup_jobs": [job]}))

    code, output = playbook(tmp_path, "status", {"backup_status_destinations": [str(root / "journal")]})
    assert code != 0, output
    assert_critical_naming(output, slow_app)
    assert running(container_bed, slow_app) == [False]

    done = lifeboat("backup", "--job", "journal", config=config)
    assert done.returncode == 0, done.stderr
    assert f"warning: started container {slow_app.name} again" in done.stderr, done.stderr
    assert running(container_bed, slow_app) == [True]
    assert notes_under(notes, root) == []


def test_the_module_killed_then_a_restore_starts_it_first(
        container_bed, slow_app, notes, tmp_path, pg, run_module):
    root = tmp_path / "backups"
    dumped = run_module("postgresql_dump", {**pg.login(), "database": PG_SOURCE, "job": "journal",
                                            "destination": str(root / "journal")})
    assert dumped.rc == 0, dumped.stdout
    kill_while_stopped(container_bed, slow_app, [notes, root], start_module("files_backup", {
        "job": JOB, "volumes": [slow_app.volume], "destination": str(root / JOB)}, tmp_path))

    status = run_module("backup_status", {"destination": str(root / "journal")})
    assert status.result["state"] == "CRITICAL", status.stdout
    assert_critical_naming(status.result["summary"], slow_app)
    [entry] = status.result["left_stopped"]
    assert entry["containers"] == [slow_app.name] and entry["job"] == JOB
    assert running(container_bed, slow_app) == [False]

    target = f"compose_every_{os.getpid()}"
    try:
        restored = run_module("postgresql_restore", {**pg.login(), "archive": dumped.result["archive"],
                                                     "target_database": target})
        assert restored.rc == 0, restored.stdout
        assert running(container_bed, slow_app) == [True]
        assert f"started container {slow_app.name} again" in str(restored.result.get("warnings")), restored.result
        assert notes_under(notes, root) == []
        after = run_module("backup_status", {"destination": str(root / "journal")}).result
        assert after["state"] != "CRITICAL" and "left_stopped" not in after, after  # WARNING: never verified
    finally:
        pg.drop(target)
