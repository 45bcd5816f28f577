# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Monitoring pings (healthchecks.io-style, Uptime Kuma push, ntfy) around a backup run, from the host command as
the scheduled units run it and from the backup role: start then success for a good run, start then fail with the
log tail for a bad one; a receiver that is down changes nothing but one warning per ping. No URL (each holds a
token) shows anywhere."""

from __future__ import annotations

import json
import os
import shlex

import pytest
from ping_receiver import Receiver, closed_port_url
from test_cli import host, lifeboat  # noqa: F401  pylint: disable=unused-import  # host: the installed host command (fixture)
from test_job_isolation import bad_job

from ansible_collections.lifeboat.ops.plugins.module_utils import _signing
from testbed import PG_SOURCE, REPO_ROOT, sample_jobs

HC, KUMA, NTFY = "HcTok3nS3cret", "KumaT0kenS3cret", "NtfyT0picS3cret"


def targets(base: str) -> dict[str, list[str]]:
    return {"healthchecks": [f"{base}/hc/{HC}"], "uptime_kuma": [f"{base}/api/push/{KUMA}?status=up&msg=OK&ping="],
            "ntfy": [f"{base}/ntfy/{NTFY}"]}


def assert_no_token(text: str) -> None:
    for token in (HC, KUMA, NTFY):
        assert token not in text


def assert_good_run(receiver: Receiver) -> None:
    assert [hit.path for hit in receiver.kinds("/hc/")] == [f"/hc/{HC}/start", f"/hc/{HC}"]
    (kuma,) = receiver.kinds("/api/push/")
    assert kuma.method == "GET" and kuma.query["status"] == "up" and kuma.query["ping"] == ""
    (ntfy,) = receiver.kinds("/ntfy/")
    assert ntfy.method == "POST" and ntfy.headers["Priority"] == "low" and ntfy.body.endswith(": done"), ntfy.body


def assert_failed_run(receiver: Receiver, reason: str) -> None:
    hcs = receiver.kinds("/hc/")
    assert [hit.path for hit in hcs] == [f"/hc/{HC}/start", f"/hc/{HC}/fail"]
    assert reason in hcs[1].body and "password authentication failed" in hcs[1].body, hcs[1].body
    (kuma,) = receiver.kinds("/api/push/")
    assert kuma.query["status"] == "down" and reason in kuma.query["msg"]
    (ntfy,) = receiver.kinds("/ntfy/")
    assert ntfy.headers["Priority"] == "high" and "password authentication failed" in ntfy.body


def pings_file(path, base: str, mode: int = 0o600) -> str:
    path.write_text(json.dumps(targets(base)) + "\n")
    path.chmod(mode)
    return str(path)


def render_schedule(tmp_path, jobs: list[dict], pings: dict) -> dict[str, list[list[str]]]:
    """The scheduling role's config, units and pings files for ``jobs`` (its own templates and variables, under
    tmp_path): each job's ExecStart= lines as argv lists."""
    from test_forwarded_options import run_play  # pylint: disable=import-error,import-outside-toplevel

    role = os.path.join(REPO_ROOT, "roles", "backup_schedule")
    etc, units = tmp_path / "etc", tmp_path / "units"
    etc.mkdir()
    units.mkdir()
    # Task vars: the role's defaults file (vars_files) would win over inventory variables.
    _signing.ensure_signing_key(_signing.default_key_file())  # the host key the role makes: the session's here
    variables = {"backup_schedule_root": str(tmp_path / "sched"), "backup_schedule_jobs": "{{ schedule_jobs }}",
                 "backup_schedule_signing_key_file": _signing.default_key_file(),
                 "backup_schedule_pings": "{{ schedule_pings }}", "__backup_schedule_secrets_dir": str(etc),
                 "__backup_schedule_config": str(etc / "lifeboat.yml"), "backup_schedule_retention": {"keep_last": 3}}
    play = {"vars_files": [os.path.join(role, "defaults", "main.yml"), os.path.join(role, "vars", "main.yml"),
                           # the host program the role includes: where `lifeboat` is
                           os.path.join(REPO_ROOT, "roles", "host_program", "vars", "main.yml")],
            "tasks": [
                {"name": "Config", "ansible.builtin.template": {
                    "src": os.path.join(role, "templates", "lifeboat.yml.j2"), "dest": str(etc / "lifeboat.yml"),
                    "mode": "0600"}, "vars": variables},
                {"name": "Pings (as configure.yml)", "ansible.builtin.copy": {
                    "content": "{{ __backup_schedule_job_pings | to_json }}\n",
                    "dest": f"{etc}/{{{{ job_name }}}}.pings.json", "mode": "0600"},
                 "loop": "{{ __backup_schedule_pinged_jobs }}", "loop_control": {"loop_var": "job_name"},
                 "no_log": True, "vars": variables}] + [
                {"name": f"Unit {job['name']}", "ansible.builtin.template": {
                    "src": os.path.join(role, "templates", "lifeboat-backup.service.j2"),
                    "dest": str(units / f"{job['name']}.service"), "mode": "0644"},
                 "vars": {**variables, "job": job}} for job in jobs]}
    done, _results = run_play(tmp_path, play, {"schedule_jobs": jobs, "schedule_pings": pings})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert_no_token(done.stdout + done.stderr + (etc / "lifeboat.yml").read_text()
                    + "".join(unit.read_text() for unit in units.iterdir()))
    return {job["name"]: [shlex.split(line[len("ExecStart="):])
                          for line in (units / f"{job['name']}.service").read_text().splitlines()
                          if line.startswith("ExecStart=")] for job in jobs}


def unit_run(host, commands: list[list[str]]) -> list:  # noqa: F811
    """A job's unit as systemd runs it (Type=oneshot): each ExecStart= after the previous one's success."""
    runs = []
    for argv in commands:
        runs.append(lifeboat(host, *argv[1:]))
        if runs[-1].returncode:
            break
    return runs


@pytest.fixture
def schedule_jobs(pg, tmp_path):
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    journal = {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login(),
               "destination": str(tmp_path / "backups")}
    return [journal, {**journal, "name": "lost", "login_password_file": str(wrong)},
            {**journal, "name": "quiet", "pings": {}}]


def test_the_units_ping_start_then_success_or_fail_with_the_log_tail(host, schedule_jobs, tmp_path):  # noqa: F811
    with Receiver() as receiver:
        units = render_schedule(tmp_path, schedule_jobs, targets(receiver.url))
        assert [argv[1] for argv in units["journal"]] == ["backup", "verify", "prune"]
        pings = ["--pings", str(tmp_path / "etc" / "journal.pings.json")]
        assert [argv[-3:] for argv in units["journal"]] == [
            [*pings, "--ping-start"], [str(tmp_path / "etc" / "lifeboat.yml"), *pings], [*pings, "--ping-success"]]
        assert not any("--pings" in argv for argv in units["quiet"])  # a job's empty pings turn the role's off
        assert not (tmp_path / "etc" / "quiet.pings.json").exists()
        assert oct((tmp_path / "etc" / "journal.pings.json").stat().st_mode & 0o777) == "0o600"
        runs = unit_run(host, units["journal"])
        assert [run.returncode for run in runs] == [0, 0, 0], runs[-1].stderr
        assert_good_run(receiver)
        receiver.hits.clear()
        runs = unit_run(host, units["lost"])
        assert [run.returncode for run in runs] == [1], runs[-1].stderr
        assert_failed_run(receiver, "backup failed")
    for run in runs:
        assert_no_token(run.stdout + run.stderr)


def test_the_units_with_the_receiver_down_back_up_and_warn_once_per_ping(host, schedule_jobs, tmp_path):  # noqa: F811
    units = render_schedule(tmp_path, schedule_jobs[:1], targets(closed_port_url()))
    runs = unit_run(host, units["journal"])
    assert [run.returncode for run in runs] == [0, 0, 0], runs[-1].stderr
    backup, verify, prune = (run.stderr for run in runs)
    assert "journal: wrote " in backup
    # Kuma and ntfy have no start ping: one line for the healthchecks start, one per target at the end.
    assert [line for line in backup.splitlines() if "monitoring ping" in line] == [
        "warning: monitoring ping start not delivered: healthchecks #1: [Errno 111] Connection refused"]
    assert "monitoring ping" not in verify
    assert sorted(line.split(":")[2] for line in prune.splitlines() if "monitoring ping" in line) == [
        " healthchecks #1", " ntfy #1", " uptime_kuma #1"]
    assert_no_token(backup + verify + prune)
    # A pings file others can read is refused with one warning; the backup runs.
    (tmp_path / "etc" / "journal.pings.json").chmod(0o644)
    run = lifeboat(host, *units["journal"][0][1:])
    assert run.returncode == 0, run.stderr
    assert f"warning: no monitoring pings: pings file {tmp_path}/etc/journal.pings.json is readable by others; " \
           "chmod 600 it" in run.stderr.splitlines()


def test_backup_role_pings_start_then_success_or_fail_and_survives_a_receiver_down(
        pg, mongo, run_playbook, tmp_path):
    journal, _nightscout = sample_jobs(pg, mongo)
    base = {"backup_root": str(tmp_path / "backups"), "backup_prune": False}
    with Receiver() as receiver:
        run = run_playbook("backup", {**base, "backup_jobs": [journal], "backup_pings": targets(receiver.url)}, "-vv")
        assert run.returncode == 0, run.stdout[-3000:]
        assert_good_run(receiver)
        assert_no_token(run.stdout + run.stderr)
    with Receiver() as receiver:
        run = run_playbook("backup", {**base, "backup_jobs": [journal, bad_job(pg, login_password="wrong")],
                                      "backup_pings": targets(receiver.url)}, "-vv")
        assert run.returncode != 0, run.stdout[-3000:]
        assert_failed_run(receiver, "badpass: dump failed")
        assert receiver.kinds("/hc/")[1].body.startswith("badpass: ")  # the log tail: the failed jobs' lines
        assert receiver.kinds("/api/push/")[0].query["msg"].startswith("lifeboat: journal, badpass on localhost: ")
        assert_no_token(run.stdout + run.stderr)
    run = run_playbook("backup", {**base, "backup_jobs": [journal], "backup_pings": targets(closed_port_url())})
    assert run.returncode == 0, run.stdout[-3000:]
    warnings = [line for line in (run.stdout + run.stderr).splitlines() if "monitoring ping" in line]
    assert len(warnings) == 4 and sum("start not delivered: healthchecks #1" in line for line in warnings) == 1, warnings
    assert_no_token(run.stdout + run.stderr)
