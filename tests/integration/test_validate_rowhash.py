# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""migration_validate's row hash on PostgreSQL 14+ (hash_record_extended, typed column hashes) on the test bed.

Each value-hashed type, a text-hashed type, a swap of values between two rows of one range, a case-only change
under a case-insensitive collation, and equal values under different column types on the two sides.
"""

from __future__ import annotations

import pathlib
import typing as t
import uuid

import pytest

ROWS = 3000
COLUMNS = ("small", "whole", "big", "flag", "day", "stamp", "stamptz", "token", "bytes", "label", "code",
           "amount", "ratio", "doc", "tags")


@pytest.fixture(scope="module")
def typed_source(pg: t.Any) -> t.Iterator[str]:
    name = "lbv_hash_" + uuid.uuid4().hex[:8]
    pg.drop(name)
    pg.execute("postgres", f"CREATE DATABASE {name}")
    pg.execute(
        name,
        "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
        "CREATE TABLE typed (id int PRIMARY KEY, small smallint, whole int, big bigint, flag boolean, day date,"
        " stamp timestamp(3), stamptz timestamptz, token uuid, bytes bytea, label varchar(40),"
        " code text COLLATE nocase, amount numeric(10, 2), ratio float8, doc jsonb, tags text[])",
        f"INSERT INTO typed SELECT g, g % 300, g * 7, g::bigint * 1000003, g % 3 = 0, date '2024-01-01' + g,"
        " timestamp '2024-01-01' + g * interval '1.5 s', timestamptz '2024-01-01' + g * interval '1 min',"
        " md5(g::text)::uuid, decode(md5(g::text), 'hex'), 'label ' || g, 'Code-' || g, g / 8.0, g / 3.0,"
        " jsonb_build_object('n', g), ARRAY['a' || g, 'b']"
        f" FROM generate_series(1, {ROWS}) g",
        "VACUUM ANALYZE",
    )
    yield name
    pg.drop(name)


@pytest.fixture
def typed_target(pg: t.Any, typed_source: str, unique_name: str) -> t.Iterator[str]:
    with pg.copy_of(typed_source, unique_name) as name:
        yield name


def content(pg: t.Any, run_module: t.Any, source: str, target: str, tmp_path: pathlib.Path,
            **extra: t.Any) -> dict[str, t.Any]:
    # A small chunk_rows: several ranges, and bisection down to single rows.
    args = {"engine": "postgresql", "source": pg.login(database=source), "target": pg.login(database=target),
            "checks": ["content"], "chunk_rows": 500, "bisect_threshold": 10, **extra}
    result = run_module("migration_validate", args).result
    return next(c for c in result["checks"] if c["category"] == "content" and c["object"] == "public.typed")


def test_equal_copies_pass(pg, typed_source, typed_target, run_module, tmp_path):
    typed = content(pg, run_module, typed_source, typed_target, tmp_path)
    assert typed["passed"] is True, typed["details"]
    assert typed["stats"]["rows_compared"] == ROWS and typed["stats"]["rows_transferred"] == {"source": 0, "target": 0}


@pytest.mark.parametrize("column, change", [
    ("small", "small = small + 1"),
    ("whole", "whole = -whole"),
    ("big", "big = big + 1"),
    ("flag", "flag = NOT flag"),
    ("day", "day = day + 1"),
    ("stamp", "stamp = stamp + interval '1 ms'"),
    ("stamptz", "stamptz = stamptz + interval '1 microsecond'"),
    ("token", "token = md5('other')::uuid"),
    ("bytes", "bytes = bytes || '\\x00'::bytea"),
    ("label", "label = label || ' '"),
    ("code", "code = lower(code)"),  # equal under the case-insensitive collation, but not the same data
    ("amount", "amount = amount + 0.01"),
    ("ratio", "ratio = ratio + 1e-12"),
    ("doc", "doc = jsonb_set(doc, '{n}', '0')"),
    ("tags", "tags = ARRAY['b', 'a' || id]"),
    ("label", "label = NULL"),
])
def test_a_change_in_any_column_is_found(pg, typed_source, typed_target, run_module, tmp_path, column, change):
    pg.execute(typed_target, f"UPDATE typed SET {change} WHERE id = 1234")
    typed = content(pg, run_module, typed_source, typed_target, tmp_path)
    assert typed["passed"] is False
    assert [(d["kind"], d["key"], list(d["columns"])) for d in typed["differences"]] == [("changed", "id=1234", [column])]


def test_values_swapped_between_two_rows_of_one_range_are_found(pg, typed_source, typed_target, run_module, tmp_path):
    # Each row's hash changes, but a hash that combined its columns linearly would leave the range's sum as it was.
    pg.execute(typed_target,
               "UPDATE typed SET label = CASE id WHEN 101 THEN 'label 102' ELSE 'label 101' END,"
               " stamptz = CASE id WHEN 101 THEN (SELECT stamptz FROM typed WHERE id = 102)"
               " ELSE (SELECT stamptz FROM typed WHERE id = 101) END WHERE id IN (101, 102)")
    typed = content(pg, run_module, typed_source, typed_target, tmp_path)
    assert typed["passed"] is False
    assert [(d["kind"], d["key"]) for d in typed["differences"]] == [("changed", "id=101"), ("changed", "id=102")]


def test_equal_values_under_other_column_types_are_equal(pg, typed_source, typed_target, run_module, tmp_path):
    # A migration that widened int to bigint and varchar to text moved the same data: the content check agrees
    # (the schema check is the one that reports the types).
    pg.execute(typed_target, "ALTER TABLE typed ALTER COLUMN whole TYPE bigint, ALTER COLUMN label TYPE text,"
                             " ALTER COLUMN stamp TYPE timestamp(6)")
    typed = content(pg, run_module, typed_source, typed_target, tmp_path)
    assert typed["passed"] is True, typed["details"]
    pg.execute(typed_target, "UPDATE typed SET whole = whole + 1 WHERE id = 77")
    typed = content(pg, run_module, typed_source, typed_target, tmp_path)
    assert [(d["kind"], d["key"], list(d["columns"])) for d in typed["differences"]] == [("changed", "id=77", ["whole"])]


def test_table_without_key_uses_the_same_row_hash(pg, typed_source, typed_target, run_module, tmp_path):
    for database in (typed_source, typed_target):
        pg.execute(database, "CREATE TABLE IF NOT EXISTS nokey AS SELECT small, stamptz, label FROM typed")
    pg.execute(typed_target, "UPDATE nokey SET label = 'edited' WHERE label = 'label 5'")
    args = {"engine": "postgresql", "source": pg.login(database=typed_source),
            "target": pg.login(database=typed_target), "checks": ["content"], "objects": ["public.nokey"]}
    result = run_module("migration_validate", args).result
    pg.execute(typed_source, "DROP TABLE nokey")
    nokey = next(c for c in result["checks"] if c["category"] == "content" and c["object"] == "public.nokey")
    assert sorted((d["kind"], d["row"]) for d in nokey["differences"]) == [
        ("extra", '(5,"2024-01-01 00:05:00+00",edited)'), ("missing", '(5,"2024-01-01 00:05:00+00","label 5")')]
