# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): lifeboat.ops restores against the raw tools, and where a module run spends its time.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_restore.py
It uses (and starts, if needed) the test bed named by --testbed-dir/--pg-port/--mongo-port, generates the data once
(bench_dump.py's PostgreSQL generator; a small MongoDB collection of its own) and dumps it once. Every repetition
runs every variant once, in a rotated order, each into a database of its own (dropped afterwards, untimed); the
medians are printed with their ratios to the raw pipeline and the load average. Reported, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_dump
from bench_dump import MB, REPO, add_testbed_arguments, collections_root, log


def child_main(spec: dict) -> None:
    """In a child process: one library restore, timed by phase; prints JSON (seconds, phases, peak RSS)."""
    sys.path.insert(0, collections_root(REPO))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.ops.plugins.module_utils import (
        _mongo,
        _mongo_restore,
        _postgres,
        _postgres_restore,
    )

    bed, pg = spec["bed"], spec["engine"] == "postgresql"
    login = {key.lower(): bed[f"LIFEBOAT_{'PG' if pg else 'MONGO'}_{key}"] for key in ("HOST", "PORT", "USER", "PASSWORD_FILE")}
    login["port"] = int(login["port"])
    began = time.perf_counter()
    if pg:
        request = _postgres_restore.RestoreRequest(connection=_postgres.PgConnection.from_options(**login),
                                                   archive_path=spec["archive"], target_database=spec["target"])
        engine = _postgres
    else:
        connection = _mongo.MongoConnection.from_options(**login, auth_database="admin")
        request = _mongo_restore.RestoreRequest(connection=connection, archive_path=spec["archive"],
                                                target_database=spec["target"],
                                                parallel_collections=spec["parallel_collections"])
        engine = _mongo
    phases = {} if pg else time_mongo_phases(_mongo)
    plan = engine.plan_restore(request, read_archive=False)
    planned = time.perf_counter()
    engine.restore(request, plan)
    done = time.perf_counter()
    with open("/proc/self/status", encoding="ascii") as handle:
        hwm_kib = int(re.search(r"VmHWM:\s+(\d+) kB", handle.read()).group(1))
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process only: the pump, the hashes, the driver
    print(json.dumps({"seconds": done - began, "plan_s": planned - began, "restore_s": done - planned,
                      "rss_mib": hwm_kib / 1024, "phases": phases, "cpu_s": usage.ru_utime + usage.ru_stime}))


MONGO_PHASES = {  # the MongoDB library restore's phases: (module, attribute) -> name in the report
    ("_mongo_staging", "Staging.recover_leftovers"): "leftovers",
    ("_mongo_staging", "Staging.begin"): "begin",
    ("_mongo", "read_for_restore"): "mongorestore",
    ("_mongo", "_count"): "server counts",
    ("_mongo", "_create_indexes"): "indexes",
    ("_mongo_staging", "Staging.swap"): "swap",
    ("_mongo_staging", "Staging.drop"): "drops",
}


def time_mongo_phases(mongo_module) -> dict:
    """Wrap the library restore's phases with timers (summed seconds per phase, filled in as they run)."""
    import importlib  # pylint: disable=import-outside-toplevel

    package = mongo_module.__name__.rsplit(".", 1)[0]
    spent: dict = {}
    for (module_name, dotted), label in MONGO_PHASES.items():
        owner = importlib.import_module(f"{package}.{module_name}")
        *classes, attribute = dotted.split(".")
        for name in classes:
            owner = getattr(owner, name)
        raw = owner.__dict__[attribute]
        function = raw.__func__ if isinstance(raw, classmethod) else raw

        def timed(*args, _function=function, _label=label, **kwargs):
            began = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - began

        setattr(owner, attribute, classmethod(timed) if isinstance(raw, classmethod) else timed)
    return spent


def run(argv: list[str], env: dict[str, str] | None = None, ok: bool = True) -> dict:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    if ok and done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {(done.stderr or done.stdout).decode()[-800:]}")
    return {"seconds": time.perf_counter() - began, "stdout": done.stdout}


def measure(variants: dict, repeat: int, drop) -> dict[str, list[dict]]:
    """Every repetition runs every variant once, rotated; each restores into a new name, dropped untimed."""
    names, runs = list(variants), {name: [] for name in variants}
    for rep in range(repeat):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            target = f"bench_r_{uuid.uuid4().hex[:8]}"
            try:
                result = variants[name](target)
            finally:
                drop(target)
            runs[name].append(result)
            log(f"  {rep + 1}/{repeat} {name}: {result['seconds']:.2f} s")
    return runs


def report(title: str, runs: dict[str, list[dict]], raw: str) -> dict:
    medians = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    print(f"\n{title} (median of {len(next(iter(runs.values())))}, load average {os.getloadavg()[0]:.2f})")
    rows = {}
    for name, rs in runs.items():
        extra = ""
        if "rss_mib" in rs[0]:
            extra = (f"  plan {statistics.median(r['plan_s'] for r in rs):.2f} s, restore "
                     f"{statistics.median(r['restore_s'] for r in rs):.2f} s, peak RSS {max(r['rss_mib'] for r in rs):.1f} MiB")
            if rs[0].get("phases"):
                extra += "\n" + " " * 48 + "phases (medians): " + ", ".join(
                    f"{label} {statistics.median(r['phases'].get(label, 0.0) for r in rs):.2f} s"
                    for label in MONGO_PHASES.values())
                extra += f"; CPU of the library's process {statistics.median(r['cpu_s'] for r in rs):.2f} s"
        ratio = medians[name] / medians[raw]
        rows[name] = {"median_s": medians[name], "ratio_raw": ratio, "all_s": [r["seconds"] for r in rs]}
        each = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        print(f"  {name:44} {medians[name]:7.2f} s  {ratio:5.2f}x raw  [{each}]{extra}")
    return rows


def ansible_argv(module: str, params: dict, check: bool = False) -> list[str]:
    return [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-o", "-m", module, "-e", f"ansible_python_interpreter={sys.executable}",
            # ping takes no -a at all: with '-a {}' Ansible refuses it before running anything (what was timed before)
            *(["-a", json.dumps(params)] if params else []), *(["--check"] if check else [])]


def bench_postgres(args, bed, workdir, ansible_env) -> dict:
    bench_dump.gen_postgres(bed, args.pg_size_mb)
    pg_bin = bed["LIFEBOAT_PG_BINDIR"]
    env = dict(os.environ, PGHOST=bed["LIFEBOAT_PG_HOST"], PGPORT=bed["LIFEBOAT_PG_PORT"], PGUSER=bed["LIFEBOAT_PG_USER"],
               PGPASSFILE=bed["LIFEBOAT_PG_PASSFILE"])
    login = {"login_host": bed["LIFEBOAT_PG_HOST"], "login_port": int(bed["LIFEBOAT_PG_PORT"]),
             "login_user": bed["LIFEBOAT_PG_USER"], "login_password_file": bed["LIFEBOAT_PG_PASSWORD_FILE"]}
    log("postgres: one dump with the module (zstd) and one plain pg_dump -Fc")
    dumped = json.loads(re.sub(rb"^[^{]*", b"", run(ansible_argv("lifeboat.ops.postgresql_dump", {
        **login, "database": "bench", "destination": f"{workdir}/pg", "job": "bench"}), ansible_env)["stdout"]))
    archive = dumped["archive"]
    plain_fc = f"{workdir}/bench.dump"
    run([f"{pg_bin}/pg_dump", "-Fc", "-d", "bench", "-f", plain_fc], env)
    log(f"postgres: archive {os.path.getsize(archive) / MB:.0f} MB (plain {dumped['plain_size'] / MB:.0f} MB), "
        f"-Fc file {os.path.getsize(plain_fc) / MB:.0f} MB")

    def drop(target: str) -> None:
        run([f"{pg_bin}/dropdb", "--if-exists", "--force", target], env)

    def raw(script: str):
        return lambda target: run(["bash", "-c", f"set -euo pipefail; {script}", "bench", target], env)

    variants = {
        "raw createdb; zstd -dc | pg_restore": raw(
            f"{pg_bin}/createdb \"$1\"; zstd -dc '{archive}' | {pg_bin}/pg_restore --exit-on-error -d \"$1\""),
        "raw createdb; pg_restore plain -Fc file": raw(
            f"{pg_bin}/createdb \"$1\"; {pg_bin}/pg_restore --exit-on-error -d \"$1\" '{plain_fc}'"),
        "library restore": lambda target: json.loads(run([sys.executable, os.path.abspath(__file__), "--child", json.dumps({
            "engine": "postgresql", "bed": bed, "archive": archive, "target": target})])["stdout"]),
        "module restore (ansible)": lambda target: run(ansible_argv("lifeboat.ops.postgresql_restore", {
            **login, "archive": archive, "target_database": target}), ansible_env),
    }
    runs = measure(variants, args.repeat, drop)
    return report(f"PostgreSQL restore of a {dumped['plain_size'] / MB:.0f} MB plain dump "
                  f"({os.path.getsize(archive) / MB:.0f} MB zstd archive)", runs, "raw createdb; zstd -dc | pg_restore")


def bench_module_split(bed, workdir, ansible_env, archive_dir: str, repeat: int) -> dict:
    """A module run split: Ansible's start-up (ping), + module import and argument handling (a run refused by the
    library's validation before any connection), + connection and catalogue queries (check mode without the
    archive read is not offered: the library's plan phase, from the library runs), + the work."""
    login = {"login_host": bed["LIFEBOAT_PG_HOST"], "login_port": int(bed["LIFEBOAT_PG_PORT"]),
             "login_user": bed["LIFEBOAT_PG_USER"], "login_password_file": bed["LIFEBOAT_PG_PASSWORD_FILE"]}
    archive = next(os.path.join(archive_dir, n) for n in os.listdir(archive_dir) if n.endswith(".zst"))
    steps = {
        "ansible start-up (ansible.builtin.ping)": ansible_argv("ansible.builtin.ping", {}),
        "+ module import, arguments (refused: jobs=0)": ansible_argv("lifeboat.ops.postgresql_restore", {
            **login, "archive": archive, "jobs": 0}),
    }
    runs = {name: [] for name in steps}
    for _rep in range(repeat):
        for name, argv in steps.items():
            runs[name].append(run(argv, ansible_env, ok=False)["seconds"])
    print(f"\nModule run split (median of {repeat})")
    medians = {name: statistics.median(values) for name, values in runs.items()}
    for name, value in medians.items():
        print(f"  {name:48} {value:6.2f} s")
    return medians


MONGO_GEN = 2  # bump when the generated MongoDB data changes


def gen_mongo_source(client, documents: int, collections: int) -> int:
    """``documents`` of about 350 bytes of BSON (words, numbers, a sub-document) spread over ``collections`` in
    bench_restore_src; kept between runs (a marker records what was generated). Returns the bytes of BSON."""
    import bson  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    want = {"gen": MONGO_GEN, "documents": documents, "collections": collections}
    marker = client.lifeboat_bench_meta.restore_src
    found = marker.find_one({"_id": "bench"}) or {}
    if all(found.get(key) == value for key, value in want.items()) and "bench_restore_src" in client.list_database_names():
        return found["bytes"]
    log(f"mongo: generating {documents} documents in {collections} collections of bench_restore_src")
    client.drop_database("bench_restore_src")
    rng = random.Random(7)
    vocab = [hashlib.md5(str(i).encode()).hexdigest()[: 2 + i % 8] for i in range(4096)]
    written = 0
    for first in range(0, documents, 2000):
        batch = [RawBSONDocument(bson.encode({
            "_id": i, "device": f"{i % 5000:08x}", "level": ("debug", "info", "warn", "error")[i % 4],
            "metrics": {"cpu": i % 100, "mem": i * 7919 % 10**9}, "message": " ".join(rng.choices(vocab, k=25 + i % 30)),
        })) for i in range(first, min(documents, first + 2000))]
        written += sum(len(document.raw) for document in batch)
        client.bench_restore_src[f"events_{first // 2000 % collections}"].insert_many(batch, ordered=False)
    marker.replace_one({"_id": "bench"}, {**want, "bytes": written}, upsert=True)
    return written


def bench_mongo(args, bed, workdir, ansible_env) -> dict:
    import pymongo  # pylint: disable=import-outside-toplevel

    client = pymongo.MongoClient(bench_dump.mongo_uri(bed))
    bson_bytes = gen_mongo_source(client, args.mongo_docs, args.mongo_collections)
    # One document: what each variant costs whatever the size (start-up, connections, catalogue, renames).
    client.drop_database("bench_restore_tiny")
    client.bench_restore_tiny.one.insert_one({"_id": 1, "word": "tiny"})
    config = f"{workdir}/mongo-tools.yaml"
    with open(os.open(config, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
        handle.write(f"uri: {json.dumps(bench_dump.mongo_uri(bed))}\n")
    sys.path.insert(0, collections_root(REPO))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.ops.plugins.module_utils import _archive, _mongo, _mongo_restore

    login = {key.lower(): bed[f"LIFEBOAT_MONGO_{key}"] for key in ("HOST", "PORT", "USER", "PASSWORD_FILE")}
    login["port"] = int(login["port"])
    archives = {}
    for database in ("bench_restore_src", "bench_restore_tiny"):
        archives[database] = _mongo.dump(_mongo.DumpRequest(
            _mongo.MongoConnection.from_options(**login, auth_database="admin"),
            _archive.ArchiveOptions(destination=f"{workdir}/mongo", job=database), database=database))["archive"]
    client.drop_database("bench_restore_tiny")
    tools = bed["LIFEBOAT_TOOLS_BIN"]
    parallel = args.mongo_parallel_collections or _mongo_restore.RESTORE_PARALLEL_COLLECTIONS
    module_login = {f"login_{key}": value for key, value in login.items()}

    def raw(database: str, flags: str = ""):
        return lambda target: run(["bash", "-c", (
            f"set -euo pipefail; zstd -dc '{archives[database]}' | {tools}/mongorestore --config='{config}' --archive "
            f"--nsFrom='{database}.*' --nsTo=\"$1.*\" --quiet {flags}"), "bench", target])

    def library(database: str):
        return lambda target: json.loads(run([sys.executable, os.path.abspath(__file__), "--child", json.dumps({
            "engine": "mongodb", "bed": bed, "archive": archives[database], "target": target,
            "parallel_collections": parallel})])["stdout"])

    def module(database: str):
        return lambda target: run(ansible_argv("lifeboat.ops.mongodb_restore", {
            **module_login, "archive": archives[database], "target_database": target,
            "parallel_collections": parallel}), ansible_env)

    raw_name, tiny_raw = "raw zstd -dc | mongorestore --archive", "raw, a 1-document archive"
    log(f"mongo: the library and module restore {parallel} collections at a time")
    # The library's own mongorestore settings (its parallelism defaults, --stopOnError) in the raw pipeline: what the
    # library adds on top of the tool, apart from what its settings gain or lose against the tool's defaults.
    same_flags = (f"--numParallelCollections={parallel} "
                  f"--numInsertionWorkersPerCollection={_mongo_restore.RESTORE_INSERTION_WORKERS} --stopOnError")
    variants = {raw_name: raw("bench_restore_src"),
                "raw, the library's mongorestore settings": raw("bench_restore_src", same_flags),
                "library restore": library("bench_restore_src"),
                **({"module restore (ansible)": module("bench_restore_src")} if args.mongo_module else {}),
                tiny_raw: raw("bench_restore_tiny"), "library, a 1-document archive": library("bench_restore_tiny")}
    runs = measure(variants, args.repeat, client.drop_database)
    client.close()
    tiny = {name: runs.pop(name) for name in (tiny_raw, "library, a 1-document archive")}
    rows = report(f"MongoDB (FerretDB) restore of {args.mongo_docs} documents in {args.mongo_collections} collections "
                  f"({bson_bytes / MB:.0f} MB of BSON, {os.path.getsize(archives['bench_restore_src']) / MB:.1f} MB "
                  "archive)", runs, raw_name)
    report("Fixed costs, the same run: a 1-document archive", tiny, tiny_raw)
    ratio = rows["library restore"]["ratio_raw"]
    print(f"  {'PASS' if ratio <= 1.10 else 'MISS'}: library restore {ratio:.2f}x raw (goal: at most 1.10x)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-size-mb", type=int, default=250, help="size of the PostgreSQL database (pg_database_size)")
    parser.add_argument("--mongo-docs", type=int, default=200000,
                        help="MongoDB documents (about 350 bytes of BSON each; see bench/README.md)")
    parser.add_argument("--mongo-collections", type=int, default=4)
    parser.add_argument("--mongo-module", action="store_true", help="time the mongodb_restore module too")
    parser.add_argument("--mongo-parallel-collections", type=int, default=0,
                        help="parallel_collections of the library and module restores (default: the library's)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-mongo", action="store_true")
    add_testbed_arguments(parser, "/tmp/lifeboat-bench-restore", 25462, 27562)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    bed = bench_dump.testbed(args)
    workdir = tempfile.mkdtemp(prefix="lifeboat-bench-restore-", dir="/var/tmp")
    ansible_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_root(REPO))
    print(f"uptime at the start: {subprocess.run(['uptime'], check=False, capture_output=True, text=True).stdout.strip()}")
    try:
        if not args.skip_pg:
            bench_postgres(args, bed, workdir, ansible_env)
            bench_module_split(bed, workdir, ansible_env, f"{workdir}/pg", args.repeat)
        if not args.skip_mongo:
            bench_mongo(args, bed, workdir, ansible_env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"uptime at the end: {subprocess.run(['uptime'], check=False, capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
