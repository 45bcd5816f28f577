# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): a Docker named volume archived by the files source, ours against `tar | zstd`.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_volume.py
It creates a named volume ``lifeboat-bench-<run id>-vol`` (label ``lifeboat.bench.run``) with the docker SDK,
fills it from the host, at its Mountpoint, with ``--size-mb`` of mixed files (many small ones in nested folders,
some medium, a few large; half text, half random bytes; seeded, so every run writes the same bytes), times every
variant once per repetition in a rotated order and prints medians, the ratio of ours to the raw ``tar | zstd``, CPU
seconds and our peak RSS, with PASS/MISS: reported, never asserted. The volume is removed at the end (unless
--keep). Exits non-zero only on errors.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import json
import os
import platform
import pstats
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
import bench_container  # pylint: disable=wrong-import-position

import bench_dump  # pylint: disable=wrong-import-position

REPO, MB, log = bench_dump.REPO, bench_dump.MB, bench_dump.log
GEN = "lifeboat-bench-volume gen=1"
MARKER = ".lifeboat-bench"  # in the volume: what was generated there (archived with the rest, 40 bytes)
KIB, MIB = 1024, 1024 * 1024
# Shares of --size-mb: many small files (1-16 KiB, ~20,000 at 1024 MB), some medium (256 KiB - 8 MiB), a few large
# (~170 MB each at 1024 MB; one at smaller sizes) made of 1 MiB blocks of text or random bytes, like a database file.
SMALL, MEDIUM = 0.17, 0.33
LARGE_FILE = 170 * MB


class Content:
    """Seeded bytes: text (words of a fixed vocabulary, zstd -3 packs it ~3x) or random (incompressible)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        letters = "abcdefghijklmnopqrstuvwxyz"
        vocabulary = ["".join(self.rng.choices(letters, k=self.rng.randint(2, 10))) for _word in range(4096)]
        lines = (" ".join(self.rng.choices(vocabulary, k=12)) for _line in range(160_000))
        self.pool = "\n".join(lines).encode()  # ~10 MB, longer than zstd -3's window: slices do not repeat in it

    def text(self, size: int) -> bytes:
        parts, left = [], size
        while left > 0:
            length = min(left, self.rng.randint(4 * KIB, 256 * KIB))
            start = self.rng.randrange(0, len(self.pool) - length)
            parts.append(self.pool[start:start + length])
            left -= length
        return b"".join(parts)

    def either(self, size: int) -> bytes:
        return self.text(size) if self.rng.random() < 0.5 else self.rng.randbytes(size)


def fill(root: str, size_mb: int, seed: int) -> dict[str, int]:
    """Write the mixed files under root (a volume's Mountpoint); returns what was written."""
    content, total = Content(seed), size_mb * MB
    rng = content.rng
    written = {"small": 0, "medium": 0, "large": 0, "bytes": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0}

    def put(path: str, data: bytes, kind: str) -> None:
        full = os.path.join(root, path)
        if not os.path.isdir(os.path.dirname(full)):
            os.makedirs(os.path.dirname(full))
            written["dirs"] += 1
        with open(full, "wb") as handle:
            handle.write(data)
        written[kind] += 1
        written["bytes"] += len(data)

    budget, number = total * SMALL, 0
    while budget > 0:  # uploads/AA/BB/: 100 files a folder, 3 levels deep
        size = rng.randint(1 * KIB, 16 * KIB)
        suffix = "txt" if rng.random() < 0.5 else "bin"
        data = content.text(size) if suffix == "txt" else rng.randbytes(size)
        put(f"uploads/{number // 10_000:02d}/{number // 100 % 100:02d}/file-{number:06d}.{suffix}", data, "small")
        budget -= size
        number += 1
    budget, number = total * MEDIUM, 0
    while budget > 0:
        size = int(min(budget, rng.randint(256 * KIB, 8 * MIB)))
        put(f"media/{number // 20:02d}/item-{number:04d}.dat", content.either(size), "medium")
        budget -= size
        number += 1
    large = max(1, round(total * (1 - SMALL - MEDIUM) / LARGE_FILE))
    for number in range(large):
        size = int(total * (1 - SMALL - MEDIUM) / large)
        path = os.path.join(root, f"data/store-{number}.db")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            for offset in range(0, size, MIB):
                handle.write(content.either(min(MIB, size - offset)))
        written["large"] += 1
        written["bytes"] += size
    os.makedirs(os.path.join(root, "links"))
    for number in range(20):  # a few links, so the index meets every kind of entry it records
        os.symlink(f"../uploads/00/{number:02d}", os.path.join(root, f"links/folder-{number}"))
        os.link(os.path.join(root, "media/00/item-0000.dat"), os.path.join(root, f"links/hard-{number}"))
        written["symlinks"] += 1
        written["hardlinks"] += 1
    with open(os.path.join(root, MARKER), "w", encoding="ascii") as handle:
        handle.write(f"{GEN} size_mb={size_mb} seed={seed}\n")
    return written


def prepare(mountpoint: str, size_mb: int, seed: int) -> None:
    marker = os.path.join(mountpoint, MARKER)
    if os.path.exists(marker):
        with open(marker, encoding="ascii") as handle:
            if handle.read().strip() == f"{GEN} size_mb={size_mb} seed={seed}":
                log(f"reusing the files in {mountpoint}")
                return
    for name in os.listdir(mountpoint):
        full = os.path.join(mountpoint, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)
    began = time.perf_counter()
    written = fill(mountpoint, size_mb, seed)
    os.sync()  # on disk before the timing, so that no variant pays for the writeback
    log(f"wrote {written['bytes'] / MB:.0f} MB in {time.perf_counter() - began:.0f} s: {written}")


def child_main(spec: dict) -> None:
    """In a child process: one files dump as files_backup makes it (the files source's dump_request with the
    module's defaults and ``volumes``, ``destination``, ``job``, then its dump); prints wall and CPU seconds and
    peak RSS."""
    sys.path.insert(0, bench_dump.collections_root(REPO))
    from ansible_collections.lifeboat.ops.plugins.module_utils import _sources  # pylint: disable=import-outside-toplevel

    source = _sources.get("files")
    params = {key: value.get("default") for key, value in source.job_options().items()}
    params.update(destination=spec["dest"], job="bench", volumes=[spec["volume"]], compression_level=spec["level"])
    cpu, began = os.times(), time.perf_counter()
    watcher = bench_container.ChildWatcher()
    profile = cProfile.Profile() if spec["profile"] else None
    request = source.dump_request(params)
    result = profile.runcall(source.dump, request) if profile else source.dump(request)
    seconds, cpu_after = time.perf_counter() - began, os.times()
    children, children_cpu = watcher.stop()
    if profile:  # the main thread only: the stream's pumps and the tar parser run in threads of their own
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    with open("/proc/self/status", encoding="ascii") as handle:
        hwm_kib = int(re.search(r"VmHWM:\s+(\d+) kB", handle.read()).group(1))
    manifest = result["manifest_data"]
    print(json.dumps({"seconds": seconds, "rss_mib": hwm_kib / 1024, "children_rss_mib": children,
                      "children_cpu": children_cpu, "plain": manifest["archive"]["plain_size"],
                      "files": sum(root["files"] for root in manifest["files"]["roots"]),
                      "changed": manifest["files"]["changed_while_read"],
                      "cpu_s": cpu_after.user + cpu_after.system - cpu.user - cpu.system,
                      "children_cpu_s": cpu_after.children_user + cpu_after.children_system
                      - cpu.children_user - cpu.children_system}))


def ours(volume: str, level: int, profile: bool):
    spec = {"volume": volume, "level": level, "profile": profile}

    def run(dest: str) -> dict:
        began = time.perf_counter()
        done = bench_dump.timed([sys.executable, os.path.abspath(__file__), "--child", json.dumps({**spec, "dest": dest})],
                                quiet=False)
        return {**json.loads(done["stdout"]), "process_seconds": time.perf_counter() - began}
    return run


def with_cpu(variant):
    """A variant that also reports the CPU seconds it cost: every process it ran (tar, zstd, our child and its
    children), from RUSAGE_CHILDREN before and after."""
    def run(dest: str) -> dict:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = variant(dest)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {**result, "cpu_s_all": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}
    return run


def our_tar_options() -> list[str]:
    """The options the files source gives tar (POSIX format, sparse files, xattrs, numeric owners)."""
    sys.path.insert(0, bench_dump.collections_root(REPO))
    from ansible_collections.lifeboat.ops.plugins.module_utils import _files_source  # pylint: disable=import-outside-toplevel

    return list(_files_source.TAR_CREATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="bytes of files in the volume (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--zstd-level", type=int, default=3, help="for ours and the raw pipelines alike (3: zstd's default)")
    parser.add_argument("--seed", type=int, default=12, help="of the generated files")
    parser.add_argument("--stages", action="store_true",
                        help="also time tar alone (| cat > /dev/null: GNU tar reads no file when its output is /dev/null), "
                             "with the plain and with our options")
    parser.add_argument("--profile", action="store_true", help="cProfile each of our dumps (to stderr)")
    parser.add_argument("--keep", action="store_true", help="leave the volume (its name is printed)")
    parser.add_argument("--volume", help="use this volume of an earlier --keep run (files kept if same size and seed)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    import docker  # pylint: disable=import-outside-toplevel

    load_start = os.getloadavg()
    client = docker.from_env()
    if args.volume:
        volume = client.volumes.get(args.volume)
    else:
        run_id = uuid.uuid4().hex[:8]
        volume = client.volumes.create(f"lifeboat-bench-{run_id}-vol", labels={"lifeboat.bench.run": run_id})
        if not args.keep:
            atexit.register(volume.remove, force=True)
    mountpoint = client.api.inspect_volume(volume.name)["Mountpoint"]
    log(f"volume {volume.name} at {mountpoint}")
    workdir = tempfile.mkdtemp(prefix="lifeboat-bench-volume-", dir="/var/tmp")  # on disk, unlike a tmpfs /tmp
    atexit.register(shutil.rmtree, workdir, True)
    try:
        prepare(mountpoint, args.size_mb, args.seed)
        level = f"-{args.zstd_level}"
        to_file = f'zstd -q -T0 {level} > "$1"; sync "$1"'  # fsynced, as ours is
        options = our_tar_options()
        member = mountpoint.lstrip("/")
        log("warm-up: tar | cat > /dev/null (every file in the page cache)")  # tar > /dev/null reads no file
        subprocess.run(["bash", "-c", 'set -o pipefail; tar -C "$1" -cf - . | cat > /dev/null', "warm-up", mountpoint],
                       check=True)
        env = dict(os.environ)
        variants = {
            "ours (library, files_backup)": ours(volume.name, args.zstd_level, args.profile),
            "raw tar|zstd": bench_dump.shell(f'tar -C "$2" -cf - . | {to_file}', env, mountpoint),
            "raw tar (our options)|zstd": bench_dump.shell(
                f'tar --create --file=- --directory=/ "${{@:3}}" -- "$2" | {to_file}', env, member, *options),
        }
        if args.stages:
            variants.update({
                "stage: tar|cat >/dev/null": bench_dump.shell('tar -C "$2" -cf - . | cat > /dev/null; : > "$1"', env, mountpoint),
                "stage: tar (our options)|cat >/dev/null": bench_dump.shell(
                    'tar --create --file=- --directory=/ "${@:3}" -- "$2" | cat > /dev/null; : > "$1"', env, member,
                    *options),
            })
        variants = {name: with_cpu(variant) for name, variant in variants.items()}
        log(f"timing {len(variants)} variants x {args.repeat}")
        runs = bench_dump.measure(variants, args.repeat, workdir)
    finally:
        if args.keep:
            log(f"kept volume {volume.name} (remove: docker volume rm {volume.name})")
    results = report(runs, args)
    results.update(load_start=load_start, load_end=os.getloadavg(), volume=volume.name)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.node()}, {os.cpu_count()} cores; load average "
          f"{load_start[0]:.2f} at the start, {results['load_end'][0]:.2f} at the end; "
          f"{time.perf_counter() - bench_dump.START:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    med = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r["cpu_s_all"] for r in rs) for name, rs in runs.items()}
    ours_name, raw_name = "ours (library, files_backup)", "raw tar|zstd"
    mine = runs[ours_name]
    plain, files = statistics.median(r["plain"] for r in mine), mine[0]["files"]
    print(f"\nDocker named volume: {files} files (and links), plain tar stream {plain / MB:.0f} MB, zstd -{args.zstd_level}, "
          f"median of {args.repeat}")
    print(f"{'variant':38} {'median s':>8} {'min s':>6} {'MB/s':>5} {'vs raw':>6} {'stored MB':>9} {'CPU s':>6} {'vs raw':>6}")
    for name, rs in runs.items():
        stored = statistics.median(r["stored"] for r in rs) / MB
        print(f"{name:38} {med[name]:8.2f} {min(r['seconds'] for r in rs):6.2f} {plain / MB / med[name]:5.0f} "
              f"{med[name] / med[raw_name]:6.2f} {stored:9.0f} {cpu[name]:6.2f} {cpu[name] / cpu[raw_name]:6.2f}")
    ratio, cpu_ratio = med[ours_name] / med[raw_name], cpu[ours_name] / cpu[raw_name]
    rss = max(r["rss_mib"] for r in mine)
    own_cpu, children_cpu = statistics.median(r["cpu_s"] for r in mine), statistics.median(r["children_cpu_s"] for r in mine)
    process = statistics.median(r["process_seconds"] for r in mine)
    others = {name: max(r["children_rss_mib"].get(name, 0) for r in mine) for name in mine[0]["children_rss_mib"]}
    by_child = {name: statistics.median(r["children_cpu"].get(name, 0) for r in mine) for name in mine[0]["children_cpu"]}
    print(f"ours: {process:.2f} s for the whole child process (interpreter start and imports included); CPU {own_cpu:.1f} s in "
          f"the library process, {children_cpu:.1f} s in its children ("
          + ", ".join(f"{name} {s:.1f}" for name, s in sorted(by_child.items())) + " s, polled)")
    print(f"ours: peak RSS (VmHWM) {rss:.1f} MiB of the library process (read from /proc/self/status at the end); its "
          "children (polled from /proc every 50 ms): " + ", ".join(f"{name} {mib:.1f}" for name, mib in sorted(others.items())))
    changed = sorted({item for r in mine for item in r["changed"]})
    if changed:
        print(f"ours: tar reported files changed while read: {changed[:3]}")
    goals = []
    for text, value, ok, unit in [("ours / raw tar|zstd <= 1.10 (wall)", ratio, ratio <= 1.10, ""),
                                  ("ours peak RSS < 100 MiB (library process)", rss, rss < 100, " MiB")]:
        goals.append({"goal": text, "value": value, "pass": ok})
        print(f"  {'PASS' if ok else 'MISS'}  {text}: {value:.2f}{unit}" + ("" if ok else "  (goal missed)"))
    print(f"  (CPU: ours / raw tar|zstd {cpu_ratio:.2f})")
    return {"plain_bytes": plain, "files": files, "zstd_level": args.zstd_level, "repeat": args.repeat, "medians": med,
            "cpu_medians": cpu, "ratio": ratio, "cpu_ratio": cpu_ratio, "rss_mib": rss, "goals": goals, "runs": runs}


if __name__ == "__main__":
    main()
