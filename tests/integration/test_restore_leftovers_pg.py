# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A failed restore never blocks the next: on a PostgreSQL whose data directory is a small file system, a killed
restore's side database holds the space the next restore needs, and the next one drops it before it checks the space.

The server is this test's own: initdb of the test bed's binaries on a 160 MB tmpfs mounted here, on a port of its own,
stopped by its PID and unmounted at the end. The archive comes from the shared test bed (a database named leftovers_*).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import psycopg
import pytest

from testbed import PgServer, finish_module, start_module, wait_for_child, wait_until  # pylint: disable=import-error

PORT = int(os.environ.get("LIFEBOAT_LEFTOVERS_PG_PORT", "25790"))
TMPFS_SIZE = "160m"
ROWS = 6000  # of 5,000 incompressible characters each: ~30 MB in the table, restored at a millisecond a row
MB = 1 << 20


def new_name(kind: str) -> str:
    return f"leftovers_{kind}_{uuid.uuid4().hex[:8]}"


class SmallPg(PgServer):
    """A PostgreSQL of this test's own; connects as its superuser with a password, like the test bed's."""

    def __init__(self, root: str, password_file: str, password: str, log: str) -> None:  # pylint: disable=super-init-not-called
        self.root, self.data, self.log = root, os.path.join(root, "data"), log
        self.host, self.port, self.user = "127.0.0.1", PORT, "postgres"
        self.password_file, self.password = password_file, password
        self.postmaster: int | None = None

    def start(self) -> None:
        """Start the server (again, after a crash); its postmaster's PID is kept to stop it."""
        subprocess.run(_as_postgres([os.path.join(os.environ["LIFEBOAT_PG_BINDIR"], "pg_ctl"), "-D", self.data,
                                     "-l", self.log, "-w", "start"]),
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postmaster.pid"), encoding="utf-8") as handle:
            self.postmaster = int(handle.readline())

    def crash(self) -> None:
        """An immediate stop: every server process ends at once, without a checkpoint, as after a PANIC."""
        subprocess.run(_as_postgres([os.path.join(os.environ["LIFEBOAT_PG_BINDIR"], "pg_ctl"), "-D", self.data,
                                     "-m", "immediate", "-w", "stop"]),
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.postmaster = None

    def available(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def sessions(self, database: str) -> list[int]:
        with self.connect() as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
        return [row[0] for row in rows]

    def size(self, database: str) -> int:
        with self.connect() as conn:
            row = conn.execute("SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s",
                               (database,)).fetchone()
        return row[0] if row else 0


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv]


@pytest.fixture(scope="module")
def small_pg(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and runs initdb as the postgres user: run it as root (CI does)")
    bindir = os.environ["LIFEBOAT_PG_BINDIR"]
    root = tempfile.mkdtemp(prefix="leftovers-pg-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", root], check=True)
    server = None
    try:
        data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
        os.mkdir(data, 0o700)
        os.mkdir(sock)
        password = uuid.uuid4().hex
        secrets = tmp_path_factory.mktemp("small-pg")
        password_file = secrets / "password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        initdb_pw = os.path.join(root, "initdb.pw")  # read by initdb as postgres, removed at once
        with open(initdb_pw, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        shutil.chown(data, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(initdb_pw, "postgres")
        # 1 MB WAL segments: the WAL takes a few MB of the small disk, not 16 MB a segment.
        subprocess.run(_as_postgres([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "-E", "UTF8",
                                     "--locale=C.UTF-8", "--no-sync", "--wal-segsize=1", f"--pwfile={initdb_pw}",
                                     "--auth-local=peer", "--auth-host=scram-sha-256"]),
                       check=True, capture_output=True)
        os.unlink(initdb_pw)
        with open(os.path.join(data, "postgresql.conf"), "a", encoding="utf-8") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {PORT}\nunix_socket_directories = '{sock}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "min_wal_size = 2MB\nmax_wal_size = 8MB\nmax_connections = 20\n")
        log = os.path.join(root, "postgres.log")
        open(log, "w", encoding="utf-8").close()  # pylint: disable=consider-using-with
        shutil.chown(log, "postgres")
        server = SmallPg(root, str(password_file), password, log)
        server.start()
        yield server
    finally:
        if server is not None and server.postmaster is not None:
            _stop(server.postmaster)
        subprocess.run(["umount", root], check=False)
        os.rmdir(root)


def _stop(pid: int) -> None:
    """Fast shutdown of the server by its postmaster's PID; SIGKILL if it has not ended within 30 s."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    if not wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 30, interval=0.1):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10, interval=0.1)


@pytest.fixture(scope="module")
def archive(pg, tmp_path_factory):
    """An archive of ~30 MB of rows that restores at a millisecond a row (long enough to be killed halfway)."""
    source = new_name("src")
    pg.execute("postgres", f"CREATE DATABASE {source}")
    try:
        with pg.connect(source) as conn:
            conn.execute("CREATE FUNCTION paced(n bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
                         " IF coalesce(current_setting('lifeboat.seeding', true), '') <> 'on' THEN"
                         " PERFORM pg_sleep(0.001); END IF; RETURN true; END $$")
            # Stored as written (no compression): the restored table takes on disk what its text takes.
            conn.execute("CREATE TABLE blob (id bigint PRIMARY KEY, payload text, CHECK (paced(id)))")
            conn.execute("ALTER TABLE blob ALTER COLUMN payload SET STORAGE EXTERNAL")
            conn.execute("SET lifeboat.seeding = 'on'")
            conn.execute(f"INSERT INTO blob SELECT g, (SELECT string_agg(md5(random()::text || g || i), '')"
                         f" FROM generate_series(1, 156) i) FROM generate_series(1, {ROWS}) g")
        destination = tmp_path_factory.mktemp("leftovers-archive")
        run = finish_module(start_module("postgresql_dump", pg.login(database=source, destination=str(destination)),
                                         destination))
        assert run.rc == 0, run.result
        yield run.result["archive"]
    finally:
        pg.drop(source)


@pytest.fixture
def target(small_pg):
    name = new_name("target")
    yield name
    small_pg.drop(name)
    for leftover in side_databases(small_pg, name):
        small_pg.drop(leftover)


@pytest.fixture
def filler(small_pg):
    """A file on the server's small disk that takes the space a test says; removed afterwards."""
    path = os.path.join(small_pg.root, "filler")

    def fill(size: int) -> None:
        with open(path, "wb", buffering=0) as handle:  # tmpfs: written bytes take memory pages, not holes
            try:
                for start in range(0, max(size, 0), MB):
                    handle.write(b"\0" * min(MB, size - start))
            except OSError as exc:  # the server wrote meanwhile: the disk is as full as asked, or fuller
                if exc.errno != errno.ENOSPC:
                    raise

    yield fill
    if os.path.exists(path):
        os.unlink(path)


def side_databases(server: PgServer, name: str) -> list[str]:
    with server.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                            (f"lifeboat_restore_{name}_",)).fetchall()
    return [row[0] for row in rows]


def restore(server: SmallPg, target: str, archive: str, tmp_path, check_mode: bool = False):
    return start_module("postgresql_restore",
                        server.login(archive=archive, target_database=target, no_owner=True, no_privileges=True),
                        tmp_path,
                        check_mode=check_mode)


def leave_a_killed_restore(server: SmallPg, target: str, archive: str, tmp_path, at_least: int) -> tuple[str, int]:
    """A restore SIGKILLed once its side database holds ``at_least`` bytes: the side database and its size."""
    process = restore(server, target, archive, tmp_path)
    try:
        wait_for_child(process, "pg_restore", with_arg=b"--exit-on-error")
        sides = wait_until(lambda: side_databases(server, target), 30)
        assert sides, "the restore made no side database"
        grew = wait_until(lambda: server.size(sides[0]) >= at_least, 60, interval=0.05,
                          give_up=lambda: process.poll() is not None)
        assert grew and process.poll() is None, (f"the side database never reached {at_least} bytes "
                                                 f"({server.size(sides[0])}): {finish_module(process).result}")
    finally:
        process.kill()
        process.communicate()
    left = side_databases(server, target)
    assert left == sides, left
    # The server's backend notices the dead client only at its next read: until it ends, the side database grows.
    assert wait_until(lambda: not server.sessions(left[0]), 30, interval=0.05), server.sessions(left[0])
    return left[0], server.size(left[0])


def test_the_next_restore_drops_a_killed_ones_side_database_before_it_checks_the_space(
        small_pg, archive, target, filler, tmp_path):
    plan = finish_module(restore(small_pg, target, archive, tmp_path, check_mode=True))
    assert plan.rc == 0, plan.result
    needed = plan.result["disk_space"]["needed_bytes"]
    side, held = leave_a_killed_restore(small_pg, target, archive, tmp_path, at_least=7 * MB + 15 * MB)
    # The disk is now too full for the restore, and would not be without the leftover.
    filler(small_pg.available() - (needed - 2 * MB))
    assert small_pg.available() < needed <= small_pg.available() + held - 4 * MB, (small_pg.available(), needed, held)

    checked = finish_module(restore(small_pg, target, archive, tmp_path, check_mode=True))
    assert checked.rc == 0, checked.result.get("msg")
    assert checked.result["disk_space"]["leftover_bytes"] == held
    assert side_databases(small_pg, target) == [side]  # check mode drops nothing

    run = finish_module(restore(small_pg, target, archive, tmp_path))
    assert run.rc == 0, run.result.get("msg")
    assert run.result["leftovers_dropped"] == [side]
    assert run.result["counts"] == {"public.blob": ROWS}
    assert side_databases(small_pg, target) == []


def test_when_it_still_does_not_fit_the_refusal_names_the_leftover_it_dropped(
        small_pg, archive, target, filler, tmp_path):
    plan = finish_module(restore(small_pg, target, archive, tmp_path, check_mode=True))
    needed = plan.result["disk_space"]["needed_bytes"]
    side, held = leave_a_killed_restore(small_pg, target, archive, tmp_path, at_least=7 * MB + 5 * MB)
    filler(small_pg.available() - (needed - held - 8 * MB))  # short by 8 MB even with the leftover dropped

    checked = finish_module(restore(small_pg, target, archive, tmp_path, check_mode=True))
    assert checked.rc != 0
    message = checked.result["msg"]
    assert message.startswith(f"not enough disk space to restore into {target}"), message
    assert f"counting the side database {side} ({plan_size(held)}) that killed restores left, which a restore drops " \
           "before it writes" in message, message
    assert side_databases(small_pg, target) == [side]

    run = finish_module(restore(small_pg, target, archive, tmp_path))
    assert run.rc != 0
    message = run.result["msg"]
    assert f"after dropping the side database {side} (" in message and "\n" not in message, message
    assert side_databases(small_pg, target) == []
    assert not small_pg.has_database(target)


def test_a_restore_cut_off_by_a_server_crash_then_a_restore_with_room_enough_once_its_leftover_is_dropped(
        small_pg, archive, target, filler, tmp_path):
    """The issue's run: the server goes down during a restore (as it does when a full disk leaves it no room for a WAL
    segment), so the failed restore cannot drop its side database; the next restore fits only by dropping it.

    The test takes the server down itself (an immediate stop: no checkpoint, crash recovery at the next start). Filling
    the disk instead left it to the race between a data page (an ERROR: the side database is dropped) and a WAL segment
    (a PANIC) which one ran out first; CI saw both."""
    plan = finish_module(restore(small_pg, target, archive, tmp_path, check_mode=True))
    needed = plan.result["disk_space"]["needed_bytes"]
    assert small_pg.available() > needed + 4 * MB
    process = restore(small_pg, target, archive, tmp_path)
    try:
        wait_for_child(process, "pg_restore", with_arg=b"--exit-on-error")
        assert wait_until(lambda: side_databases(small_pg, target), 30), "the restore made no side database"
    finally:
        small_pg.crash()
    failed = finish_module(process)
    assert failed.rc != 0 and "\n" not in failed.result["msg"], failed.result
    small_pg.start()
    assert not small_pg.has_database(target)
    left = side_databases(small_pg, target)
    assert len(left) == 1, f"the failed restore left no side database ({failed.result['msg']})"
    assert f"{left[0]} this restore created could not be dropped" in failed.result["msg"], failed.result["msg"]
    assert failed.result["msg"].endswith(f"the next restore into {target} drops it"), failed.result["msg"]
    held = small_pg.size(left[0])
    filler(small_pg.available() - (needed - held // 2))  # short of room unless the leftover goes first

    run = finish_module(restore(small_pg, target, archive, tmp_path))
    assert run.rc == 0, run.result.get("msg")
    assert run.result["leftovers_dropped"] == left
    assert run.result["counts"] == {"public.blob": ROWS}
    assert side_databases(small_pg, target) == []


def plan_size(size: int) -> str:
    from ansible_collections.lifeboat.ops.plugins.module_utils._catalog import human_size  # pylint: disable=import-outside-toplevel

    return human_size(size)


def test_the_small_server_is_this_tests_own(small_pg):
    """The server answers on its own port from the tmpfs (so the test's figures are that disk's)."""
    with small_pg.connect() as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone()[0].startswith(small_pg.root)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", password="wrong", dbname="postgres")


# A killed merge: the target refuses connections (its data intact) until something lets them in again.


@pytest.fixture
def merge_target(pg):
    """A database of the shared test bed holding a table of its own, so a restore into it merges (copy and swap)."""
    name = new_name("merge")
    pg.execute("postgres", f"CREATE DATABASE {name}")
    with pg.connect(name) as conn:
        conn.execute("CREATE TABLE known (id int PRIMARY KEY, word text)")
        conn.execute("INSERT INTO known SELECT g, md5(g::text) FROM generate_series(1, 250) g")
    yield name
    with pg.connect() as conn:
        conn.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
    pg.drop(name)
    for leftover in side_databases(pg, name):
        pg.drop(leftover)


def allows_connections(server: PgServer, name: str) -> bool:
    with server.connect() as conn:
        row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is not None, f"{name} is gone"
    return bool(row[0])


def merge(server: PgServer, target: str, archive: str, tmp_path):
    return start_module("postgresql_restore",
                        server.login(archive=archive, target_database=target, overwrite=True, no_owner=True,
                                     no_privileges=True), tmp_path)


def kill_a_merge(server: PgServer, target: str, archive: str, tmp_path) -> str:
    """A merge SIGKILLed while pg_restore writes into its copy of the target: the side database it left."""
    process = merge(server, target, archive, tmp_path)
    try:
        wait_for_child(process, "pg_restore", with_arg=b"--exit-on-error")
        time.sleep(1.0)  # a second of its six
        assert process.poll() is None, finish_module(process).result
    finally:
        process.kill()
        process.communicate()
    left = side_databases(server, target)
    assert len(left) == 1 and not allows_connections(server, target), left
    return left[0]


def status_reasons(destination: str, tmp_path) -> list[str]:
    run = finish_module(start_module("backup_status", {"destination": destination}, tmp_path))
    return [reason["message"] for reason in run.result["reasons"] if reason["severity"] == "CRITICAL"]


def test_a_killed_merge_is_reported_by_status_and_repaired_by_the_next_restore(pg, archive, merge_target, tmp_path):
    destination = os.path.dirname(archive)
    kill_a_merge(pg, merge_target, archive, tmp_path)

    reported = [line for line in status_reasons(destination, tmp_path) if merge_target in line]
    assert len(reported) == 1, reported
    assert f"a restore into {merge_target} at {pg.host}:{pg.port} was killed (PID " in reported[0], reported
    assert f"ALTER DATABASE \"{merge_target}\" WITH ALLOW_CONNECTIONS true" in reported[0], reported

    run = finish_module(merge(pg, merge_target, archive, tmp_path))
    assert run.rc == 0, run.result.get("msg")
    assert allows_connections(pg, merge_target)
    assert side_databases(pg, merge_target) == []
    assert [line for line in status_reasons(destination, tmp_path) if merge_target in line] == []


def test_a_merge_killed_before_it_made_its_copy_is_repaired_by_the_next_restore(pg, archive, merge_target, tmp_path):
    """Killed between turning connections off and creating its side database: nothing but the record tells."""
    side = kill_a_merge(pg, merge_target, archive, tmp_path)
    pg.drop(side)  # as if the kill came before CREATE DATABASE
    assert not allows_connections(pg, merge_target)

    run = finish_module(merge(pg, merge_target, archive, tmp_path))
    assert run.rc == 0, run.result.get("msg")
    assert allows_connections(pg, merge_target)
    assert f"{merge_target} refused connections since a restore into it was killed (PID " in str(
        run.result["warnings"]), run.result["warnings"]
    with pg.connect(merge_target) as conn:
        assert conn.execute("SELECT count(*) FROM known").fetchone() == (250,)
        assert conn.execute("SELECT count(*) FROM blob").fetchone() == (ROWS,)


def test_a_target_turned_off_by_someone_else_is_refused_with_the_statement_to_run(pg, archive, merge_target, tmp_path):
    with pg.connect() as conn:
        conn.execute(f"ALTER DATABASE {merge_target} WITH ALLOW_CONNECTIONS false")
    run = finish_module(merge(pg, merge_target, archive, tmp_path))
    assert run.rc != 0
    assert run.result["msg"].startswith(f"database {merge_target} does not accept connections"), run.result["msg"]
    assert f"ALTER DATABASE \"{merge_target}\" WITH ALLOW_CONNECTIONS true" in run.result["msg"]
    assert not allows_connections(pg, merge_target)  # left as someone wanted it
