# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Containers stopped during a files backup are always running again: the real Docker engine's container state
(``State.Running``, ``StartedAt``, ``FinishedAt``), never a log line, after success, an exception, a full disk,
SIGTERM of the process, and SIGKILL of it followed by ``lifeboat restart-stopped``."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import docker.types
import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils import _files, _stopping
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from testbed import REPO_ROOT

JOB = "uploads"
STOP = {_stopping.STOP_LABEL: "true"}

# A process that runs the with-block as a files backup would: the host command's SIGTERM handling, the
# containers stopped, then a stream (a child tool, as tar would be) or plain Python waiting.
CHILD = '''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from plugins.module_utils import _pipeline, _stopping
from plugins.module_utils._common import LifeboatError
_pipeline.stop_cleanly_on_termination()
try:
    with _stopping.stopped(json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]) as names:
        print("stopped " + " ".join(names), flush=True)
        if sys.argv[5] == "stream":
            _pipeline.run_tool("sleep", ["sleep", "600"])
        else:
            time.sleep(600)
except LifeboatError as exc:
    sys.stderr.write(f"backup failed: {exc}\\n")
    sys.exit(1)
'''


def state(bed, box):
    return bed.client.api.inspect_container(box.id)["State"]


def running(bed, *boxes):
    return [state(bed, box)["Running"] for box in boxes]


def entries(*boxes):
    return [{"id": box.id, "name": box.name} for box in boxes]


def state_files(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith(_stopping.STATE_PREFIX))


@pytest.fixture
def app_pair(container_bed, unique_name):
    """An app and its worker sharing one named volume, both labelled to be stopped; the worker lists first
    (it depends on the app: stopped first, started last)."""
    app = container_bed.app(f"stop-{unique_name}-app", labels=STOP)
    worker = container_bed.app(f"stop-{unique_name}-worker", volume=app.volume, labels=STOP)
    return worker, app


def start_child(containers, state_dir, mode="sleep"):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, REPO_ROOT, json.dumps(containers), str(state_dir), JOB, mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    assert line.startswith("stopped "), child.communicate(timeout=60)
    return child


def test_the_containers_to_stop_are_the_named_ones_then_the_labelled_ones_that_mount_what_is_read(
        container_bed, unique_name, tmp_path):
    shared = container_bed.volume(f"stop-{unique_name}-shared")
    bind = tmp_path / "uploads"
    bind.mkdir()
    named = container_bed.app(f"stop-{unique_name}-named", volume=False)
    b_true = container_bed.app(f"stop-{unique_name}-b", volume=shared, labels=STOP)
    a_job = container_bed.app(f"stop-{unique_name}-a", volume=shared, labels={_stopping.STOP_LABEL: JOB})
    container_bed.app(f"stop-{unique_name}-other-job", volume=shared, labels={_stopping.STOP_LABEL: "another"})
    container_bed.app(f"stop-{unique_name}-off", volume=shared, labels={_stopping.STOP_LABEL: "false"})
    container_bed.app(f"stop-{unique_name}-unlabelled", volume=shared)
    container_bed.app(f"stop-{unique_name}-elsewhere", labels=STOP)  # labelled, its own volume: not read
    idle = container_bed.app(f"stop-{unique_name}-idle", volume=shared, labels=STOP)
    container_bed.client.api.stop(idle.id)  # a stopped container is not stopped (nor started afterwards)
    bound = container_bed.client.containers.run(
        container_bed.images["APP_IMAGE"], name=container_bed.name(f"stop-{unique_name}-bind"), detach=True,
        labels={"lifeboat.test.run": container_bed.run_id, **STOP},
        mounts=[docker.types.Mount("/data", str(bind), type="bind")])
    container_bed.containers.append(bound.id)

    found = _stopping.containers_to_stop(JOB, [named.name], [shared], [str(tmp_path)])

    assert [entry["name"] for entry in found] == [named.name, a_job.name, b_true.name, bound.name]
    assert found[0] == {"id": named.id, "name": named.name}
    # A path under a bind mount's source is read through that mount too.
    assert [e["name"] for e in _stopping.containers_to_stop(JOB, [], [], [str(bind / "sub")])] == [bound.name]
    # A container named and labelled is stopped once, where it was named.
    again = _stopping.containers_to_stop(JOB, [b_true.name], [shared], [])
    assert [entry["name"] for entry in again] == [b_true.name, a_job.name]


def test_an_unknown_container_name_is_a_one_line_error(unique_name):
    with pytest.raises(LifeboatError) as caught:
        _stopping.containers_to_stop(JOB, [f"no-such-{unique_name}"], [], [])
    assert str(caught.value) == f"container no-such-{unique_name} does not exist on this host"


def test_after_success_all_run_again_started_in_the_reverse_of_the_stop_order(container_bed, app_pair, tmp_path):
    worker, app = app_pair
    before = {box.name: state(container_bed, box)["StartedAt"] for box in app_pair}
    with _stopping.stopped(entries(worker, app), str(tmp_path), JOB) as names:
        assert names == [worker.name, app.name]
        assert running(container_bed, worker, app) == [False, False]
        [name] = state_files(tmp_path)
        recorded = json.loads((tmp_path / name).read_text())
        assert recorded["job"] == JOB and recorded["pid"] == os.getpid()
        assert recorded["containers"] == entries(worker, app)
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o600
    assert running(container_bed, worker, app) == [True, True]
    after = {box.name: state(container_bed, box) for box in app_pair}
    assert all(after[name]["StartedAt"] > before[name] for name in before)  # really stopped and started
    assert after[worker.name]["FinishedAt"] < after[app.name]["FinishedAt"]  # the worker stopped first
    assert after[app.name]["StartedAt"] < after[worker.name]["StartedAt"]  # and started last
    assert state_files(tmp_path) == []


def test_after_an_exception_inside_all_run_again_and_the_exception_is_the_one_raised(container_bed, app_pair,
                                                                                      tmp_path):
    with pytest.raises(LifeboatError, match=r"^tar failed: boom$"), \
            _stopping.stopped(entries(*app_pair), str(tmp_path), JOB):
        assert running(container_bed, *app_pair) == [False, False]
        raise LifeboatError("tar failed: boom")
    assert running(container_bed, *app_pair) == [True, True]
    assert state_files(tmp_path) == []


def test_after_a_full_disk_inside_all_run_again(container_bed, app_pair, tmp_path):
    with pytest.raises(OSError) as caught, _stopping.stopped(entries(*app_pair), str(tmp_path), JOB):
        assert running(container_bed, *app_pair) == [False, False]
        with open("/dev/full", "wb") as full:  # the kernel's own "no space left on device"
            full.write(b"archive" * 100_000)
            full.flush()
    assert caught.value.errno == errno.ENOSPC
    assert running(container_bed, *app_pair) == [True, True]
    assert state_files(tmp_path) == []


def test_a_state_file_that_cannot_be_written_stops_nothing(container_bed, app_pair, tmp_path, monkeypatch):
    before = [state(container_bed, box)["StartedAt"] for box in app_pair]

    def full(path, data, mode=0o600):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_stopping, "write_file_atomic", full)
    with pytest.raises(LifeboatError) as caught, _stopping.stopped(entries(*app_pair), str(tmp_path), JOB):
        pytest.fail("the block ran without a state file")
    assert "so none was stopped: No space left on device" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert [state(container_bed, box)["StartedAt"] for box in app_pair] == before
    assert running(container_bed, *app_pair) == [True, True]


@pytest.mark.parametrize("mode", ["sleep", "stream"])
def test_after_sigterm_of_the_process_all_run_again_and_it_exits_with_one_line(container_bed, app_pair, tmp_path,
                                                                               mode):
    child = start_child(entries(*app_pair), tmp_path, mode)
    assert running(container_bed, *app_pair) == [False, False]
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 1, (stdout, stderr)
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith("backup failed: "), stderr
    assert "SIGTERM" in stderr
    assert running(container_bed, *app_pair) == [True, True]
    assert state_files(tmp_path) == []


def write_config(path, destination, pg):
    config = {"jobs": {JOB: {"engine": "postgresql", "database": "postgres", "destination": str(destination),
                             "login_host": pg.host, "login_port": pg.port, "login_user": pg.user,
                             "login_password_file": pg.password_file}}}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def restart_stopped(config, *args):
    # The checkout's launcher, as from a clone (LIFEBOAT_LIB pointing nowhere).
    env = {**os.environ, "LIFEBOAT_LIB": "/nonexistent"}
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), "restart-stopped",
                           "--config", config, *args], capture_output=True, text=True, env=env, timeout=300,
                          check=False)


def test_after_sigkill_they_stay_stopped_until_lifeboat_restart_stopped(container_bed, app_pair, tmp_path, pg):
    destination = tmp_path / "backups"
    config = write_config(tmp_path / "lifeboat.yml", destination, pg)
    child = start_child(entries(*app_pair), _stopping.state_dir_for(str(destination)))

    # While the run lives, the safety net leaves its containers alone.
    alive = restart_stopped(config)
    assert (alive.returncode, alive.stderr) == (0, "")
    assert running(container_bed, *app_pair) == [False, False]

    child.kill()
    child.wait(timeout=30)
    assert running(container_bed, *app_pair) == [False, False]
    assert len(state_files(destination)) == 1

    done = restart_stopped(config)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"warning: started container {name} again (a backup run writing to {destination} was killed before it could)"
        for name in (app_pair[1].name, app_pair[0].name)]
    assert running(container_bed, *app_pair) == [True, True]
    assert state_files(destination) == []
    again = restart_stopped(config)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_a_container_that_cannot_start_keeps_none_of_the_others_stopped(container_bed, unique_name, tmp_path, pg):
    """Its bind mount's source is gone when it is started again: the engine refuses, the others start."""
    source = tmp_path / "gone"
    source.mkdir()
    broken = container_bed.client.containers.run(
        container_bed.images["APP_IMAGE"], name=container_bed.name(f"stop-{unique_name}-broken"), detach=True,
        labels={"lifeboat.test.run": container_bed.run_id, **STOP},
        mounts=[docker.types.Mount("/data", str(source), type="bind")])
    container_bed.containers.append(broken.id)
    while b"app-writer: ready" not in broken.logs():  # its files written before it is stopped
        time.sleep(0.2)
    app = container_bed.app(f"stop-{unique_name}-fine", labels=STOP)
    order = [{"id": app.id, "name": app.name}, {"id": broken.id, "name": broken.name}]

    with pytest.raises(LifeboatError) as caught, _stopping.stopped(order, str(tmp_path), JOB):
        shutil.rmtree(source)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"could not start again container {broken.name} ("), message
    assert running(container_bed, app) == [True]
    assert container_bed.client.api.inspect_container(broken.id)["State"]["Running"] is False
    assert len(state_files(tmp_path)) == 1  # kept: not everything runs again

    # The host command tries again (as after a killed run: a PID that is no process).
    destination = tmp_path / "backups"
    destination.mkdir()
    os.unlink(tmp_path / state_files(tmp_path)[0])
    _files.write_file_atomic(
        str(destination / f"{_stopping.STATE_PREFIX}{JOB}.1.json"),
        json.dumps({"job": JOB, "pid": 2 ** 22 + 1, "containers": order}).encode())  # no such PID
    result = restart_stopped(write_config(tmp_path / "lifeboat.yml", destination, pg))
    assert result.returncode == 1
    assert f"error: restart-stopped failed: {destination}: could not start again: {broken.name} (" in result.stderr
    assert f"warning: started container {app.name} again" in result.stderr
    assert len(state_files(destination)) == 1


def test_the_data_directory_of_a_running_database_container_is_refused(pg17_container, container_bed,
                                                                       app_container):
    box = pg17_container
    with pytest.raises(LifeboatError) as caught:
        _stopping.refuse_live_data_dirs([box.volume], [], set())
    assert str(caught.value) == (
        f"volume {box.volume} is the data directory of running PostgreSQL container {box.name}: back it up with a "
        f"postgresql job with container: {box.name} (a dump), or stop it during the backup (stop_containers)")
    mountpoint = container_bed.client.api.inspect_volume(box.volume)["Mountpoint"]
    with pytest.raises(LifeboatError, match=f"^path {mountpoint}/base is part of the data directory of running "):
        _stopping.refuse_live_data_dirs([], [f"{mountpoint}/base"], set())
    with pytest.raises(LifeboatError, match=f"^path {os.path.dirname(mountpoint)} holds the data directory"):
        _stopping.refuse_live_data_dirs([], [os.path.dirname(mountpoint)], set())
    # Stopped during the backup, or another volume: allowed.
    _stopping.refuse_live_data_dirs([box.volume], [mountpoint], {box.id})
    _stopping.refuse_live_data_dirs([app_container.volume], [], set())
    assert state(container_bed, box)["Running"]


def test_nothing_to_stop_touches_nothing(tmp_path):
    with _stopping.stopped([], str(tmp_path), JOB) as names:
        assert names == []
    assert os.listdir(tmp_path) == []
    assert _stopping.restart_left_stopped(str(tmp_path / "missing")) == []


def test_a_run_of_another_process_that_still_lives_is_left_alone(container_bed, app_pair, tmp_path):
    child = start_child(entries(*app_pair), tmp_path)
    try:
        assert _stopping.restart_left_stopped(str(tmp_path)) == []
        assert running(container_bed, *app_pair) == [False, False]
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=120)
    deadline = time.monotonic() + 5
    while running(container_bed, *app_pair) != [True, True] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(container_bed, *app_pair) == [True, True]
