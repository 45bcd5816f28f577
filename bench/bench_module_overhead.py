# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): what a module run costs before any work, per module: payload and start-up.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_module_overhead.py [--repeat 5]
The payload table of every module against community.postgresql's postgresql_db (issue 31, goal <= 1.5x):
  ... bench_module_overhead.py --payload-only --all --reference DIR
where DIR/ansible_collections/community/postgresql is a checkout of that collection (not part of this repository).
No server is needed: every module is run with options its library refuses at its first check (before any
connection), or else with arguments AnsibleModule refuses before the module's work starts (an option its argument
spec does not know, or a required one missing; the module's imports are done by then), so what is timed is Ansible
building and sending the AnsiballZ payload, the module importing its code and handling its arguments. Per module it
reports the payload (bytes of the AnsiballZ file, module_utils files packed
and their source size), the whole `ansible` run and the module's own process alone (the kept AnsiballZ file run
again with `python`, which unpacks it and imports the module from the zip: no cached bytecode, as on a target),
each in wall-clock and CPU seconds (user + system of every process: far less sensitive to a busy machine),
against `ansible.builtin.ping`. Reported, never asserted; medians of --repeat runs in a rotated order.
"""

from __future__ import annotations

import argparse
import base64
import glob
import io
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_dump import REPO, collections_root

# Options each library refuses at its first check, before it connects to anything.
REFUSED = {
    "postgresql_dump": {"database": "bench", "destination": "/nonexistent", "jobs": 0},
    "postgresql_restore": {"archive": "/nonexistent.pgdump.zst", "jobs": 0},
    "mongodb_dump": {"destination": "/nonexistent", "parallel_collections": 0},
    "mongodb_restore": {"archive": "/nonexistent.mongo.zst", "parallel_collections": 0},
    "migration_validate": {"engine": "postgresql", "source": {"database": "a"}, "target": {"database": "b"},
                           "count_tolerance_percent": 101},
    "offsite_copy": {"destination": "/nonexistent", "bucket": "no/bucket"},
}
# Any other module: an option no argument spec knows, refused by AnsibleModule before the module does anything.
UNKNOWN_OPTION = {"bench_refused_option": True}
REFERENCE = "community.postgresql.postgresql_db"
MODULES = os.path.join(REPO, "plugins", "modules")


def every_module() -> list[str]:
    return sorted(name[:-3] for name in os.listdir(MODULES) if name.endswith(".py") and not name.startswith("_"))


def ansible_argv(module: str, params: dict) -> list[str]:
    return [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-o", "-m", module, "-e", f"ansible_python_interpreter={sys.executable}",
            # ping takes no -a at all: with '-a {}' Ansible refuses it before running anything
            *(["-a", json.dumps(params)] if params else [])]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall-clock seconds, CPU seconds (user + system of the process and every descendant) and the output."""
    began, cpu_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=env, check=False, capture_output=True, text=True)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
    return time.perf_counter() - began, cpu, done.stdout + done.stderr


def payload(path: str, collection: str = "lifeboat/ops") -> dict:
    """The AnsiballZ file's size and what its zip holds of the module's collection's module_utils (without the
    package files `__init__.py`, which Ansible adds empty)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    data = base64.b64decode(re.search(r"^zip_data='([^']*)'", text, re.M).group(1))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        ours = [info for info in archive.infolist() if f"/{collection}/plugins/module_utils/" in info.filename
                and not info.filename.endswith("/__init__.py")]
        return {"bytes": len(text), "zip_bytes": len(data), "utils_files": len(ours),
                "utils_kib": sum(i.file_size for i in ours) / 1024,
                "utils": sorted(os.path.basename(i.filename)[:-3] for i in ours)}


def payload_table(names: list[str], sizes: dict[str, dict]) -> None:
    """Each module's payload against postgresql_db's (when measured), and what bounds it: its packed files."""
    reference = sizes.get(REFERENCE)
    print("\nPayload per module (AnsiballZ file; module_utils of its own collection packed in it)")
    print(f"  {'module':36} {'AnsiballZ':>10} {'x ref':>6} {'utils':>5} {'source':>8}")
    for name in names:
        size = sizes[name]
        ratio = f"{size['bytes'] / reference['bytes']:6.2f}" if reference else f"{'':6}"
        print(f"  {name:36} {size['bytes'] / 1024:6.0f} KiB {ratio} {size['utils_files']:5d}"
              f" {size['utils_kib']:4.0f} KiB")
    if reference:
        over = [name for name in names if sizes[name]["bytes"] > 1.5 * reference["bytes"]]
        print(f"  goal <= 1.5x of {REFERENCE} ({1.5 * reference['bytes'] / 1024:.0f} KiB): "
              + (f"{len(over)} over: {' '.join(over)}" if over else "every module within"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--modules", nargs="*", default=list(REFUSED))
    parser.add_argument("--all", action="store_true", help="every module of the collection (instead of --modules)")
    parser.add_argument("--source", default=REPO, help="the collection's checkout (default: this one)")
    parser.add_argument("--reference", metavar="DIR",
                        help=f"a collections dir holding ansible_collections/community/postgresql: adds {REFERENCE}")
    parser.add_argument("--payload-only", action="store_true",
                        help="one run per module, no timing: the payload table only")
    parser.add_argument("--list-utils", action="store_true", help="print the module_utils packed per module")
    args = parser.parse_args()
    if args.payload_only:
        args.repeat = 1
    modules = every_module() if args.all else args.modules
    workdir = tempfile.mkdtemp(prefix="lifeboat-bench-overhead-")
    collections = collections_root(os.path.abspath(args.source))
    if args.reference:
        if not os.path.isdir(os.path.join(args.reference, "ansible_collections", "community", "postgresql")):
            raise SystemExit(f"--reference {args.reference}: no ansible_collections/community/postgresql in it")
        collections += os.pathsep + os.path.abspath(args.reference)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_KEEP_REMOTE_FILES="1",
               ANSIBLE_REMOTE_TMP=os.path.join(workdir, "remote"), PYTHONDONTWRITEBYTECODE="1")
    uptime = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    print(f"uptime at the start: {uptime}")
    try:
        steps = {"ansible.builtin.ping": ansible_argv("ansible.builtin.ping", {})}
        steps.update({name: ansible_argv(f"lifeboat.ops.{name}", REFUSED.get(name, UNKNOWN_OPTION))
                      for name in modules})
        if args.reference:
            steps[REFERENCE] = ansible_argv(REFERENCE, {"name": "bench", **UNKNOWN_OPTION})
        # name -> (wall, cpu) of each run: the whole ansible run, and the module's own process
        ansible_s: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
        module_s: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
        sizes: dict[str, dict] = {}
        names = list(steps)
        for rep in range(args.repeat):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                shutil.rmtree(env["ANSIBLE_REMOTE_TMP"], ignore_errors=True)
                seconds, cpu, output = timed(steps[name], env)
                if ("SUCCESS" if name == "ansible.builtin.ping" else "FAILED") not in output:
                    raise SystemExit(f"{name}: not the expected outcome: {output}")
                ansible_s[name].append((seconds, cpu))
                kept = glob.glob(os.path.join(env["ANSIBLE_REMOTE_TMP"], "*", "AnsiballZ_*.py"))[0]
                sizes[name] = payload(kept, "/".join(name.split(".")[:2]) if "." in name else "lifeboat/ops")
                if not args.payload_only:
                    module_s[name].append(timed([sys.executable, kept], env)[:2])
        if args.payload_only:
            payload_table(names, sizes)
        else:
            print(f"\nModule overhead before any work (median of {args.repeat}; a run refused by the first check)")
            print(f"  {'':48} {'ansible run':>17} {'module process':>17}")
            print(f"  {'module':22} {'AnsiballZ':>10} {'utils':>5} {'source':>8} {'wall':>8} {'CPU':>8} {'wall':>8} {'CPU':>8}")
            for name in names:
                size = sizes[name]
                medians = [statistics.median(run[i] for run in runs) for runs in (ansible_s[name], module_s[name])
                           for i in (0, 1)]
                print(f"  {name:22} {size['bytes'] / 1024:6.0f} KiB {size['utils_files']:5d} {size['utils_kib']:4.0f} KiB"
                      + "".join(f" {value:6.2f} s" for value in medians))
        if args.list_utils:
            for name in names:
                if sizes[name]["utils"]:
                    print(f"  {name}: {' '.join(sizes[name]['utils'])}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    uptime = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    print(f"uptime at the end: {uptime}")


if __name__ == "__main__":
    main()
