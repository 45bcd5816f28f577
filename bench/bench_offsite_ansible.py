# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): an off-site copy through Ansible against ``aws s3 cp``, and the module's cost above ping.

Run with the test bed's venv:
  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_offsite_ansible.py [--size-mib 2048] [--repeat 3]
It builds versitygw (scripts/testbed/build-versitygw.sh, cached), starts it on a free loopback port with its state
under /tmp/lifeboat-offsite7-bench (removed at the end), makes two verified files archives with files_backup
(compression none, incompressible bytes): a tiny one (64 KiB) and a big one (--size-mib), each in its own
destination. Then, per repetition, in a rotated order, it times:

- ``ping``: ansible-playbook with one ``ansible.builtin.ping`` task (local connection): Ansible's own start-up;
- ``module tiny`` / ``module big``: ansible-playbook with one ``lifeboat.ops.offsite_copy`` task of that destination
  to a fresh prefix (the same local connection, the checkout on ANSIBLE_COLLECTIONS_PATH as the other benches);
- ``aws tiny`` / ``aws big``: ``aws s3 cp`` of the same archive file to the same bucket (its defaults: 8 MiB parts,
  10 threads; credentials through its environment, never argv);
- ``library big``: the library alone (``_offsite.copy_destination``) in a fresh Python process, no Ansible.

Each step is wall-clock seconds and CPU seconds of everything it started (getrusage(RUSAGE_CHILDREN) deltas: the
controller, the module process and the AWS CLI all run on this machine), and the S3 server's CPU (from /proc).
Every object a step uploaded is removed after it (untimed), so the server's disk stays small. Goals (issue 30):
``module tiny`` - ``ping`` <= 0.3 s; ``module big`` / ``aws big`` <= 1.15. Reported, never asserted.
``--baseline DIR`` times the module steps of another checkout (``git archive`` of an older commit) in the same
rotation; ``--poll-interval S`` adds ``module big`` with ansible.cfg's ``internal_poll_interval`` at S (ansible-core's
default 0.001 s makes the controller poll its worker ~1000 times a second while the task runs). ``--profile`` adds a
cProfile of one more big copy by the library (top functions by their own time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t

from bench_s3 import run_module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = "/tmp/lifeboat-offsite7-bench"
STEPS = ("ping", "module tiny", "module big", "aws tiny", "aws big", "library big")
PLAYBOOK = """\
- name: One task, local connection
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The step
{task}
"""
PING_TASK = "      ansible.builtin.ping:\n"
COPY_TASK = """\
      lifeboat.ops.offsite_copy:
        destination: "{{ destination }}"
        bucket: "{{ bucket }}"
        prefix: "{{ prefix }}"
        endpoint_url: "{{ endpoint_url }}"
        path_style: true
        credentials_file: "{{ credentials_file }}"
"""
LIBRARY = """\
import json, sys
from ansible_collections.lifeboat.ops.plugins.module_utils import _offsite
options = json.loads(sys.argv[1])
result = _offsite.copy_destination(options["destination"], _offsite.Remote.from_options(options))
assert result.copied, result.as_dict()
"""


def log(text: str) -> None:
    print(f"[bench_offsite_ansible] {text}", flush=True)


def aws_binary() -> str:
    """The AWS CLI's own script, not pyenv's shim (a bash script and a pyenv run in front of every call)."""
    found = shutil.which("aws") or "/root/.pyenv/shims/aws"
    if "/shims/" in found:
        resolved = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True, check=False,
                                  env={**os.environ, "PYENV_ROOT": os.path.dirname(os.path.dirname(found))})
        if resolved.returncode == 0 and resolved.stdout.strip():
            return resolved.stdout.strip()
    return found


def server_cpu(pid: int) -> float:
    """utime + stime of a process that is not our waited-for child (the S3 server), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str], server_pid: int) -> tuple[float, float, float]:
    """Wall-clock seconds, CPU seconds of the command and all it started, and the S3 server's CPU seconds."""
    before, server_before = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(server_pid)
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    after, server_after = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(server_pid)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, server_after - server_before


def make_archive(root: str, work: str, name: str, size: int) -> tuple[str, str]:
    """A verified files archive of ``size`` incompressible bytes in a destination of its own: (destination, file)."""
    source = os.path.join(work, f"{name}-source")
    os.makedirs(source)
    with open(os.path.join(source, "blob.bin"), "wb") as handle:
        left = size
        while left:
            chunk = min(left, 1 << 20)
            handle.write(os.urandom(chunk))
            left -= chunk
    destination = os.path.join(work, f"{name}-archives")
    made = run_module(root, "files_backup", {"destination": destination, "job": name, "paths": [source],
                                             "compression": "none"}, work)
    run_module(root, "backup_verify", {"destination": destination, "level": "checksum"}, work)
    shutil.rmtree(source)
    return destination, made["archive"]


def remove_prefix(s3: t.Any, bucket: str, prefix: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=entry["Key"])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", nargs="*", default=list(STEPS), choices=STEPS)
    parser.add_argument("--profile", action="store_true", help="cProfile one more big copy by the library")
    parser.add_argument("--source", default=REPO, help="the collection's checkout (default: this one)")
    parser.add_argument("--baseline", help="another checkout (e.g. `git archive` of an older commit): its module "
                        "steps are timed too, in the same rotation, as 'module tiny (baseline)' etc.")
    parser.add_argument("--poll-interval", type=float, help="also time 'module big' with ansible.cfg's "
                        "internal_poll_interval set to this (ansible-core's default 0.001 s costs the controller "
                        "~0.04 CPU s per second of a task)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    sys.path.insert(0, os.path.join(REPO, "tests", "shared"))  # local_ports, which s3server imports
    from s3server import ACCESS_KEY, SECRET_KEY, S3Server  # pylint: disable=import-outside-toplevel,import-error

    def collections_root(source: str) -> str:
        made = tempfile.mkdtemp(prefix="lifeboat-offsite7-collections-")
        os.makedirs(os.path.join(made, "ansible_collections", "lifeboat"))
        os.symlink(os.path.abspath(source), os.path.join(made, "ansible_collections", "lifeboat", "ops"))
        return made

    root = collections_root(args.source)
    baseline_root = collections_root(args.baseline) if args.baseline else None
    steps = list(args.steps)
    if baseline_root:
        steps += [f"{step} (baseline)" for step in args.steps if step.startswith("module")]
    if args.poll_interval is not None:
        steps.append("module big (poll)")
    shutil.rmtree(STATE, ignore_errors=True)
    os.makedirs(STATE)
    server = S3Server(os.path.join(STATE, "s3"))
    server.start()
    assert server.process is not None
    try:
        work = os.path.join(STATE, "work")
        os.makedirs(work)
        log(f"making a tiny archive and one of {args.size_mib} MiB of incompressible bytes")
        tiny_destination, tiny_archive = make_archive(root, work, "tiny", 64 * 1024)
        big_destination, big_archive = make_archive(root, work, "big", args.size_mib << 20)
        size = os.path.getsize(big_archive)
        bucket = server.bucket()
        credentials_file = server.credentials_file(work)
        s3 = server.client()
        bin_dir = os.path.dirname(sys.executable)
        playbooks = {}
        for name, task in (("ping", PING_TASK), ("copy", COPY_TASK)):
            playbooks[name] = os.path.join(work, f"{name}.yml")
            with open(playbooks[name], "w", encoding="utf-8") as handle:
                handle.write(PLAYBOOK.format(task=task))
        aws_config = os.path.join(work, "aws-config")
        with open(aws_config, "w", encoding="utf-8") as handle:
            handle.write("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n")
        # Ansible's defaults, whatever ansible.cfg the current directory holds; and the same with the poll interval
        default_config, poll_config = os.path.join(work, "default.cfg"), os.path.join(work, "poll.cfg")
        with open(default_config, "w", encoding="utf-8") as handle:
            handle.write("[defaults]\n")
        with open(poll_config, "w", encoding="utf-8") as handle:
            handle.write(f"[defaults]\ninternal_poll_interval = {args.poll_interval or 0.001}\n")
        ansible_env = {**os.environ, "ANSIBLE_CONFIG": default_config, "ANSIBLE_COLLECTIONS_PATH": root,
                       "ANSIBLE_NOCOLOR": "1",
                       "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_LOCALHOST_WARNING": "0",
                       "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
        aws_env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                   "AWS_CONFIG_FILE": aws_config, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        aws = aws_binary()
        log(f"aws: {aws}; ansible-playbook: {os.path.join(bin_dir, 'ansible-playbook')}")

        def command(step: str, prefix: str) -> tuple[list[str], dict[str, str]]:
            tiny = "tiny" in step
            destination, archive = (tiny_destination, tiny_archive) if tiny else (big_destination, big_archive)
            options = {"destination": destination, "bucket": bucket, "prefix": prefix, "endpoint_url": server.endpoint,
                       "path_style": True, "credentials_file": credentials_file}
            if step == "ping":
                return [os.path.join(bin_dir, "ansible-playbook"), "-i", "localhost,", playbooks["ping"]], ansible_env
            if step.startswith("module"):
                extra = os.path.join(work, "extra-vars.json")
                with open(extra, "w", encoding="utf-8") as handle:
                    json.dump(options, handle)
                env = dict(ansible_env)
                if step.endswith("(baseline)"):
                    env["ANSIBLE_COLLECTIONS_PATH"] = baseline_root or root
                if step.endswith("(poll)"):
                    env["ANSIBLE_CONFIG"] = poll_config
                return ([os.path.join(bin_dir, "ansible-playbook"), "-i", "localhost,", playbooks["copy"],
                         "-e", f"@{extra}"], env)
            if step.startswith("aws"):
                return ([aws, "s3", "cp", "--only-show-errors", "--endpoint-url", server.endpoint, archive,
                         f"s3://{bucket}/{prefix}/{os.path.basename(archive)}"], aws_env)
            return [sys.executable, "-c", LIBRARY, json.dumps(options)], {**os.environ, "PYTHONPATH": root}

        figures: dict[str, list[tuple[float, float, float]]] = {step: [] for step in steps}
        log(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")
        for repetition in range(args.repeat):
            for step in steps[repetition % len(steps):] + steps[:repetition % len(steps)]:
                prefix = f"{step.replace(' ', '-').replace('(', '').replace(')', '')}-{repetition}"
                argv, env = command(step, prefix)
                figures[step].append(timed(argv, env, server.process.pid))
                if step != "ping":
                    remove_prefix(s3, bucket, prefix + "/")
                wall, cpu, server_s = figures[step][-1]
                log(f"rep {repetition} {step:26} wall {wall:6.2f} s  CPU {cpu:6.2f} s  server CPU {server_s:6.2f} s  "
                    f"load {os.getloadavg()[0]:.1f}")
        log(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")
        print(f"\nOff-site copy through Ansible, {size / 2**20:.0f} MiB archive, median of {args.repeat} "
              f"(rotated order)")
        print(f"  {'step':26} {'wall':>8} {'CPU':>8} {'server CPU':>11}")
        medians = {step: tuple(median([run[i] for run in runs]) for i in range(3)) for step, runs in figures.items()}
        for step, (wall, cpu, server_s) in medians.items():
            print(f"  {step:26} {wall:6.2f} s {cpu:6.2f} s {server_s:9.2f} s")

        def said(name: str, first: str, second: str, index: int, goal: float | None = None, ratio: bool = False) -> None:
            if first not in medians or second not in medians:
                return
            value = medians[first][index] / medians[second][index] if ratio else medians[first][index] - medians[
                second][index]
            verdict = "" if goal is None else f" ({'met' if value <= goal else 'MISSED'}: goal <= {goal:g})"
            print(f"  {name}: {value:.2f}{'' if ratio else ' s'}{verdict}")
        said("module cost above ping, wall", "module tiny", "ping", 0, 0.3)
        said("module cost above ping, CPU", "module tiny", "ping", 1)
        said("module big / aws big, wall", "module big", "aws big", 0, 1.15, ratio=True)
        said("module big / aws big, CPU", "module big", "aws big", 1, ratio=True)
        said("library big / aws big, wall", "library big", "aws big", 0, ratio=True)
        said("module big - library big, wall (what Ansible adds)", "module big", "library big", 0)
        said("module big - library big, CPU", "module big", "library big", 1)
        said("module big - module tiny, wall (the data)", "module big", "module tiny", 0)
        said("aws big - aws tiny, wall (the data)", "aws big", "aws tiny", 0)
        said("baseline: module cost above ping, wall", "module tiny (baseline)", "ping", 0, 0.3)
        said("baseline: module cost above ping, CPU", "module tiny (baseline)", "ping", 1)
        said("baseline: module big / aws big, wall", "module big (baseline)", "aws big", 0, 1.15, ratio=True)
        said("baseline: module big / aws big, CPU", "module big (baseline)", "aws big", 1, ratio=True)
        said("with internal_poll_interval: module big / aws big, wall", "module big (poll)", "aws big", 0, 1.15,
             ratio=True)
        said("with internal_poll_interval: module big / aws big, CPU", "module big (poll)", "aws big", 1, ratio=True)
        if args.profile:
            sys.path.insert(0, root)
            from ansible_collections.lifeboat.ops.plugins.module_utils import _offsite  # pylint: disable=import-outside-toplevel

            remote = _offsite.Remote.from_options({"bucket": bucket, "prefix": "profile", "endpoint_url": server.endpoint,
                                                   "path_style": True, "credentials_file": credentials_file})
            profiler = cProfile.Profile()
            profiler.enable()
            _offsite.copy_destination(big_destination, remote)
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
            print("\ncProfile of one big copy by the library (own time; threads other than the main one are not "
                  "profiled, their time shows as waits)")
            print(text.getvalue())
    finally:
        server.stop()
        shutil.rmtree(STATE, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        if baseline_root:
            shutil.rmtree(baseline_root, ignore_errors=True)


if __name__ == "__main__":
    main()
