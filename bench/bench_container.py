# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): a PostgreSQL dump by the server container's own pg_dump, ours against `docker exec`.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_container.py
It starts a PostgreSQL 17 container of the test bed's image (scripts/testbed/images.sh builds it) through
tests/integration/containers.py, named ``lifeboat-bench-<run id>-pg17``, loads ``--size-mb`` of generated data
server-side, times every variant once per repetition in a rotated order and prints medians, the ratio of ours to
the raw ``docker exec ... pg_dump | zstd`` and our peak RSS, with PASS/MISS: reported, never asserted. The
container and its volume are removed at the end (unless --keep). Exits non-zero only on errors.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import json
import os
import platform
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_dump  # pylint: disable=wrong-import-position

REPO, MB, log = bench_dump.REPO, bench_dump.MB, bench_dump.log
GEN = "lifeboat-bench-container gen=1"
USER, DATABASE = "bench_owner", "bench"
# Numbers (readings) and text (documents), half the target each, a primary key and a secondary index on both.
# Text: a hex word from a small vocabulary repeated (compressible) and fresh md5 hex (not): zstd -3 packs the
# custom dump about 2x.
PG_SCHEMA = """CREATE TABLE readings (id bigint PRIMARY KEY, sensor int, taken_at timestamptz, value double precision,
  amount numeric(12,2), flags smallint, counter bigint);
CREATE TABLE documents (id bigint PRIMARY KEY, tag text, title text, body text)"""
PG_INDEXES = ["CREATE INDEX readings_sensor_taken ON readings (sensor, taken_at)",
              "CREATE INDEX documents_tag ON documents (tag)"]
PG_FILL = {
    "readings": """INSERT INTO readings SELECT g, g %% 5000, timestamptz '2024-01-01' + g * interval '250 ms',
  random() * 1000, round((random() * 1e7)::numeric, 2), (g %% 16)::smallint, (random() * 1e12)::bigint
FROM generate_series(%s::bigint, %s::bigint) g""",
    "documents": """INSERT INTO documents SELECT g, 'tag-' || (g %% 300), 'Title ' || md5((g %% 20000)::text),
  repeat(substr(md5((g %% 500)::text), 1, 8) || ' ', (1 + g %% 12)::int) || md5(g::text || random()::text) || ' '
    || md5(random()::text)
FROM generate_series(%s::bigint, %s::bigint) g""",
}


def container_bed(run_id: str):
    """tests/integration/containers.py's ContainerBed, naming its containers lifeboat-bench-<run id>-<purpose>."""
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    import containers  # pylint: disable=import-outside-toplevel,import-error

    class BenchBed(containers.ContainerBed):
        def name(self, purpose: str) -> str:
            return f"lifeboat-bench-{self.run_id}-{purpose}"

    return BenchBed.connect(run_id=run_id), containers


def generate(box, size_mb: int) -> int:
    """About size_mb of pg_database_size, built server-side with generate_series (two connections at once)."""
    with box.connect_pg("postgres") as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database'), pg_database_size(oid) FROM pg_database"
                           " WHERE datname = %s", (DATABASE,)).fetchone()
        if row and row[0] == f"{GEN} target_mb={size_mb}":
            log(f"reusing database {DATABASE} ({row[1] / MB:.0f} MB)")
            return row[1]
        # Loading only: the dump reads, and a throw-away container needs no durability.
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off", "max_wal_size = '4GB'"):
            conn.execute(f"ALTER SYSTEM SET {setting}")
        conn.execute("SELECT pg_reload_conf()")
    began = time.perf_counter()
    with box.connect_pg(DATABASE) as conn:
        conn.execute("DROP TABLE IF EXISTS readings, documents")
        conn.execute(PG_SCHEMA)
        # Bytes per row of each table with its indexes, from a sample, then the rows that make half the target each.
        sample = 50_000
        for sql in PG_FILL.values():
            conn.execute(sql, (1, sample))
        for sql in PG_INDEXES:
            conn.execute(sql)
        conn.execute("VACUUM ANALYZE")
        rows = {}
        for table in PG_FILL:
            sample_bytes = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
            rows[table] = int(size_mb * MB / 2 / (sample_bytes / sample))
        for sql in PG_INDEXES:  # built after the load: faster than maintaining them row by row
            conn.execute(f"DROP INDEX {sql.split()[2]}")
    log(f"loading {size_mb} MB: {rows}")

    def fill(table: str) -> None:
        with box.connect_pg(DATABASE) as conn:
            step = 1_000_000
            for first in range(sample + 1, rows[table] + 1, step):
                conn.execute(PG_FILL[table], (first, min(first + step - 1, rows[table])))

    workers = [threading.Thread(target=fill, args=(table,)) for table in PG_FILL]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with box.connect_pg(DATABASE) as conn:
        for sql in PG_INDEXES:
            conn.execute(sql)
        conn.execute("VACUUM (FREEZE, ANALYZE)")  # hint bits set now, not by the first dump
        conn.execute("CHECKPOINT")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        conn.execute(f"COMMENT ON DATABASE {DATABASE} IS '{GEN} target_mb={size_mb}'")
    log(f"loaded {size / MB:.0f} MB in {time.perf_counter() - began:.0f} s")
    return size


class ChildWatcher:
    """Peak RSS (VmHWM) and CPU seconds of each child process of ours, polled from /proc every 50 ms while the dump
    runs (the CPU of a child's last 50 ms can be missed)."""

    def __init__(self) -> None:
        self.peaks: dict[int, tuple[str, int]] = {}
        self.cpu: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            self.sample()

    def sample(self) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children", encoding="ascii") as handle:
                    pids = [int(pid) for pid in handle.read().split()]
            except OSError:
                continue
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        argv = handle.read().split(b"\0")
                    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
                        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", handle.read()).group(1))
                    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                        fields = handle.read().rsplit(") ", 1)[1].split()
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                except (OSError, AttributeError, IndexError):
                    continue  # gone meanwhile
                name = "docker exec helper" if b"_docker_exec" in b" ".join(argv) else os.path.basename(argv[0].decode())
                self.peaks[pid] = (name, max(hwm, self.peaks.get(pid, ("", 0))[1]))

    def stop(self) -> tuple[dict[str, float], dict[str, float]]:
        """Peak RSS (MiB) and CPU seconds by program name."""
        self._done.set()
        self._thread.join()
        rss: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for pid, (name, kib) in self.peaks.items():
            rss[name] = max(rss.get(name, 0), kib / 1024)
            cpu[name] = cpu.get(name, 0) + self.cpu.get(pid, 0)
        return rss, cpu


def child_main(spec: dict) -> None:
    """In a child process: one dump as the postgresql_dump module makes it (_postgres_module.postgres_dump_request with
    the module's defaults and ``container``, then _postgres.dump); prints wall and CPU seconds and peak RSS."""
    sys.path.insert(0, bench_dump.collections_root(REPO))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.lifeboat.ops.plugins.module_utils import _params, _postgres, _postgres_module

    specs = (_postgres_module.postgres_connection_options(), _params.dump_archive_options(), _postgres_module.postgres_dump_options())
    params = {key: value.get("default") for spec_ in specs for key, value in spec_.items()}
    params.update(container=spec["container"], destination=spec["dest"], job="bench", compression_level=spec["level"])
    cpu, began = os.times(), time.perf_counter()
    watcher = ChildWatcher()
    profile = cProfile.Profile() if spec["profile"] else None
    result = (profile.runcall if profile else lambda call, *a: call(*a))(_postgres.dump, _postgres_module.postgres_dump_request(params))
    seconds, cpu_after = time.perf_counter() - began, os.times()
    children, children_cpu = watcher.stop()
    if profile:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    with open("/proc/self/status", encoding="ascii") as handle:
        hwm_kib = int(re.search(r"VmHWM:\s+(\d+) kB", handle.read()).group(1))
    print(json.dumps({"seconds": seconds, "rss_mib": hwm_kib / 1024, "helper_rss_mib": children.get("docker exec helper", 0),
                      "children_rss_mib": children, "children_cpu": children_cpu, "plain": result["manifest_data"]["archive"]["plain_size"],
                      "cpu_s": cpu_after.user + cpu_after.system - cpu.user - cpu.system,
                      "children_cpu_s": cpu_after.children_user + cpu_after.children_system
                      - cpu.children_user - cpu.children_system}))


def ours(container: str, level: int, profile: bool):
    spec = {"container": container, "level": level, "profile": profile}

    def run(dest: str) -> dict:
        began = time.perf_counter()
        done = bench_dump.timed([sys.executable, os.path.abspath(__file__), "--child", json.dumps({**spec, "dest": dest})],
                                quiet=False)
        return {**json.loads(done["stdout"]), "process_seconds": time.perf_counter() - began}
    return run


def helper_command(container: str, argv: list[str], password: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment our pipeline runs a client in the container with (the _docker_exec helper), as the
    library makes them: the password in the environment only."""
    sys.path.insert(0, bench_dump.collections_root(REPO))
    from ansible_collections.lifeboat.ops.plugins.module_utils import _clients  # pylint: disable=import-outside-toplevel

    return _clients.ContainerClient(container).command(argv, {"PGPASSWORD": password}, forward=["PGPASSWORD"])


def cpu_counters(container_pid: int, shim_pid: int) -> dict[str, float]:
    """CPU seconds so far: our waited-for children (the shell pipelines, the docker CLI, our child and its helper and
    zstd), the container's cgroup (pg_dump run by the exec, the server), and the engine (dockerd, containerd and the
    container's shim, which copy the exec's stream; dockerd also serves anyone else's containers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    engine = 0.0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                name, rest = handle.read().split(" (", 1)[1].rsplit(") ", 1)
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
        if name in ("dockerd", "containerd") or pid == str(shim_pid):
            fields = rest.split()
            engine += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return {"here": usage.ru_utime + usage.ru_stime, "container": container_cpu(container_pid), "engine": engine}


def container_cpu(pid: int) -> float:
    """The CPU seconds of the container's cgroup (v1 cpuacct or v2), found from its init process."""
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as handle:
        lines = [line.rstrip("\n").split(":", 2) for line in handle]
    for _number, controllers, path in lines:
        if "cpuacct" in controllers.split(","):
            for mount in ("cpuacct", "cpu,cpuacct"):
                if os.path.exists(f"/sys/fs/cgroup/{mount}{path}/cpuacct.usage"):
                    with open(f"/sys/fs/cgroup/{mount}{path}/cpuacct.usage", encoding="ascii") as handle:
                        return int(handle.read()) / 1e9
    for _number, controllers, path in lines:
        if controllers == "":
            with open(f"/sys/fs/cgroup{path}/cpu.stat", encoding="ascii") as handle:
                return int(re.search(r"usage_usec (\d+)", handle.read()).group(1)) / 1e6
    return 0.0


def with_cpu(variant, container_pid: int, shim_pid: int):
    """A variant that also reports the CPU seconds it cost, here, in the container and in the engine."""
    def run(dest: str) -> dict:
        before = cpu_counters(container_pid, shim_pid)
        result = variant(dest)
        after = cpu_counters(container_pid, shim_pid)
        return {**result, "cpu": {key: after[key] - before[key] for key in after}}
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the database (pg_database_size)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--zstd-level", type=int, default=3, help="for ours and the raw pipelines alike (3: zstd's default)")
    parser.add_argument("--stages", action="store_true",
                        help="also time the parts: pg_dump to /dev/null through the docker CLI and through our exec "
                             "helper, and the helper piped into zstd")
    parser.add_argument("--profile", action="store_true", help="cProfile each of our dumps (to stderr)")
    parser.add_argument("--keep", action="store_true", help="leave the container running (its name is printed)")
    parser.add_argument("--container", help="use this running container of an earlier --keep run (data kept if same size)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    if not shutil.which("docker"):
        raise SystemExit("the docker CLI is needed for the raw pipeline (docker exec ... | zstd)")
    load_start = os.getloadavg()
    try:
        bed, containers = container_bed(f"{uuid.uuid4().hex[:8]}")
    except Exception as exc:  # noqa: BLE001 - ContainerBedError says what to run, in one line
        raise SystemExit(f"bench_container: {exc}") from None
    if args.container:
        info = bed.client.api.inspect_container(args.container)
        env = dict(item.split("=", 1) for item in info["Config"]["Env"] if "=" in item)
        box = containers.Box(info["Name"].lstrip("/"), info["Id"], containers.bridge_address(bed.client.containers.get(info["Id"])),
                             info["Config"]["Image"], 5432, env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"])
    else:
        log(f"starting a PostgreSQL 17 container ({bed.images['PG17_IMAGE']})")
        if not args.keep:
            atexit.register(bed.close)
        box = bed.postgres("pg17", user=USER, database=DATABASE)
    log(f"container {box.name} at {box.ip}")
    workdir = tempfile.mkdtemp(prefix="lifeboat-bench-container-", dir="/var/tmp")  # on disk, unlike a tmpfs /tmp
    atexit.register(shutil.rmtree, workdir, True)
    try:
        db_size = generate(box, args.size_mb)
        # The password reaches the CLI and the helper only through their environment (docker exec -e NAME).
        env = dict(os.environ, PGPASSWORD=box.password)
        level = f"-{args.zstd_level}"
        socket_dump = ["pg_dump", "-Fc", "-Z0", "-U", USER, DATABASE]
        tcp_dump = ["pg_dump", "-Fc", "-Z0", "-h", box.ip, "-U", USER, DATABASE]
        to_file = f'zstd -q -T0 {level} > "$1"; sync "$1"'  # fsynced, as ours is
        log("warm-up: docker exec pg_dump > /dev/null")
        subprocess.run(["docker", "exec", box.id, *socket_dump], check=True, stdout=subprocess.DEVNULL)
        variants = {
            "ours (library, container)": ours(box.name, args.zstd_level, args.profile),
            "raw docker exec pg_dump|zstd": bench_dump.shell(f'docker exec "$2" "${{@:3}}" | {to_file}', env, box.id, *socket_dump),
            "raw docker exec (TCP) pg_dump|zstd": bench_dump.shell(
                f'docker exec -e PGPASSWORD "$2" "${{@:3}}" | {to_file}', env, box.id, *tcp_dump),
        }
        if args.stages:
            helper, helper_env = helper_command(box.id, tcp_dump, box.password)
            variants.update({
                "stage: docker exec (TCP) >/dev/null": bench_dump.shell(
                    'docker exec -e PGPASSWORD "$2" "${@:3}" > /dev/null; : > "$1"', env, box.id, *tcp_dump),
                "stage: our helper >/dev/null": bench_dump.shell('"${@:2}" > /dev/null; : > "$1"', helper_env, *helper),
                "stage: our helper|zstd": bench_dump.shell(f'"${{@:2}}" | {to_file}', helper_env, *helper),
            })
        info = bed.client.api.inspect_container(box.id)
        container_pid = info["State"]["Pid"]
        with open(f"/proc/{container_pid}/stat", encoding="ascii") as handle:
            shim_pid = int(handle.read().rsplit(")", 1)[1].split()[1])  # the container's init is the shim's child
        variants = {name: with_cpu(variant, container_pid, shim_pid) for name, variant in variants.items()}
        log(f"timing {len(variants)} variants x {args.repeat}")
        runs = bench_dump.measure(variants, args.repeat, workdir)
    finally:
        if args.keep:
            log(f"kept container {box.name} (remove: docker rm -f -v {box.name})")
    results = report(runs, db_size, args)
    results.update(load_start=load_start, load_end=os.getloadavg(), container=box.name, image=box.image)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.node()}, {os.cpu_count()} cores; load average "
          f"{load_start[0]:.2f} at the start, {results['load_end'][0]:.2f} at the end; {time.perf_counter() - bench_dump.START:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


def report(runs: dict[str, list[dict]], db_size: int, args: argparse.Namespace) -> dict:
    med = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    ours_name, raw_name = "ours (library, container)", "raw docker exec pg_dump|zstd"
    mine = runs[ours_name]
    plain = statistics.median(r["plain"] for r in mine)
    print(f"\nPostgreSQL 17 in a container: database {db_size / MB:.0f} MB, plain custom dump {plain / MB:.0f} MB, "
          f"zstd -{args.zstd_level}, median of {args.repeat}; raw pipelines through the docker CLI")
    cpu = {name: {key: statistics.median(r["cpu"][key] for r in rs) for key in rs[0]["cpu"]} for name, rs in runs.items()}
    for parts in cpu.values():
        parts["total"] = sum(parts.values())
    print(f"{'variant':38} {'median s':>8} {'min s':>6} {'MB/s':>5} {'vs raw':>6} {'stored MB':>9}  "
          f"{'CPU s: here':>11} {'container':>9} {'engine':>6} {'total':>6} {'vs raw':>6}")
    for name, rs in runs.items():
        stored = statistics.median(r["stored"] for r in rs) / MB
        print(f"{name:38} {med[name]:8.2f} {min(r['seconds'] for r in rs):6.2f} {plain / MB / med[name]:5.0f} "
              f"{med[name] / med[raw_name]:6.2f} {stored:9.0f}  {cpu[name]['here']:11.2f} {cpu[name]['container']:9.2f} "
              f"{cpu[name]['engine']:6.2f} {cpu[name]['total']:6.2f} {cpu[name]['total'] / cpu[raw_name]['total']:6.2f}")
    ratio = med[ours_name] / med[raw_name]
    rss, helper = max(r["rss_mib"] for r in mine), max(r["helper_rss_mib"] for r in mine)
    own_cpu, children_cpu = statistics.median(r["cpu_s"] for r in mine), statistics.median(r["children_cpu_s"] for r in mine)
    process = statistics.median(r["process_seconds"] for r in mine)
    others = {name: max(r["children_rss_mib"].get(name, 0) for r in mine) for name in mine[0]["children_rss_mib"]}
    by_child = {name: statistics.median(r["children_cpu"].get(name, 0) for r in mine) for name in mine[0]["children_cpu"]}
    print(f"ours: {process:.2f} s for the whole child process (interpreter start and imports included); CPU {own_cpu:.1f} s in the "
          f"library process, {children_cpu:.1f} s in its children (" + ", ".join(f"{name} {s:.1f}" for name, s in sorted(by_child.items()))
          + " s, polled)")
    print(f"ours: peak RSS (VmHWM) {rss:.1f} MiB of the library process (read from /proc/self/status at the end), "
          f"{helper:.1f} MiB of its docker exec helper (polled from /proc every 50 ms); every child: "
          + ", ".join(f"{name} {mib:.1f}" for name, mib in sorted(others.items())))
    goals = []
    for text, value, ok, unit in [("ours / raw docker exec pipeline <= 1.10", ratio, ratio <= 1.10, ""),
                                  ("ours peak RSS < 100 MiB (library process)", rss, rss < 100, " MiB"),
                                  ("ours peak RSS < 100 MiB (library process + exec helper)", rss + helper,
                                   rss + helper < 100, " MiB")]:
        goals.append({"goal": text, "value": value, "pass": ok})
        print(f"  {'PASS' if ok else 'MISS'}  {text}: {value:.2f}{unit}" + ("" if ok else "  (goal missed)"))
    return {"database_bytes": db_size, "plain_bytes": plain, "zstd_level": args.zstd_level, "repeat": args.repeat,
            "medians": med, "cpu_medians": cpu, "ratio": ratio, "rss_mib": rss, "helper_rss_mib": helper, "goals": goals, "runs": runs}


if __name__ == "__main__":
    main()
