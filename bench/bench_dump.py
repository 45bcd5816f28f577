# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): lifeboat.ops dumps against the raw shell pipelines and the usual alternatives.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_dump.py
It starts its own test bed (a state dir and ports apart from the shared one), generates the data once
(kept in those servers between runs), times every variant interleaved per repetition and prints the
medians with PASS/MISS against the goals of the "Foundation" issue: reported, never asserted.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import cProfile
import hashlib
import json
import os
import platform
import pstats
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "lifeboat")
ANSIBLE_PYPI = "12.3.0"  # the PyPI `ansible` release (ansible-core 2.19) whose community.postgresql is compared
GEN = "lifeboat-bench gen=1"
MB = 1e6
START = time.perf_counter()
# Text: an 8192-word hex vocabulary -> a pool of 200k sentences -> rows picking sentences by hash, plus md5 hex.
# zstd -3 packs the dump about 2.6x, gzip -6 about 2.1x.
PG_SCHEMA = """CREATE TABLE bench_pool AS SELECT i AS id,
  (SELECT string_agg(substr(md5(k::text), 1, 2 + k % 8), ' ')
     FROM (SELECT (x * 0 + random() * 8191)::int AS k FROM generate_series(1, 10 + i % 30) x) w) AS s
  FROM generate_series(0, 199999) i;
ALTER TABLE bench_pool ADD PRIMARY KEY (id);
CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz, doc jsonb);
CREATE TABLE notes (id bigint PRIMARY KEY, author text, body text)"""
PG_PICK = "JOIN bench_pool p{0} ON p{0}.id = abs(hashint8(g + {1})::bigint) %% 200000\n"
PG_FILL = {
    "events": """INSERT INTO events SELECT g, timestamptz '2024-01-01' + g * interval '1 second', jsonb_build_object(
  'device', md5((g %% 5000)::text), 'trace', md5(random()::text), 'level', (ARRAY['debug','info','warn','error'])[1 + g %% 4],
  'tags', to_jsonb((string_to_array(p1.s, ' '))[1:3 + g %% 4]),
  'metrics', jsonb_build_object('cpu', round((random() * 100)::numeric, 2), 'mem', (random() * 1e9)::bigint,
                                'lat_ms', round((random() * 500)::numeric, 3), 'temp', round((random() * 90)::numeric, 1)),
  'message', p2.s || ' ' || p3.s, 'user', jsonb_build_object('id', abs(hashint8(g + 7)::bigint) %% 100000, 'name', p1.s))
FROM generate_series(%s::bigint, %s::bigint) g
""" + "".join(PG_PICK.format(n, salt) for n, salt in ((1, 0), (2, 1000000007), (3, 2000000011))),
    "notes": """INSERT INTO notes SELECT g, p1.s, concat_ws(' ', p2.s, md5(g::text || random()::text), p3.s, p4.s, md5(random()::text), p5.s)
FROM generate_series(%s::bigint, %s::bigint) g
""" + "".join(PG_PICK.format(n, salt) for n, salt in ((1, 3), (2, 1000000007), (3, 2000000011), (4, 1500000001), (5, 500000003))),
}


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:5.0f}s] {message}", file=sys.stderr, flush=True)


def secret(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.readline().strip()


def collections_root(source: str) -> str:
    """A temp dir holding ansible_collections/lifeboat/ops -> source (as tests/conftest.py does)."""
    root = tempfile.mkdtemp(prefix="lifeboat-bench-collections-")
    atexit.register(shutil.rmtree, root, True)
    os.makedirs(os.path.join(root, "ansible_collections", "lifeboat"))
    os.symlink(source, os.path.join(root, "ansible_collections", "lifeboat", "ops"))
    return root


def export_ref(ref: str, workdir: str) -> tuple[str, str]:
    """The collection as committed at ref (git archive): unaffected by edits in progress in the checkout."""
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", ref], check=True, capture_output=True, text=True).stdout.strip()
    target = os.path.join(workdir, "source")
    os.makedirs(target)
    subprocess.run(f"git -C '{REPO}' archive {commit} | tar -x -C '{target}'", shell=True, check=True)
    return target, commit


def community_collections() -> str:
    """community.postgresql unpacked (once) from the PyPI `ansible` wheel (Galaxy is unreachable)."""
    root = os.path.join(CACHE, f"bench-ansible-{ANSIBLE_PYPI}")
    if not os.path.exists(os.path.join(root, "ansible_collections/community/postgresql/MANIFEST.json")):
        wheel = os.path.join(CACHE, "pypi", f"ansible-{ANSIBLE_PYPI}-py3-none-any.whl")
        if not os.path.exists(wheel):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"ansible=={ANSIBLE_PYPI}",
                            "-d", os.path.dirname(wheel)], check=True)
        partial = tempfile.mkdtemp(dir=CACHE)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial, [n for n in archive.namelist() if n.startswith("ansible_collections/community/postgresql/")])
        shutil.rmtree(root, ignore_errors=True)
        os.rename(partial, root)
    return root


def testbed(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ, LIFEBOAT_TESTBED_DIR=args.testbed_dir, LIFEBOAT_PG_PORT=str(args.pg_port), LIFEBOAT_PG_DURABLE="1",
               LIFEBOAT_MONGO_PORT=str(args.mongo_port), LIFEBOAT_MONGO_NOAUTH_PORT=str(args.mongo_port + 1))
    subprocess.run(["bash", os.path.join(REPO, "scripts/testbed/up.sh")], env=env, check=True, stdout=sys.stderr)
    with open(os.path.join(args.testbed_dir, "env.sh"), encoding="utf-8") as handle:
        bed = dict(re.findall(r"^export (\w+)=(.*)$", handle.read(), re.M))
    os.environ["PATH"] = bed["LIFEBOAT_TOOLS_BIN"] + os.pathsep + os.environ["PATH"]
    return bed


def add_testbed_arguments(parser: argparse.ArgumentParser, testbed_dir: str, pg_port: int, mongo_port: int) -> None:
    """Where a benchmark's own test bed lives (apart from the shared one), and the hidden child-process entry."""
    parser.add_argument("--testbed-dir", default=testbed_dir)
    parser.add_argument("--pg-port", type=int, default=pg_port)
    parser.add_argument("--mongo-port", type=int, default=mongo_port, help="the no-auth FerretDB gets the next port")
    parser.add_argument("--child", help=argparse.SUPPRESS)


def pg_connect(bed: dict[str, str], dbname: str):
    import psycopg  # pylint: disable=import-outside-toplevel
    return psycopg.connect(host=bed["LIFEBOAT_PG_HOST"], port=bed["LIFEBOAT_PG_PORT"], user=bed["LIFEBOAT_PG_USER"],
                           password=secret(bed["LIFEBOAT_PG_PASSWORD_FILE"]), dbname=dbname, autocommit=True)


def gen_postgres(bed: dict[str, str], size_mb: int) -> int:
    tag, target = f"{GEN} target_mb={size_mb}", size_mb * MB
    with pg_connect(bed, "postgres") as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database'), pg_database_size(oid) FROM pg_database"
                           " WHERE datname = 'bench'").fetchone()
        if row and row[0] == tag and row[1] >= 0.9 * target:
            log(f"postgres: reusing database bench ({row[1] / MB:.0f} MB)")
            return row[1]
        log(f"postgres: generating about {size_mb} MB in database bench")
        conn.execute("DROP DATABASE IF EXISTS bench")
        conn.execute("CREATE DATABASE bench")
    with pg_connect(bed, "bench") as conn:
        conn.execute(PG_SCHEMA)

    def fill(table: str) -> None:  # 25k-row slices until the database reaches the size
        with pg_connect(bed, "bench") as conn:
            conn.execute("SET work_mem = '256MB'")
            chunk = 0
            while conn.execute("SELECT pg_database_size('bench')").fetchone()[0] < target:
                conn.execute(PG_FILL[table], (chunk * 25000 + 1, (chunk + 1) * 25000))
                chunk += 1

    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # one table per core
        for future in [pool.submit(fill, table) for table in PG_FILL]:
            future.result()
    with pg_connect(bed, "bench") as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")  # no hint-bit writes during the first timed dump
        conn.execute("CHECKPOINT")
        conn.execute(f"COMMENT ON DATABASE bench IS '{tag}'")
        size = conn.execute("SELECT pg_database_size('bench')").fetchone()[0]
    log(f"postgres: database bench is {size / MB:.0f} MB")
    return size


def mongo_uri(bed: dict[str, str]) -> str:
    password = urllib.parse.quote_plus(secret(bed["LIFEBOAT_MONGO_PASSWORD_FILE"]))
    return f"mongodb://{bed['LIFEBOAT_MONGO_USER']}:{password}@{bed['LIFEBOAT_MONGO_HOST']}:{bed['LIFEBOAT_MONGO_PORT']}/?authSource=admin"


def gen_mongo(bed: dict[str, str], size_mb: int, max_dump_s: float, tool_config: str) -> dict:
    """About size_mb of BSON in bench.events and bench.notes, capped so that one mongodump takes about max_dump_s."""
    import bson  # pylint: disable=import-outside-toplevel
    import pymongo  # pylint: disable=import-outside-toplevel
    from bson.raw_bson import RawBSONDocument  # pylint: disable=import-outside-toplevel

    client = pymongo.MongoClient(mongo_uri(bed))
    meta = client.lifeboat_bench_meta.gen
    want = {"gen": GEN, "target_mb": size_mb, "max_dump_s": max_dump_s}
    found = meta.find_one({"_id": "bench"}) or {}
    if all(found.get(k) == v for k, v in want.items()):
        log(f"mongo: reusing database bench ({found['bytes'] / MB:.0f} MB of BSON)")
        return found
    client.drop_database("bench")
    rng = random.Random(7)
    vocab = [hashlib.md5(str(i).encode()).hexdigest()[: 2 + i % 8] for i in range(8192)]
    pool = [" ".join(rng.choices(vocab, k=10 + i % 30)) for i in range(200000)]

    def say() -> str:
        return pool[rng.randrange(len(pool))]

    def event(i: int) -> dict:
        return {"_id": i, "device": hashlib.md5(str(i % 5000).encode()).hexdigest(), "trace": rng.randbytes(16).hex(),
                "level": ("debug", "info", "warn", "error")[i % 4], "tags": say().split()[: 3 + i % 4],
                "metrics": {"cpu": round(rng.random() * 100, 2), "mem": rng.randrange(10**9), "lat_ms": round(rng.random() * 500, 3)},
                "message": say() + " " + say(), "user": {"id": rng.randrange(100000), "name": say()}}

    def note(i: int) -> dict:
        return {"_id": i, "author": say(), "body": " ".join([say(), rng.randbytes(16).hex(), say(), say(), rng.randbytes(16).hex(), say()])}

    target, written, next_id, started, why = size_mb * MB, 0, 0, time.perf_counter(), "requested size"
    probed = not max_dump_s
    log(f"mongo: generating about {size_mb} MB of BSON in database bench")
    while written < target:
        make, coll = (event, client.bench.events) if next_id // 1000 % 2 == 0 else (note, client.bench.notes)
        docs = [RawBSONDocument(bson.encode(make(i))) for i in range(next_id, next_id + 1000)]
        coll.insert_many(docs, ordered=False)
        written, next_id = written + sum(len(d.raw) for d in docs), next_id + 1000
        if not probed and written >= min(target, 30 * MB):  # how fast does this server feed mongodump?
            began = time.perf_counter()
            subprocess.run(["mongodump", f"--config={tool_config}", "--archive", "--db=bench"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rate, probed = written / (time.perf_counter() - began), True
            started += time.perf_counter() - began  # the insert rate and budget leave the probe out
            if rate * max_dump_s < target:
                target, why = rate * max_dump_s, f"capped: mongodump reads {rate / MB:.1f} MB/s here, {max_dump_s:.0f} s a dump"
                log(f"mongo: {why} -> {target / MB:.0f} MB")
        if time.perf_counter() - started > 300:
            why = "capped: 5 minutes of inserts"
            break
    info = {**want, "_id": "bench", "bytes": written, "docs": next_id, "why": why,
            "insert_mb_s": written / MB / (time.perf_counter() - started)}
    meta.replace_one({"_id": "bench"}, info, upsert=True)
    log(f"mongo: {written / MB:.0f} MB of BSON in {next_id} documents ({why}; inserts at {info['insert_mb_s']:.1f} MB/s)")
    return info


def child_main(spec: dict) -> None:
    """In a child process: one library dump; prints its wall and CPU seconds and peak RSS (VmHWM) as JSON."""
    sys.path.insert(0, collections_root(spec["source"]))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.ops.plugins.module_utils import _archive, _codecs, _mongo, _postgres

    archive = _archive.ArchiveOptions(destination=spec["dest"], job="bench", compression_level=spec["level"],
                                      encryption=_codecs.Encryption(recipients=tuple(spec["recipients"])))
    bed, pg = spec["bed"], spec["engine"] == "postgres"
    login = {key.lower(): bed[f"LIFEBOAT_{'PG' if pg else 'MONGO'}_{key}"] for key in ("HOST", "PORT", "USER", "PASSWORD_FILE")}
    login["port"] = int(login["port"])
    if pg:
        request, dump = _postgres.DumpRequest(_postgres.PgConnection.from_options(**login, database="bench"), archive), _postgres.dump
    else:
        connection = _mongo.MongoConnection.from_options(**login, auth_database="admin")
        request, dump = _mongo.DumpRequest(connection, archive, database="bench"), _mongo.dump
    cpu, began = os.times(), time.perf_counter()
    profile = cProfile.Profile() if spec["profile"] else None
    result = profile.runcall(dump, request) if profile else dump(request)
    seconds, cpu_after = time.perf_counter() - began, os.times()
    if profile:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(18)
    with open("/proc/self/status", encoding="ascii") as handle:
        hwm_kib = int(re.search(r"VmHWM:\s+(\d+) kB", handle.read()).group(1))
    print(json.dumps({"seconds": seconds, "rss_mib": hwm_kib / 1024, "plain": result["manifest_data"]["archive"]["plain_size"],
                      "cpu_s": cpu_after.user + cpu_after.system - cpu.user - cpu.system}))


def timed(argv: list[str], env: dict[str, str] | None = None, quiet: bool = True) -> dict:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet else None, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {(done.stderr or done.stdout or b'').decode()[-800:]}")
    return {"seconds": time.perf_counter() - began, "stdout": done.stdout}


def library(engine: str, bed: dict[str, str], recipients: list[str], args: argparse.Namespace):
    spec = {"engine": engine, "bed": bed, "recipients": recipients, "profile": args.profile, "source": args.source, "level": args.zstd_level}
    return lambda dest: json.loads(timed([sys.executable, os.path.abspath(__file__), "--child", json.dumps({**spec, "dest": dest})],
                                         quiet=False)["stdout"])


def shell(script: str, env: dict[str, str], *args: str):
    return lambda dest: timed(["bash", "-c", f"set -euo pipefail; {script}", "bench", os.path.join(dest, "out"), *args], env)


def ansible(module: str, params: dict, env: dict[str, str]):
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-o",
            "-m", module, "-e", f"ansible_python_interpreter={sys.executable}"]
    return lambda dest: timed([*argv, "-a", json.dumps(params).replace("DEST", dest)], env)


def measure(variants: dict, repeat: int, workdir: str) -> dict[str, list[dict]]:
    """Every repetition runs every variant once, in a rotated order, so drift hits all of them alike."""
    names, runs = list(variants), {name: [] for name in variants}
    for rep in range(repeat):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            dest = tempfile.mkdtemp(dir=workdir)
            run = variants[name](dest)
            run.pop("stdout", None)
            run["stored"] = max(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest))
            shutil.rmtree(dest)
            runs[name].append(run)
            log(f"  {rep + 1}/{repeat} {name}: {run['seconds']:.2f} s")
    return runs


def report(title: str, runs: dict[str, list[dict]], plain: float, raw: dict[str, str], refs: dict[str, str]) -> dict:
    """Medians per variant, printed as a table: ratio to its raw pipeline, speedup against the references."""
    med = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    print(f"\n{title}; plain dump {plain / MB:.0f} MB (MB/s are of that size)")
    print(f"{'variant':34} {'median s':>8} {'min s':>6} {'MB/s':>5} {'vs raw':>6} " + " ".join(f"{k:>7}" for k in refs)
          + f" {'stored MB':>9} {'RSS MiB':>7} {'py CPU s':>8}")
    rows = {}
    for name, rs in runs.items():
        row = {"seconds": med[name], "all_seconds": [r["seconds"] for r in rs], "mb_s": plain / MB / med[name],
               "stored_mb": statistics.median(r["stored"] for r in rs) / MB}
        row.update({"ratio_raw": med[name] / med[raw[name]]} if name in raw else {})
        row.update({label: med[ref] / med[name] for label, ref in refs.items()})
        row.update({"rss_mib": max(r["rss_mib"] for r in rs), "cpu_s": statistics.median(r["cpu_s"] for r in rs)} if "rss_mib" in rs[0] else {})
        cells = [f"{med[name]:8.2f}", f"{min(row['all_seconds']):6.2f}", f"{row['mb_s']:5.0f}"]
        cells += [f"{row[k]:{w}.2f}" if k in row else " " * w for k, w in [("ratio_raw", 6)] + [(k, 7) for k in refs]]
        cells += [f"{row['stored_mb']:9.0f}"] + [f"{row[k]:{w}.1f}" if k in row else " " * w for k, w in (("rss_mib", 7), ("cpu_s", 8))]
        print(f"{name:34} " + " ".join(cells))
        rows[name] = row
    return rows


def check(goals: list, checks: list[tuple[str, float, bool, str]]) -> None:
    for text, value, ok, unit in checks:
        goals.append({"goal": text, "value": value, "pass": ok})
        print(f"  {'PASS' if ok else 'MISS'}  {text}: {value:.2f}{unit}")


def bench_postgres(args: argparse.Namespace, bed: dict[str, str], workdir: str, recipient: str, goals: list) -> dict:
    db_size = gen_postgres(bed, args.pg_size_mb)
    env = dict(os.environ, PGPASSWORD=secret(bed["LIFEBOAT_PG_PASSWORD_FILE"]))  # never on a command line
    pg_dump = os.path.join(bed["LIFEBOAT_PG_BINDIR"], "pg_dump")
    conn = ["-h", bed["LIFEBOAT_PG_HOST"], "-p", bed["LIFEBOAT_PG_PORT"], "-U", bed["LIFEBOAT_PG_USER"], "-d", "bench"]
    log("postgres: warm-up (pg_dump -Fc -Z0 > /dev/null)")
    subprocess.run([pg_dump, "-Fc", "-Z0", *conn], env=env, check=True, stdout=subprocess.DEVNULL)
    login = {"login_host": bed["LIFEBOAT_PG_HOST"], "login_port": int(bed["LIFEBOAT_PG_PORT"]), "login_user": bed["LIFEBOAT_PG_USER"]}
    ansible_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=f"{collections_root(args.source)}:{community_collections()}",
                       ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False", BENCH_PG_PASSWORD=env["PGPASSWORD"])
    pipe, gz = f'"$2" -Fc -Z0 "${{@:3}}" | zstd -q -T0 -{args.zstd_level}', "pigz" if shutil.which("pigz") else "gzip"
    community = f"community .sql.gz ({gz}, ansible)"
    variants = {
        "library zstd": library("postgres", bed, [], args),
        "library zstd+age": library("postgres", bed, [recipient], args),
        "raw pg_dump|zstd|dd": shell(f'{pipe} | dd of="$1" conv=fsync status=none', env, pg_dump, *conn),
        "raw pg_dump|zstd|age|dd": shell(f'{pipe} | age -e -r {recipient} | dd of="$1" conv=fsync status=none', env, pg_dump, *conn),
        "pg_dump -Fc -f FILE": shell('"$2" -Fc -f "$1" "${@:3}"', env, pg_dump, *conn),
        "module zstd+age (ansible)": ansible("lifeboat.ops.postgresql_dump", {
            **login, "login_password_file": bed["LIFEBOAT_PG_PASSWORD_FILE"], "database": "bench", "destination": "DEST",
            "job": "bench", "compression_level": args.zstd_level, "encryption_recipients": [recipient]}, ansible_env),
        community: ansible("community.postgresql.postgresql_db", {
            **login, "login_password": "{{ lookup('env', 'BENCH_PG_PASSWORD') }}", "name": "bench", "state": "dump",
            "target": "DEST/bench.sql.gz"}, ansible_env),
    }
    log(f"postgres: timing {len(variants)} variants x {args.repeat}")
    runs = measure(variants, args.repeat, workdir)
    plain = statistics.median(r["plain"] for r in runs["library zstd"])
    raw = {"library zstd": "raw pg_dump|zstd|dd", "library zstd+age": "raw pg_dump|zstd|age|dd",
           "module zstd+age (ansible)": "raw pg_dump|zstd|age|dd"}
    rows = report(f"PostgreSQL: database {db_size / MB:.0f} MB, zstd -{args.zstd_level}", runs, plain, raw,
                  {"x -Fc": "pg_dump -Fc -f FILE", "x comm": community})
    lib, age, mod = rows["library zstd"], rows["library zstd+age"], rows["module zstd+age (ansible)"]
    rss = max(lib["rss_mib"], age["rss_mib"])
    check(goals, [("pg library zstd / raw pipeline <= 1.10", lib["ratio_raw"], lib["ratio_raw"] <= 1.10, ""),
                  ("pg library zstd+age / raw pipeline <= 1.10", age["ratio_raw"], age["ratio_raw"] <= 1.10, ""),
                  ("pg module zstd+age (ansible) / raw pipeline <= 1.10", mod["ratio_raw"], mod["ratio_raw"] <= 1.10, ""),
                  ("pg library zstd+age >= 4x faster than pg_dump -Fc", age["x -Fc"], age["x -Fc"] >= 4, "x"),
                  ("pg library zstd+age >= 4x faster than community", age["x comm"], age["x comm"] >= 4, "x"),
                  ("pg module zstd+age >= 4x faster than community (both via ansible)", mod["x comm"], mod["x comm"] >= 4, "x"),
                  ("pg library peak RSS < 100 MiB", rss, rss < 100, " MiB")])
    return {"database_bytes": db_size, "plain_bytes": plain, "rows": rows}


def bench_mongo(args: argparse.Namespace, bed: dict[str, str], workdir: str, goals: list) -> dict:
    config = os.path.join(workdir, "mongo.yaml")  # the password reaches mongodump only through this 0600 file
    with open(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
        handle.write(f"uri: {json.dumps(mongo_uri(bed))}\n")
    data = gen_mongo(bed, args.mongo_size_mb, args.mongo_max_dump_s, config)
    variants = {
        "library zstd": library("mongo", bed, [], args),
        "raw mongodump|zstd|dd": shell(f'mongodump --quiet --config="$2" --archive --db=bench | zstd -q -T0 -{args.zstd_level} '
                                       '| dd of="$1" conv=fsync status=none', dict(os.environ), config),
    }
    log(f"mongo: timing {len(variants)} variants x {args.repeat}")
    runs = measure(variants, args.repeat, workdir)
    plain = statistics.median(r["plain"] for r in runs["library zstd"])
    rows = report(f"MongoDB (FerretDB): {data['bytes'] / MB:.0f} MB of BSON in {data['docs']} documents, {data['why']}",
                  runs, plain, {"library zstd": "raw mongodump|zstd|dd"}, {})
    lib = rows["library zstd"]
    check(goals, [("mongo library zstd / raw pipeline <= 1.10", lib["ratio_raw"], lib["ratio_raw"] <= 1.10, ""),
                  ("mongo library peak RSS < 100 MiB", lib["rss_mib"], lib["rss_mib"] < 100, " MiB"),
                  (f"mongo data near the requested {args.mongo_size_mb} MB", data["bytes"] / MB,
                   data["bytes"] >= 0.9 * args.mongo_size_mb * MB, " MB")])
    return {"data": {k: v for k, v in data.items() if k != "_id"}, "plain_bytes": plain, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-size-mb", type=int, default=1000, help="size of the PostgreSQL database (pg_database_size)")
    parser.add_argument("--mongo-size-mb", type=int, default=300, help="BSON bytes of MongoDB documents")
    parser.add_argument("--mongo-max-dump-s", type=float, default=50,
                        help="shrink the MongoDB data so that one mongodump takes about this long (0: never)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-mongo", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--zstd-level", type=int, default=3, help="for our dumps and the raw pipelines alike (3: the default)")
    parser.add_argument("--ref", help="benchmark this git revision (exported) instead of the working tree")
    parser.add_argument("--profile", action="store_true", help="cProfile each library dump (to stderr)")
    add_testbed_arguments(parser, "/tmp/lifeboat-bench", 25442, 27537)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    bed = testbed(args)
    workdir = tempfile.mkdtemp(prefix="lifeboat-bench-", dir="/var/tmp")  # on disk, unlike a tmpfs /tmp
    atexit.register(shutil.rmtree, workdir, True)
    args.source, commit = export_ref(args.ref, workdir) if args.ref else (REPO, "working tree")
    subprocess.run(["age-keygen", "-o", f"{workdir}/age.key"], check=True, capture_output=True)
    with open(f"{workdir}/age.key", encoding="ascii") as handle:
        recipient = re.search(r"public key: (age1\w+)", handle.read()).group(1)
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": f"{platform.node()}, {os.cpu_count()} cores, "
                     f"{platform.platform()}", "source": commit, "zstd_level": args.zstd_level, "loadavg_start": os.getloadavg(), "goals": []}
    if not args.skip_pg:
        results["postgres"] = bench_postgres(args, bed, workdir, recipient, results["goals"])
    if not args.skip_mongo:
        results["mongo"] = bench_mongo(args, bed, workdir, results["goals"])
    results["loadavg_end"] = os.getloadavg()
    print(f"\n{results['date']}, {results['machine']}; lifeboat.ops {commit}; load average {results['loadavg_start'][0]:.2f} "
          f"at the start, {results['loadavg_end'][0]:.2f} at the end (other work on the machine counts); {time.perf_counter() - START:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
