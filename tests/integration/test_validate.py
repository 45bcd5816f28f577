# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""migration_validate against the real PostgreSQL 15 and FerretDB of the test bed.

Each injected difference is made on a real copy of a real source and must be named, with its key, in the
module's result and in the report files. The trust-versus-scram test starts a throwaway cluster of its own.
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time
import typing as t
import uuid

import pytest
from local_ports import free_port  # pylint: disable=import-error

MILLION = 1_000_000


@pytest.fixture(scope="module")
def pg_source(pg: t.Any) -> t.Iterator[str]:
    """A source database built server-side: a million-row table, a table without a key, a view, a sequence."""
    name = "lbv_src_" + uuid.uuid4().hex[:8]
    pg.drop(name)
    pg.execute("postgres", f"CREATE DATABASE {name}")
    pg.execute(
        name,
        "CREATE TABLE big (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12, 2), created timestamptz)",
        "INSERT INTO big SELECT g, md5(g::text), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 s'"
        " FROM generate_series(1, 1000000) g",
        "CREATE TABLE items (id int PRIMARY KEY, sku text NOT NULL, price numeric(10, 2), doc jsonb)",
        "CREATE UNIQUE INDEX items_sku ON items (sku)",
        "CREATE INDEX items_price ON items (price)",
        "INSERT INTO items SELECT g, 'sku-' || g, g * 1.25, jsonb_build_object('a', jsonb_build_object('b', g))"
        " FROM generate_series(1, 2000) g",
        "CREATE TABLE child (id int PRIMARY KEY, item_id int REFERENCES items (id), CHECK (id > 0))",
        "INSERT INTO child SELECT g, g FROM generate_series(1, 100) g",
        "CREATE TABLE eventlog (at timestamptz, message text)",
        "INSERT INTO eventlog SELECT timestamptz '2024-01-01' + (g % 50) * interval '1 h', 'event ' || (g % 50)"
        " FROM generate_series(1, 5000) g",
        "CREATE VIEW expensive AS SELECT id, sku FROM items WHERE price > 100",
        "CREATE SEQUENCE invoice_seq START 100",
        "SELECT setval('invoice_seq', 4242)",
        "VACUUM ANALYZE",
    )
    yield name
    pg.drop(name)


@pytest.fixture
def pg_target(pg: t.Any, pg_source: str, unique_name: str) -> t.Iterator[str]:
    """An exact copy of the source (a template copy: every byte equal)."""
    with pg.copy_of(pg_source, unique_name) as name:
        yield name


def pg_args(pg: t.Any, source: str, target: str, tmp_path: pathlib.Path, **extra: t.Any) -> dict[str, t.Any]:
    return {"engine": "postgresql", "source": pg.login(database=source), "target": pg.login(database=target),
            "report_path": str(tmp_path / "report"), "checks": ["presence", "counts", "indexes", "schema", "content"],
            **extra}


def check(result: dict[str, t.Any], category: str, obj: str | None = None) -> list[dict[str, t.Any]]:
    return [c for c in result["checks"] if c["category"] == category and (obj is None or c["object"] == obj)]


def failed(result: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    return [c for c in result["checks"] if not c["passed"]]


def assert_report_names(tmp_path: pathlib.Path, *texts: str) -> None:
    json_text = (tmp_path / "report.json").read_text()
    markdown = (tmp_path / "report.md").read_text()
    for text in texts:
        assert text in json_text, text
        assert text in markdown, text


# ---------------------------------------------------------------- PostgreSQL


def test_pg_equal_databases_pass_and_report_has_no_secret(pg, pg_source, pg_target, run_module, tmp_path):
    run = run_module("migration_validate", pg_args(pg, pg_source, pg_target, tmp_path,
                                                   checks=["presence", "counts", "indexes", "schema", "content",
                                                           "security"]))
    result = run.result
    assert run.rc == 0, run.stdout
    assert result["passed"] is True and result["changed"] is False
    assert result["summary"].startswith("PASSED")
    assert not failed(result)
    content = check(result, "content", "public.big")[0]
    assert content["stats"]["rows_compared"] == MILLION
    assert content["stats"]["rows_transferred"] == {"source": 0, "target": 0}
    categories = {"presence", "counts", "indexes", "schema", "content", "security"}
    assert {c["category"] for c in result["checks"]} == categories
    assert os.stat(tmp_path / "report.json").st_mode & 0o777 == 0o600
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is True and report["summary"] == result["summary"]
    assert "# Migration validation: PASSED" in (tmp_path / "report.md").read_text()
    for text in (run.stdout, (tmp_path / "report.json").read_text(), (tmp_path / "report.md").read_text()):
        assert pg.password not in text


def test_pg_bisection_finds_one_changed_row_of_a_million(pg, pg_source, pg_target, run_module, tmp_path):
    args = pg_args(pg, pg_source, pg_target, tmp_path, checks=["content"], objects=["public.big"])
    equal = run_module("migration_validate", args).result
    assert equal["passed"] is True
    assert equal["content"]["rows_compared"] == MILLION
    assert equal["content"]["rows_transferred"] == {"source": 0, "target": 0}
    pg.execute(pg_target, "UPDATE big SET amount = amount + 0.01 WHERE id = 654321")
    run = run_module("migration_validate", args)
    result = run.result
    assert run.rc != 0 and result["passed"] is False
    big = check(result, "content", "public.big")[0]
    assert big["differences"] == [{"kind": "changed", "key": "id=654321",
                                   "columns": {"amount": {"source": "543.21", "target": "543.22"}}}]
    transferred = result["content"]["rows_transferred"]
    assert 0 < transferred["source"] <= 1000 and 0 < transferred["target"] <= 1000, transferred
    assert result["content"]["bisections"] >= 1
    assert "id=654321" in result["summary"]
    assert_report_names(tmp_path, "id=654321")
    print(f"\nequal: {equal['content']}\none changed: {result['content']}")


def test_pg_missing_row_in_a_million_row_table(pg, pg_source, pg_target, run_module, tmp_path):
    pg.execute(pg_target, "DELETE FROM big WHERE id = 777777")
    result = run_module("migration_validate", pg_args(pg, pg_source, pg_target, tmp_path)).result
    assert result["passed"] is False
    assert check(result, "content", "public.big")[0]["differences"] == [{"kind": "missing", "key": "id=777777"}]
    assert check(result, "counts", "public.big")[0]["details"] == "source 1000000, target 999999 (-1)"
    assert "counts:count:public.big" in result["failed_checks"] and "content:rows:public.big" in result["failed_checks"]
    assert_report_names(tmp_path, "id=777777")


def test_pg_extra_row_and_deep_json_change(pg, pg_source, pg_target, run_module, tmp_path):
    pg.execute(pg_target, "INSERT INTO items VALUES (5000, 'sku-new', 1, '{}')",
               "UPDATE items SET doc = jsonb_set(doc, '{a,b}', '-1') WHERE id = 42")
    result = run_module("migration_validate", pg_args(pg, pg_source, pg_target, tmp_path)).result
    items = check(result, "content", "public.items")[0]
    assert {"kind": "extra", "key": "id=5000"} in items["differences"]
    changed = [d for d in items["differences"] if d["kind"] == "changed"]
    assert changed == [{"kind": "changed", "key": "id=42",
                        "columns": {"doc": {"source": '{"a": {"b": 42}}', "target": '{"a": {"b": -1}}'}}}]
    assert_report_names(tmp_path, "id=5000", "id=42")


def test_pg_schema_index_and_presence_differences(pg, pg_source, pg_target, run_module, tmp_path):
    pg.execute(pg_target,
               "DROP VIEW expensive",
               "ALTER TABLE items ALTER COLUMN price TYPE double precision",
               "DROP INDEX items_price",
               "DROP INDEX items_sku", "CREATE INDEX items_sku ON items (sku)",  # lost UNIQUE
               "ALTER TABLE child DROP CONSTRAINT child_item_id_fkey",
               "DROP TABLE eventlog",
               "SELECT setval('invoice_seq', 200)")
    result = run_module("migration_validate", pg_args(pg, pg_source, pg_target, tmp_path)).result
    assert result["passed"] is False
    columns = check(result, "schema", "public.items")[0]
    assert columns["differences"] == [{"kind": "changed", "key": "price", "what": "column",
                                       "source": {"type": "numeric(10,2)", "not_null": False, "collation": None},
                                       "target": {"type": "double precision", "not_null": False, "collation": None}}]
    indexes = {d["key"]: d for c in check(result, "indexes", "public.items") for d in c["differences"]}
    assert indexes["items_price"]["kind"] == "missing"
    assert indexes["items_sku"]["kind"] == "changed"
    assert "UNIQUE" in indexes["items_sku"]["source"] and "UNIQUE" not in indexes["items_sku"]["target"]
    constraints = {d["key"]: d["kind"] for c in check(result, "indexes", "public.child") for d in c["differences"]}
    assert constraints == {"child_item_id_fkey": "missing"}
    presence = {d["key"]: d["kind"] for c in check(result, "presence") for d in c["differences"]}
    assert presence == {"public.expensive": "missing", "public.eventlog": "missing"}
    sequences = next(c for c in check(result, "schema") if c["name"] == "sequence positions")
    assert sequences["passed"] is False and sequences["differences"][0]["key"] == "public.invoice_seq"
    assert_report_names(tmp_path, "items_sku", "items_price", "public.eventlog", "price")


def test_pg_changed_row_in_a_table_without_primary_key(pg, pg_source, pg_target, run_module, tmp_path):
    # One of 100 identical 'event 7' rows changes: only a multiset of full-row hashes can see it.
    pg.execute(pg_target, "UPDATE eventlog SET message = 'event 7 (edited)'"
                          " WHERE ctid = (SELECT ctid FROM eventlog WHERE message = 'event 7' LIMIT 1)")
    result = run_module("migration_validate", pg_args(pg, pg_source, pg_target, tmp_path,
                                                      objects=["public.eventlog"])).result
    eventlog = check(result, "content", "public.eventlog")[0]
    assert eventlog["passed"] is False
    kinds = sorted((d["kind"], d["row"]) for d in eventlog["differences"])
    assert kinds == [("extra", '("2024-01-01 07:00:00+00","event 7 (edited)")'),
                     ("missing", '("2024-01-01 07:00:00+00","event 7")')]
    assert "multiset of full-row hashes" in eventlog["details"]
    assert_report_names(tmp_path, "event 7 (edited)")


def test_pg_tolerance_required_checks_sample_and_check_mode(pg, pg_source, pg_target, run_module, tmp_path):
    pg.execute(pg_target, "DELETE FROM items WHERE id = 700", "UPDATE items SET sku = 'changed' WHERE id = 800")
    args = pg_args(pg, pg_source, pg_target, tmp_path, objects=["public.items"], count_tolerance_percent=1,
                   required_checks=["presence", "counts", "indexes", "schema"])
    run = run_module("migration_validate", args)
    result = run.result
    # The count is within 1 %, content differs but is not required: passed, with the failure still reported.
    assert run.rc == 0 and result["passed"] is True
    assert check(result, "counts", "public.items")[0]["passed"] is True
    content = check(result, "content", "public.items")[0]
    assert content["passed"] is False and content["required"] is False
    assert {d["key"] for d in content["differences"]} == {"id=700", "id=800"}
    assert "not required" in result["summary"]
    sample = run_module("migration_validate", {**args, "content_mode": "sample", "sample_size": 5000,
                                               "required_checks": ["content"]}).result
    sampled = check(sample, "content", "public.items")[0]
    assert sampled["name"] == "rows (sample)" and sampled["passed"] is False
    assert {d["key"] for d in sampled["differences"]} == {"id=700", "id=800"}
    checked_dir = tmp_path / "check"
    checked_dir.mkdir()
    in_check = run_module("migration_validate", {**args, "report_path": str(checked_dir / "report")},
                          check_mode=True).result
    assert in_check["passed"] is True and "report_json" not in in_check
    assert list(checked_dir.iterdir()) == []


def test_pg_archive_source_is_restored_into_a_scratch_database(pg, pg_source, pg_target, run_module, tmp_path):
    dump = run_module("postgresql_dump", pg.login(database=pg_source, destination=str(tmp_path / "dumps"),
                                                  exclude_tables=["public.big"]))
    assert dump.rc == 0, dump.stdout
    pg.execute(pg_target, "DROP TABLE big")
    scratch = "lbv_scratch_" + uuid.uuid4().hex[:8]
    args = {"engine": "postgresql", "source": {"archive": dump.result["archive"]},
            "target": pg.login(database=pg_target), "scratch_database": scratch,
            "checks": ["presence", "counts", "indexes", "schema", "content"]}
    taken = run_module("migration_validate", {**args, "scratch_database": pg_target})
    # The scratch database is dropped afterwards, so an existing one (here the target itself) is refused.
    assert taken.rc != 0 and taken.result["msg"] == (
        f"scratch_database {pg_target} already exists on the target's server; name one that does not"
        " (it is dropped after the comparison)")
    assert pg.has_database(pg_target)
    in_check = run_module("migration_validate", args, check_mode=True)
    # Check mode restores nothing, so nothing is compared: said so, and never a pass.
    assert in_check.rc == 0 and in_check.result["passed"] is False
    assert in_check.result["summary"].startswith("NOT COMPARED: check mode does not restore the source archive")
    assert not pg.has_database(scratch)
    result = run_module("migration_validate", args).result
    assert result["passed"] is True, result.get("summary") or result
    assert result["source"] == f"archive {dump.result['archive']}"
    assert check(result, "content", "public.items")[0]["stats"]["rows_compared"] == 2000
    assert not pg.has_database(scratch)
    pg.execute(pg_target, "DELETE FROM items WHERE id = 300")
    result = run_module("migration_validate", args).result
    assert result["passed"] is False
    assert check(result, "content", "public.items")[0]["differences"] == [{"kind": "missing", "key": "id=300"}]
    assert not pg.has_database(scratch)
    # Security looks at the target alone: the archive is not restored, so a scratch_database that exists (which a
    # restore refuses) does not matter, nothing is transferred, and check mode compares as much as a real run.
    target_only = {**args, "checks": ["security"], "scratch_database": pg_target}
    for in_check_mode in (False, True):
        run = run_module("migration_validate", target_only, check_mode=in_check_mode)
        assert run.rc == 0, run.stdout
        assert run.result["passed"] is True and run.result["summary"].startswith("PASSED"), run.result["summary"]
        assert {c["category"] for c in run.result["checks"]} == {"security"}
        assert run.result["content"] == {"rows_compared": 0, "rows_transferred": {"source": 0, "target": 0},
                                         "chunks_hashed": 0, "bisections": 0, "seconds": 0.0}
    assert pg.has_database(pg_target)


def test_pg_timing_and_health_checks(pg, pg_source, pg_target, run_module, tmp_path):
    server = _http_server({"/health": (200, b'{"status": "ok"}'), "/broken": (503, b"down")})
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        args = pg_args(pg, pg_source, pg_target, tmp_path, checks=["timing", "application"], timing_runs=3,
                       timing_queries=[{"name": "one item", "sql": "SELECT * FROM items WHERE id = 5"}],
                       health_checks=[{"url": f"{base}/health", "contains": '"ok"'},
                                      {"url": f"{base}/broken"}, {"url": f"{base}/health", "contains": "nope"}])
        result = run_module("migration_validate", args).result
    finally:
        server.shutdown()
    timing = check(result, "timing")[0]
    assert timing["object"] == "one item" and timing["passed"] is True
    assert timing["stats"]["source"]["runs"] == 3 and timing["stats"]["target"]["median_ms"] > 0
    health = check(result, "application")
    assert [c["passed"] for c in health] == [True, False, False]
    assert health[1]["details"] == "status 503, expected 200"
    assert "does not contain" in health[2]["details"]
    assert result["passed"] is False
    # No target can be a billion times faster than its source: over timing_max_ratio, the timing check fails.
    limited = run_module("migration_validate", {**args, "checks": ["timing"], "required_checks": ["timing"],
                                                "timing_max_ratio": 1e-9, "health_checks": []}).result
    timing = check(limited, "timing")[0]
    assert timing["passed"] is False and timing["details"].endswith("(limit 1e-09x)"), timing["details"]
    assert limited["passed"] is False and limited["failed_checks"] == ["timing:query time:one item"]


def _http_server(routes: dict[str, tuple[int, bytes]]) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the standard library's name
            status, body = routes.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: t.Any) -> None:
            del args

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("args, message", [
    ({"source": {"database": "a", "tls": True}}, "source.tls is a MongoDB option, but engine is postgresql; remove it"),
    ({"source": {}}, "source.database is required (or source.archive, an archive made by this collection)"),
    ({"report_path": "relative/report"}, "report_path must be an absolute path, not 'relative/report'"),
    ({"health_checks": [{"url": "ftp://x"}]}, "health_checks[0] needs a url starting with http:// or https://"),
    ({"chunk_rows": 0}, "chunk_rows must be 1 or more"),
    ({"timing_queries": [{"name": "x"}], "checks": ["timing"]},
     "timing_queries[0] needs sql: the query to time on both sides (PostgreSQL)"),
    ({"target": {"archive": "/tmp/x", "database": "b"}}, "target must be a live database; only the source can be an archive"),
])
def test_bad_arguments_give_one_line(pg, run_module, args, message):
    base = {"engine": "postgresql", "source": pg.login(database=pg.sample), "target": pg.login(database=pg.sample)}
    for side in ("source", "target"):
        if side in args:
            args = {**args, side: {**pg.login(), **args[side]}}
    run = run_module("migration_validate", {**base, **args})
    assert run.rc != 0
    assert run.result["msg"] == message
    assert "Traceback" not in run.stdout + run.stderr


def test_inline_password_stays_out_of_result_and_report(pg, run_module, tmp_path):
    inline = {"login_host": pg.host, "login_port": pg.port, "login_user": pg.user, "login_password": pg.password,
              "database": pg.sample}
    run = run_module("migration_validate", {"engine": "postgresql", "source": inline, "target": inline,
                                            "checks": ["presence", "counts", "security"],
                                            "report_path": str(tmp_path / "report")})
    assert run.rc == 0 and run.result["passed"] is True
    for text in (run.stdout, run.stderr, (tmp_path / "report.json").read_text(), (tmp_path / "report.md").read_text()):
        assert pg.password not in text


def test_authentication_probe_ignores_the_password_of_the_environment(pg, run_module, monkeypatch):
    """libpq takes PGPASSWORD and PGPASSFILE when given no password: the no-password probe must not."""
    monkeypatch.setenv("PGPASSWORD", pg.password)
    monkeypatch.setenv("PGPASSFILE", os.environ["LIFEBOAT_PG_PASSFILE"])
    run = run_module("migration_validate", {"engine": "postgresql", "source": pg.login(database=pg.sample),
                                            "target": pg.login(database=pg.sample), "checks": ["security"]})
    assert run.rc == 0, run.stdout
    probe = next(c for c in run.result["checks"] if c["name"] == "authentication required")
    assert probe["passed"] is True, probe["details"]
    assert "without a password is refused" in probe["details"] and "fe_sendauth: no passw" in probe["details"], \
        probe["details"]


def test_wrong_password_is_one_line_and_secret_free(pg, run_module, tmp_path):
    password_file = tmp_path / "wrong.password"
    password_file.write_text("not-the-password-1234\n")
    password_file.chmod(0o600)
    run = run_module("migration_validate", {
        "engine": "postgresql", "source": pg.login(database=pg.sample),
        "target": {**pg.login(database=pg.sample), "login_password_file": str(password_file)}})
    assert run.rc != 0
    assert run.result["msg"].startswith("cannot connect to PostgreSQL at 127.0.0.1:")
    assert "password authentication failed" in run.result["msg"]
    assert "\n" not in run.result["msg"] and "not-the-password-1234" not in run.stdout


# ---------------------------------------------------------------- security: trust versus scram-sha-256


@pytest.fixture
def throwaway_cluster() -> t.Iterator[dict[str, t.Any]]:
    """A PostgreSQL cluster of this test only, initdb'ed with trust, on a free loopback port; removed afterwards."""
    bindir = os.environ.get("LIFEBOAT_PG_BINDIR", "/usr/lib/postgresql/15/bin")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = tempfile.mkdtemp(prefix="lbv-cluster-")
    os.chmod(base, 0o755)
    data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
    os.mkdir(sock)
    if as_pg:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()
    subprocess.run([*as_pg, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(base, "log"), "-o",
                    f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield {"port": port, "data": data, "as_pg": as_pg, "bindir": bindir, "base": base}
    finally:
        subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True,
                       check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_security_fails_on_trust_and_passes_on_scram(throwaway_cluster, run_module, tmp_path):
    cluster = throwaway_cluster
    login = {"login_host": "127.0.0.1", "login_port": cluster["port"], "login_user": "postgres", "database": "postgres"}
    args = {"engine": "postgresql", "source": login, "target": login, "checks": ["security"],
            "expected_users": [{"name": "postgres"}, {"name": "app"}], "report_path": str(tmp_path / "trust")}
    trust = run_module("migration_validate", args).result
    assert trust["passed"] is False
    by_name = {(c["name"], c["object"]): c for c in trust["checks"]}
    open_check = by_name[("authentication required", f"127.0.0.1:{cluster['port']}/postgres")]
    assert open_check["passed"] is False and "without any password" in open_check["details"]
    assert by_name[("user", "postgres")]["details"] == "has no password"
    assert by_name[("user", "app")]["details"] == "role does not exist on the target"

    password = "scram-" + uuid.uuid4().hex
    import psycopg  # pylint: disable=import-outside-toplevel

    with psycopg.connect(host="127.0.0.1", port=cluster["port"], user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(f"ALTER ROLE postgres PASSWORD '{password}'")
        conn.execute("CREATE ROLE app LOGIN PASSWORD 'app-password-123' IN ROLE pg_read_all_data")
    hba = os.path.join(cluster["data"], "pg_hba.conf")
    with open(hba, "w", encoding="utf-8") as handle:
        handle.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    subprocess.run([*cluster["as_pg"], f"{cluster['bindir']}/pg_ctl", "-D", cluster["data"], "reload"], check=True,
                   capture_output=True)
    time.sleep(0.5)
    password_file = tmp_path / "pg.password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    secured = {**login, "login_password_file": str(password_file)}
    run = run_module("migration_validate", {
        **args, "source": secured, "target": secured, "report_path": str(tmp_path / "scram"),
        "expected_users": [{"name": "postgres"}, {"name": "app", "roles": ["pg_read_all_data"]}]})
    assert run.rc == 0, run.stdout
    assert run.result["passed"] is True
    assert all(c["passed"] for c in run.result["checks"]) and len(run.result["checks"]) == 3
    for text in (run.stdout, (tmp_path / "scram.json").read_text(), (tmp_path / "scram.md").read_text()):
        assert password not in text
    no_tls = run_module("migration_validate", {**args, "source": secured, "target": secured, "require_tls": True,
                                               "expected_users": []}).result
    assert no_tls["passed"] is False
    assert [c["details"] for c in no_tls["checks"] if c["name"] == "tls"] == [
        "the connection to the target is not encrypted (set ssl_mode=require or verify-full, and ssl=on on the server)"]

    # The same server with TLS on (a self-signed certificate made here) and a client that asks for it: passes.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", os.path.join(cluster["data"], "server.key"),
                    "-out", os.path.join(cluster["data"], "server.crt")], check=True, capture_output=True)
    for name in ("server.key", "server.crt"):
        os.chmod(os.path.join(cluster["data"], name), 0o600)
        if cluster["as_pg"]:
            shutil.chown(os.path.join(cluster["data"], name), "postgres")
    with open(os.path.join(cluster["data"], "postgresql.auto.conf"), "a", encoding="utf-8") as handle:
        handle.write("ssl = on\n")
    subprocess.run([*cluster["as_pg"], f"{cluster['bindir']}/pg_ctl", "-D", cluster["data"], "reload"], check=True,
                   capture_output=True)
    time.sleep(0.5)
    with_tls = run_module("migration_validate", {**args, "source": secured, "target": {**secured, "ssl_mode": "require"},
                                                 "require_tls": True, "expected_users": []}).result
    assert with_tls["passed"] is True, with_tls.get("summary")
    assert [c["details"].startswith("connection encrypted (TLSv1.3") for c in with_tls["checks"] if c["name"] == "tls"] \
        == [True]


# ---------------------------------------------------------------- MongoDB (FerretDB)


def copy_mongo(mongo: t.Any, source: str, target: str) -> None:
    """Copy every collection, its documents as raw BSON and its indexes."""
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    src = mongo.client.get_database(source, codec_options=mongo.client.codec_options.with_options(
        document_class=RawBSONDocument))
    for name in src.list_collection_names():
        mongo.client[target][name].insert_many(list(src[name].find()))
        for index in mongo.client[source][name].list_indexes():
            if index["name"] != "_id_":
                options = {k: index[k] for k in ("unique", "sparse") if k in index}
                mongo.client[target][name].create_index(list(index["key"].items()), name=index["name"], **options)


@pytest.fixture
def mongo_target(mongo: t.Any, unique_name: str) -> t.Iterator[str]:
    copy_mongo(mongo, mongo.sample, unique_name)
    yield unique_name
    mongo.drop(unique_name)


def mongo_args(mongo: t.Any, source: str, target: str, tmp_path: pathlib.Path, **extra: t.Any) -> dict[str, t.Any]:
    return {"engine": "mongodb", "source": mongo.login(database=source), "target": mongo.login(database=target),
            "report_path": str(tmp_path / "report"), "checks": ["presence", "counts", "indexes", "content", "security"],
            "bisect_threshold": 100, **extra}


def test_mongo_equal_databases_pass(mongo, mongo_target, run_module, tmp_path):
    run = run_module("migration_validate", mongo_args(mongo, mongo.sample, mongo_target, tmp_path))
    assert run.rc == 0, run.stdout
    result = run.result
    assert result["passed"] is True and not failed(result)
    assert result["content"]["rows_compared"] == 4200
    assert {c["object"] for c in check(result, "content")} == {"entries", "treatments", "devicestatus"}
    assert check(result, "security")[0]["passed"] is True
    for text in (run.stdout, (tmp_path / "report.json").read_text(), (tmp_path / "report.md").read_text()):
        assert mongo.password not in text


def test_mongo_injected_differences_are_named(mongo, mongo_target, run_module, tmp_path):
    db = mongo.client[mongo_target]
    first = db.entries.find_one(sort=[("_id", 1)])["_id"]
    db.entries.delete_one({"_id": first})
    db.entries.insert_one({"_id": "intruder", "sgv": 1})
    treatment = db.treatments.find_one(sort=[("_id", 1)])
    db.treatments.update_one({"_id": treatment["_id"]}, {"$set": {"boluscalc.iob.basaliob.net": 0.25}})
    second = db.treatments.find({}, sort=[("_id", 1)]).skip(1).limit(1)[0]
    db.treatments.update_one({"_id": second["_id"]}, {"$set": {"carbs": float(second["carbs"])}})  # int -> double
    db.entries.drop_index("device_date_unique")
    db.entries.create_index([("device", 1), ("date", 1)], name="device_date_unique")  # lost unique
    db.entries.drop_index("date_type")
    db.drop_collection("devicestatus")
    result = run_module("migration_validate", mongo_args(mongo, mongo.sample, mongo_target, tmp_path)).result
    assert result["passed"] is False
    entries = check(result, "content", "entries")[0]["differences"]
    assert {"kind": "missing", "key": f"_id={first!r}"} in entries
    assert {"kind": "extra", "key": "_id='intruder'"} in entries
    treatments = {d["key"]: d for d in check(result, "content", "treatments")[0]["differences"]}
    assert treatments[f"_id={treatment['_id']!r}"]["fields"] == ["boluscalc.iob.basaliob.net: -0.3 -> 0.25"]
    assert treatments[f"_id={second['_id']!r}"]["fields"] == [
        f"carbs: int {second['carbs']} -> double {float(second['carbs'])}"]
    indexes = {d["key"]: d for d in check(result, "indexes", "entries")[0]["differences"]}
    assert indexes["date_type"]["kind"] == "missing"
    assert indexes["device_date_unique"]["kind"] == "changed"
    assert indexes["device_date_unique"]["source"]["unique"] is True
    assert indexes["device_date_unique"]["target"]["unique"] is False
    presence = [d for c in check(result, "presence") for d in c["differences"]]
    assert presence == [{"kind": "missing", "key": "devicestatus", "what": "collection"}]
    stats = check(result, "content", "entries")[0]["stats"]
    assert stats["bisections"] == 2  # the two differing _id buckets were read again, nothing else kept
    assert_report_names(tmp_path, "intruder", "device_date_unique", "devicestatus", "basaliob")


def test_mongo_security_fails_without_authentication(mongo, run_module, tmp_path):
    noauth = {"login_host": mongo.host, "login_port": int(os.environ["LIFEBOAT_MONGO_NOAUTH_PORT"]), "database": "x"}
    result = run_module("migration_validate", {
        "engine": "mongodb", "source": noauth, "target": noauth, "checks": ["security"],
        "expected_users": [{"name": "app"}]}).result
    assert result["passed"] is False
    details = {c["name"]: c["details"] for c in result["checks"]}
    assert details["authentication required"].startswith("the target lists its")
    authed = run_module("migration_validate", {**mongo_args(mongo, mongo.sample, mongo.sample, tmp_path),
                                               "checks": ["security"], "require_tls": True,
                                               "expected_users": [{"name": mongo.user}]}).result
    by_name = {c["name"]: c for c in authed["checks"]}
    assert by_name["authentication required"]["passed"] is True
    assert by_name["user"]["passed"] is True
    assert by_name["tls"]["passed"] is False  # the test bed's FerretDB has no TLS
    assert by_name["tls"]["details"] == ("the validator connects without TLS (set tls: true); the target also accepts"
                                         " connections without TLS (net.tls.mode: requireTLS)")


def test_mongo_sample_mode(mongo, mongo_target, run_module, tmp_path):
    db = mongo.client[mongo_target]
    first = db.treatments.find_one(sort=[("_id", 1)])
    db.treatments.update_one({"_id": first["_id"]}, {"$set": {"notes": "edited"}})
    result = run_module("migration_validate", mongo_args(mongo, mongo.sample, mongo_target, tmp_path,
                                                         content_mode="sample", sample_size=5000,
                                                         objects=["treatments"])).result
    sampled = check(result, "content", "treatments")[0]
    assert sampled["name"] == "documents (sample)" and sampled["passed"] is False
    assert sampled["differences"][0]["key"] == f"_id={first['_id']!r}"


def test_mongo_archive_source_is_restored_into_a_scratch_database(mongo, mongo_target, run_module, tmp_path):
    dump = run_module("mongodb_dump", mongo.login(database=mongo.sample, destination=str(tmp_path / "dumps")))
    assert dump.rc == 0, dump.stdout
    scratch = "lbv_scratch_" + uuid.uuid4().hex[:8]
    args = {"engine": "mongodb", "source": {"archive": dump.result["archive"]},
            "target": mongo.login(database=mongo_target), "scratch_database": scratch,
            "checks": ["presence", "counts", "indexes", "content"], "bisect_threshold": 100}
    result = run_module("migration_validate", args).result
    assert result["passed"] is True, result.get("summary") or result
    assert result["source"] == f"archive {dump.result['archive']}"
    assert result["content"]["rows_compared"] == 4200
    assert not mongo.has_database(scratch)
    first = mongo.client[mongo_target].entries.find_one(sort=[("_id", 1)])["_id"]
    mongo.client[mongo_target].entries.delete_one({"_id": first})
    result = run_module("migration_validate", args).result
    assert result["passed"] is False
    assert check(result, "content", "entries")[0]["differences"] == [{"kind": "missing", "key": f"_id={first!r}"}]
    assert not mongo.has_database(scratch)
