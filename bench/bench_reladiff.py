# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): migration_validate (library and module) against reladiff on the same PostgreSQL tables.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_reladiff.py
It uses bench_validate.py's test bed and tables (state dir /tmp/lifeboat-bench-validate, PostgreSQL 25452: the
tables are built once and shared with that benchmark): for N rows (1,000,000 and 5,000,000), source bench_src_N,
an equal target bench_tgt_N, and a target bench_chg_N that differs from the source in exactly one row (a template
copy of the source, then one UPDATE of one column of row id = N / 2 + 1; kept between runs like the others).
reladiff (from PyPI, with its PostgreSQL driver) is installed into the benchmark's own venv,
~/.cache/lifeboat/bench-reladiff-VERSION, created when missing. Per size and case (equal, one changed row), in a
rotated order, medians of --repeat:
  - library: _validate.validate() with checks [content] in a child process (wall, peak RSS);
  - module: `ansible localhost -m lifeboat.ops.migration_validate` with checks and required_checks [content];
  - reladiff: its CLI, cross-database (hashdiff), every column (-c %), key id, with its best --threads (each of
    --threads-candidates is tried once on the smallest size's changed case first, and all are printed).
Each variant's answer is checked: nothing on the equal case, exactly the changed row's key on the other (a variant
that answers anything else is marked WRONG). Passwords never reach argv: the module and the library read the test
bed's password file, reladiff gets a URL without a password and PGPASSWORD in its environment.
Goals (PASS/MISS, never asserted): the module at least 2x faster than reladiff per size and case.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# One test bed, one generator and one set of tables with bench_validate.py.
from bench_validate import gen_pg  # pylint: disable=wrong-import-position

from bench_dump import (  # pylint: disable=wrong-import-position
    CACHE,
    REPO,
    add_testbed_arguments,
    collections_root,
    log,
    pg_connect,
    secret,
    testbed,
)

GEN = "lifeboat-bench-reladiff gen=1"
RELADIFF = "0.6.0"
VARIANTS = ("library", "module", "reladiff")


def changed_id(rows: int) -> int:
    return rows // 2 + 1


def gen_changed(bed: dict[str, str], rows: int, source: str) -> str:
    """bench_chg_N: the source's copy with one row changed (amount + 0.01 at id N/2 + 1); rebuilt with the source."""
    changed = f"bench_chg_{rows}"
    with pg_connect(bed, "postgres") as conn:
        source_oid = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (source,)).fetchone()[0]
        tag = f"{GEN} rows={rows} id={changed_id(rows)} source_oid={source_oid}"
        found = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                             (changed,)).fetchone()
        if found and found[0] == tag:
            log(f"postgres: reusing {changed} (row id={changed_id(rows)} changed)")
            return changed
        log(f"postgres: copying {source} into {changed}, changing row id={changed_id(rows)}")
        conn.execute(f"DROP DATABASE IF EXISTS {changed}")
        conn.execute(f"CREATE DATABASE {changed} TEMPLATE {source}")
    with pg_connect(bed, changed) as conn:
        done = conn.execute("UPDATE t SET amount = amount + 0.01 WHERE id = %s", (changed_id(rows),))
        if done.rowcount != 1:
            raise SystemExit(f"{changed}: expected to change one row, changed {done.rowcount}")
        conn.execute("VACUUM (FREEZE, ANALYZE) t")
    with pg_connect(bed, "postgres") as conn:
        conn.execute(f"COMMENT ON DATABASE {changed} IS '{tag}'")
    return changed


def reladiff_venv(version: str) -> str:
    """The reladiff CLI in its own venv under ~/.cache/lifeboat (created, and reladiff installed, when missing)."""
    venv = os.path.join(CACHE, f"bench-reladiff-{version}")
    cli = os.path.join(venv, "bin", "reladiff")
    if not os.path.exists(os.path.join(venv, ".installed")):
        log(f"creating {venv} and installing reladiff[postgresql]=={version} from PyPI")
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet",
                        f"reladiff[postgresql]=={version}"], check=True)
        with open(os.path.join(venv, ".installed"), "w", encoding="utf-8") as handle:
            handle.write(version + "\n")
    reported = subprocess.run([cli, "--version"], check=True, capture_output=True, text=True).stdout.strip()
    if version not in reported:
        raise SystemExit(f"{cli} reports {reported!r}, not {version}")
    return cli


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu(testbed_dir: str) -> float:
    """CPU seconds of the test bed's PostgreSQL so far: the postmaster, its live children and the children it reaped
    (each connection's backend exits at disconnect), so a variant's server work shows on a busy machine too."""
    with open(os.path.join(testbed_dir, "pg", "postmaster.pid"), encoding="utf-8") as handle:
        postmaster = int(handle.readline())
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: int) -> list[str]:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()

    own = fields(postmaster)
    total = sum(int(value) for value in own[11:15])  # utime, stime, cutime, cstime
    with open(f"/proc/{postmaster}/task/{postmaster}/children", encoding="utf-8") as handle:
        for child in handle.read().split():
            try:
                total += sum(int(value) for value in fields(int(child))[11:13])
            except FileNotFoundError:  # exited meanwhile: counted in the postmaster's cutime once reaped
                pass
    return total / tick


def run_timed(argv: list[str], env: dict[str, str] | None = None,
              testbed_dir: str | None = None) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (this command and its descendants; the servers') of one command, and its outcome."""
    server_before = server_cpu(testbed_dir) if testbed_dir else 0.0
    cpu_before, began = cpu_of_children(), time.perf_counter()
    done = subprocess.run(argv, env=env, check=False, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - began, cpu_of_children() - cpu_before
    if testbed_dir:
        time.sleep(0.2)  # the backends' exit reaped by the postmaster
    return wall, cpu, (server_cpu(testbed_dir) - server_before) if testbed_dir else 0.0, done


def found_keys(result: dict) -> list[str]:
    """The keys the content check of table public.t names as different, e.g. ['changed id=500001']."""
    found = []
    for check in result.get("checks", []):
        if check["category"] == "content" and check["object"] == "public.t":
            found += [f"{d['kind']} {d['key']}" for d in check["differences"]]
            if check["difference_count"] > len(check["differences"]):
                found.append(f"... {check['difference_count']} in all")
    return found


# ---------------------------------------------------------------- the three variants


def child_main(spec: dict) -> None:
    """In a child process: one content comparison through the library; wall, peak RSS and the keys found."""
    sys.path.insert(0, collections_root(spec["source"]))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.ops.plugins.module_utils import _validate, _validate_core

    bed = spec["bed"]
    login = {"login_host": bed["LIFEBOAT_PG_HOST"], "login_port": int(bed["LIFEBOAT_PG_PORT"]),
             "login_user": bed["LIFEBOAT_PG_USER"], "login_password_file": bed["LIFEBOAT_PG_PASSWORD_FILE"]}
    request = _validate.ValidateRequest(
        engine="postgresql",
        source=_validate.endpoint({**login, "database": spec["db_source"]}, "postgresql", "source"),
        target=_validate.endpoint({**login, "database": spec["db_target"]}, "postgresql", "target"),
        options=_validate_core.Options(checks=("content",), required=("content",)))
    began = time.perf_counter()
    result = _validate.validate(request)
    wall = time.perf_counter() - began
    with open("/proc/self/status", encoding="utf-8") as handle:
        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", handle.read()).group(1)) / 1024
    print(json.dumps({"wall": wall, "rss_mib": hwm, "passed": result["passed"], "found": found_keys(result),
                      "content": result["content"]}))


def run_library(ctx: dict, source: str, target: str, checkout: str = REPO) -> dict:
    spec = {"source": checkout, "bed": ctx["bed"], "db_source": source, "db_target": target}
    wall, cpu, server, done = run_timed([sys.executable, __file__, "--child", json.dumps(spec)], None, ctx["dir"])
    if done.returncode != 0:
        raise SystemExit(f"library child failed: {done.stderr.strip()[-2000:]}")
    answer = json.loads(done.stdout)
    # The child's own figure leaves out the interpreter's start and imports; the process's wall is what is compared.
    return {"wall": wall, "cpu": cpu, "server_cpu": server, "inner_wall": answer["wall"], "rss_mib": answer["rss_mib"],
            "found": answer["found"], "content": answer["content"]}


def run_module(ctx: dict, source: str, target: str) -> dict:
    bed = ctx["bed"]
    login = {"login_host": bed["LIFEBOAT_PG_HOST"], "login_port": int(bed["LIFEBOAT_PG_PORT"]),
             "login_user": bed["LIFEBOAT_PG_USER"], "login_password_file": bed["LIFEBOAT_PG_PASSWORD_FILE"]}
    params = {"engine": "postgresql", "source": {**login, "database": source}, "target": {**login, "database": target},
              "checks": ["content"], "required_checks": ["content"]}
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-o", "-m", "lifeboat.ops.migration_validate", "-a", json.dumps(params),
            "-e", f"ansible_python_interpreter={sys.executable}"]
    wall, cpu, server, done = run_timed(argv, ctx["ansible_env"], ctx["dir"])
    match = re.search(r"^localhost \| (SUCCESS|FAILED!|CHANGED) => (\{.*\})\s*$", done.stdout, re.M)
    if not match:
        raise SystemExit(f"module: unexpected output: {(done.stdout + done.stderr)[-2000:]}")
    result = json.loads(match.group(2))
    if "checks" not in result:
        raise SystemExit(f"module failed before its checks: {result.get('msg')}")
    return {"wall": wall, "cpu": cpu, "server_cpu": server, "found": found_keys(result), "content": result["content"]}


def run_reladiff(ctx: dict, source: str, target: str, threads: int | None = None) -> dict:
    bed = ctx["bed"]
    url = f"postgresql://{bed['LIFEBOAT_PG_USER']}@{bed['LIFEBOAT_PG_HOST']}:{bed['LIFEBOAT_PG_PORT']}"
    argv = [ctx["reladiff"], f"{url}/{source}", "t", f"{url}/{target}", "t", "-k", "id", "-c", "%",
            "-j", str(threads or ctx["threads"]), "--json"]
    wall, cpu, server, done = run_timed(argv, ctx["reladiff_env"], ctx["dir"])
    if done.returncode != 0:
        raise SystemExit(f"reladiff failed: {done.stderr.strip()[-2000:]}")
    # One JSON line per differing row version: ["-", [key, ...]] (source) and ["+", [key, ...]] (target).
    sides: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        if line.strip():
            sign, values = json.loads(line)
            sides.setdefault(values[0], set()).add(sign)
    found = [{"+-": "changed", "-": "missing", "+": "extra"}["".join(sorted(signs))] + f" id={key}"
             for key, signs in sorted(sides.items())]
    return {"wall": wall, "cpu": cpu, "server_cpu": server, "found": found}


def run_ping(ctx: dict, _source: str, _target: str) -> dict:
    """Ansible's own start-up: `ansible localhost -m ansible.builtin.ping`, the floor of any module run."""
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-o", "-m", "ansible.builtin.ping", "-e", f"ansible_python_interpreter={sys.executable}"]
    wall, cpu, server, done = run_timed(argv, ctx["ansible_env"], ctx["dir"])
    if "SUCCESS" not in done.stdout:
        raise SystemExit(f"ping: unexpected output: {(done.stdout + done.stderr)[-2000:]}")
    return {"wall": wall, "cpu": cpu, "server_cpu": server, "found": []}


RUNNERS = {"library": run_library, "module": run_module, "reladiff": run_reladiff, "ping": run_ping}


# ---------------------------------------------------------------- the run


def expected(case: str, rows: int) -> list[str]:
    return [] if case == "equal" else [f"changed id={changed_id(rows)}"]


def pick_threads(ctx: dict, args: argparse.Namespace, rows: int, source: str, target: str) -> dict[int, dict]:
    """Each candidate --threads once on the changed case; the fastest that finds exactly the row is used."""
    tried = {}
    for threads in args.threads_candidates:
        tried[threads] = run_reladiff(ctx, source, target, threads)
        ok = tried[threads]["found"] == expected("changed", rows)
        log(f"reladiff --threads {threads}: {tried[threads]['wall']:.2f} s{'' if ok else ' WRONG ' + str(tried[threads]['found'])}")
    good = {threads: run for threads, run in tried.items() if run["found"] == expected("changed", rows)}
    if not good:
        raise SystemExit("reladiff did not find exactly the changed row with any --threads")
    ctx["threads"] = min(good, key=lambda threads: good[threads]["wall"])
    print(f"reladiff --threads on {rows} rows, one changed row, once each: "
          + ", ".join(f"{threads}: {run['wall']:.2f} s (CPU {run['cpu']:.2f} + server {run['server_cpu']:.2f} s)"
                      for threads, run in tried.items())
          + f" -> {ctx['threads']}")
    return tried


def bench_size(ctx: dict, args: argparse.Namespace, rows: int, tables: dict[str, tuple[str, str]], goals: list) -> dict:
    runs: dict[tuple[str, str], list[dict]] = {(case, variant): [] for case in tables for variant in VARIANTS}
    runs[("equal", "ping")] = []
    order = [(case, variant) for case in tables for variant in VARIANTS] + [("equal", "ping")]
    for repetition in range(args.repeat):
        shift = repetition % len(order)
        for case, variant in order[shift:] + order[:shift]:
            source, target = tables[case]
            run = RUNNERS[variant](ctx, source, target)
            run["right"] = run["found"] == expected(case, rows)
            runs[(case, variant)].append(run)
            log(f"{rows} {case:7} {variant:8} {run['wall']:6.2f} s{'' if run['right'] else '  WRONG: ' + str(run['found'])}")
    out = {}
    for case in tables:
        print(f"PostgreSQL, {rows} rows, {case} (median of {args.repeat}, load average {os.getloadavg()[0]:.2f}):")
        medians = {}
        for variant in VARIANTS:
            series = runs[(case, variant)]
            wall = statistics.median(r["wall"] for r in series)
            cpu = statistics.median(r["cpu"] for r in series)
            server = statistics.median(r["server_cpu"] for r in series)
            medians[variant] = wall
            right = all(r["right"] for r in series)
            extra = ""
            if variant == "library":
                extra = (f"  in-process {statistics.median(r['inner_wall'] for r in series):.2f} s,"
                         f" peak RSS {max(r['rss_mib'] for r in series):.1f} MiB")
            elif variant == "reladiff":
                extra = f"  (--threads {ctx['threads']})"
            label = {"library": "library (child process)", "module": "module (ansible -m)",
                     "reladiff": f"reladiff {args.reladiff_version}"}[variant]
            print(f"  {label:26} {wall:7.2f} s  CPU {cpu:5.2f} + server {server:5.2f} s  [{', '.join(format(r['wall'], '.1f') for r in series)}]"
                  f"  found {series[-1]['found'] or 'nothing'}{'' if right else '  WRONG'}{extra}")
            out[f"{case}_{variant}"] = {"wall": wall, "cpu": cpu, "server_cpu": server, "runs": series, "right": right}
        for variant in ("library", "module"):
            print(f"  reladiff / {variant}: {medians['reladiff'] / medians[variant]:.2f}x")
        # Where the module's time goes: Ansible's own start-up (ping), the library's connections and catalogue,
        # its content comparison (content.seconds), and the rest (payload, module import, arguments, result).
        ping = statistics.median(r["wall"] for r in runs[("equal", "ping")])
        library_runs = runs[(case, "library")]
        inner = statistics.median(r["inner_wall"] for r in library_runs)
        compare = statistics.median(r["content"]["seconds"] for r in library_runs)
        print(f"  module split: Ansible start-up (ping) {ping:.2f} s, library {inner:.2f} s (content comparison"
              f" {compare:.2f} s, connections and catalogue {inner - compare:.2f} s), the rest"
              f" {medians['module'] - ping - inner:.2f} s (payload, module import, arguments, result)")
        speedup = medians["reladiff"] / medians["module"]
        both_right = out[f"{case}_module"]["right"] and out[f"{case}_reladiff"]["right"]
        goals.append((f"module >= 2x faster than reladiff, {rows} rows, {case}"
                      + ("" if both_right else " (a WRONG answer)"), speedup, speedup >= 2 and both_right, "x"))
    return out


def compare_library(args: argparse.Namespace, bed: dict[str, str]) -> None:
    ctx = {"bed": bed, "dir": args.testbed_dir}
    for rows in args.rows:
        source, _target = gen_pg(bed, rows)
        changed = gen_changed(bed, rows, source)
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for repetition in range(args.repeat):
            for label in (("before", "after") if repetition % 2 == 0 else ("after", "before")):
                runs[label].append(run_library(ctx, source, changed, args.library_before if label == "before" else REPO))
        print(f"library on {rows} rows, one changed row (median of {args.repeat}, load average {os.getloadavg()[0]:.2f}):")
        for label, series in runs.items():
            print(f"  {label:7} {statistics.median(r['wall'] for r in series):6.2f} s"
                  f"  server CPU {statistics.median(r['server_cpu'] for r in series):5.2f} s"
                  f"  found {series[-1]['found']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reladiff-version", default=RELADIFF)
    parser.add_argument("--threads-candidates", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, help="reladiff's --threads (skips trying the candidates)")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--library-before", metavar="DIR",
                        help="only the library, this checkout against another one (e.g. a git archive of an older"
                             " commit), interleaved, on the changed case of each size")
    add_testbed_arguments(parser, "/tmp/lifeboat-bench-validate", 25452, 27547)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    cli = reladiff_venv(args.reladiff_version)
    bed = testbed(args)
    uptime = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    print(f"uptime at the start: {uptime}; {os.cpu_count()} cores")
    if args.library_before:
        compare_library(args, bed)
        return
    ctx = {"bed": bed, "dir": args.testbed_dir, "reladiff": cli, "threads": args.threads,
           "ansible_env": dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_root(REPO)),
           # reladiff takes a URL; the password stays out of it (and so out of argv): libpq reads PGPASSWORD.
           # COLUMNS: its rich console would otherwise wrap the JSON lines at 80 characters.
           "reladiff_env": dict(os.environ, PGPASSWORD=secret(bed["LIFEBOAT_PG_PASSWORD_FILE"]), COLUMNS="100000")}
    sizes = {}
    started = time.perf_counter()
    for rows in args.rows:
        source, target = gen_pg(bed, rows)
        sizes[rows] = {"equal": (source, target), "changed": (source, gen_changed(bed, rows, source))}
    log(f"tables ready in {time.perf_counter() - started:.0f} s")
    goals: list = []
    out: dict = {"threads_tried": {}}
    began = time.perf_counter()
    if ctx["threads"] is None:
        smallest = min(sizes)
        tried = pick_threads(ctx, args, smallest, *sizes[smallest]["changed"])
        out["threads_tried"] = {threads: run["wall"] for threads, run in tried.items()}
    for rows, tables in sizes.items():
        out[rows] = bench_size(ctx, args, rows, tables, goals)
    for name, value, ok, unit in goals:
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {value:.2f}{unit}")
    uptime = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    print(f"uptime at the end: {uptime}; measured in {time.perf_counter() - began:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"results": out, "goals": goals, "threads": ctx["threads"]}, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
