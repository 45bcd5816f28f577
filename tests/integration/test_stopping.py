# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Containers stopped during a files backup are always running again: the real Docker engine's container state
(``State.Running``, ``StartedAt``, ``FinishedAt``), never a log line, after success, an exception, a full disk,
SIGTERM of the process, and SIGKILL of it followed by ``lifeboat restart-stopped``."""

from __future__ import annotations

import errno
import glob
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import docker.types
import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils import _files, _sources, _stopped_notes, _stopping
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from testbed import REPO_ROOT

JOB = "uploads"
STOP = {_stopping.STOP_LABEL: "true"}

# A process that runs the with-block as a files backup would: the host command's SIGTERM handling, the
# containers stopped, then a stream (a child tool, as tar would be) or plain Python waiting.
CHILD = '''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from plugins.module_utils import _pipeline, _stopping, _termination
from plugins.module_utils._common import LifeboatError
_termination.stop_cleanly_on_termination()
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
        assert recorded["stopped_at"].startswith("20") and recorded["stopped_at"].endswith("Z")
        # group-readable: in the role's root:lifeboat 2770 directory the scheduled service reads a root run's note
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o640
    assert running(container_bed, worker, app) == [True, True]
    assert names.downtime_seconds > 0
    after = {box.name: state(container_bed, box) for box in app_pair}
    assert all(after[name]["StartedAt"] > before[name] for name in before)  # really stopped and started
    assert after[worker.name]["FinishedAt"] < after[app.name]["FinishedAt"]  # the worker stopped first
    assert after[app.name]["StartedAt"] < after[worker.name]["StartedAt"]  # and started last
    assert state_files(tmp_path) == []


def test_after_an_exception_inside_all_run_again_and_the_exception_is_the_one_raised(
        container_bed, app_pair, tmp_path):
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


def test_after_sigkill_they_stay_stopped_until_lifeboat_restart_stopped(
        container_bed, app_pair, tmp_path, pg, monkeypatch):
    destination = tmp_path / "backups"
    notes = tmp_path / "notes"
    monkeypatch.setenv(_stopped_notes.NOTES_DIR_VARIABLE, str(notes))
    config = write_config(tmp_path / "lifeboat.yml", destination, pg)
    child = start_child(entries(*app_pair), _stopped_notes.notes_dir())

    # While the run lives, the safety net leaves its containers alone.
    alive = restart_stopped(config)
    assert (alive.returncode, alive.stderr) == (0, "")
    assert running(container_bed, *app_pair) == [False, False]

    child.kill()
    child.wait(timeout=30)
    assert running(container_bed, *app_pair) == [False, False]
    assert len(state_files(notes)) == 1

    done = restart_stopped(config)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"warning: started container {name} again (a backup run was killed before it could; its note was in {notes})"
        for name in (app_pair[1].name, app_pair[0].name)]
    assert running(container_bed, *app_pair) == [True, True]
    assert state_files(notes) == []
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
        _stopping.refuse_live_data_dirs([box.volume], [], set(), _sources.database_source)
    assert str(caught.value) == (
        f"volume {box.volume} is the data directory of running PostgreSQL container {box.name}: back it up with a "
        f"postgresql job with container: {box.name} (a dump), or stop it during the backup (stop_containers)")
    mountpoint = container_bed.client.api.inspect_volume(box.volume)["Mountpoint"]
    with pytest.raises(LifeboatError, match=f"^path {mountpoint}/base is part of the data directory of running "):
        _stopping.refuse_live_data_dirs([], [f"{mountpoint}/base"], set(), _sources.database_source)
    with pytest.raises(LifeboatError, match=f"^path {os.path.dirname(mountpoint)} holds the data directory"):
        _stopping.refuse_live_data_dirs([], [os.path.dirname(mountpoint)], set(), _sources.database_source)
    # Stopped during the backup, or another volume: allowed.
    _stopping.refuse_live_data_dirs([box.volume], [mountpoint], {box.id}, _sources.database_source)
    _stopping.refuse_live_data_dirs([app_container.volume], [], set(), _sources.database_source)
    assert state(container_bed, box)["Running"]


def test_check_mode_refuses_what_the_run_refuses_and_names_what_it_would_stop(
        pg17_container, container_bed, app_pair, run_module, tmp_path):
    """files_backup --check makes the real run's refusals (a running database's data directory, a destination inside
    what the job reads) and names the containers the run would stop, stopping none. It said changed to all three."""
    worker, app = app_pair
    destination = str(tmp_path / "archives")
    for check_mode in (True, False):
        live = run_module("files_backup", {"job": JOB, "volumes": [pg17_container.volume], "destination": destination},
                          check_mode=check_mode)
        assert live.rc == 1 and "is the data directory of running PostgreSQL container" in live.result["msg"], live
        inside = run_module("files_backup", {"job": JOB, "paths": [str(tmp_path)], "destination": destination},
                            check_mode=check_mode)
        assert inside.rc == 1 and inside.result["msg"].startswith(f"destination {destination} is inside "), inside
    planned = run_module("files_backup", {"job": JOB, "volumes": [app.volume], "destination": destination},
                         check_mode=True)
    assert planned.rc == 0 and sorted(planned.result["stopped_containers"]) == sorted([worker.name, app.name]), planned
    assert not os.path.exists(destination) and running(container_bed, worker, app)
    done = run_module("files_backup", {"job": JOB, "volumes": [app.volume], "destination": destination})
    assert done.rc == 0 and sorted(done.result["stopped_containers"]) == sorted(planned.result["stopped_containers"])


def test_a_destination_that_cannot_be_made_stops_no_container(container_bed, app_pair, run_module, tmp_path):
    """The destination is made after the refusals and before the stop: its failure costs the app no downtime (a run
    once stopped both containers, failed to make it, and started them again)."""
    before = [state(container_bed, box)["StartedAt"] for box in app_pair]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    destination = str(blocker / "archives")
    failed = run_module("files_backup", {"job": JOB, "volumes": [app_pair[1].volume], "destination": destination})
    assert failed.rc == 1 and failed.result["msg"] == f"cannot create destination {destination}: Not a directory", (
        failed.result)
    assert [state(container_bed, box)["StartedAt"] for box in app_pair] == before
    assert running(container_bed, *app_pair) == [True, True]


def test_nothing_to_stop_touches_nothing(tmp_path):
    with _stopping.stopped([], str(tmp_path), JOB) as names:
        assert names == []
    assert os.listdir(tmp_path) == []
    assert _stopped_notes.restart_left_stopped(str(tmp_path / "missing")) == []


def test_a_run_of_another_process_that_still_lives_is_left_alone(container_bed, app_pair, tmp_path):
    child = start_child(entries(*app_pair), tmp_path)
    try:
        assert _stopped_notes.restart_left_stopped(str(tmp_path)) == []
        assert running(container_bed, *app_pair) == [False, False]
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=120)
    deadline = time.monotonic() + 5
    while running(container_bed, *app_pair) != [True, True] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(container_bed, *app_pair) == [True, True]


# The safety net where it runs for real: the role's own service unit (rendered by Ansible from the template) in a
# systemd container that has the Docker socket, lifeboat installed as the role installs it, Debian's python3-docker;
# its main process stops the containers, then is killed with SIGKILL; systemd runs ExecStopPost.
UNIT_JOB = "uploads"
UNIT_DESTINATION = f"/var/backups/lifeboat/{UNIT_JOB}"
HOLDER = '''import json, sys, time
sys.path.insert(0, "/usr/local/lib/lifeboat")
from lifeboat_ops import _stopped_notes, _stopping, _termination
_termination.stop_cleanly_on_termination()
with _stopping.stopped(json.load(open("/etc/lifeboat/containers.json")), _stopped_notes.notes_dir(), sys.argv[2],
                       sys.argv[1]):
    time.sleep(3600)
'''


def render_units(tmp_path, jobs):
    """The role's lifeboat-backup.service.j2 for each job, rendered by ansible-playbook with the role's variables."""
    role = os.path.join(REPO_ROOT, "roles", "backup_schedule")
    tasks = [{"name": f"Render {job['name']}", "ansible.builtin.template": {
        "src": os.path.join(role, "templates", "lifeboat-backup.service.j2"), "dest": str(tmp_path / job["name"]),
        "mode": "0600"}, "vars": {"job": job}} for job in jobs]
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "tasks": tasks,
        "vars_files": [os.path.join(role, "defaults", "main.yml"), os.path.join(role, "vars", "main.yml"),
                       # the host program the role includes: where `lifeboat` is
                       os.path.join(REPO_ROOT, "roles", "host_program", "vars", "main.yml")]}],
        sort_keys=False))
    extra = tmp_path / "jobs.json"  # extra vars: above the role's defaults, as an inventory is for the role
    extra.write_text(json.dumps({"backup_schedule_jobs": jobs}))
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(playbook), "-i", "localhost,",
         "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{extra}"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")})
    assert done.returncode == 0, done.stdout + done.stderr
    return {job["name"]: (tmp_path / job["name"]).read_text() for job in jobs}


def test_the_role_gives_the_socket_and_the_safety_net_only_to_jobs_that_talk_to_docker(tmp_path):
    units = render_units(tmp_path, [
        {"name": "in-container", "engine": "postgresql", "container": "db"},
        {"name": "older-spelling", "engine": "mongodb", "options": {"container": "mongo"}},
        {"name": "volumes", "engine": "files"},
        {"name": "on-the-host", "engine": "postgresql", "login_host": "127.0.0.1"},
        {"name": "no-container", "engine": "postgresql", "container": None},
    ])
    for name in ("in-container", "older-spelling", "volumes"):
        lines = units[name].splitlines()
        assert f"ExecStopPost=/usr/local/bin/lifeboat restart-stopped --job {name} " \
               "--config /etc/lifeboat/lifeboat.yml" in lines, name
        assert "SupplementaryGroups=docker" in lines, name
    for name in ("on-the-host", "no-container"):
        assert "ExecStopPost" not in units[name] and "SupplementaryGroups" not in units[name], name


def put_files(container, files):
    """Files into the container (path: (content, mode)), through the Engine API."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path, (content, mode) in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    assert container.put_archive("/", archive.getvalue())


def check(container, command):
    code, output = container.exec_run(command)
    assert code == 0, f"{command}: {output.decode(errors='replace')}"
    return output.decode(errors="replace")


def wait_until(condition, seconds=60.0, explain=lambda: ""):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out; {explain()}"
        time.sleep(0.3)


@pytest.fixture
def systemd_host(container_bed, tmp_path):
    """A systemd container with the host's Docker socket and the lifeboat command installed as the role does."""
    image = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "testbed", "docker.sh")], capture_output=True,
                           text=True, check=True).stdout.strip()
    box = container_bed.client.containers.run(
        image, "/lib/systemd/systemd", name=container_bed.name(f"systemd-{tmp_path.name[-12:]}"), detach=True,
        cap_add=["SYS_ADMIN"], tmpfs={"/run": "", "/run/lock": ""}, cgroupns="host",
        labels={"lifeboat.test.run": container_bed.run_id},
        volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                 "/var/run/docker.sock": {"bind": "/run/docker.sock", "mode": "rw"}})
    container_bed.containers.append(box.id)
    wait_until(lambda: box.exec_run(["systemctl", "is-system-running"]).output.strip() in (b"running", b"degraded"))
    check(box, ["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                            "python3-docker >/dev/null 2>&1"])
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    check(box, ["groupadd", "--system", "--gid", str(socket_gid), "docker"])
    check(box, ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "lifeboat"])
    files = {f"/usr/local/lib/lifeboat/lifeboat_ops/{os.path.basename(path)}": (open(path).read(), 0o644)
             for path in glob.glob(os.path.join(REPO_ROOT, "plugins", "module_utils", "*.py"))}
    files["/usr/local/lib/lifeboat/lifeboat_ops/__init__.py"] = ("", 0o644)
    launcher = open(os.path.join(REPO_ROOT, "bin", "lifeboat")).read()
    files["/usr/local/bin/lifeboat"] = (re.sub(r"^#!.*", "#!/usr/bin/python3", launcher), 0o755)
    files["/usr/local/lib/lifeboat/holder.py"] = (HOLDER, 0o644)
    files["/etc/lifeboat/lifeboat.yml"] = (yaml.safe_dump({"jobs": {UNIT_JOB: {
        "engine": "postgresql", "container": "db", "destination": UNIT_DESTINATION}}}), 0o644)
    put_files(box, files)
    check(box, ["install", "-d", "-o", "lifeboat", "-g", "lifeboat", "-m", "0750", UNIT_DESTINATION])
    check(box, ["install", "-d", "-o", "root", "-g", "lifeboat", "-m", "2770", _stopped_notes.NOTES_DIR])  # as the role
    return box


def test_after_sigkill_under_systemd_the_units_exec_stop_post_starts_them_again(container_bed, app_pair,
                                                                                systemd_host, tmp_path):
    unit = render_units(tmp_path, [{"name": UNIT_JOB, "engine": "postgresql", "container": "db",
                                    "destination": UNIT_DESTINATION}])[UNIT_JOB]
    # The role's unit as it is, but for what the main process does: it stops the containers and waits to be killed.
    lines = [line for line in unit.splitlines() if not line.startswith(("ExecStart=", "OnFailure=", "OnSuccess="))]
    at = lines.index(next(line for line in lines if line.startswith("TimeoutStartSec=")))
    lines.insert(at, f"ExecStart=/usr/bin/python3 /usr/local/lib/lifeboat/holder.py {UNIT_DESTINATION} {UNIT_JOB}")
    service = f"lifeboat-backup-{UNIT_JOB}.service"
    put_files(systemd_host, {
        f"/etc/systemd/system/{service}": ("\n".join(lines) + "\n", 0o644),
        "/etc/lifeboat/containers.json": (json.dumps(entries(*app_pair)), 0o644)})
    check(systemd_host, ["systemctl", "daemon-reload"])
    check(systemd_host, ["systemctl", "start", "--no-block", service])

    def journal():
        return systemd_host.exec_run(["journalctl", "--no-pager", "-o", "cat", "-u", service]).output.decode()

    wait_until(lambda: running(container_bed, *app_pair) == [False, False], explain=journal)
    notes = check(systemd_host, ["ls", "-A", _stopped_notes.NOTES_DIR]).split()
    assert len([name for name in notes if name.startswith(_stopping.STATE_PREFIX)]) == 1
    check(systemd_host, ["systemctl", "kill", "--signal=KILL", service])

    wait_until(lambda: running(container_bed, *app_pair) == [True, True], explain=journal)
    wait_until(lambda: systemd_host.exec_run(["systemctl", "is-active", service]).output.strip()
               in (b"failed", b"inactive"))
    assert check(systemd_host, ["ls", "-A", _stopped_notes.NOTES_DIR]).split() == []
    said = journal()
    for box in reversed(app_pair):
        assert f"started container {box.name} again" in said, said
    # The main process was killed (status 9); the safety net itself succeeded.
    shown = check(systemd_host, ["systemctl", "show", service, "-p", "ExecStopPost", "-p", "SupplementaryGroups"])
    assert "SupplementaryGroups=docker" in shown and "code=exited ; status=0 }" in shown, shown
