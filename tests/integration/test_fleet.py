# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup playbook over real SSH on a small fleet (systemd containers with sshd; bench/bench_fleet.py runs 20):
two hosts unreachable, one job with a wrong password, one host whose destination is full. Every other host and job
completes; the recap and the artifacts name exactly these failures, once each; the exit status says failure; and
max_fail_percentage (lifeboat_max_fail_percentage) stops the run when the failed share exceeds it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing as t

import pytest
import yaml
from fleet import Fleet
from local_ports import free_ports  # pylint: disable=import-error

from testbed import PG_SOURCE, collections_root, module_env

GOOD = ["h1", "h3", "h4", "h5"]
HOSTS = ["h1", "h2", "h3", "h4", "h5"]  # containers; h2's destination is a full tmpfs
UNREACHABLE = ["u1", "u2"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(str(tmp_path_factory.mktemp("fleet")))
    try:
        fleet.start(HOSTS, tmpfs={"h2": "size=8k"})
        yield fleet
    finally:
        fleet.stop()


def inventory(fleet: Fleet, pg: t.Any, path: t.Any) -> str:
    login = {"engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host, "login_port": pg.port,
             "login_user": pg.user, "login_password": pg.password}
    hosts: dict[str, t.Any] = {}
    for host in HOSTS:
        jobs = [{"name": "journal", **login}]
        if host == "h1":
            jobs.append({**login, "name": "badpass", "login_password": "not the password"})
        if host == "h3":
            jobs.append({**login, "name": "second"})
        hosts[host] = {**fleet.host_vars(host), "backup_jobs": jobs}
    for host, port in zip(UNREACHABLE, free_ports(len(UNREACHABLE)), strict=True):
        hosts[host] = {**fleet.host_vars_for_port(port), "backup_jobs": [{"name": "journal", **login}]}
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": {"backup_prune": False}}}))
    return str(path)


def run_backup(inventory_path: str, tmp_path: t.Any, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """ansible-playbook lifeboat.ops.backup over SSH; its result and the artifact the stats callback shows."""
    env = {**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_SHOW_CUSTOM_STATS": "1", "ANSIBLE_PIPELINING": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_STDOUT_CALLBACK": "default",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "lifeboat.ops.backup",
                          "-i", inventory_path, "-f", "10", *extra], capture_output=True, text=True, env=env,
                         timeout=900, check=False)
    stats = run.stdout[run.stdout.rfind("CUSTOM STATS"):]
    match = re.search(r"RUN: (\{.*\})", stats)
    return run, (json.loads(match[1]) if match else {})


def recap(stdout: str) -> dict[str, dict[str, int]]:
    found = {}
    for line in stdout[stdout.rfind("PLAY RECAP"):].splitlines()[1:]:
        match = re.match(r"(\S+)\s+: (.*)", line)
        if match:
            found[match[1]] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match[2])}
    return found


def test_one_broken_host_or_job_stops_nothing_else(fleet, pg, tmp_path):
    inventory_path = inventory(fleet, pg, tmp_path / "fleet.yml")
    run, artifacts = run_backup(inventory_path, tmp_path, "-e", "lifeboat_max_fail_percentage=50")
    output = run.stdout + run.stderr
    assert run.returncode == 4, output[-4000:]  # 4: some hosts were unreachable (and others failed)
    counts = recap(run.stdout)
    assert {host for host, c in counts.items() if c["unreachable"]} == set(UNREACHABLE), counts
    assert {host for host, c in counts.items() if c["failed"]} == {"h1", "h2"}, counts
    outcome = artifacts["lifeboat_backup_outcome"]
    assert sorted(outcome) == sorted(HOSTS + UNREACHABLE), outcome
    failed_lines = {host: entry["failed"] for host, entry in outcome.items() if entry["failed"]}
    assert sorted(failed_lines) == ["h1", "h2", "u1", "u2"], failed_lines
    assert [line.split(":")[0] for line in failed_lines["h1"]] == ["badpass"]
    assert "password authentication failed" in failed_lines["h1"][0]
    assert [line.split(":")[0] for line in failed_lines["h2"]] == ["journal"]
    assert "No space left on device" in failed_lines["h2"][0], failed_lines["h2"]
    assert outcome["u1"]["status"] == outcome["u2"]["status"] == "unreachable"
    for host in GOOD:
        names = sorted(archive["name"] for archive in outcome[host]["archives"])
        assert names == (["journal", "second"] if host == "h3" else ["journal"]), (host, outcome[host])
        assert all(archive["verification"]["ok"] for archive in outcome[host]["archives"]), outcome[host]
    assert [a["name"] for a in outcome["h1"]["archives"]] == ["journal"]  # h1's good job completed too
    # The closing failure of each failed host names its failed job once; the password is printed nowhere.
    start = run.stdout.index("TASK [lifeboat.ops.backup : Fail this host when a job failed")
    section = run.stdout[start:run.stdout.index("\nTASK [", start)]
    for host, job in (("h1", "badpass"), ("h2", "journal")):
        closing = [line for line in section.splitlines() if line.startswith(f"fatal: [{host}]")]
        assert len(closing) == 1 and closing[0].count(f"{job}: ") == 1, section
    assert pg.password not in output

    # In batches of three (h1 h2 h3 | h4 h5 u1 | u2): two of the first three failed, more than 50 %: no later batch
    # runs. (With 70 % they all would, as above.)
    run, artifacts = run_backup(inventory_path, tmp_path, "-e", "lifeboat_max_fail_percentage=50",
                                "-e", "lifeboat_serial=3")
    assert run.returncode != 0
    assert "NO MORE HOSTS LEFT" in run.stdout, run.stdout[-3000:]
    assert sorted(recap(run.stdout)) == ["h1", "h2", "h3"], run.stdout[-3000:]
    # every host is in the artifact: those of the later batches as never tried
    states = {host: entry["status"] for host, entry in artifacts["lifeboat_backup_outcome"].items()}
    assert states == {"h1": "failed", "h2": "failed", "h3": "ok", "h4": "not_tried", "h5": "not_tried",
                      "u1": "not_tried", "u2": "not_tried"}, states
