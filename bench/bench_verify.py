# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): backup_verify's checksum-and-decompression read against `sha256sum` plus `zstd -t`.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_verify.py
It uses bench_dump.py's own test bed and data generator (state dir /tmp/lifeboat-bench, PostgreSQL on 25442),
dumps the database once into a ~1 GB zstd archive with the library, then times, interleaved per repetition:
``_verify.verify_one`` at level ``stream`` (stored sha256 + zstd -t in one read, as sha256sum and zstd -t do) in a child
process, and the two raw commands run one after the other. Reported, never asserted: goal ratio below 0.6.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_dump  # pylint: disable=wrong-import-position

REPO = bench_dump.REPO
MB = 1e6


def child_main(spec: dict) -> None:
    """Verify one archive in this process and print wall time, CPU and peak RSS as JSON."""
    sys.path.insert(0, bench_dump.collections_root(spec["source"]))
    from ansible_collections.lifeboat.ops.plugins.module_utils import _verify  # pylint: disable=import-outside-toplevel

    archives = _verify.select_archives(archive=spec["archive"])
    request = _verify.VerifyRequest(archives=archives, level=spec["level"], record=False)
    began = time.perf_counter()
    result = _verify.verify_one(archives[0], request)
    seconds = time.perf_counter() - began
    if not result["ok"]:
        raise SystemExit(result["failure"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    json.dump({"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024},
              sys.stdout)


def make_archive(bed: dict[str, str], workdir: str, level: int) -> str:
    sys.path.insert(0, bench_dump.collections_root(REPO))
    from ansible_collections.lifeboat.ops.plugins.module_utils import _postgres, _postgres_module  # pylint: disable=import-outside-toplevel

    params = {"login_host": bed["LIFEBOAT_PG_HOST"], "login_port": int(bed["LIFEBOAT_PG_PORT"]),
              "login_user": bed["LIFEBOAT_PG_USER"], "login_password_file": bed["LIFEBOAT_PG_PASSWORD_FILE"],
              "destination": workdir, "job": "bench", "compression_level": level}
    params.update({key: spec.get("default") for key, spec in _postgres_module.postgres_dump_options().items()})
    params["database"] = "bench"
    bench_dump.log("dumping database bench into a zstd archive with the library")
    return _postgres.dump(_postgres_module.postgres_dump_request(params))["archive"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-size-mb", type=int, default=2700, help="database size; 2700 MB dumps to ~1 GB of zstd -3")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--zstd-level", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    bench_dump.add_testbed_arguments(parser, "/tmp/lifeboat-bench", 25442, 27537)  # bench_dump's test bed and data
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    bed = bench_dump.testbed(args)
    bench_dump.gen_postgres(bed, args.pg_size_mb)
    workdir = tempfile.mkdtemp(prefix="lifeboat-bench-verify-", dir="/var/tmp")  # on disk, unlike a tmpfs /tmp
    atexit.register(shutil.rmtree, workdir, True)
    archive = make_archive(bed, workdir, args.zstd_level)
    stored = os.path.getsize(archive)
    with open(archive + ".manifest.json", encoding="utf-8") as handle:
        plain = json.load(handle)["archive"]["plain_size"]
    bench_dump.log(f"archive {os.path.basename(archive)}: {stored / MB:.0f} MB stored, {plain / MB:.0f} MB plain")

    def ours(level: str):
        spec = json.dumps({"source": REPO, "archive": archive, "level": level})
        return lambda: json.loads(bench_dump.timed([sys.executable, os.path.abspath(__file__), "--child", spec],
                                                   quiet=False)["stdout"])

    def raw() -> dict:
        began = time.perf_counter()
        bench_dump.timed(["sha256sum", archive])
        bench_dump.timed(["zstd", "-q", "-t", archive])
        return {"seconds": time.perf_counter() - began}

    variants = {"backup_verify level=stream": ours("stream"), "sha256sum + zstd -t": raw,
                "sha256sum alone": lambda: bench_dump.timed(["sha256sum", archive]),
                "zstd -t alone": lambda: bench_dump.timed(["zstd", "-q", "-t", archive]),
                "backup_verify level=checksum": ours("checksum")}
    subprocess.run(["cat", archive], stdout=subprocess.DEVNULL, check=True)  # every variant reads from the page cache
    names, runs = list(variants), {name: [] for name in variants}
    for rep in range(args.repeat):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            run = variants[name]()
            run.pop("stdout", None)
            runs[name].append(run)
            bench_dump.log(f"  {rep + 1}/{args.repeat} {name}: {run['seconds']:.2f} s")
    median = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    ratio = median["backup_verify level=stream"] / median["sha256sum + zstd -t"]
    print(f"\narchive {stored / MB:.0f} MB stored (zstd -{args.zstd_level}), {plain / MB:.0f} MB plain; "
          f"medians of {args.repeat}, page cache warm")
    print(f"{'variant':30} {'median s':>8} {'stored MB/s':>11} {'RSS MiB':>7} {'CPU s':>6}")
    for name, rs in runs.items():
        rss = f"{max(r['rss_mib'] for r in rs):7.0f}" if "rss_mib" in rs[0] else " " * 7
        cpu = f"{statistics.median(r['cpu_s'] for r in rs):6.1f}" if "cpu_s" in rs[0] else " " * 6
        print(f"{name:30} {median[name]:8.2f} {stored / MB / median[name]:11.0f} {rss} {cpu}")
    print(f"\n  {'PASS' if ratio < 0.6 else 'MISS'}  backup_verify (checksum + decompression, one read) against "
          f"sha256sum + zstd -t: ratio {ratio:.2f} (goal below 0.6)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other work on the machine counts)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"stored_bytes": stored, "plain_bytes": plain, "runs": runs, "medians": median, "ratio": ratio},
                      handle, indent=2)


if __name__ == "__main__":
    main()
