# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""PostgreSQL side of migration validation: catalog comparisons and server-side hashed key ranges.

Rows are hashed by the servers: the sum of one 64-bit hash per row over a primary-key range, so equal ranges
cost one small answer each and no row leaves either server. A row's hash is that of its text, with the
session's text output pinned (DateStyle, TimeZone, extra_float_digits, bytea_output); on PostgreSQL 14 and later
(both sides) it is ``hash_record_extended`` over the columns (hashed once more, so that the per-range sum stays
non-linear), where a column whose type's value and text form
determine each other (integers, boolean, dates and timestamps, uuid, bytea, text and varchar) and which has that
type on both sides is hashed by its type's own hash function (no text rendered: a timestamp's text costs more
than the rest of the row), and every other column as its text. Measured on the test bed, this hashes
about 3 million rows a second per side, while ``md5(string_agg(t::text ...))`` reaches 0.9 million and
streaming COPY into Python hashing 1.3 million. Only ranges at or under ``bisect_threshold`` rows whose
hashes differ are fetched, as keys and row hashes. Tables without a primary key are compared as multisets
of row hashes, cut into ranges of the hash value itself.

Every session is read-only (``default_transaction_read_only``); the content runs in one REPEATABLE READ
snapshot per side.
"""

from __future__ import annotations

import concurrent.futures
import math
import re
import typing as t

from ._common import LifeboatError, first_few
from ._postgres import _USER_SCHEMA, PgConnection, _one_line, _psycopg, quote_ident
from ._validate_core import (
    Checks,
    ContentStats,
    bisect_compare,
    both_sides,
    compare_definitions,
    compare_sets,
    count_check,
    shorten,
    timing_check,
)

_SESSION = ("SET DateStyle = 'ISO, YMD'", "SET TimeZone = 'UTC'", "SET extra_float_digits = 3",
            "SET bytea_output = 'hex'", "SET IntervalStyle = 'postgres'", "SET statement_timeout = 0",
            "SET idle_in_transaction_session_timeout = 0", "SET default_transaction_read_only = on")
_HASH_MIN, _HASH_END = -(1 << 63), 1 << 63
# Types whose values are equal exactly when their text forms are (given the same type on both sides), so hashing the
# value is the same comparison as hashing the text; typmods such as varchar(20) or timestamp(3) are stripped first.
_VALUE_HASHED = {"smallint", "integer", "bigint", "boolean", "date", "timestamp without time zone",
                 "timestamp with time zone", "uuid", "bytea"}
_BYTES_HASHED = {"text", "character varying"}  # hashed as bytes (COLLATE "C"): a case-insensitive collation would not
_KINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "S": "sequence",
          "f": "foreign table"}


def row_hash_sql(columns: list[str], source_types: dict[str, str], target_types: dict[str, str],
                 record_hash: bool) -> tuple[str, str]:
    """The SQL of one row's 64-bit hash (the same on both sides) and of the row's text (to show it)."""
    text = "ROW(" + ", ".join(quote_ident(c) for c in columns) + ")::text"
    if not record_hash:
        return f"hashtextextended({text}, 0)", text
    fields = []
    for column in columns:
        kind = _base_type(source_types[column])
        if kind != _base_type(target_types[column]) or kind not in _VALUE_HASHED | _BYTES_HASHED:
            fields.append(f'{quote_ident(column)}::text COLLATE "C"')
        else:
            fields.append(quote_ident(column) + (' COLLATE "C"' if kind in _BYTES_HASHED else ""))
    # hash_record_extended combines its fields' hashes linearly (h = 31 * h + field), and a range's hash is a sum:
    # two rows swapping a column's values would leave the sum as it was. Hashing the record hash again mixes it.
    return f"hashtextextended(hash_record_extended(ROW({', '.join(fields)}), 0)::text, 0)", text


def _base_type(type_name: str) -> str:
    """format_type's name without its typmod: 'character varying(20)' -> 'character varying'."""
    return re.sub(r"\(\d+(,\d+)?\)", "", type_name)


def qualified(name: str) -> str:
    schema, _dot, relation = name.partition(".")
    return f"{quote_ident(schema)}.{quote_ident(relation)}"


def open_session(connection: PgConnection) -> t.Any:
    conn = connection.connect()
    for statement in _SESSION:
        conn.execute(statement)
    return conn


def catalog(conn: t.Any) -> dict[str, t.Any]:
    """Relations, columns, keys, indexes, constraints, sequences and views of the user schemas."""
    relations = {f"{schema}.{name}": {"oid": oid, "kind": kind}
                 for oid, schema, name, kind in conn.execute(
                     "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c"
                     " JOIN pg_namespace n ON n.oid = c.relnamespace"
                     f" WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_USER_SCHEMA}").fetchall()}
    datcollate = conn.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()").fetchone()[0]
    for info in relations.values():
        info.update(columns={}, key=[], indexes={}, constraints={})
    by_oid = {info["oid"]: info for info in relations.values()}
    for relid, column, type_name, not_null, collation in conn.execute(
        "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " CASE WHEN a.attcollation = 0 THEN NULL WHEN co.collname = 'default' THEN %s ELSE co.collname END"
        " FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation"
        " WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attrelid = ANY(%s) ORDER BY a.attrelid, a.attnum",
        (datcollate, list(by_oid)),
    ).fetchall():
        by_oid[relid]["columns"][column] = {"type": type_name, "not_null": not_null, "collation": collation}
    for relid, column in conn.execute(
        "SELECT i.indrelid, a.attname FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indisprimary AND i.indrelid = ANY(%s) ORDER BY i.indrelid, array_position(i.indkey::int2[], a.attnum)",
        (list(by_oid),),
    ).fetchall():
        by_oid[relid]["key"].append(column)
    for relid, name, definition in conn.execute(
        "SELECT i.indrelid, c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = ANY(%s)", (list(by_oid),)
    ).fetchall():
        by_oid[relid]["indexes"][name] = definition
    for relid, name, kind, definition in conn.execute(
        "SELECT conrelid, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = ANY(%s)",
        (list(by_oid),),
    ).fetchall():
        by_oid[relid]["constraints"][name] = f"{_CONSTRAINT_KINDS.get(kind, kind)} {definition}"
    sequences = dict(conn.execute(
        "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences").fetchall())
    views = dict(conn.execute(
        "SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid) FROM pg_class c"
        f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND {_USER_SCHEMA}"
    ).fetchall())
    return {"relations": relations, "sequences": sequences, "views": views}


_CONSTRAINT_KINDS = {"p": "primary key", "f": "foreign key", "u": "unique", "c": "check", "x": "exclusion",
                     "t": "trigger"}


def _table_names(cat: dict[str, t.Any], checks: Checks) -> list[str]:
    return sorted(name for name, info in cat["relations"].items()
                  if info["kind"] == "r" and checks.options.selected(name))


def run(source: PgConnection, target: PgConnection, checks: Checks) -> ContentStats:
    """All PostgreSQL checks of one database pair except security; returns the content statistics."""
    options = checks.options
    total = ContentStats()
    with open_session(source) as src, open_session(target) as tgt:
        src_cat, tgt_cat = catalog(src), catalog(tgt)
        src_rel, tgt_rel = src_cat["relations"], tgt_cat["relations"]
        if options.wanted("presence"):
            for kind_code, kind in _KINDS.items():
                names_s = [n for n, i in src_rel.items() if i["kind"] == kind_code and options.selected(n)]
                names_t = [n for n, i in tgt_rel.items() if i["kind"] == kind_code and options.selected(n)]
                if not names_s and not names_t:
                    continue
                differences = compare_sets(kind, names_s, names_t)
                # A relation of another kind under the same name (a table that became a view) counts as changed.
                for item in differences:
                    other = (tgt_rel if item["kind"] == "missing" else src_rel).get(item["key"])
                    if other:
                        item["other_kind"] = _KINDS.get(other["kind"], other["kind"])
                details = f"{len(names_s)} on source, {len(names_t)} on target"
                if differences:
                    details += ": " + first_few([f"{d['kind']} {d['key']}" for d in differences], 5, ", ")
                checks.add("presence", f"{kind}s", source.database or "", not differences, details, differences)
        tables = _table_names(src_cat, checks)
        common = [name for name in tables if name in tgt_rel and tgt_rel[name]["kind"] == "r"]
        if options.wanted("schema"):
            for name in sorted(set(src_rel) & set(tgt_rel)):
                if src_rel[name]["kind"] in ("r", "p", "f") and options.selected(name):
                    compare_definitions(checks, "schema", "columns", name, "column",
                                        src_rel[name]["columns"], tgt_rel[name]["columns"])
            _sequence_check(checks, src_cat["sequences"], tgt_cat["sequences"], source.database or "")
            views = {n: d for n, d in src_cat["views"].items() if options.selected(n)}
            if views:
                compare_definitions(checks, "schema", "view definitions", source.database or "", "view", views,
                                    {n: d for n, d in tgt_cat["views"].items() if n in views})
        if options.wanted("indexes"):
            for name in sorted(set(src_rel) & set(tgt_rel)):
                if src_rel[name]["kind"] in ("r", "p", "m") and options.selected(name):
                    compare_definitions(checks, "indexes", "indexes", name, "index",
                                        src_rel[name]["indexes"], tgt_rel[name]["indexes"])
                    compare_definitions(checks, "indexes", "constraints", name, "constraint",
                                        src_rel[name]["constraints"], tgt_rel[name]["constraints"])
        counts: dict[str, tuple[int, int]] = {}
        if options.wanted("counts") or options.wanted("content"):
            # One snapshot per side for counts and content alike: a source still being written stays consistent.
            src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            tgt.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                for name in common:
                    if options.wanted("counts"):
                        sql, params = f"SELECT count(*) FROM ONLY {qualified(name)}", []
                    else:  # content alone needs only a size to plan its ranges: the planner's estimate will do
                        sql, params = "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass", \
                            [qualified(name)]
                    counts[name] = both_sides(pool, lambda q=sql, p=params: src.execute(q, p).fetchone()[0],
                                              lambda q=sql, p=params: tgt.execute(q, p).fetchone()[0])
                    if options.wanted("counts"):
                        count_check(checks, name, *counts[name])
        if options.wanted("content") and options.content_mode != "none":
            for name in common:
                stats = _content(checks, src, tgt, name, src_rel[name], tgt_rel[name], counts[name])
                total.add(stats)
        if src.info.transaction_status != 0:
            src.execute("COMMIT")
            tgt.execute("COMMIT")
        if options.wanted("timing"):
            _timing(checks, src, tgt, common, src_rel)
    return total


def _sequence_check(checks: Checks, source: dict[str, t.Any], target: dict[str, t.Any], database: str) -> None:
    """A target sequence behind its source hands out keys that already exist: duplicate keys after the switch."""
    behind = [{"kind": "behind", "key": name, "source": value, "target": target[name]}
              for name, value in sorted(source.items())
              if checks.options.selected(name) and name in target and value is not None
              and (target[name] is None or target[name] < value)]
    if source:
        checks.add("schema", "sequence positions", database, not behind,
                   f"{len(source)} sequences at or past the source's value" if not behind else
                   first_few([f"{d['key']} at {d['target']} (source {d['source']})" for d in behind], 5, ", "), behind)


# ---------------------------------------------------------------- content


class _Keyed:
    """A table with a primary key: ranges of the key, hashed by the server."""

    def __init__(self, conn: t.Any, table: str, key: list[str], row_hash: str, collate_c: set[str],
                 integer_key: bool = False) -> None:
        self.conn = conn
        self.integer_key = integer_key
        self.table = qualified(table)
        keys = [quote_ident(k) + (' COLLATE "C"' if k in collate_c else "") for k in key]
        self.keys = keys
        self.key_sql = ", ".join(keys)
        self.key_row = f"ROW({self.key_sql})"
        self.width = len(key)
        self.row_hash = row_hash

    def _where(self, low: t.Any, high: t.Any) -> tuple[str, list[t.Any]]:
        clauses, params = [], []
        marks = "ROW(" + ", ".join(["%s"] * self.width) + ")"
        if low is not None:
            clauses.append(f"{self.key_row} >= {marks}")
            params += list(low)
        if high is not None:
            clauses.append(f"{self.key_row} < {marks}")
            params += list(high)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def hash_ranges(self, bounds: list[t.Any]) -> list[tuple[int, int]]:
        answers = []
        for low, high in zip(bounds, bounds[1:]):
            where, params = self._where(low, high)
            rows, checksum = self.conn.execute(
                f"SELECT count(*), coalesce(sum({self.row_hash}), 0) FROM ONLY {self.table}{where}",
                params).fetchone()
            answers.append((int(rows), int(checksum)))
        return answers

    def split(self, low: t.Any, high: t.Any, parts: int, rows: int) -> list[t.Any]:
        if self.integer_key:
            return self._split_width(low, high, parts)
        step = max(1, math.ceil(rows / parts))
        where, params = self._where(low, high)
        inner = self.conn.execute(
            f"SELECT {', '.join(f'k{i}' for i in range(self.width))} FROM (SELECT "
            + ", ".join(f"{k} AS k{i}" for i, k in enumerate(self.keys))
            + f", row_number() OVER (ORDER BY {self.key_sql}) AS rn FROM ONLY {self.table}{where}) s"
            f" WHERE rn > 1 AND (rn - 1) %% {step} = 0 ORDER BY rn", params).fetchall()
        return [low, *[tuple(row) for row in inner], high]

    def _split_width(self, low: t.Any, high: t.Any, parts: int) -> list[t.Any]:
        """Equal widths of a single integer key: no pass over the range's keys (row_number() over 100,000 rows runs on
        one side while the other waits), at most two index lookups for an open end. A unique key holds at most
        `width` rows in a range, so a range of more rows than the threshold always splits further."""
        start, end = (low[0] if low else None), (high[0] if high else None)
        if start is None or end is None:
            where, params = self._where(low, high)
            found = self.conn.execute(f"SELECT min({self.key_sql}), max({self.key_sql}) FROM ONLY {self.table}{where}",
                                      params).fetchone()
            if found[0] is None:
                return [low, high]
            start = found[0] if start is None else start
            end = found[1] + 1 if end is None else end
        step = max(1, math.ceil((end - start) / parts))
        return [low, *[(value,) for value in range(start + step, end, step)], high]

    def initial_bounds(self, parts: int, rows: int) -> list[t.Any]:
        """The first cut: equal widths between min and max of a single integer key (two index lookups),
        else key quantiles (one pass over the key)."""
        if parts <= 1:
            return [None, None]
        if not self.integer_key:
            return self.split(None, None, parts, rows)
        low, high = self.conn.execute(f"SELECT min({self.key_sql}), max({self.key_sql}) FROM ONLY {self.table}").fetchone()
        if low is None:
            return [None, None]
        step = max(1, (high - low + parts) // parts)
        inner = [(value,) for value in range(low + step, high + 1, step)]
        return [None, *inner, None]

    def rows(self, low: t.Any, high: t.Any) -> dict[t.Any, t.Any]:
        where, params = self._where(low, high)
        found = self.conn.execute(
            f"SELECT {self.key_sql}, {self.row_hash} FROM ONLY {self.table}{where}", params).fetchall()
        return {tuple(row[:-1]): row[-1] for row in found}


class _Multiset:
    """A table without a primary key: a multiset of row hashes, cut into ranges of the hash value."""

    def __init__(self, conn: t.Any, table: str, row_hash: str, row_text: str) -> None:
        self.conn = conn
        self.table = qualified(table)
        self.hashed = f"(SELECT {row_hash} AS h FROM ONLY {self.table} t) s"
        self.row_hash, self.row_text = row_hash, row_text

    @staticmethod
    def _where(low: t.Any, high: t.Any) -> tuple[str, list[t.Any]]:
        clauses, params = [], []
        if low is not None:
            clauses.append("h >= %s")
            params.append(low)
        if high is not None:
            clauses.append("h < %s")
            params.append(high)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def hash_ranges(self, bounds: list[t.Any]) -> list[tuple[int, int]]:
        where, params = self._where(bounds[0], bounds[-1])
        inner = list(bounds[1:-1])
        bucket = "width_bucket(h, %s::bigint[])" if inner else "0"
        found = {int(b): (int(n), int(s)) for b, n, s in self.conn.execute(
            f"SELECT {bucket} AS b, count(*), sum(h) FROM {self.hashed}{where} GROUP BY 1",
            ([inner] if inner else []) + params).fetchall()}
        return [found.get(index, (0, 0)) for index in range(len(bounds) - 1)]

    def split(self, low: t.Any, high: t.Any, parts: int, rows: int) -> list[t.Any]:
        start = _HASH_MIN if low is None else low
        end = _HASH_END if high is None else high
        step = (end - start) // parts
        if step < 1:
            return [low, high]
        return [low, *[start + step * i for i in range(1, parts)], high]

    def rows(self, low: t.Any, high: t.Any) -> dict[t.Any, t.Any]:
        where, params = self._where(low, high)
        return dict(self.conn.execute(f"SELECT h, count(*) FROM {self.hashed}{where} GROUP BY h", params).fetchall())

    def row_texts(self, hashes: list[int]) -> dict[int, str]:
        if not hashes:
            return {}
        return dict(self.conn.execute(
            f"SELECT DISTINCT ON (h) h, r FROM (SELECT {self.row_hash} AS h, {self.row_text} AS r"
            f" FROM ONLY {self.table} t) s WHERE h = ANY(%s)", (hashes,)).fetchall())


def _key_text(key_columns: list[str], key: tuple[t.Any, ...]) -> str:
    return ", ".join(f"{column}={value}" for column, value in zip(key_columns, key))


def _content(checks: Checks, src: t.Any, tgt: t.Any, name: str, src_info: dict[str, t.Any],
             tgt_info: dict[str, t.Any], counts: tuple[int, int]) -> ContentStats:
    options = checks.options
    columns = [c for c in src_info["columns"] if c in tgt_info["columns"]]
    key = src_info["key"]
    if key and tgt_info["key"] != key:
        checks.add("content", "rows", name, False,
                   f"primary key differs (source {key}, target {tgt_info['key'] or 'none'}); rows not compared by key")
        return ContentStats()
    collate_c = {k for k in key if src_info["columns"][k]["collation"]
                 and src_info["columns"][k]["collation"] != tgt_info["columns"][k]["collation"]}
    if options.content_mode == "sample":
        return _sample(checks, src, tgt, name, key, columns, counts)
    rows = max(counts)
    # hash_record_extended came with PostgreSQL 14; both sides must hash rows the same way.
    record_hash = min(src.info.server_version, tgt.info.server_version) >= 140000
    row_hash, row_text = row_hash_sql(columns, {c: i["type"] for c, i in src_info["columns"].items()},
                                      {c: i["type"] for c, i in tgt_info["columns"].items()}, record_hash)
    source_side: _Keyed | _Multiset
    target_side: _Keyed | _Multiset
    if key:
        integer_key = len(key) == 1 and src_info["columns"][key[0]]["type"] in ("smallint", "integer", "bigint")
        source_side = _Keyed(src, name, key, row_hash, collate_c, integer_key)
        target_side = _Keyed(tgt, name, key, row_hash, collate_c, integer_key)
        parts = math.ceil(rows / options.chunk_rows)
        side = source_side if counts[0] >= counts[1] else target_side
        bounds = side.initial_bounds(parts, rows)
        diff = bisect_compare(source_side, target_side, bounds, options)
        differences: list[dict[str, t.Any]] = [{"kind": "missing", "key": _key_text(key, k)} for k in diff.missing]
        differences += [{"kind": "extra", "key": _key_text(key, k)} for k in diff.extra]
        for changed in diff.changed[:options.max_differences]:
            differences.append({"kind": "changed", "key": _key_text(key, changed),
                                "columns": _changed_columns(src, tgt, name, key, columns, changed)})
        differences += [{"kind": "changed", "key": _key_text(key, k)} for k in diff.changed[options.max_differences:]]
        how = f"by primary key ({', '.join(key)})"
    else:
        source_side, target_side = _Multiset(src, name, row_hash, row_text), _Multiset(tgt, name, row_hash, row_text)
        diff = bisect_compare(source_side, target_side, [None, None], options, multiset=True)
        shown_missing = source_side.row_texts(diff.missing[:options.max_differences])
        shown_extra = target_side.row_texts(diff.extra[:options.max_differences])
        differences = [{"kind": "missing", "key": f"row hash {h}", "row": shorten(shown_missing.get(h, ""))}
                       for h in diff.missing]
        differences += [{"kind": "extra", "key": f"row hash {h}", "row": shorten(shown_extra.get(h, ""))}
                        for h in diff.extra]
        how = "as a multiset of full-row hashes (no primary key)"
    stats = diff.stats
    summary = (f"{stats.rows_compared} rows compared {how}; {len(diff.missing)} missing, {len(diff.extra)} extra,"
               f" {len(diff.changed)} changed; {stats.chunks_hashed} chunks hashed, {stats.bisections} bisections,"
               f" rows transferred {stats.rows_transferred['source']}/{stats.rows_transferred['target']}")
    if differences:
        summary = first_few([f"{d['kind']} {d['key']}" for d in differences], 3, ", ") + "; " + summary
    checks.add("content", "rows", name, not differences, summary, differences, count=diff.total, stats=stats.as_dict())
    return stats


def _changed_columns(src: t.Any, tgt: t.Any, name: str, key: list[str], columns: list[str],
                     key_value: tuple[t.Any, ...]) -> dict[str, dict[str, str]]:
    select = ", ".join(f"{quote_ident(c)}::text" for c in columns)
    where = " AND ".join(f"{quote_ident(k)} = %s" for k in key)
    sql = f"SELECT {select} FROM ONLY {qualified(name)} WHERE {where}"
    one, other = src.execute(sql, list(key_value)).fetchone(), tgt.execute(sql, list(key_value)).fetchone()
    if one is None or other is None:
        return {}
    return {column: {"source": shorten(a), "target": shorten(b)}
            for column, a, b in zip(columns, one, other) if a != b}


def _sample(checks: Checks, src: t.Any, tgt: t.Any, name: str, key: list[str], columns: list[str],
            counts: tuple[int, int]) -> ContentStats:
    """A quick look: random source rows looked up on the target by key (or row hash). Finds no extra rows."""
    options = checks.options
    stats = ContentStats()
    percent = min(100.0, 100.0 * options.sample_size * 1.5 / max(1, counts[0]))
    row = "ROW(" + ", ".join(quote_ident(c) for c in columns) + ")::text"
    ident = [quote_ident(k) for k in key]
    inner = f"SELECT {', '.join(ident)}{', ' if key else ''}hashtextextended({row}, 0) AS h" \
            f" FROM ONLY {qualified(name)} t"
    sample = src.execute(f"{inner} TABLESAMPLE BERNOULLI (%s) LIMIT %s", (percent, options.sample_size)).fetchall()
    stats.rows_transferred["source"] = len(sample)
    found: dict[t.Any, t.Any] = {}
    for start in range(0, len(sample), 500):
        batch = sample[start:start + 500]
        if key:
            marks = ", ".join("(" + ", ".join(["%s"] * len(key)) + ")" for _row in batch)
            rows = tgt.execute(f"{inner} WHERE ({', '.join(ident)}) IN ({marks})",
                               [v for r in batch for v in r[:-1]]).fetchall()
            found.update({tuple(r[:-1]): r[-1] for r in rows})
        else:
            rows = tgt.execute(f"SELECT h, count(*) FROM ({inner}) s WHERE h = ANY(%s) GROUP BY h",
                               ([r[0] for r in batch],)).fetchall()
            found.update({(r[0],): r[0] for r in rows})
        stats.rows_transferred["target"] += len(rows)
    differences = []
    for item in sample:
        wanted = tuple(item[:-1]) if key else (item[-1],)
        label = _key_text(key, wanted) if key else f"row hash {item[-1]}"
        if wanted not in found:
            differences.append({"kind": "missing", "key": label})
        elif found[wanted] != item[-1]:
            differences.append({"kind": "changed", "key": label})
    stats.rows_compared = len(sample)
    checks.add("content", "rows (sample)", name, not differences,
               f"{len(sample)} sampled source rows looked up on the target; {len(differences)} differ"
               " (a sample cannot find extra rows)", differences, stats=stats.as_dict())
    return stats


def _timing(checks: Checks, src: t.Any, tgt: t.Any, tables: list[str], rel: dict[str, t.Any]) -> None:
    queries = checks.options.timing_queries
    if not queries:
        queries = []
        for name in tables:
            order = ", ".join(quote_ident(k) for k in rel[name]["key"])
            queries.append({"name": f"first 100 rows of {name}",
                            "sql": f"SELECT * FROM ONLY {qualified(name)}" + (f" ORDER BY {order}" if order else "")
                            + " LIMIT 100"})
    for index, query in enumerate(queries):
        sql = query.get("sql") if isinstance(query, dict) else None
        if not sql:
            raise LifeboatError(f"timing_queries[{index}] needs sql: the query to time on both sides (PostgreSQL)")
        label = str(query.get("name") or shorten(sql, 60))
        try:
            timing_check(checks, "query time", label, lambda q=sql: src.execute(q).fetchall(),
                         lambda q=sql: tgt.execute(q).fetchall())
        except _psycopg().Error as exc:
            checks.error("timing", "query time", label, _one_line(exc))


# ---------------------------------------------------------------- security (target only)


def security(target: PgConnection, checks: Checks) -> None:
    options = checks.options
    database = target.database or ""
    if options.require_authentication:
        _refuses_without_password(target, checks)
    with open_session(target) as conn:
        if options.require_tls:
            row = conn.execute("SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            ok = bool(row and row[0])
            checks.add("security", "tls", database, ok,
                       f"connection encrypted ({row[1]}, {row[2]})" if ok else "the connection to the target is not encrypted"
                       " (set ssl_mode=require or verify-full, and ssl=on on the server)")
        for user in options.expected_users:
            _expected_user(conn, checks, user)


# What a stranger on the network has: no password, no password file, no client certificate. Given explicitly (even
# empty), these also keep libpq from taking PGPASSWORD, PGPASSFILE, PGSSLCERT or PGSSLKEY from this process's
# environment, or ~/.pgpass and ~/.postgresql/postgresql.crt from its home.
_STRANGER = {"password": "", "passfile": "/nonexistent", "sslcert": "/nonexistent", "sslkey": "/nonexistent",
             "sslpassword": ""}


def _refuses_without_password(target: PgConnection, checks: Checks) -> None:
    psycopg = _psycopg()
    params = {k: v for k, v in target.params.items() if k not in _STRANGER}
    user = params.get("user", "the default user")
    where = target.describe()
    try:
        conn = psycopg.connect(psycopg.conninfo.make_conninfo(**params, **_STRANGER), autocommit=True)
    except psycopg.OperationalError as exc:
        reason = _one_line(exc)
        if any(word in reason.lower() for word in ("password", "authentication", "pg_hba", "no such", "rejects")):
            checks.add("security", "authentication required", where, True,
                       f"a connection as {user} without a password is refused ({shorten(reason, 100)})")
        else:
            checks.error("security", "authentication required", where, reason)
        return
    conn.close()
    checks.add("security", "authentication required", where, False,
               f"the target accepted a connection as {user} without any password (pg_hba.conf trust?);"
               " require scram-sha-256", [{"kind": "open", "key": f"{user}@{where}"}])


def _expected_user(conn: t.Any, checks: Checks, user: dict[str, t.Any]) -> None:
    name = str(user["name"])
    row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    if row is None:
        checks.add("security", "user", name, False, "role does not exist on the target", [{"kind": "missing", "key": name}])
        return
    problems, notes = [], []
    if user.get("login", True) and not row[0]:
        problems.append("cannot log in (NOLOGIN)")
    member_of = {r[0] for r in conn.execute(
        "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid"
        " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (name,)).fetchall()}
    missing_roles = sorted(set(user.get("roles") or []) - member_of)
    if missing_roles:
        problems.append("not a member of " + ", ".join(missing_roles))
    try:
        has_password = conn.execute("SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s",
                                    (name,)).fetchone()[0]
        if user.get("login", True) and not has_password:
            problems.append("has no password")
        notes.append("has a password" if has_password else "no password")
    except _psycopg().errors.InsufficientPrivilege:
        notes.append("password presence not readable (needs a superuser)")
    details = "; ".join(problems) if problems else "exists" + (", member of " + ", ".join(sorted(member_of))
                                                               if member_of else "") + "; " + "; ".join(notes)
    checks.add("security", "user", name, not problems, details,
               [{"kind": "user", "key": name, "problem": p} for p in problems])
