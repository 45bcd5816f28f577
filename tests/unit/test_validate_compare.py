# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The comparison layer of migration_validate fed real BSON from the bson package, and its error paths.

FerretDB 1.24 (the test bed's MongoDB-wire server) cannot store Decimal128, so the Decimal128-versus-double
case is shown here on the exact bytes a MongoDB server would send: documents encoded by ``bson`` into raw
batches, hashed and diffed by the same functions the module runs on ``find_raw_batches``.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import bson
import pytest
from bson.decimal128 import Decimal128
from bson.int64 import Int64

from ansible_collections.lifeboat.ops.plugins.module_utils import (
    _validate,
    _validate_core,
    _validate_mongo,
    _validate_pg,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError, register_secret
from ansible_collections.lifeboat.ops.plugins.module_utils._postgres import PgConnection


def batches(documents: list[dict], size: int = 7) -> list[bytes]:
    """Raw batches as find_raw_batches yields them: concatenated BSON documents."""
    encoded = [bson.encode(d) for d in documents]
    return [b"".join(encoded[i:i + size]) for i in range(0, len(encoded), size)]


def readings(n: int) -> list[dict]:
    return [{"_id": bson.ObjectId(f"{i:024x}"), "sgv": 100 + i % 50,
             "date": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=5 * i),
             "sensor": {"calibration": {"slope": Decimal128(f"{1000 + i}.125"), "history": [{"ok": True}]}}}
            for i in range(n)]


def compare(source: list[dict], target: list[dict], threshold: int = 50) -> _validate_mongo.DocumentDiff:
    return _validate_mongo.compare_documents(lambda: batches(source), lambda: batches(target),
                                             max(len(source), len(target)), threshold, 20)


def test_equal_collections_are_equal():
    docs = readings(1000)
    diff = compare(docs, [dict(d) for d in docs])
    assert (diff.missing, diff.extra, diff.changed) == ([], [], [])
    assert diff.stats.chunks_hashed == 20 and diff.stats.bisections == 0
    assert diff.stats.rows_compared == 1000


def test_decimal128_turned_into_double_is_found_with_its_path():
    source = readings(1000)
    target = [dict(d) for d in source]
    changed = dict(target[617])
    changed["sensor"] = {"calibration": {"slope": 1617.125, "history": [{"ok": True}]}}  # what a lossy tool writes
    target[617] = changed
    diff = compare(source, target)
    assert diff.missing == [] and diff.extra == []
    assert [(_validate_mongo.id_text(k), fields) for k, fields in diff.changed] == [
        ("ObjectId('000000000000000000000269')",
         ["sensor.calibration.slope: decimal Decimal128('1617.125') -> double 1617.125"])]
    assert diff.stats.bisections == 1  # only one _id bucket was read a second time


@pytest.mark.parametrize("before, after, expected", [
    (dt.datetime(2024, 5, 1, tzinfo=dt.UTC), "2024-05-01T00:00:00Z", "v: date"),
    (5, Int64(5), "v: int 5 -> long 5"),
    (5, 5.0, "v: int 5 -> double 5.0"),
    ({"a": {"b": [1, 2, {"c": "x"}]}}, {"a": {"b": [1, 2, {"c": "y"}]}}, "v.a.b[2].c: 'x' -> 'y'"),
])
def test_type_and_deep_changes(before, after, expected):
    diff = compare([{"_id": 1, "v": before}], [{"_id": 1, "v": after}])
    assert len(diff.changed) == 1
    assert diff.changed[0][1][0].startswith(expected)


def test_missing_extra_and_id_types_are_kept_apart():
    # 1 (int32) and 1 (int64) are different _id values in MongoDB: one is missing, the other extra.
    source = [{"_id": 1, "a": 1}, {"_id": "x", "a": 1}]
    target = [{"_id": Int64(1), "a": 1}, {"_id": "x", "a": 1}, {"_id": bson.ObjectId("65f000000000000000000001")}]
    diff = compare(source, target)
    assert [_validate_mongo.id_text(k) for k in diff.missing] == ["1"]
    assert sorted(_validate_mongo.id_text(k) for k in diff.extra) == ["Int64(1)", "ObjectId('65f000000000000000000001')"]


@pytest.mark.parametrize("value", [bson.ObjectId(), "text", 7, Int64(7), 1.5, Decimal128("2.5"), {"a": 1}, [1, 2],
                                   bson.Binary(b"\x00\x01", 4), dt.datetime(2024, 1, 1), True, None])
def test_id_key_round_trip(value):
    document = bson.encode({"_id": value, "x": 1})
    key = _validate_mongo.id_key(document)
    assert bson.encode({"_id": _validate_mongo.id_value(key)}) == bson.encode({"_id": value})


def test_id_not_first_is_found():
    document = bson.encode({"x": 1, "_id": "late"})
    assert _validate_mongo.id_value(_validate_mongo.id_key(document)) == "late"


def test_truncated_batch_is_a_clear_error():
    with pytest.raises(LifeboatError, match="cut short"):
        list(_validate_mongo.split_documents(bson.encode({"_id": 1})[:-3]))


def test_field_order_only():
    fields = _validate_mongo.field_differences(bson.encode({"_id": 1, "a": 1, "b": 2}),
                                               bson.encode({"_id": 1, "b": 2, "a": 1}))
    assert fields == ["same fields and values in a different order (or an encoding difference)"]


@pytest.mark.parametrize("options, message", [
    ({"checks": ("presence", "speed")}, "unknown check category 'speed'"),
    ({"content_mode": "fast"}, "unknown content_mode 'fast'; use one of: full, sample, none"),
    ({"bisect_threshold": 0}, "bisect_threshold must be 1 or more"),
    ({"count_tolerance_percent": 150}, "count_tolerance_percent must be between 0 and 100"),
    ({"expected_users": [{"roles": ["x"]}]}, "expected_users[0] needs a name"),
    ({"timing_max_ratio": 0}, "timing_max_ratio must be more than 0"),
])
def test_bad_options(options, message):
    with pytest.raises(LifeboatError) as caught:
        _validate_core.Options(**options).validate()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_unknown_engine_and_foreign_options():
    with pytest.raises(LifeboatError, match="unknown engine 'mysql'"):
        _validate.endpoint({}, "mysql", "source")
    with pytest.raises(LifeboatError, match=r"source\.pg_bin_dir is a PostgreSQL option, but engine is mongodb"):
        _validate.endpoint({"pg_bin_dir": "/usr/bin"}, "mongodb", "source")


def test_report_is_private_atomic_and_secret_free(tmp_path):
    secret = "hunter2-very-secret"
    register_secret(secret)
    options = _validate_core.Options()
    checks = _validate_core.Checks(options)
    checks.add("content", "rows", "public.t", False, f"a driver said: password {secret} is wrong",
               [{"kind": "changed", "key": "id=1", "columns": {"note": {"source": secret, "target": "x|y"}}}])
    checks.add("timing", "query time", "q", False, "slow")
    result = _validate_core.build_result(checks, "a", "b", "postgresql", _validate_core.ContentStats(), 0.0)
    assert result["passed"] is False and result["failed_checks"] == ["content:rows:public.t"]
    json_path, md_path = _validate_core.write_report(result, str(tmp_path / "report.json"))
    assert (json_path, md_path) == (str(tmp_path / "report.json"), str(tmp_path / "report.md"))
    for path in (json_path, md_path):
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert secret not in open(path, encoding="utf-8").read()
    assert json.load(open(json_path, encoding="utf-8"))["checks"][1]["required"] is False
    markdown = open(md_path, encoding="utf-8").read()
    assert "| FAIL | content | rows | public.t |" in markdown and "| warn | timing |" in markdown
    assert "x\\|y" in markdown
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md"]
    with pytest.raises(LifeboatError, match=r"report directory .* does not exist"):
        _validate_core.write_report(result, str(tmp_path / "missing" / "r"))


def test_source_and_target_document_every_connection_option_of_both_engines():
    """The module's suboptions follow the engines' doc fragments (validate-modules checks them against the spec)."""
    import yaml  # pylint: disable=import-outside-toplevel

    from ansible_collections.lifeboat.ops.plugins.doc_fragments import _mongodb as mongodb
    from ansible_collections.lifeboat.ops.plugins.doc_fragments import _postgresql as postgresql
    from ansible_collections.lifeboat.ops.plugins.modules import migration_validate

    options = yaml.safe_load(migration_validate.DOCUMENTATION)["options"]
    assert options["source"]["suboptions"] == options["target"]["suboptions"]
    suboptions = options["source"]["suboptions"]
    shape = ("type", "choices", "aliases", "elements")
    for fragment in (postgresql, mongodb):
        for name, spec in yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"].items():
            assert {k: spec.get(k) for k in shape} == {k: suboptions[name].get(k) for k in shape}, name
            if name != "login_database":  # admin by default only for MongoDB, so no default here
                assert spec.get("default") == suboptions[name].get("default"), name
    assert set(suboptions) - set(_validate.endpoint_options()) == set()
    assert set(_validate.endpoint_options()) - set(suboptions) == set()


def test_driver_errors_leave_as_the_engines_one_line_messages():
    """validate() turns either driver's error into the engine's own one-line message; anything else is a bug."""
    import psycopg  # pylint: disable=import-outside-toplevel
    import pymongo.errors  # pylint: disable=import-outside-toplevel

    pg_error = psycopg.errors.UndefinedTable('relation "public.gone" does not exist')
    assert _validate._driver_error(pg_error) == 'PostgreSQL error: relation "public.gone" does not exist'
    mongo_error = pymongo.errors.OperationFailure("not authorized on nightscout to execute command")
    assert _validate._driver_error(mongo_error) == "MongoDB error: not authorized on nightscout to execute command"
    assert _validate._driver_error(ValueError("a bug of ours")) is None


def test_long_lists_name_the_first_few_and_count_the_rest():
    checks = _validate_core.Checks(_validate_core.Options())
    _validate_core.compare_definitions(checks, "indexes", "indexes", "public.t", "index",
                                       {f"i{n}": "x" for n in range(5)}, {})
    assert checks.items[0].details == "missing i0, missing i1, missing i2, and 2 more"
    for n in range(7):
        checks.add("counts", "count", f"t{n}", False, "differs")
    result = _validate_core.build_result(checks, "a", "b", "postgresql", _validate_core.ContentStats(), 0.0)
    assert "8 required check(s) failed: indexes indexes of public.t: missing i0" in result["summary"]
    assert "; counts count of t3: differs; and 3 more. Content:" in result["summary"]


def test_only_target_checks_restore_no_archive_and_read_no_data(monkeypatch):
    """Security and application look at the target alone: no scratch restore, no catalog read of either side."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("ran although no data check was asked for")

    monkeypatch.setattr(_validate, "_compare_data", must_not_run)
    target = _validate.Endpoint(connection=PgConnection({"host": "127.0.0.1", "port": "9"}), database="t")
    for check_mode in (False, True):
        result = _validate.validate(_validate.ValidateRequest(
            engine="postgresql", source=_validate.Endpoint(connection=PgConnection(), archive="/nonexistent.tar"),
            target=target, options=_validate_core.Options(checks=("application",)), check_mode=check_mode))
        assert result["passed"] is True and result["checks"] == [], result["summary"]
        assert result["content"]["rows_transferred"] == {"source": 0, "target": 0}
    with pytest.raises(AssertionError, match="no data check"):
        _validate.validate(_validate.ValidateRequest(
            engine="postgresql", source=_validate.Endpoint(connection=PgConnection(), archive="/nonexistent.tar"),
            target=target, options=_validate_core.Options(checks=("application", "counts"))))


def test_authentication_probe_brings_no_credentials(monkeypatch):
    """The no-password probe sends no password, password file or client certificate, given or from the environment."""
    import psycopg  # pylint: disable=import-outside-toplevel

    seen = []

    def refuse(conninfo, **kwargs):
        seen.append((psycopg.conninfo.conninfo_to_dict(conninfo), kwargs))
        raise psycopg.OperationalError("fe_sendauth: no password supplied")

    monkeypatch.setattr(psycopg, "connect", refuse)
    target = PgConnection({"host": "db", "user": "app", "dbname": "t", "passfile": "/secret/pgpass",
                           "sslcert": "/secret/client.crt", "sslkey": "/secret/client.key"}, "the-password")
    checks = _validate_core.Checks(_validate_core.Options())
    _validate_pg._refuses_without_password(target, checks)  # pylint: disable=protected-access
    params, kwargs = seen[0]
    assert kwargs == {"autocommit": True}
    assert params == {"host": "db", "user": "app", "dbname": "t", "password": "", "passfile": "/nonexistent",
                      "sslcert": "/nonexistent", "sslkey": "/nonexistent", "sslpassword": ""}
    assert checks.items[0].passed and "without a password is refused" in checks.items[0].details


def test_row_hash_sql_hashes_values_of_the_same_exact_type_and_text_otherwise():
    source = {"id": "integer", "at": "timestamp(3) with time zone", "name": "character varying(20)",
              "amount": "numeric(10,2)", "moved": "integer", "doc": "jsonb"}
    target = {**source, "name": "character varying(40)", "moved": "bigint"}
    row_hash, row_text = _validate_pg.row_hash_sql(list(source), source, target, record_hash=True)
    assert row_hash == ('hashtextextended(hash_record_extended(ROW("id", "at", "name" COLLATE "C",'
                        ' "amount"::text COLLATE "C", "moved"::text COLLATE "C", "doc"::text COLLATE "C"), 0)::text, 0)')
    assert row_text == 'ROW("id", "at", "name", "amount", "moved", "doc")::text'
    # Before PostgreSQL 14 (either side) there is no hash_record_extended: the row's text, as always.
    assert _validate_pg.row_hash_sql(list(source), source, target, record_hash=False) == (
        'hashtextextended(ROW("id", "at", "name", "amount", "moved", "doc")::text, 0)', row_text)
