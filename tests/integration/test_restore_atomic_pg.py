# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PostgreSQL restore is all or nothing for its target, in every overwrite mode.

Each failure (a manifest count off by one, pg_restore killed, the module terminated, the server restarted)
must leave the target with exactly the data it had (or absent, if it was) and no side database behind; a
successful replace leaves exactly the archive's content.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

from testbed import finish_module, resign, start_module, wait_for_child

# target_database options of each overwrite mode, and whether the target exists before the restore.
MODES = {
    "absent": ({}, False),
    "recreate": ({"overwrite": True, "recreate": True}, True),
    "merge": ({"overwrite": True}, True),
}
MECHANISMS = {"absent": "side-database-rename", "recreate": "side-database-swap", "merge": "target-copy-swap"}
# Seconds pg_restore runs before a test interrupts it; the big archive's rows take a millisecond each to restore.
INTERRUPT_AFTER = 1.5
PACED_ROWS = 6000


def new_name(kind: str) -> str:
    return f"lb_{kind}_{uuid.uuid4().hex[:8]}"


def dump(pg, database, destination):
    run = finish_module(start_module("postgresql_dump", pg.login(database=database, destination=str(destination)),
                                     destination))
    assert run.rc == 0, run.result
    return run.result


@pytest.fixture(scope="module")
def archives(pg, tmp_path_factory):
    """A small archive (two tables) and a "big" one whose restore lasts long enough to interrupt, of databases made here."""
    small, big = new_name("small"), new_name("big")
    with pg.connect() as conn:
        conn.execute(f"CREATE DATABASE {small}")
        conn.execute(f"CREATE DATABASE {big}")
    with pg.connect(small) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(8, 2))")
        conn.execute("INSERT INTO items (name, price) SELECT 'item ' || g, g / 7.0 FROM generate_series(1, 3000) g")
        conn.execute("CREATE TABLE notes (id bigint PRIMARY KEY, item int REFERENCES items, body jsonb)")
        conn.execute("INSERT INTO notes SELECT g, 1 + g % 3000, jsonb_build_object('n', g) FROM generate_series(1, 5000) g")
    with pg.connect(big) as conn:
        # Each row's check waits a millisecond, except while seeding: the restore lasts several seconds on any
        # machine, however fast, while the archive stays small.
        conn.execute("CREATE FUNCTION paced(n bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
                     " IF coalesce(current_setting('lifeboat.seeding', true), '') <> 'on' THEN"
                     " PERFORM pg_sleep(0.001); END IF; RETURN true; END $$")
        conn.execute("CREATE TABLE blob (id bigint PRIMARY KEY, payload text, CHECK (paced(id)))")
        conn.execute("SET lifeboat.seeding = 'on'")
        conn.execute(f"INSERT INTO blob SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, {PACED_ROWS}) g")
    try:
        result = {}
        for kind, database in (("small", small), ("big", big)):
            destination = tmp_path_factory.mktemp(kind)
            dumped = dump(pg, database, destination)
            result[kind] = {**dumped, "fingerprint": pg.fingerprint(database)}
        yield result
    finally:
        pg.drop(small)
        pg.drop(big)


@pytest.fixture
def target(pg):
    """A target name; dropped afterwards, with any side database a failed test left."""
    name = new_name("target")
    yield name
    pg.drop(name)
    for leftover in side_databases(pg, name):
        pg.drop(leftover)


@pytest.fixture
def start(tmp_path):
    """start_module for one test; a module still running when the test ends is killed before its target is dropped."""
    processes = []

    def begin(name, args):
        process = start_module(name, args, tmp_path)
        processes.append(process)
        return process

    yield begin
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def seed_target(pg, name):
    """A database holding known data that no archive here holds (so a merge does not clash)."""
    with pg.connect() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with pg.connect(name) as conn:
        conn.execute("CREATE TABLE known (id int PRIMARY KEY, word text)")
        conn.execute("INSERT INTO known SELECT g, md5(g::text) FROM generate_series(1, 250) g")
        conn.execute("CREATE SCHEMA kept")
        conn.execute("CREATE TABLE kept.log (at timestamptz, line text)")
        conn.execute("INSERT INTO kept.log VALUES ('2026-01-01 10:00+00', 'before the restore')")


def prepare(pg, mode, name):
    """The target as the mode needs it; its fingerprint before (None: it does not exist)."""
    if not MODES[mode][1]:
        return None
    seed_target(pg, name)
    return pg.fingerprint(name)


def side_databases(pg, name):
    with pg.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                            (f"lifeboat_restore_{name}_",)).fetchall()
    return [row[0] for row in rows]


def assert_as_before(pg, name, before):
    assert side_databases(pg, name) == []
    if before is None:
        assert not pg.has_database(name)
    else:
        assert pg.fingerprint(name) == before  # connecting proves it accepts connections again too


def restore_args(pg, mode, name, archive, **extra):
    return pg.login(archive=archive, target_database=name, **MODES[mode][0], **extra)


def restoring_pg_restore(process, timeout=60):
    """The pid of the pg_restore child of ``process`` that restores (not the one asked for its version)."""
    return wait_for_child(process, "pg_restore", with_arg=b"--exit-on-error", timeout=timeout)


def restart_server():
    """Restart the test bed's own PostgreSQL as scripts/testbed/start-postgres.sh runs it (as postgres, log to its file)."""
    state = os.environ["LIFEBOAT_TESTBED_DIR"]
    argv = [os.path.join(os.environ["LIFEBOAT_PG_BINDIR"], "pg_ctl"), "-D", os.path.join(state, "pg"),
            "-l", os.path.join(state, "postgres.log"), "restart", "-m", "fast", "-w"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    # The server inherits pg_ctl's stdout: a pipe here would never reach its end.
    restart = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             check=False, timeout=120)
    assert restart.returncode == 0, f"pg_ctl restart failed: see {state}/postgres.log"


def failed_run(run):
    assert run.rc != 0, run.result
    message = run.result["msg"]
    assert "\n" not in message and "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    return message


@pytest.mark.parametrize("mode", MODES)
def test_manifest_count_off_by_one(mode, pg, archives, target, tmp_path):
    """The restore completes, its counts do not match: the target keeps what it had."""
    before = prepare(pg, mode, target)
    archive = tmp_path / os.path.basename(archives["small"]["archive"])
    shutil.copy(archives["small"]["archive"], archive)
    manifest = json.loads(open(archives["small"]["manifest"], encoding="utf-8").read())
    manifest["counts"]["public.notes"] += 1
    manifest["total_count"] += 1  # the manifest stays consistent with itself: only the archive disagrees
    (tmp_path / f"{archive.name}.manifest.json").write_text(json.dumps(manifest))
    resign(str(tmp_path / f"{archive.name}.manifest.json"))
    run = finish_module(start_module("postgresql_restore", restore_args(pg, mode, target, str(archive)), tmp_path))
    message = failed_run(run)
    assert_as_before(pg, target, before)
    assert "is incomplete: public.notes: 5001 in the archive, 5000 after restore" in message, message
    assert ("is unchanged" if before else "was not created") in message, message


@pytest.mark.parametrize("failure", ["pg_restore killed", "module terminated", "server restarted"])
@pytest.mark.parametrize("mode", MODES)
def test_interrupted_restore(mode, failure, pg, archives, target, start):
    before = prepare(pg, mode, target)
    process = start("postgresql_restore", restore_args(pg, mode, target, archives["big"]["archive"]))
    pg_restore = restoring_pg_restore(process)
    time.sleep(INTERRUPT_AFTER)
    assert process.poll() is None, "the restore ended before it could be interrupted: make the big archive bigger"
    if failure == "pg_restore killed":
        os.kill(pg_restore, signal.SIGKILL)
        expected = "pg_restore failed: killed by signal 9"
    elif failure == "module terminated":
        process.send_signal(signal.SIGTERM)
        expected = "stopped by SIGTERM before the work was done"
    else:
        restart_server()
        expected = "pg_restore failed"
    run = finish_module(process)
    message = failed_run(run)
    assert_as_before(pg, target, before)
    assert expected in message, message
    assert f"the side database lifeboat_restore_{target}_" in message and "this restore created was dropped" in message


@pytest.mark.parametrize("mode", MODES)
def test_successful_restore(mode, pg, archives, target, tmp_path):
    before = prepare(pg, mode, target)
    small = archives["small"]
    run = finish_module(start_module("postgresql_restore", restore_args(pg, mode, target, small["archive"]), tmp_path))
    assert run.rc == 0, run.result
    assert run.result["mechanism"] == MECHANISMS[mode]
    assert run.result["created"] is (before is None)
    after = pg.fingerprint(target)
    if mode == "merge":  # what the target held, and the archive's tables
        expected = {key: {**before[key], **small["fingerprint"][key]} for key in before}
        assert after == expected
    else:  # exactly the archive's content
        assert after == small["fingerprint"]
    assert side_databases(pg, target) == []


def database_properties(pg, name):
    with pg.connect() as conn:
        return conn.execute(
            "SELECT d.datconnlimit, d.datacl::text, shobj_description(d.oid, 'pg_database'),"
            " (SELECT setconfig::text FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0)"
            " FROM pg_database d WHERE d.datname = %s", (name,)).fetchone()


def test_replace_keeps_the_databases_own_properties_and_parallel_jobs_work(pg, archives, target, tmp_path):
    seed_target(pg, target)
    with pg.connect() as conn:
        conn.execute(f"ALTER DATABASE {target} CONNECTION LIMIT 17")
        conn.execute(f"REVOKE ALL ON DATABASE {target} FROM PUBLIC")
        conn.execute(f"GRANT CONNECT ON DATABASE {target} TO PUBLIC")
        conn.execute(f"COMMENT ON DATABASE {target} IS 'the known one; {{x}} ''quoted'''")
        conn.execute(f"ALTER DATABASE {target} SET work_mem = '7MB'")
        conn.execute(f"""ALTER DATABASE {target} SET search_path = "$user", public, "My S", 'x; SELECT 1'""")
    properties = database_properties(pg, target)
    assert properties[0] == 17 and "My S" in properties[3]
    run = finish_module(start_module("postgresql_restore", restore_args(
        pg, "recreate", target, archives["small"]["archive"], jobs=2), tmp_path))
    assert run.rc == 0, run.result
    assert pg.fingerprint(target) == archives["small"]["fingerprint"]
    assert database_properties(pg, target) == properties


@pytest.mark.parametrize("mode", MODES)
def test_check_mode_names_the_mechanism_and_the_disk_space(mode, pg, archives, target, tmp_path):
    before = prepare(pg, mode, target)
    run = finish_module(start_module("postgresql_restore", restore_args(pg, mode, target, archives["small"]["archive"]),
                                     tmp_path, check_mode=True))
    assert run.rc == 0, run.result
    assert run.result["mechanism"] == MECHANISMS[mode]
    assert "side database" in run.result["mechanism_description"]
    disk = run.result["disk_space"]
    # The test bed's server is local and its admin a superuser: the disk is seen.
    assert disk["checked"] is True and disk["free_bytes"] > disk["needed_bytes"] > 0, disk
    assert_as_before(pg, target, before)


def test_refused_when_the_disk_is_too_small(pg, archives, target, tmp_path):
    before = prepare(pg, "recreate", target)
    archive = tmp_path / os.path.basename(archives["small"]["archive"])
    shutil.copy(archives["small"]["archive"], archive)
    manifest = json.loads(open(archives["small"]["manifest"], encoding="utf-8").read())
    manifest["archive"]["plain_size"] = 1 << 60
    (tmp_path / f"{archive.name}.manifest.json").write_text(json.dumps(manifest))
    resign(str(tmp_path / f"{archive.name}.manifest.json"))
    run = finish_module(start_module("postgresql_restore", restore_args(pg, "recreate", target, str(archive)),
                                     tmp_path))
    message = failed_run(run)
    assert message.startswith(f"not enough disk space to restore into {target}: the side database needs about"), message
    assert_as_before(pg, target, before)


def test_disk_not_checked_when_the_server_is_not_local(pg, archives, target, tmp_path):
    """A login that may not read the server's settings cannot see its disk: the result says so, the restore runs."""
    role = new_name("reader")
    with pg.connect() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD 'p@ss:w/rd?#&%''\"{{{{x}}}}'")
    password_file = tmp_path / "role.password"
    password_file.write_text("p@ss:w/rd?#&%'\"{{x}}\n")
    password_file.chmod(0o600)
    try:
        args = {**restore_args(pg, "absent", target, archives["small"]["archive"], no_owner=True, no_privileges=True),
                "login_user": role, "login_password_file": str(password_file)}
        run = finish_module(start_module("postgresql_restore", args, tmp_path))
        assert run.rc == 0, run.result
        assert run.result["disk_space"]["checked"] is False
        assert run.result["disk_space"]["note"].startswith("not checked"), run.result["disk_space"]
        assert pg.fingerprint(target) == archives["small"]["fingerprint"]
    finally:
        pg.drop(target)
        with pg.connect() as conn:
            conn.execute(f"DROP ROLE {role}")


def test_a_sigkilled_run_is_cleaned_by_the_next_restore(pg, archives, target, start, tmp_path):
    """SIGKILL of the module itself leaves its side database (and, merging, a target that refuses connections)."""
    before = prepare(pg, "merge", target)
    process = start("postgresql_restore", restore_args(pg, "merge", target, archives["big"]["archive"]))
    restoring_pg_restore(process)
    time.sleep(INTERRUPT_AFTER)
    process.kill()
    process.communicate()
    left = side_databases(pg, target)
    assert len(left) == 1, left
    with pg.connect() as conn:
        assert conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (target,)).fetchone() == (False,)
    run = finish_module(start_module("postgresql_restore", restore_args(pg, "merge", target, archives["small"]["archive"]),
                                     tmp_path))
    assert run.rc == 0, run.result
    assert run.result["leftovers_dropped"] == left
    assert side_databases(pg, target) == []
    after = pg.fingerprint(target)
    assert after == {key: {**before[key], **archives["small"]["fingerprint"][key]} for key in before}


def test_one_restore_per_target_at_a_time(pg, archives, target, start, tmp_path):
    first = start("postgresql_restore", restore_args(pg, "absent", target, archives["big"]["archive"]))
    try:
        restoring_pg_restore(first)
        second = finish_module(start_module("postgresql_restore", restore_args(
            pg, "absent", target, archives["small"]["archive"]), tmp_path))
        assert failed_run(second) == f"another restore into {target} is running on this server; wait for it to end"
        assert len(side_databases(pg, target)) == 1, "the running restore's side database was left alone"
    finally:
        first.send_signal(signal.SIGTERM)
        finish_module(first)
    assert_as_before(pg, target, None)


def test_replace_while_a_client_keeps_reconnecting(pg, archives, target, tmp_path):
    """A client that reconnects at once whenever its session is ended (a pool) does not hold the swap off: its
    sessions are ended, the rename goes through, and the client then reads the replaced database."""
    seed_target(pg, target)
    stop, tables_seen = threading.Event(), []

    def reconnecting_client():
        while not stop.is_set():
            try:
                with pg.connect(target) as conn:
                    tables_seen.append(conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                                       .fetchone()[0])
                    while not stop.is_set():
                        conn.execute("SELECT pg_sleep(0.05)")
            except psycopg.Error:
                time.sleep(0.01)  # ended or refused: straight back

    client = threading.Thread(target=reconnecting_client, daemon=True)
    client.start()
    try:
        run = finish_module(start_module("postgresql_restore", restore_args(
            pg, "recreate", target, archives["small"]["archive"]), tmp_path))
        deadline = time.monotonic() + 10
        while tables_seen[-1:] != [2] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        client.join(timeout=30)
    assert run.rc == 0, run.result
    assert pg.fingerprint(target) == archives["small"]["fingerprint"]
    assert side_databases(pg, target) == []
    # The seeded target has one public table (known), the archive two (items, notes).
    assert tables_seen[0] == 1 and tables_seen[-1] == 2, tables_seen


def test_sigterm_during_the_swap_lets_it_finish(pg, archives, target, start):
    """A swap is never cut in half: a SIGTERM that arrives while the renames wait is noted, the swap ends, and
    the target holds the archive (a swap cut off would leave its transaction to the server, and fail the run)."""
    seed_target(pg, target)
    with pg.connect() as blocker:
        # A comment being written on the target holds a lock that its rename must wait for.
        blocker.execute("BEGIN")
        blocker.execute(f"COMMENT ON DATABASE {target} IS 'held by the test'")
        process = start("postgresql_restore", restore_args(pg, "recreate", target, archives["small"]["archive"]))
        deadline = time.monotonic() + 60
        with pg.connect() as watcher:
            while not watcher.execute("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                      " AND query LIKE %s)", (f'ALTER DATABASE "{target}" RENAME TO %',)).fetchone()[0]:
                assert process.poll() is None and time.monotonic() < deadline, "the restore never reached its swap"
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        blocker.execute("ROLLBACK")
    run = finish_module(process)
    assert run.rc == 0, run.result
    assert run.result["mechanism"] == "side-database-swap"
    assert pg.fingerprint(target) == archives["small"]["fingerprint"]
    assert side_databases(pg, target) == []
