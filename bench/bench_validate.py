# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): migration_validate's full content comparison against the raw per-side hashes.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_validate.py
It starts its own test bed (state dir /tmp/lifeboat-bench-validate, PostgreSQL 25452, FerretDB 27547/27548),
builds two equal PostgreSQL tables and two equal MongoDB collections (kept between runs), and in the same
run times the library's comparison (in a child process: wall, peak RSS) and the raw references:
  - PostgreSQL: SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM t, on each side (the issue's reference),
    and COPY (SELECT * FROM t ORDER BY id) TO STDOUT streamed into Python md5 (the brief's measured 1.4 M rows/s);
  - MongoDB: a raw full read of each collection (find_raw_batches, no hashing).
Memory flat: the library's peak RSS at two sizes. Goals are printed PASS/MISS, never asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The bench test bed, its connections and the collection tree come from bench_dump.py: one way to start them.
from bench_dump import (  # pylint: disable=wrong-import-position
    REPO,
    add_testbed_arguments,
    collections_root,
    log,
    pg_connect,
    secret,
    testbed,
)

GEN = "lifeboat-bench-validate gen=1"


def gen_pg(bed: dict[str, str], rows: int) -> tuple[str, str]:
    """bench_src_N and bench_tgt_N, each with table t of N rows (the target a template copy: equal)."""
    source, target = f"bench_src_{rows}", f"bench_tgt_{rows}"
    tag = f"{GEN} rows={rows}"
    with pg_connect(bed, "postgres") as conn:
        found = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                             (target,)).fetchone()
        if found and found[0] == tag:
            log(f"postgres: reusing {source}/{target} ({rows} rows)")
            return source, target
        log(f"postgres: generating {rows} rows")
        for name in (source, target):
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {source}")
    with pg_connect(bed, source) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12, 2),"
                     " created timestamptz, flag boolean, note text)")
        conn.execute("INSERT INTO t SELECT g, md5(g::text), (g %% 100000) / 100.0,"
                     " timestamptz '2024-01-01' + g * interval '1 second', g %% 2 = 0, 'note ' || (g %% 977)"
                     " FROM generate_series(1, %s) g", (rows,))
        conn.execute("VACUUM (FREEZE, ANALYZE) t")
    with pg_connect(bed, "postgres") as conn:
        conn.execute(f"CREATE DATABASE {target} TEMPLATE {source}")
        conn.execute(f"COMMENT ON DATABASE {target} IS '{tag}'")
    return source, target


def mongo_client(bed: dict[str, str]):
    import pymongo  # pylint: disable=import-outside-toplevel
    password = urllib.parse.quote_plus(secret(bed["LIFEBOAT_MONGO_PASSWORD_FILE"]))
    return pymongo.MongoClient(f"mongodb://{bed['LIFEBOAT_MONGO_USER']}:{password}@{bed['LIFEBOAT_MONGO_HOST']}:"
                               f"{bed['LIFEBOAT_MONGO_PORT']}/?authSource=admin")


def gen_mongo(bed: dict[str, str], docs: int) -> tuple[str, str]:
    import bson  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    source, target = f"bench_src_{docs}", f"bench_tgt_{docs}"
    client = mongo_client(bed)
    meta = client.lifeboat_bench_validate.gen
    if (meta.find_one({"_id": target}) or {}).get("gen") == GEN:
        log(f"mongo: reusing {source}/{target} ({docs} documents)")
        return source, target
    log(f"mongo: generating {docs} documents in each of {source} and {target}")
    started = time.perf_counter()
    for name in (source, target):
        client.drop_database(name)
    for start in range(0, docs, 10000):
        batch = [RawBSONDocument(bson.encode({
            "_id": bson.ObjectId(f"{i:024x}"), "sgv": 40 + i % 360, "type": "sgv", "device": f"dev-{i % 50}",
            "date": bson.datetime_ms.DatetimeMS(1700000000000 + i * 300000), "noise": i % 4,
            "sensor": {"slope": 1000.5 + i % 200, "history": {"ok": i % 3 == 0}}}))
            for i in range(start, min(docs, start + 10000))]
        client[source].entries.insert_many(batch, ordered=False)
        client[target].entries.insert_many(batch, ordered=False)
    meta.replace_one({"_id": target}, {"_id": target, "gen": GEN}, upsert=True)
    log(f"mongo: generated in {time.perf_counter() - started:.0f} s")
    return source, target


def child_main(spec: dict) -> None:
    """In a child process: one full content comparison through the library; wall, peak RSS and result as JSON."""
    sys.path.insert(0, collections_root(spec["source"]))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.ops.plugins.module_utils import _validate, _validate_core

    bed, pg = spec["bed"], spec["engine"] == "postgresql"
    prefix = "PG" if pg else "MONGO"
    login = {"login_host": bed[f"LIFEBOAT_{prefix}_HOST"], "login_port": int(bed[f"LIFEBOAT_{prefix}_PORT"]),
             "login_user": bed[f"LIFEBOAT_{prefix}_USER"], "login_password_file": bed[f"LIFEBOAT_{prefix}_PASSWORD_FILE"]}
    request = _validate.ValidateRequest(
        engine=spec["engine"],
        source=_validate.endpoint({**login, "database": spec["db_source"]}, spec["engine"], "source"),
        target=_validate.endpoint({**login, "database": spec["db_target"]}, spec["engine"], "target"),
        options=_validate_core.Options(checks=("content",), chunk_rows=spec["chunk_rows"]))
    began = time.perf_counter()
    result = _validate.validate(request)
    wall = time.perf_counter() - began
    with open("/proc/self/status", encoding="utf-8") as handle:
        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", handle.read()).group(1)) / 1024
    print(json.dumps({"wall": wall, "rss_mib": hwm, "passed": result["passed"], "content": result["content"]}))


def library(args: argparse.Namespace, bed: dict[str, str], engine: str, source: str, target: str) -> dict:
    spec = {"source": REPO, "bed": bed, "engine": engine, "db_source": source, "db_target": target,
            "chunk_rows": args.chunk_rows}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def both(left, right) -> tuple[float, float, float]:
    """Run two callables at once (one per side, as the library does); their seconds and the wall."""
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(timed, fn) for fn in (left, right)]
        one, other = (f.result() for f in futures)
    return one, other, time.perf_counter() - began


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def raw_md5_agg(bed: dict[str, str], db: str) -> None:
    with pg_connect(bed, db) as conn:
        conn.execute("SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM t").fetchone()


def raw_copy_md5(bed: dict[str, str], db: str) -> None:
    digest = hashlib.md5()
    with pg_connect(bed, db) as conn, conn.cursor().copy("COPY (SELECT * FROM t ORDER BY id) TO STDOUT") as copy:
        for block in copy:
            digest.update(block)


def raw_mongo_read(bed: dict[str, str], db: str) -> None:
    client = mongo_client(bed)
    try:
        for _batch in client[db].entries.find_raw_batches({}, batch_size=10000):
            pass
    finally:
        client.close()


def bench_pg(args: argparse.Namespace, bed: dict[str, str], goals: list) -> dict:
    results = {}
    for rows in args.pg_rows:
        source, target = gen_pg(bed, rows)
        runs: dict[str, list] = {"library": [], "md5agg": [], "copy": []}
        for repetition in range(args.repeat):
            log(f"postgres {rows}: repetition {repetition + 1}")
            runs["library"].append(library(args, bed, "postgresql", source, target))
            runs["md5agg"].append(both(functools.partial(raw_md5_agg, bed, source), functools.partial(raw_md5_agg, bed, target)))
            runs["copy"].append(both(functools.partial(raw_copy_md5, bed, source), functools.partial(raw_copy_md5, bed, target)))
        lib_wall = statistics.median(r["wall"] for r in runs["library"])
        agg_wall = statistics.median(r[2] for r in runs["md5agg"])
        agg_side = statistics.median(max(r[0], r[1]) for r in runs["md5agg"])
        copy_wall = statistics.median(r[2] for r in runs["copy"])
        row = {"rows": rows, "library_s": lib_wall, "library_rows_per_s_per_side": rows / lib_wall,
               "md5agg_both_s": agg_wall, "md5agg_rows_per_s_per_side": rows / agg_side,
               "copy_md5_both_s": copy_wall, "copy_rows_per_s_per_side": rows / copy_wall,
               "speedup_vs_md5agg": agg_wall / lib_wall, "rss_mib": max(r["rss_mib"] for r in runs["library"]),
               "passed": all(r["passed"] for r in runs["library"]), "content": runs["library"][-1]["content"]}
        results[rows] = row
        print(f"PostgreSQL, two equal tables of {rows} rows, both sides at once (median of {args.repeat}):")
        print(f"  library full comparison   {lib_wall:7.2f} s  {rows / lib_wall / 1e6:5.2f} M rows/s per side"
              f"  peak RSS {row['rss_mib']:.1f} MiB  rows transferred {row['content']['rows_transferred']}")
        print(f"  raw md5(string_agg)       {agg_wall:7.2f} s  {rows / agg_side / 1e6:5.2f} M rows/s per side"
              f"  (library {row['speedup_vs_md5agg']:.2f}x faster)")
        print(f"  raw COPY -> Python md5    {copy_wall:7.2f} s  {rows / copy_wall / 1e6:5.2f} M rows/s per side")
    big = results[max(results)]
    goals += [("pg library >= 1 M rows/s per side", big["library_rows_per_s_per_side"] / 1e6,
               big["library_rows_per_s_per_side"] >= 1e6, " M rows/s"),
              ("pg library faster than raw md5(string_agg)", big["speedup_vs_md5agg"], big["speedup_vs_md5agg"] > 1, "x"),
              ("pg library equal tables found equal", float(big["passed"]), big["passed"], "")]
    if len(results) > 1:
        small = results[min(results)]
        growth = big["rss_mib"] / small["rss_mib"]
        goals.append((f"pg peak RSS flat ({min(results)} -> {max(results)} rows, ratio <= 1.10)", growth, growth <= 1.10, "x"))
    return results


def hashing_ceiling(docs: int) -> float:
    """Documents per second the library's own BSON hashing reaches on in-memory raw batches (no server)."""
    import bson  # pylint: disable=import-outside-toplevel
    sys.path.insert(0, collections_root(REPO))
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.lifeboat.ops.plugins.module_utils import _validate_mongo

    encoded = [bson.encode({"_id": bson.ObjectId(f"{i:024x}"), "sgv": 40 + i % 360, "type": "sgv",
                            "device": f"dev-{i % 50}", "sensor": {"slope": 1000.5 + i % 200}}) for i in range(docs)]
    batches = [b"".join(encoded[i:i + 10000]) for i in range(0, docs, 10000)]
    began = time.perf_counter()
    _validate_mongo.bucket_hashes(batches, 4096)
    return docs / (time.perf_counter() - began)


def bench_mongo(args: argparse.Namespace, bed: dict[str, str], goals: list) -> dict:
    ceiling = hashing_ceiling(200_000)
    print(f"MongoDB: the library's BSON hashing alone (in-memory raw batches, one thread): {ceiling / 1e6:.2f} M docs/s")
    results = {"hashing_docs_per_s": ceiling}
    for docs in args.mongo_docs:
        source, target = gen_mongo(bed, docs)
        lib, raw = [], []
        for repetition in range(args.mongo_repeat):
            log(f"mongo {docs}: repetition {repetition + 1}")
            lib.append(library(args, bed, "mongodb", source, target))
            raw.append(both(functools.partial(raw_mongo_read, bed, source), functools.partial(raw_mongo_read, bed, target)))
        lib_wall = statistics.median(r["wall"] for r in lib)
        raw_wall = statistics.median(r[2] for r in raw)
        row = {"docs": docs, "library_s": lib_wall, "library_docs_per_s_per_side": docs / lib_wall,
               "raw_read_both_s": raw_wall, "raw_docs_per_s_per_side": docs / raw_wall,
               "ratio_to_raw_read": lib_wall / raw_wall, "rss_mib": max(r["rss_mib"] for r in lib),
               "passed": all(r["passed"] for r in lib), "content": lib[-1]["content"]}
        results[docs] = row
        print(f"MongoDB (FerretDB 1.24), two equal collections of {docs} documents, both sides at once (median of {args.mongo_repeat}):")
        print(f"  library full comparison   {lib_wall:7.2f} s  {docs / lib_wall / 1e3:6.1f} k docs/s per side"
              f"  peak RSS {row['rss_mib']:.1f} MiB")
        print(f"  raw find_raw_batches read {raw_wall:7.2f} s  {docs / raw_wall / 1e3:6.1f} k docs/s per side"
              f"  (library / raw {row['ratio_to_raw_read']:.2f})")
    sizes = [k for k in results if isinstance(k, int)]
    big = results[max(sizes)]
    goals += [("mongo library >= 1 M docs/s per side", big["library_docs_per_s_per_side"] / 1e6,
               big["library_docs_per_s_per_side"] >= 1e6, " M docs/s"),
              ("mongo library / raw read <= 1.25", big["ratio_to_raw_read"], big["ratio_to_raw_read"] <= 1.25, "")]
    if len(sizes) > 1:
        small = results[min(sizes)]
        growth = big["rss_mib"] / small["rss_mib"]
        goals.append((f"mongo peak RSS flat ({min(sizes)} -> {max(sizes)} docs, ratio <= 1.10)", growth,
                      growth <= 1.10, "x"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--mongo-docs", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="PostgreSQL repetitions (medians)")
    parser.add_argument("--mongo-repeat", type=int, default=1,
                        help="MongoDB repetitions: FerretDB reads a few thousand documents a second, one pass is minutes")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-mongo", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    add_testbed_arguments(parser, "/tmp/lifeboat-bench-validate", 25452, 27547)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    bed = testbed(args)
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    goals: list = []
    out = {}
    if not args.skip_pg:
        out["postgresql"] = bench_pg(args, bed, goals)
    if not args.skip_mongo:
        out["mongodb"] = bench_mongo(args, bed, goals)
    for name, value, ok, unit in goals:
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {value:.2f}{unit}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"results": out, "goals": goals}, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
