# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup playbook over real SSH on a fleet of 20 hosts (systemd containers with sshd, tests/integration/fleet.py),
with forks 1, 5 and 10, pipelining on and off: wall time, and the controller's CPU per host (user + system of
ansible-playbook and everything it started: its forks and their ssh clients, from getrusage(RUSAGE_CHILDREN)).

    source $LIFEBOAT_TESTBED_DIR/env.sh
    "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_fleet.py [--hosts 20] [--forks 1 5 10] [--repeat 1]

Each host has one job (every fourth host two) dumping the test bed's sample PostgreSQL database, verified at level
structure, no prune. A benchmark, not a test: it prints a table and never fails on a figure.

With --faults, the fleet carries what one broken host or job looks like (b01: a second job with a wrong password;
b02: a destination on an 8 KiB tmpfs; u1 and u2: inventory entries where no sshd listens) and each run also prints
which hosts the play recap and the artifact (set_stats) name as failed or unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "shared"))  # local_ports
# The checkout as the collection lifeboat.ops on ANSIBLE_COLLECTIONS_PATH, as the tests have it.
runpy.run_path(os.path.join(HERE, "..", "tests", "conftest.py"))

from fleet import Fleet  # noqa: E402  pylint: disable=wrong-import-position,import-error
from local_ports import free_ports  # noqa: E402  pylint: disable=wrong-import-position,import-error

from testbed import PG_SECOND, PG_SOURCE, REPO_ROOT, PgServer, collections_root, module_env  # noqa: E402  pylint: disable=wrong-import-position,import-error


def inventory(fleet: Fleet, pg: PgServer, hosts: list[str], path: str, faults: bool) -> None:
    login = {"engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host, "login_port": pg.port,
             "login_user": pg.user, "login_password": pg.password}
    entries = {}
    for index, host in enumerate(hosts):
        jobs = [{"name": "journal", **login}] + ([{"name": "second", **login}] if index % 4 == 0 else [])
        if faults and host == "b01":
            jobs.append({**login, "name": "badpass", "login_password": "not the password"})
        entries[host] = {**fleet.host_vars(host), "backup_jobs": jobs}
    if faults:
        for host, port in zip(UNREACHABLE, free_ports(len(UNREACHABLE)), strict=True):
            entries[host] = {**fleet.host_vars_for_port(port), "backup_jobs": [{"name": "journal", **login}]}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"all": {"hosts": entries, "vars": {"backup_prune": False}}}, handle)


UNREACHABLE = ["u1", "u2"]


def failures(stdout: str) -> str:
    """The hosts the play recap counts as failed or unreachable, and the failed jobs of the artifact."""
    recap = {}
    for line in stdout[stdout.rfind("PLAY RECAP"):].splitlines()[1:]:
        match = re.match(r"(\S+)\s+: (.*)", line)
        if match:
            recap[match[1]] = dict(re.findall(r"(\w+)=(\d+)", match[2]))
    stats = re.search(r"RUN: (\{.*\})", stdout[stdout.rfind("CUSTOM STATS"):])
    outcome = json.loads(stats[1]).get("lifeboat_backup_outcome", {}) if stats else {}
    named = sorted(f"{host} {entry.get('status')}" + "".join(f" [{line.split(':')[0]}]"
                                                             for line in entry.get("failed", []))
                   for host, entry in outcome.items() if entry.get("status") != "ok")
    return (f"recap failed {sorted(h for h, c in recap.items() if c.get('failed') != '0')}, "
            f"unreachable {sorted(h for h, c in recap.items() if c.get('unreachable') != '0')}; "
            f"artifact {named}; {len(outcome)} hosts in the artifact")


def run(inventory_path: str, forks: int, pipelining: bool, work: str, faults: bool) -> tuple[float, float, int]:
    """One playbook run: wall seconds, controller CPU seconds (the run's process tree), exit status."""
    env = {**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_SHOW_CUSTOM_STATS": "1", "ANSIBLE_STDOUT_CALLBACK": "default",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_PIPELINING": "1" if pipelining else "0",
           "ANSIBLE_LOCAL_TEMP": os.path.join(work, "ansible-tmp")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "lifeboat.ops.backup",
                           "-i", inventory_path, "-f", str(forks)], capture_output=True, text=True, env=env,
                          check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if faults:
        print(f"  forks {forks}, pipelining {pipelining}: rc {done.returncode}; {failures(done.stdout)}", flush=True)
    elif done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-2000:])
    return wall, cpu, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--forks", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (the median is shown)")
    parser.add_argument("--faults", action="store_true", help="a wrong password, a full destination, 2 hosts down")
    args = parser.parse_args()
    pg = PgServer()
    hosts = [f"b{index:02d}" for index in range(1, args.hosts + 1)]
    # The sample databases, named with this run's id (testbed.RUN_ID), dropped at the end.
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "testbed", "seed.py")], check=True,
                   capture_output=True)
    with tempfile.TemporaryDirectory(prefix="lifeboat-bench-fleet-") as work:
        fleet = Fleet(work)
        try:
            started = time.monotonic()
            fleet.start(hosts, tmpfs={"b02": "size=8k"} if args.faults else None)
            print(f"{len(hosts)} hosts up over ssh in {time.monotonic() - started:.0f} s; load {os.getloadavg()}")
            inventory_path = os.path.join(work, "fleet.yml")
            inventory(fleet, pg, hosts, inventory_path, args.faults)
            jobs = sum(2 if index % 4 == 0 else 1 for index in range(len(hosts)))
            print(f"{jobs} jobs; median of {args.repeat} run(s) per variant\n")
            print("| forks | pipelining | wall s | controller CPU s | CPU s per host | rc | load (1 min) |")
            print("|---|---|---|---|---|---|---|")
            for forks in args.forks:
                for pipelining in (True, False):
                    runs = [run(inventory_path, forks, pipelining, work, args.faults) for _repeat in range(args.repeat)]
                    wall = statistics.median(r[0] for r in runs)
                    cpu = statistics.median(r[1] for r in runs)
                    print(f"| {forks} | {'on' if pipelining else 'off'} | {wall:.1f} | {cpu:.1f} | "
                          f"{cpu / len(hosts):.2f} | {max(r[2] for r in runs)} | {os.getloadavg()[0]:.1f} |",
                          flush=True)
        finally:
            fleet.stop()
            for database in (PG_SOURCE, PG_SECOND):
                pg.drop(database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
