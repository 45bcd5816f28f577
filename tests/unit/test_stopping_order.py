# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The order containers are stopped and started in, and the state file's life, with the Engine API faked
(tests/integration/test_stopping.py shows each of these on the real engine)."""

from __future__ import annotations

import io
import json
import os
import signal

import docker.errors
import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _status, _stopped_notes, _stopping, _termination
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError, process_start


class FakeAPI:
    """The few APIClient calls _stopping makes; every call recorded in order."""

    def __init__(self, containers=(), fail_start=(), on_stop=None, on_start=None):
        self.infos = {info["Id"]: info for info in containers}
        self.calls: list[tuple[str, str]] = []
        self.fail_start = set(fail_start)
        self.on_stop, self.on_start = on_stop, on_start

    def inspect_container(self, reference):
        for info in self.infos.values():
            if reference in (info["Id"], info["Name"].lstrip("/")):
                return info
        raise docker.errors.NotFound(f"No such container: {reference}")

    def containers(self, filters=None):
        key = (filters or {}).get("label")
        return [{"Id": i["Id"], "Labels": i["Config"]["Labels"]} for i in self.infos.values()
                if i["State"]["Running"] and (key is None or key in i["Config"]["Labels"])]

    def stop(self, container, timeout=None):
        assert timeout == _stopping.STOP_TIMEOUT_SECONDS
        if self.on_stop:
            self.on_stop(container)
        self.calls.append(("stop", container))

    def start(self, container):
        self.calls.append(("start", container))
        if self.on_start:
            self.on_start(container)
        if container in self.fail_start:
            raise docker.errors.APIError("500 Server Error", explanation="bind source path does not exist")

    def close(self):
        self.calls.append(("close", ""))


def info(name, running=True, labels=None, volumes=(), binds=()):
    mounts = [{"Type": "volume", "Name": v, "Source": f"/var/lib/docker/volumes/{v}/_data", "Destination": "/data"}
              for v in volumes]
    mounts += [{"Type": "bind", "Source": b, "Destination": "/srv"} for b in binds]
    return {"Id": f"id-{name}", "Name": f"/{name}", "State": {"Running": running},
            "Config": {"Labels": labels or {}, "Env": [], "Image": "app"}, "Mounts": mounts}


def entry(name):
    return {"id": f"id-{name}", "name": name}


@pytest.fixture
def fake(monkeypatch):
    holder = {}

    def install(api):
        holder["api"] = api
        monkeypatch.setattr(_stopping, "docker_api", lambda: api)
        monkeypatch.setattr(_stopped_notes, "docker_api", lambda: api)
        return api

    return install


def state_files(path):
    return sorted(n for n in os.listdir(path) if n.startswith(_stopping.STATE_PREFIX))


def test_stopped_writes_the_state_file_first_stops_in_order_and_starts_in_reverse(fake, tmp_path):
    seen = []

    def on_stop(container):
        [name] = state_files(tmp_path)  # there before the first container stops
        seen.append(json.loads((tmp_path / name).read_text())["containers"])

    api = fake(FakeAPI(on_stop=on_stop))
    with _stopping.stopped([entry("web"), entry("worker"), entry("db")], str(tmp_path), "app") as names:
        assert names == ["web", "worker", "db"]
        assert names.downtime_seconds is None  # still stopped
    assert 0 <= names.downtime_seconds < 5  # from the first stop to the last start
    assert [c for c in api.calls if c[0] != "close"] == [
        ("stop", "id-web"), ("stop", "id-worker"), ("stop", "id-db"),
        ("start", "id-db"), ("start", "id-worker"), ("start", "id-web")]
    assert seen[0] == [entry("web"), entry("worker"), entry("db")]
    assert state_files(tmp_path) == []


def test_a_start_failure_starts_the_others_keeps_the_state_file_and_says_both_failures(fake, tmp_path):
    api = fake(FakeAPI(fail_start={"id-worker"}))
    with pytest.raises(LifeboatError) as caught, \
            _stopping.stopped([entry("web"), entry("worker"), entry("db")], str(tmp_path), "app"):
        raise LifeboatError("tar failed: disk full")
    assert [c[1] for c in api.calls if c[0] == "start"] == ["id-db", "id-worker", "id-web"]
    assert str(caught.value) == ("could not start again container worker (bind source path does not exist): start it "
                                 "with docker start (the job had failed too: tar failed: disk full)")
    assert len(state_files(tmp_path)) == 1


def test_a_stop_that_fails_halfway_starts_what_was_stopped(fake, tmp_path):
    def on_stop(container):
        if container == "id-db":
            raise docker.errors.APIError("500", explanation="cannot kill container")

    api = fake(FakeAPI(on_stop=on_stop))
    with pytest.raises(LifeboatError, match=r"^cannot stop container db: cannot kill container$"), \
            _stopping.stopped([entry("web"), entry("db")], str(tmp_path), "app"):
        pytest.fail("the block ran though a container did not stop")
    assert [c for c in api.calls if c[0] == "start"] == [("start", "id-db"), ("start", "id-web")]
    assert state_files(tmp_path) == []


def test_sigterm_during_the_restart_waits_for_every_start_then_stops_the_process(fake, tmp_path):
    api = fake(FakeAPI(on_start=lambda container: os.kill(os.getpid(), signal.SIGTERM)))
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    _termination.stop_cleanly_on_termination()
    try:
        with pytest.raises(LifeboatError, match="stopped by SIGTERM"), \
                _stopping.stopped([entry("web"), entry("db")], str(tmp_path), "app"):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _termination.STOP_SIGNAL.clear()  # this process goes on with the other tests
    assert [c[1] for c in api.calls if c[0] == "start"] == ["id-db", "id-web"]
    assert state_files(tmp_path) == []


def write_state(path, job, pid, containers, start=None):
    path.write_text(json.dumps({"job": job, "pid": pid, "process_start": start,
                                "containers": [entry(name) for name in containers]}))


def test_restart_left_stopped_starts_only_what_a_gone_process_left(fake, tmp_path):
    api = fake(FakeAPI())
    dead = tmp_path / f"{_stopping.STATE_PREFIX}app.4194305.json"
    write_state(dead, "app", 2 ** 22 + 1, ["web", "db"])  # above any PID Linux hands out
    live = tmp_path / f"{_stopping.STATE_PREFIX}other.{os.getpid()}.json"
    write_state(live, "other", os.getpid(), ["mine"], process_start(os.getpid()))
    reused = tmp_path / f"{_stopping.STATE_PREFIX}old.1.json"
    write_state(reused, "old", os.getpid(), ["old"], "1")  # this PID, but another process's start time
    (tmp_path / "journal-20261130T000000Z.pgdump").write_text("not a state file")

    assert _stopped_notes.restart_left_stopped(str(tmp_path)) == ["db", "web", "old"]
    assert [c for c in api.calls if c[0] == "start"] == [("start", "id-db"), ("start", "id-web"), ("start", "id-old")]
    assert state_files(tmp_path) == [live.name]


def test_restart_left_stopped_reports_failures_after_trying_all(fake, tmp_path):
    fake(FakeAPI(fail_start={"id-db"}))
    write_state(tmp_path / f"{_stopping.STATE_PREFIX}a.1.json", "a", 2 ** 22 + 1, ["web", "db"])
    write_state(tmp_path / f"{_stopping.STATE_PREFIX}b.1.json", "b", 2 ** 22 + 1, ["cache"])
    (tmp_path / f"{_stopping.STATE_PREFIX}c.1.json").write_text("{not json")
    with pytest.raises(_stopped_notes.RestartError) as caught:
        _stopped_notes.restart_left_stopped(str(tmp_path))
    assert caught.value.started == ["web", "cache"]
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("could not start again: db (bind source path does not exist); ")
    assert f"{tmp_path}/{_stopping.STATE_PREFIX}c.1.json is unreadable" in message
    assert state_files(tmp_path) == [f"{_stopping.STATE_PREFIX}a.1.json", f"{_stopping.STATE_PREFIX}c.1.json"]


def test_no_state_file_never_reaches_the_engine(monkeypatch, tmp_path):
    monkeypatch.setattr(_stopped_notes, "docker_api", lambda: pytest.fail("the engine was asked"))
    assert _stopped_notes.restart_left_stopped(str(tmp_path)) == []
    assert _stopped_notes.restart_left_stopped(str(tmp_path / "absent")) == []
    with _stopping.stopped([], str(tmp_path), "app") as names:
        assert names == []


def test_left_stopped_names_what_a_gone_run_left_stopped_and_since_when_and_changes_nothing(fake, tmp_path):
    api = fake(FakeAPI([info("web", running=False), info("db", running=True)]))
    note = tmp_path / f"{_stopping.STATE_PREFIX}app.4194305.json"
    note.write_text(json.dumps({"job": "app", "pid": 2 ** 22 + 1, "stopped_at": "2026-12-07T03:00:00Z",
                                "containers": [entry("web"), entry("db")]}))
    write_state(tmp_path / f"{_stopping.STATE_PREFIX}mine.1.json", "mine", os.getpid(), ["web"],
                process_start(os.getpid()))  # a run that still lives holds its containers stopped: no alarm

    [found] = _stopped_notes.left_stopped(str(tmp_path))
    assert (found["job"], found["containers"], found["stopped_at"]) == ("app", ["web"], "2026-12-07T03:00:00Z")
    line = _stopped_notes.describe_left_stopped(found)
    assert line.startswith("container web stopped since 2026-12-07T03:00:00Z by backup job app, whose run"), line
    assert [c for c in api.calls if c[0] in ("start", "stop")] == []
    assert len(state_files(tmp_path)) == 2

    report = _status.with_left_stopped({"state": "OK", "exit_code": 0, "summary": "OK", "reasons": [], "jobs": []},
                                       [found])
    assert report["state"] == "CRITICAL" and report["exit_code"] == 2
    assert report["summary"].startswith("CRITICAL: container web stopped since 2026-12-07T03:00:00Z"), report
    api.infos["id-web"]["State"]["Running"] = True  # started by hand: nothing left to report
    assert _stopped_notes.left_stopped(str(tmp_path)) == []


def test_restart_before_run_starts_them_and_says_so_in_a_line_each(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(_stopped_notes.NOTES_DIR_VARIABLE, str(tmp_path))
    api = fake(FakeAPI([info("web", running=False)]))
    write_state(tmp_path / f"{_stopping.STATE_PREFIX}app.1.json", "app", 2 ** 22 + 1, ["web"])
    assert _stopped_notes.restart_before_run(check_mode=True) == [
        "would start container web again (left stopped by a killed run of backup job app)"]
    assert api.calls == [("close", "")]  # check mode asked the engine, started nothing
    assert _stopped_notes.restart_before_run() == ["started container web again (a killed run of backup job app had "
                                                   "left it stopped)"]
    assert ("start", "id-web") in api.calls and state_files(tmp_path) == []


def test_a_note_of_a_restore_says_restore(fake, tmp_path, monkeypatch):
    """A killed compose restore's note was reported as a backup's ("by backup job app-restore")."""
    monkeypatch.setenv(_stopped_notes.NOTES_DIR_VARIABLE, str(tmp_path))
    api = fake(FakeAPI([info("web", running=False)]))
    note = tmp_path / f"{_stopping.STATE_PREFIX}app-restore.4194305.json"
    note.write_text(json.dumps({"job": "app-restore", "operation": "restore", "pid": 2 ** 22 + 1,
                                "stopped_at": "2026-12-07T03:00:00Z", "containers": [entry("web")]}))
    [found] = _stopped_notes.left_stopped(str(tmp_path))
    assert _stopped_notes.describe_left_stopped(found).startswith(
        "container web stopped since 2026-12-07T03:00:00Z by restore job app-restore, whose run"), found
    assert _stopped_notes.restart_before_run() == ["started container web again (a killed run of restore job "
                                                   "app-restore had left it stopped)"]
    assert ("start", "id-web") in api.calls and state_files(tmp_path) == []


def test_containers_to_stop_names_first_then_labelled_ones_that_mount_what_is_read(fake):
    label = _stopping.STOP_LABEL
    fake(FakeAPI([
        info("named"), info("zeta", labels={label: "TRUE"}, volumes=["uploads"]),
        info("alpha", labels={label: "app"}, binds=["/srv/app/uploads"]),
        info("other-job", labels={label: "other"}, volumes=["uploads"]),
        info("off", labels={label: "false"}, volumes=["uploads"]),
        info("elsewhere", labels={label: "true"}, volumes=["cache"]),
        info("stopped", running=False, labels={label: "true"}, volumes=["uploads"]),
        info("named-stopped", running=False),
    ]))
    found = _stopping.containers_to_stop("app", ["zeta", "named", "named-stopped"], ["uploads"], ["/srv/app"])
    assert found == [entry("zeta"), entry("named"), entry("alpha")]
    # A path inside a bind mount's source, and one that merely shares a prefix.
    assert _stopping.containers_to_stop("app", [], [], ["/srv/app/uploads/2026"]) == [entry("alpha")]
    assert _stopping.containers_to_stop("app", [], [], ["/srv/app/upload"]) == []
    with pytest.raises(LifeboatError, match=r"^container ghost does not exist on this host$"):
        _stopping.containers_to_stop("app", ["ghost"], [], [])


def test_restart_stopped_needs_no_config_file(fake, tmp_path, monkeypatch):
    """A playbook user's host has no lifeboat config: `lifeboat restart-stopped` still starts what the notes name."""
    from ansible_collections.lifeboat.ops.plugins.module_utils import _cli  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(_cli, "DEFAULT_CONFIG", str(tmp_path / "absent.yml"))
    monkeypatch.setenv(_stopped_notes.NOTES_DIR_VARIABLE, str(tmp_path))
    fake(FakeAPI([info("web", running=False)]))
    write_state(tmp_path / f"{_stopping.STATE_PREFIX}app.1.json", "app", 2 ** 22 + 1, ["web"])
    said = io.StringIO()
    assert _cli.main(["restart-stopped"], _cli.Output(said)) == 0
    assert f"started container web again (a backup run was killed before it could; its note was in {tmp_path})" \
        in said.getvalue()
    assert state_files(tmp_path) == []
