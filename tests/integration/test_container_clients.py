# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL dumps and restores by the server container's own clients (PostgreSQL 17 on trixie; the host has 15).

The modules run as Ansible runs them; the container's pg_dump and pg_restore stream through the Docker Engine API
into the host's pipeline. The password is watched for on every command line of the host and of the container
(the host's /proc shows the container's processes too) and in what the modules print.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import docker
import pytest
from test_secrets import CmdlineWatcher  # pylint: disable=import-error

from containers import PG_PASSWORD  # pylint: disable=import-error
from testbed import collections_root, finish_module, module_env, start_module, wait_until  # pylint: disable=import-error

ROWS = 5000
SERVER_VARIABLES = ("POSTGRES_PASSWORD", "MONGO_INITDB_ROOT_PASSWORD")


class ExecWatcher:
    """Everything `docker inspect` shows of the container and of each exec run in it, sampled during the run."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        api = docker.APIClient(version="auto")
        try:
            while not self._stop.is_set():
                info = api.inspect_container(self.container_id)
                for exec_id in info.get("ExecIDs") or []:
                    try:
                        self.seen.append(json.dumps(api.exec_inspect(exec_id)))
                    except docker.errors.NotFound:
                        pass
                # The server's own password variables (how the official images take them) are there on purpose:
                # left out by name, so that the password in any other variable of the container is still caught.
                info["Config"]["Env"] = [item for item in info["Config"].get("Env") or []
                                         if item.split("=", 1)[0] not in SERVER_VARIABLES]
                self.seen.append(json.dumps(info))
                self._stop.wait(0.05)
        finally:
            api.close()

    def __enter__(self) -> ExecWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def holding(self, secret: str) -> list[str]:
        assert any('"ProcessConfig"' in item for item in self.seen), "no exec was seen"
        return [item for item in self.seen if secret in item or json.dumps(secret)[1:-1] in item]


def test_the_watcher_catches_the_password_in_any_other_variable_of_the_container(container_bed):
    """ExecWatcher leaves out only the server's own password variables: a copy in another variable is a finding."""
    box = container_bed.app("leaky-env", volume=False, environment={"APP_DATABASE_PASSWORD": PG_PASSWORD})
    client = docker.from_env()
    try:
        with ExecWatcher(box.id) as inspected:
            client.containers.get(box.id).exec_run(["sleep", "1"])  # long enough to be sampled
    finally:
        client.close()
    assert inspected.holding(PG_PASSWORD) != []
    assert all("APP_DATABASE_PASSWORD" in item for item in inspected.holding(PG_PASSWORD))


def assert_secret_kept(password: str, run, watcher: CmdlineWatcher, inspected: ExecWatcher, tool: bytes) -> None:
    """The tool ran, and the password was on no command line, in no `docker inspect` and in nothing printed."""
    assert watcher.commands(tool), f"{tool.decode()} was never seen running"
    assert [cmd for cmd in watcher.seen if password.encode() in cmd] == []
    assert inspected.holding(password) == []
    assert password not in run.stdout + run.stderr


@pytest.fixture(scope="module")
def seeded(pg17_container):
    with pg17_container.connect_pg() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS entries (id int PRIMARY KEY, note text, at timestamptz DEFAULT now())")
        conn.execute("TRUNCATE entries")
        conn.execute(f"INSERT INTO entries (id, note) SELECT n, 'note ' || n FROM generate_series(1, {ROWS}) n")
        conn.execute("CREATE TABLE IF NOT EXISTS tags (name text)")
        conn.execute("TRUNCATE tags")
        conn.execute("INSERT INTO tags VALUES ('a'), ('b')")
    return pg17_container


def host_major() -> int:
    out = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1].split(".")[0])


def test_dump_and_restore_run_the_containers_own_clients_with_its_defaults(seeded, run_module, tmp_path):
    box = seeded
    with CmdlineWatcher() as watcher, ExecWatcher(box.id) as inspected:
        dumped = run_module("postgresql_dump", {"container": box.name, "destination": str(tmp_path / "backups")})
    assert dumped.rc == 0, dumped.result.get("msg")
    assert_secret_kept(box.password, dumped, watcher, inspected, b"pg_dump")
    manifest = json.loads((tmp_path / "backups" / (dumped.result["archive"].rsplit("/", 1)[1] + ".manifest.json"))
                          .read_text())
    # The container's pg_dump 17 did the work: the host's own client is older and could not have.
    assert host_major() < 17 and manifest["tool"]["version"].startswith("pg_dump (PostgreSQL) 17")
    assert manifest["server"]["container"]["name"] == box.name
    assert manifest["server"]["container"]["image_id"].startswith("sha256:")
    assert manifest["database"] == box.database  # POSTGRES_DB of the container
    assert manifest["counts"] == {"public.entries": ROWS, "public.tags": 2}
    # The exec helper hashed the plain dump itself, on its way straight into zstd: its report is the stream's.
    plain = subprocess.run(["zstd", "-q", "-d", "-c", dumped.result["archive"]], capture_output=True, check=True).stdout
    assert (manifest["archive"]["plain_sha256"], manifest["archive"]["plain_size"]) == (
        hashlib.sha256(plain).hexdigest(), len(plain)) and plain.startswith(b"PGDMP")

    with CmdlineWatcher() as watcher, ExecWatcher(box.id) as inspected:
        restored = run_module("postgresql_restore", {"container": box.name, "archive": dumped.result["archive"],
                                                     "target_database": "journal_copy"})
    assert restored.rc == 0, restored.result.get("msg")
    assert_secret_kept(box.password, restored, watcher, inspected, b"pg_restore")
    assert restored.result["counts"] == {"public.entries": ROWS, "public.tags": 2}
    with box.connect_pg("journal_copy") as conn:
        copied = conn.execute("SELECT md5(string_agg(id || note, ',' ORDER BY id)) FROM entries").fetchone()
    with box.connect_pg() as conn:
        original = conn.execute("SELECT md5(string_agg(id || note, ',' ORDER BY id)) FROM entries").fetchone()
    assert copied == original


def test_a_container_that_is_missing_or_runs_no_postgresql_is_one_line(seeded, ferret_container, app_container,
                                                                       run_module, tmp_path):
    destination = tmp_path / "backups"
    missing = run_module("postgresql_dump", {"container": "lifeboat-no-such-container",
                                             "destination": str(destination)})
    assert missing.rc != 0
    assert missing.result["msg"] == "container lifeboat-no-such-container does not exist on this host"
    # A PostgreSQL job pointed at FerretDB or at an app is named as such before anything connects (it was a bare
    # "connection refused" at the container's address); a MongoDB job pointed at PostgreSQL alike.
    for module, box, engine, tool in (("postgresql_dump", ferret_container, "PostgreSQL", "pg_dump"),
                                      ("postgresql_restore", app_container, "PostgreSQL", "pg_dump"),
                                      ("mongodb_dump", seeded, "MongoDB", "mongodump"),
                                      ("mongodb_restore", app_container, "MongoDB", "mongodump")):
        args = {"container": box.name, **({"destination": str(destination)} if module.endswith("dump")
                                          else {"archive": str(tmp_path / "none.pgdump.zst")})}
        other = run_module(module, args)
        assert other.rc != 0
        assert other.result["msg"] == (f"container {box.name} (image {box.image}) is not a {engine} server's "
                                       f"container: it has no {tool}; give the container that runs {engine}"), module
    assert not destination.exists() or list(destination.iterdir()) == []  # no archive, no temporary file
    # container and login_host together: the clients would connect to login_host, not the container's server.
    both = run_module("postgresql_dump", {"container": seeded.name, "login_host": "127.0.0.1",
                                          "destination": str(destination)})
    assert both.rc != 0 and both.result["msg"] == (
        f"give either container ({seeded.name}: its clients connect to the server at the container's own address) "
        "or login_host (127.0.0.1), not both")


def test_mongodb_dump_and_restore_run_the_containers_own_tools(ferret_container, run_module, tmp_path):
    """mongodump and mongorestore of the FerretDB container; the connection string reaches them by a pipe."""
    box = ferret_container
    client = box.mongo_client()
    try:
        client.drop_database("research")
        client.research.readings.insert_many([{"n": n, "value": n * 0.5, "tags": ["a", str(n)]} for n in range(3000)])
        client.research.notes.insert_many([{"text": f"note {n}"} for n in range(10)])
    finally:
        client.close()
    with CmdlineWatcher() as watcher, ExecWatcher(box.id) as inspected:
        dumped = run_module("mongodb_dump", {"container": box.name, "database": "research",
                                             "destination": str(tmp_path / "backups")})
    assert dumped.rc == 0, dumped.result.get("msg")
    assert_secret_kept(box.password, dumped, watcher, inspected, b"mongodump")
    manifest = json.loads((tmp_path / "backups" / (dumped.result["archive"].rsplit("/", 1)[1] + ".manifest.json"))
                          .read_text())
    assert manifest["counts"] == {"research.notes": 10, "research.readings": 3000}
    assert manifest["server"]["container"]["name"] == box.name

    with CmdlineWatcher() as watcher, ExecWatcher(box.id) as inspected:
        restored = run_module("mongodb_restore", {"container": box.name, "archive": dumped.result["archive"],
                                                  "target_database": "research_copy"})
    assert restored.rc == 0, restored.result.get("msg")
    assert_secret_kept(box.password, restored, watcher, inspected, b"mongorestore")
    client = box.mongo_client()
    try:
        for name in ("readings", "notes"):
            original = sorted(repr(d) for d in client.research[name].find({}, {"_id": 1, "n": 1, "text": 1}))
            copied = sorted(repr(d) for d in client.research_copy[name].find({}, {"_id": 1, "n": 1, "text": 1}))
            assert copied == original
        client.drop_database("research_copy")
    finally:
        client.close()
    # Nothing of the connection string was left in the container's files.
    search = ["sh", "-c", "grep -rlF -- \"$0\" /tmp /root /data 2>/dev/null; true", box.password[:12]]
    _code, output = ferret_container_exec(box, search)
    assert output.strip() == ""


def ferret_container_exec(box, argv):
    import docker  # pylint: disable=import-outside-toplevel

    client = docker.from_env()
    try:
        result = client.containers.get(box.id).exec_run(argv)
        return result.exit_code, result.output.decode("utf-8", "replace")
    finally:
        client.close()


def leftovers(destination):
    return sorted(p.name for p in destination.iterdir()) if destination.exists() else []


def test_a_wrong_password_fails_in_one_line_and_leaves_nothing(seeded, run_module, tmp_path):
    destination = tmp_path / "backups"
    wrong = run_module("postgresql_dump", {"container": seeded.name, "login_password": "not-" + seeded.password[:6],
                                           "destination": str(destination)})
    assert wrong.rc != 0
    assert "password authentication failed" in wrong.result["msg"] and "\n" not in wrong.result["msg"]
    assert leftovers(destination) == []


def test_a_client_killed_inside_the_container_fails_the_dump_and_leaves_nothing(bulky, run_module, tmp_path):
    """pg_dump is killed in the container halfway: the dump fails in one line, no archive and no temporary file."""
    destination = tmp_path / "backups"
    killed = []

    def kill_a_pg_dump_in_the_container() -> bool:
        for pid in pg_dump_processes_in(bulky.id):
            time.sleep(0.3)  # halfway through its stream
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue  # it ended first (the version probe, pg_dump --version): look again
            killed.append(pid)
            return True
        return False

    def kill_pg_dump_in_the_container() -> None:
        wait_until(kill_a_pg_dump_in_the_container, 60)

    result = dump_while(kill_pg_dump_in_the_container, bulky, run_module, destination)
    assert killed, "pg_dump was never seen in the container, or it ended before it could be killed"
    assert result.rc != 0
    assert result.result["msg"] == f"pg_dump in container {bulky.name} was killed (signal 9)", result.result["msg"]
    assert leftovers(destination) == []


def test_backup_role_dumps_and_proves_container_jobs_with_their_own_tools(
        seeded, ferret_container, run_playbook, tmp_path):
    """The backup playbook with one job per engine in a container, verified up to a restore test on that server."""
    client = ferret_container.mongo_client()
    try:
        client.drop_database("dashboard")
        client.dashboard.entries.insert_many([{"n": n} for n in range(500)])
    finally:
        client.close()
    root = tmp_path / "backups"
    done = run_playbook("backup", {
        "backup_root": str(root), "backup_verify_level": "restore",
        "backup_jobs": [{"name": "journal", "engine": "postgresql", "container": seeded.name},
                        {"name": "dashboard", "engine": "mongodb", "container": ferret_container.name,
                         "database": "dashboard"}]})
    assert done.returncode == 0, done.stdout[-3000:]
    for job, counts in (("journal", {"public.entries": ROWS, "public.tags": 2}),
                        ("dashboard", {"dashboard.entries": 500})):
        (manifest_path,) = sorted((root / job).glob("*.manifest.json"))
        manifest = json.loads(manifest_path.read_text())
        assert manifest["counts"] == counts
        assert manifest["verifications"][-1]["ok"] is True and manifest["verifications"][-1]["level"] == "restore"
    assert seeded.password not in done.stdout + done.stderr
    assert ferret_container.password not in done.stdout + done.stderr


def pg_dump_processes_in(container_id: str, tool: bytes = b"pg_dump", with_arg: bytes | None = None) -> list[int]:
    """PIDs (host view) of the pg_dump (or ``tool``) processes running inside the container."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            with open(f"/proc/{pid}/cgroup", "rb") as handle:
                inside = container_id.encode() in handle.read()
        except OSError:
            continue
        if inside and argv[0].endswith(tool) and (with_arg is None or with_arg in argv):
            found.append(int(pid))
    return found


def pg_dump_started_in(container_id: str, process: subprocess.Popen | None = None, seconds: float = 60) -> list[int]:
    """The PIDs of pg_dump in the container once it runs; none if it did not within ``seconds``, or the module run
    in ``process`` ended first."""
    return wait_until(lambda: pg_dump_processes_in(container_id), seconds,
                      give_up=lambda: process is not None and process.poll() is not None)


def dump_while(action, box, run_module, destination):
    """postgresql_dump of ``box`` by its container's pg_dump, while ``action`` runs in a thread of its own."""
    worker = threading.Thread(target=action)
    worker.start()
    try:
        return run_module("postgresql_dump", {"container": box.name, "destination": str(destination)})
    finally:
        worker.join()


def pg_dump_left_in(container_id: str, seconds: float) -> list[int]:
    """The PIDs of pg_dump still in the container after waiting up to ``seconds`` for none to be left."""
    wait_until(lambda: not pg_dump_processes_in(container_id), seconds, interval=0.1)
    return pg_dump_processes_in(container_id)


@pytest.fixture(scope="module")
def bulky(container_bed):
    """A PostgreSQL container of its own, with enough rows that a dump runs for a while."""
    box = container_bed.postgres("pg17-bulky")
    with box.connect_pg() as conn:
        conn.execute("CREATE TABLE bulk AS SELECT n, repeat(md5(n::text), 20) AS pad FROM generate_series(1, 400000) n")
    return box


def test_sigterm_of_the_module_stops_the_dump_in_the_container_and_leaves_nothing(bulky, tmp_path):
    destination = tmp_path / "backups"
    process = start_module("postgresql_dump", {"container": bulky.name, "destination": str(destination)}, tmp_path)
    assert pg_dump_started_in(bulky.id, process), finish_module(process)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    run = finish_module(process)
    assert run.rc != 0
    assert run.result["msg"] == "stopped by SIGTERM before the work was done"
    assert leftovers(destination) == []
    assert pg_dump_left_in(bulky.id, 10) == []  # the client in the container is no child of ours: it must stop too


def test_a_module_stopped_while_pg_dump_waits_for_a_lock_leaves_no_pg_dump_in_the_container(seeded, tmp_path):
    """pg_dump waits in the container for a lock when the module is stopped: the pipeline SIGKILLs its exec helper,
    which cannot pass that on, and the Docker engine keeps a detached exec running. The pg_dump must end all the
    same, not wait on (and then dump for nobody) once the lock goes."""
    destination = tmp_path / "backups"
    with seeded.connect_pg() as holder, seeded.connect_pg() as observer:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE tags IN ACCESS EXCLUSIVE MODE")
        process = start_module("postgresql_dump", {"container": seeded.name, "destination": str(destination)},
                               tmp_path)
        try:
            assert pg_dump_started_in(seeded.id, process), finish_module(process)
            waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'tags'::regclass AND NOT granted"
            assert wait_until(lambda: observer.execute(waiting).fetchone()[0], 30), "pg_dump never waited for the lock"
            process.send_signal(signal.SIGTERM)
            run = finish_module(process)
            assert run.result["msg"] == "stopped by SIGTERM before the work was done"
            assert pg_dump_left_in(seeded.id, 10) == [], "pg_dump still waits in the container"
            assert leftovers(destination) == []
        finally:
            if process.poll() is None:
                process.kill()
            holder.execute("ROLLBACK")


def test_a_container_stopped_mid_dump_fails_in_one_line_and_leaves_nothing(bulky, run_module, tmp_path):
    destination = tmp_path / "backups"
    api = docker.APIClient(version="auto")
    stopper_done = []

    def stop_when_dumping() -> None:
        pg_dump_started_in(bulky.id)
        time.sleep(0.3)
        api.stop(bulky.id, timeout=2)
        stopper_done.append(True)

    try:
        result = dump_while(stop_when_dumping, bulky, run_module, destination)
    finally:
        api.start(bulky.id)
        api.close()
    assert stopper_done
    assert result.rc != 0 and "\n" not in result.result["msg"], result.result
    assert leftovers(destination) == []


def run_through_ansible(module: str, args: dict, tmp_path, env: dict | None = None) -> dict:
    """One module run as `ansible` runs it (AnsiballZ: the library imported from the module's zip); its result."""
    runner_env = {**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
                  "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), **(env or {})}
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,",
                          "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
                          "-m", f"lifeboat.ops.{module}", "-a", json.dumps(args)],
                         capture_output=True, text=True, env=runner_env, timeout=600, check=False)
    try:  # `localhost | FAILED! => {...}`: the result as JSON
        status, result = run.stdout.split(" => ", 1)
        return {**json.loads(result), "failed": status.endswith("FAILED!")}
    except (ValueError, IndexError):
        raise AssertionError(run.stdout + run.stderr) from None


@pytest.fixture(scope="module")
def bulky_archive(bulky, tmp_path_factory):
    destination = tmp_path_factory.mktemp("bulky-archive")
    run = finish_module(start_module("postgresql_dump", {"container": bulky.name, "destination": str(destination)},
                                     destination))
    assert run.rc == 0, run.result.get("msg")
    return run.result["archive"]


def test_pg_restore_killed_inside_the_container_says_so_in_one_line(bulky, bulky_archive, tmp_path):
    """Run through Ansible: before, the exec helper loaded the AnsiballZ zip's sitecustomize.py, whose SyntaxError
    then stood for the client's failure."""
    target = "bulk_killed_copy"
    killed = []

    def kill_the_restoring_pg_restore() -> bool:
        for pid in pg_dump_processes_in(bulky.id, b"pg_restore", with_arg=b"--exit-on-error"):
            time.sleep(0.3)  # while it writes rows
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
            return True
        return False

    worker = threading.Thread(target=lambda: wait_until(kill_the_restoring_pg_restore, 120))
    worker.start()
    try:
        result = run_through_ansible(
            "postgresql_restore", {"container": bulky.name, "archive": bulky_archive, "target_database": target},
            tmp_path)
    finally:
        worker.join()
    assert killed, "pg_restore was never seen restoring in the container"
    assert result.get("failed"), result
    assert f"pg_restore in container {bulky.name} was killed (signal 9)" in result["msg"], result["msg"]
    assert "\n" not in result["msg"] and "SyntaxError" not in result["msg"]
    with bulky.connect_pg() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s OR datname LIKE %s",
                            (target, f"lifeboat_restore_{target}_%")).fetchone() == (0,)


def test_the_callers_pg_variables_never_move_the_containers_port(seeded, tmp_path):
    """PGPORT (and PGHOST) in the environment Ansible runs the module in are the caller's, not the container's."""
    destination = tmp_path / "backups"
    caller = {"PGPORT": "1", "PGHOST": "192.0.2.1"}
    dumped = run_through_ansible("postgresql_dump", {"container": seeded.name, "destination": str(destination)},
                                 tmp_path, env=caller)
    assert not dumped.get("failed"), dumped.get("msg")
    restored = run_through_ansible("postgresql_restore", {"container": seeded.name, "archive": dumped["archive"],
                                                          "target_database": "journal_port_copy"}, tmp_path, env=caller)
    assert not restored.get("failed"), restored.get("msg")
    assert restored["counts"] == {"public.entries": ROWS, "public.tags": 2}
