# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data expectations (database_expect, its library and the healthcheck probe) against the test bed's PostgreSQL
and FerretDB, as a user whose password is hostile: tables and collections present or missing, indexes present,
missing, created (check mode creates nothing), counts collapsed against the manifest of a real backup made by
the collection's own dump."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
import urllib.parse

import psycopg
import pytest
from psycopg import sql

from ansible_collections.lifeboat.ops.plugins.module_utils import _expectations, _sources
from containers import ContainerBed, ContainerBedError  # pylint: disable=import-error
from testbed import REPO_ROOT, metric  # pylint: disable=import-error

HOSTILE = "p@ss:w/rd?#&%'\"{{x}}\\ "
SPELLINGS = (HOSTILE, urllib.parse.quote(HOSTILE, safe=""), urllib.parse.quote_plus(HOSTILE))


def secret_file(path: t.Any, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert not any(spelling in text for spelling in SPELLINGS), text


def backup(engine: str, login: dict[str, t.Any], database: str, destination: t.Any) -> str:
    """A real archive made by the collection's dump library; the path of its manifest."""
    source = _sources.get(engine)
    params = {name: spec.get("default") for name, spec in source.job_options().items()}
    params.update(login, database=database, destination=str(destination))
    return source.dump(source.dump_request(params))["manifest"]


@pytest.fixture(name="pg_app")
def fixture_pg_app(pg, unique_name, tmp_path):
    """A database owned by a user with the hostile password: notes (50 rows, its primary key), users (3 rows)."""
    with pg.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(unique_name),
                                                                        sql.Literal(HOSTILE)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(unique_name),
                                                                   sql.Identifier(unique_name)))
    with pg.connect(unique_name) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(unique_name)))
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, title text, user_id int)")
        conn.execute("INSERT INTO notes SELECT g, 'note ' || (g % 10), g % 3 FROM generate_series(1, 50) g")
        conn.execute("CREATE TABLE users (id int, email text)")
        conn.execute("INSERT INTO users VALUES (1, 'a@x'), (2, 'b@x'), (3, 'b@x')")
    login = {"login_host": pg.host, "login_port": pg.port, "login_user": unique_name,
             "login_password_file": secret_file(tmp_path / "pw", HOSTILE)}
    yield unique_name, login
    pg.drop(unique_name)
    with pg.connect() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(unique_name)))


@pytest.fixture(name="mongo_app")
def fixture_mongo_app(mongo, unique_name, tmp_path):
    """A database with recipes (40 documents) and tags (2), its user's password hostile."""
    mongo.client.admin.command("createUser", unique_name, pwd=HOSTILE, roles=[])  # FerretDB: all rights
    mongo.client[unique_name].recipes.insert_many([{"n": n, "title": f"r{n % 5}"} for n in range(40)])
    mongo.client[unique_name].tags.insert_many([{"tag": "a"}, {"tag": "a"}])
    login = {"login_host": mongo.host, "login_port": mongo.port, "login_user": unique_name,
             "login_password_file": secret_file(tmp_path / "pw", HOSTILE)}
    yield unique_name, login
    mongo.drop(unique_name)
    mongo.client.admin.command("dropUser", unique_name)


def pg_indexes(pg, database: str) -> dict[str, tuple[bool, str]]:
    with pg.connect(database) as conn:
        rows = conn.execute("SELECT i.relname, x.indisvalid, pg_get_indexdef(x.indexrelid) FROM pg_index x"
                            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid"
                            " WHERE c.relname IN ('notes', 'users')").fetchall()
    return {name: (valid, definition) for name, valid, definition in rows}


def test_postgresql_tables_and_indexes_through_the_module(pg, pg_app, run_module):
    database, login = pg_app
    args = {"engine": "postgresql", **login, "database": database}
    ran = run_module("database_expect", {**args, "present": ["notes", "public.users"],
                                         "indexes": [{"on": "notes", "keys": ["id"], "unique": True}]})
    assert ran.rc == 0 and ran.result["ok"] is True and ran.result["changed"] is False, ran.stdout
    assert ran.result["failures"] == [] and ran.result["created_indexes"] == []

    ran = run_module("database_expect", {**args, "present": ["notes", "ghost", "audit.log"],
                                         "indexes": [{"table": "notes", "keys": ["user_id", "title"]},
                                                     {"on": "users", "keys": ["id"]}]})
    assert ran.rc == 1 and ran.result["ok"] is False, ran.stdout
    assert ran.result["failures"] == [f"table public.ghost missing in database {database}",
                                      f"table audit.log missing in database {database}",
                                      "index on public.notes (user_id, title) missing",
                                      "index on public.users (id) missing"]
    assert ran.result["msg"] == "4 data expectation(s) unmet: " + "; ".join(ran.result["failures"])
    assert_no_secret(ran.stdout, ran.stderr)

    before = pg_indexes(pg, database)
    wanted = {**args, "create_missing_indexes": True,
              "indexes": [{"on": "notes", "keys": ["user_id", "title"]},
                          {"on": "users", "keys": ["id"], "unique": True, "name": "users_id_key"}]}
    checked = run_module("database_expect", wanted, check_mode=True)
    assert checked.rc == 0 and checked.result["changed"] is True, checked.stdout
    assert checked.result["created_indexes"] == ["index on public.notes (user_id, title) as notes_user_id_title_idx",
                                                 "unique index on public.users (id) as users_id_key"]
    assert pg_indexes(pg, database) == before  # check mode created nothing

    applied = run_module("database_expect", wanted)
    assert applied.rc == 0 and applied.result["changed"] is True, applied.stdout
    assert applied.result["created_indexes"] == checked.result["created_indexes"]
    after = pg_indexes(pg, database)
    assert after["notes_user_id_title_idx"] == (
        True, "CREATE INDEX notes_user_id_title_idx ON public.notes USING btree (user_id, title)")
    assert after["users_id_key"] == (True, "CREATE UNIQUE INDEX users_id_key ON public.users USING btree (id)")

    again = run_module("database_expect", wanted)
    assert again.rc == 0 and again.result["changed"] is False and again.result["created_indexes"] == [], again.stdout


def test_postgresql_a_unique_index_over_duplicates_fails_and_leaves_no_invalid_index(pg, pg_app):
    database, login = pg_app
    before = pg_indexes(pg, database)
    result = _expectations.check_expectations("postgresql", login, {
        "database": database, "create_missing_indexes": True,
        "indexes": [{"on": "users", "keys": ["email"], "unique": True}]})
    assert result.ok is False and result.created_indexes == []
    assert result.failures[0].startswith("unique index on public.users (email) missing and could not be created: "
                                         "PostgreSQL error: could not create unique index \"users_email_idx\""), result.failures
    assert "b@x" not in result.failures[0]  # no DETAIL line: it shows the duplicated values
    assert pg_indexes(pg, database) == before  # the invalid index the failed concurrent build left was dropped

    with pg.connect(database) as conn:  # an index with the keys asked for that does not count: partial, or invalid
        conn.execute("CREATE INDEX notes_title_some ON notes (title) WHERE id > 10")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY users_email_left ON users (email)")
    result = _expectations.check_expectations("postgresql", login, {
        "database": database, "indexes": [{"on": "notes", "keys": ["title"]},
                                          {"on": "users", "keys": ["email"], "unique": True}]})
    assert result.failures == [
        "index on public.notes (title) missing (index notes_title_some has these keys but is partial)",
        "unique index on public.users (email) missing (index users_email_left has these keys but is invalid (a failed "
        "concurrent build: drop it))"]


def test_postgresql_counts_against_a_real_backup(pg, pg_app, tmp_path):
    database, login = pg_app
    manifest = backup("postgresql", login, database, tmp_path / "backups")
    expect = {"database": database, "baseline_manifest": manifest, "min_counts": {"users": 3}}
    assert _expectations.check_expectations("postgresql", login, expect).as_dict() == {
        "ok": True, "failures": [], "created_indexes": [], "counts": {"public.notes": 50, "public.users": 3}}

    with pg.connect(database) as conn:
        conn.execute("DELETE FROM notes WHERE id > 20")
        conn.execute("DROP TABLE users")
    result = _expectations.check_expectations("postgresql", login, expect)
    assert result.failures == [
        f"table public.users missing in database {database} (at least 3 rows expected)",
        "table public.notes has 20 rows, the baseline 50: more than 0% fewer (at least 50 expected)",
        f"table public.users missing in database {database}; the baseline archive has 3 rows"]
    tolerant = _expectations.check_expectations("postgresql", login, {
        "database": database, "baseline_manifest": manifest, "max_drop_percent": 60, "present": ["notes"]})
    assert tolerant.failures == [f"table public.users missing in database {database}; the baseline archive has 3 rows"]
    with pytest.raises(Exception, match=f"baseline_manifest {manifest} is of database {database}, not postgres; "):
        _expectations.check_expectations("postgresql", login, {"database": "postgres", "baseline_manifest": manifest})


def test_mongodb_collections_indexes_and_counts(mongo, mongo_app, run_module, tmp_path):
    database, login = mongo_app
    args = {"engine": "mongodb", **login, "database": database}
    manifest = backup("mongodb", login, database, tmp_path / "backups")

    typed = {**{k: v for k, v in args.items() if k != "login_password_file"}, "login_password": HOSTILE}  # masked
    ran = run_module("database_expect", {**typed, "present": ["recipes", "ghosts"], "baseline_manifest": manifest,
                                         "indexes": [{"collection": "recipes", "keys": ["title", "n"]}]})
    assert ran.rc == 1 and ran.result["failures"] == [f"collection ghosts missing in database {database}",
                                                      "index on recipes (title, n) missing"], ran.stdout + ran.stderr
    assert ran.result["counts"] == {"recipes": 40, "tags": 2}
    assert_no_secret(ran.stdout, ran.stderr)

    wanted = {**args, "create_missing_indexes": True, "indexes": [{"on": "recipes", "keys": ["title", "n"]}]}
    checked = run_module("database_expect", wanted, check_mode=True)
    assert checked.rc == 0 and checked.result["created_indexes"] == ["index on recipes (title, n) as title_1_n_1"]
    assert "title_1_n_1" not in mongo.client[database].recipes.index_information()
    applied = run_module("database_expect", wanted)
    assert applied.rc == 0 and applied.result["changed"] is True, applied.stdout
    assert mongo.client[database].recipes.index_information()["title_1_n_1"]["key"] == [("title", 1), ("n", 1)]
    assert run_module("database_expect", wanted).result["changed"] is False

    mongo.client[database].recipes.delete_many({"n": {"$gte": 10}})
    mongo.client[database].tags.drop()
    result = _expectations.check_expectations("mongodb", login, {"database": database, "baseline_manifest": manifest,
                                                                 "max_drop_percent": 50})
    assert result.failures == [
        "collection recipes has 10 documents, the baseline 40: more than 50% fewer (at least 20 expected)",
        f"collection tags missing in database {database}; the baseline archive has 2 documents"]


def test_healthcheck_database_expect_probe(pg, mongo, pg_app, mongo_app, tmp_path):
    """`lifeboat healthcheck` runs the probes from its JSON configuration: healthy while the data is there, failing (one
    journal line, the metric at 0) once a table is gone; the password is nowhere in its output."""
    pg_database, pg_login = pg_app
    mongo_database, _mongo_login = mongo_app
    probes = [
        {"name": "notes-data", "type": "database_expect", "engine": "postgresql", "host": pg.host, "port": pg.port,
         "user": pg_database, "password_file": pg_login["login_password_file"], "database": pg_database,
         "present": ["notes", "users"], "indexes": [{"on": "notes", "keys": ["id"]}], "min_counts": {"notes": 50}},
        {"name": "recipes-data", "type": "database_expect", "engine": "mongodb", "host": mongo.host,
         "port": mongo.port, "user": mongo_database, "password": HOSTILE, "database": mongo_database,
         "present": ["recipes"], "indexes": [{"collection": "recipes", "keys": ["_id"]}]},
    ]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"metrics_file": str(tmp_path / "health.prom"), "probes": probes}))
    healthcheck = [sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), "healthcheck"]

    def run() -> tuple[str, str]:
        done = subprocess.run([*healthcheck, "--config", str(config), "--state", str(tmp_path / "s.json")],
                              capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 0, done.stderr
        assert_no_secret(done.stdout, done.stderr)
        return done.stdout, (tmp_path / "health.prom").read_text()

    checked = subprocess.run([*healthcheck, "--check-config", str(config)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr
    out, metrics = run()
    assert metric(metrics, "lifeboat_healthcheck_up", probe="notes-data", type="database_expect") == 1, out
    assert metric(metrics, "lifeboat_healthcheck_up", probe="recipes-data", type="database_expect") == 1, out
    with pg.connect(pg_database) as conn:
        conn.execute("DROP TABLE users")
    out, metrics = run()
    assert metric(metrics, "lifeboat_healthcheck_up", probe="notes-data", type="database_expect") == 0
    assert (f"<4>notes-data: failing: postgresql {pg.host}:{pg.port}/{pg_database}: table public.users missing in "
            f"database {pg_database}\n") in out


class ExpectBed(ContainerBed):
    """The container test bed, its containers named ``lbt-expect-<run id>-<purpose>`` (this file's own)."""

    def name(self, purpose: str) -> str:
        return f"lbt-expect-{self.run_id}-{purpose}"


@pytest.fixture(name="pg_box")
def fixture_pg_box():
    try:
        bed = ExpectBed.connect()
        box = bed.postgres("pg", user="notes", database="notes", password=HOSTILE)
    except ContainerBedError as error:
        pytest.fail(str(error), pytrace=False)
    yield box
    bed.close()


def test_postgresql_in_a_container_as_its_jobs_reach_it(pg_box):
    """container: the user and the hostile password come from the container's environment, the host is its
    address; the index is created there."""
    with pg_box.connect_pg() as conn:
        conn.execute("CREATE TABLE notes (id int, title text); INSERT INTO notes VALUES (1, 'a'), (2, 'b')")
    result = _expectations.check_expectations("postgresql", {"container": pg_box.name}, {
        "database": "notes", "present": ["notes"], "min_counts": {"notes": 2}, "create_missing_indexes": True,
        "indexes": [{"on": "notes", "keys": ["title"]}]})
    assert result.as_dict() == {"ok": True, "failures": [], "created_indexes": ["index on public.notes (title) as "
                                                                                "notes_title_idx"],
                                "counts": {"public.notes": 2}}
    with pg_box.connect_pg() as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'notes_title_idx'::regclass"
                            ).fetchone() == (True,)
    assert_no_secret(json.dumps(result.as_dict()))
