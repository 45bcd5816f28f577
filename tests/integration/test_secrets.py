# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passwords never reach a command line, a module result, or Ansible's -vvv output."""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
import time
import urllib.parse

import pytest
from psycopg import sql

from testbed import MONGO_SOURCE, PG_SOURCE, finish_module, start_module


class CmdlineWatcher:
    """Reads every process's /proc/PID/cmdline until stopped, remembering what it saw."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as handle:
                            self.seen.add(handle.read())  # a set: an exited process must not erase what it showed
                    except OSError:
                        pass
            time.sleep(0.005)

    def __enter__(self) -> CmdlineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def commands(self, name: bytes) -> list[bytes]:
        return [cmd for cmd in self.seen if name in cmd.split(b"\0")[0]]


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_password_stays_off_command_lines_and_results(engine, server, big_source, tmp_path, unique_name, monkeypatch):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))  # where the modules put their 0600 secret files
    source = big_source  # large enough for the tools to be seen running
    secret = server.password.encode()
    login = {"login_host": server.host, "login_port": server.port, "login_user": server.user,
             "login_password": server.password}
    with CmdlineWatcher() as watcher:
        dumped = finish_module(start_module(f"{engine}_dump", {**login, "database": source,
                                                               "destination": str(tmp_path)}, tmp_path))
        assert dumped.rc == 0, dumped.result
        restored = finish_module(start_module(f"{engine}_restore", {**login, "archive": dumped.result["archive"],
                                                                    "target_database": unique_name}, tmp_path))
    try:
        assert restored.rc == 0, restored.result
        tools = (b"pg_dump", b"pg_restore") if engine == "postgresql" else (b"mongodump", b"mongorestore")
        for tool in tools:
            assert watcher.commands(tool), f"the watcher never saw {tool!r} running"
        leaks = [cmd.replace(b"\0", b" ") for cmd in watcher.seen if secret in cmd]
        assert leaks == []
        for run in (dumped, restored):
            assert server.password not in run.stdout + run.stderr
            assert run.result["invocation"]["module_args"]["login_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
        # The tools' private config files are gone once the module is done.
        assert os.listdir(private_tmp) == []
    finally:
        server.drop(unique_name)


def test_password_stays_out_of_verbose_playbook_output(pg, mongo, run_playbook, tmp_path, unique_name):
    host_vars = {
        "backup_root": str(tmp_path / "backups"),
        # A restore test hands each job's connection, password included, to the verify step (backup_verify).
        "backup_verify_level": "restore",
        "backup_jobs": [
            {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host,
             "login_port": pg.port, "login_user": pg.user, "login_password": pg.password},
            {"name": "nightscout", "engine": "mongodb", "database": MONGO_SOURCE, "login_host": mongo.host,
             "login_port": mongo.port, "login_user": mongo.user, "login_password": mongo.password},
        ],
    }
    backup = run_playbook("backup", host_vars, "-vvv")
    assert backup.returncode == 0, backup.stdout[-3000:]
    assert backup.stdout.count('"level": "restore"') >= 2, "each job's archive was restore-tested"
    restore = run_playbook("restore", {**host_vars, "restore_items": [
        {"job": "journal", "target_database": unique_name}, {"job": "nightscout", "target_database": unique_name}]},
        "-vvv")
    try:
        assert restore.returncode == 0, restore.stdout[-3000:]
        for run in (backup, restore):
            output = run.stdout + run.stderr
            assert "_postgresql_" in output and "_mongodb_" in output, "the modules ran"
            assert pg.password not in output
            assert mongo.password not in output
    finally:
        pg.drop(unique_name)
        mongo.drop(unique_name)


NASTY_PASSWORD = "p:a@s/s?w#o%rd 'q\"+ \\ end"


@pytest.fixture
def nasty_pg_user(pg, unique_name):
    """A login whose password holds every character that breaks naive quoting, URIs and pgpass files."""
    with pg.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(unique_name), sql.Literal(NASTY_PASSWORD)))
    yield unique_name
    with pg.connect() as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{unique_name}"')


@pytest.fixture
def nasty_mongo_user(mongo, unique_name):
    mongo.client.admin.command("createUser", unique_name, pwd=NASTY_PASSWORD, roles=[])  # FerretDB: all rights
    yield unique_name
    mongo.client.admin.command("dropUser", unique_name)


def test_special_characters_in_passwords(pg, mongo, nasty_pg_user, nasty_mongo_user, tmp_path, unique_name):
    with CmdlineWatcher() as watcher:
        runs = []
        for engine, source, login in (
            ("postgresql", PG_SOURCE, {"login_uri": f"postgresql://{nasty_pg_user}:"
                                       f"{urllib.parse.quote(NASTY_PASSWORD, safe='')}@{pg.host}:{pg.port}/{PG_SOURCE}"}),
            ("mongodb", MONGO_SOURCE, {"login_host": mongo.host, "login_port": mongo.port,
                                       "login_user": nasty_mongo_user, "login_password": NASTY_PASSWORD}),
        ):
            dumped = finish_module(start_module(f"{engine}_dump", {**login, "database": source,
                                                                   "destination": str(tmp_path / engine)}, tmp_path))
            assert dumped.rc == 0, dumped.result
            restored = finish_module(start_module(f"{engine}_restore", {
                **login, "archive": dumped.result["archive"], "target_database": f"{unique_name}_{engine[:5]}"}, tmp_path))
            assert restored.rc == 0, restored.result
            runs += [dumped, restored]
    try:
        secrets = {NASTY_PASSWORD, urllib.parse.quote(NASTY_PASSWORD, safe=""), urllib.parse.quote_plus(NASTY_PASSWORD)}
        for secret in secrets:
            assert not [cmd for cmd in watcher.seen if secret.encode() in cmd]
            for run in runs:
                assert secret not in run.stdout + run.stderr
        assert pg.fingerprint(f"{unique_name}_postg")["hashes"] == pg.fingerprint(PG_SOURCE)["hashes"]
        assert mongo.fingerprint(f"{unique_name}_mongo")["hashes"] == mongo.fingerprint(MONGO_SOURCE)["hashes"]
    finally:
        pg.drop(f"{unique_name}_postg")
        mongo.drop(f"{unique_name}_mongo")


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_restore_test_keeps_the_password_off_command_lines_and_results(engine, server, tmp_path, monkeypatch):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    login = {"login_host": server.host, "login_port": server.port, "login_user": server.user,
             "login_password": server.password}
    dumped = finish_module(start_module(f"{engine}_dump", {**login, "database": server.sample,
                                                           "destination": str(tmp_path / "backups")}, tmp_path))
    assert dumped.rc == 0, dumped.result
    with CmdlineWatcher() as watcher:
        verified = finish_module(start_module("backup_verify", {"archive": dumped.result["archive"],
                                                                "level": "restore", engine: login}, tmp_path))
    assert verified.rc == 0, verified.result
    assert watcher.commands(b"pg_restore" if engine == "postgresql" else b"mongorestore")
    assert [cmd for cmd in watcher.seen if server.password.encode() in cmd] == []
    assert server.password not in verified.stdout + verified.stderr
    assert verified.result["invocation"]["module_args"][engine]["login_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    with open(dumped.result["manifest"], encoding="utf-8") as handle:
        assert server.password not in handle.read()
    assert os.listdir(private_tmp) == []


def files_holding(secrets, roots, since):
    """Every file under ``roots`` changed since ``since`` whose bytes hold one of ``secrets`` (the password is new
    to this test, so an older file cannot hold it; other sessions' big database files are skipped unread)."""
    found = set()  # the roots overlap (TMPDIR is under /tmp)
    for root in roots:
        for directory, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                    if not stat.S_ISREG(info.st_mode) or max(info.st_mtime, info.st_ctime) < since:
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                if any(secret in data for secret in secrets):
                    found.add(path)
    return sorted(found)


def test_sigkill_during_a_mongodb_dump_leaves_no_file_with_the_password(
        mongo, big_mongo, tmp_path, unique_name, monkeypatch):
    """The tools' config (the URL-encoded password) lives in an anonymous file in memory: a SIGKILLed module, which
    runs no cleanup, leaves it nowhere; the empty private directory it leaves is swept by the next run."""
    password = f"p@ss:w/rd?#&%'\"{{{{x}}}} {unique_name}"
    mongo.client.admin.command("createUser", unique_name, pwd=password, roles=[])
    password_file = tmp_path / "password"  # the one 0600 file the user asked for
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    destination = tmp_path / "backups"
    args = {"login_host": mongo.host, "login_port": mongo.port, "login_user": unique_name,
            "login_password_file": str(password_file), "database": big_mongo, "destination": str(destination),
            "compression": "none", "job": "killed"}
    since = time.time() - 1
    try:
        process = start_module("mongodb_dump", args, tmp_path)
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                name.startswith(".") and ".partial-" in name and os.path.getsize(destination / name) > 1 << 20
                for name in (os.listdir(destination) if destination.exists() else [])):
            time.sleep(0.02)
        tools = [pid for pid in os.listdir("/proc") if pid.isdigit() and _parent(pid) == process.pid
                 and _cmdline(pid)[:1] and _cmdline(pid)[0].endswith(b"mongodump")]
        assert tools, "mongodump was not seen running under the module"
        (config,) = [arg for arg in _cmdline(tools[0]) if arg.startswith(b"--config=")]
        assert config.startswith(b"--config=/dev/fd/")  # no path on any disk
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        for pid in tools:  # mongodump ends once its reader is gone
            deadline = time.time() + 60
            while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
                time.sleep(0.05)
        secrets = [spelling.encode() for spelling in
                   (password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password))]
        roots = {str(private_tmp), tempfile.gettempdir(), "/tmp", os.path.expanduser("~/.ansible/tmp"),
                 str(destination), str(tmp_path)}
        leaks = [path for path in files_holding(secrets, sorted(roots), since) if path != str(password_file)]
        assert leaks == []
        # What the killed module left: its partial archive, an empty private directory; the next run of the job
        # sweeps them.
        left = os.listdir(private_tmp)
        assert len(left) == 1 and left[0].startswith(f".lifeboat-{process.pid}-"), left
        assert os.listdir(private_tmp / left[0]) == []
        again = finish_module(start_module("mongodb_dump", {**args, "database": mongo.sample}, tmp_path))
        assert again.rc == 0, again.result
        assert os.listdir(private_tmp) == []
        assert not [name for name in os.listdir(destination) if ".partial-" in name]
    finally:
        mongo.client.admin.command("dropUser", unique_name)


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []
