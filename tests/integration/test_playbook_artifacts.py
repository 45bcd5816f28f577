# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every playbook's workflow artifact (set_stats, AWX's artifact_data) through ansible-runner, on each way a run over
several hosts ends: a success, a partial failure (a host that works, one that fails, one that cannot be reached) and
an early stop (lifeboat_serial=1 with lifeboat_max_fail_percentage=0: the first host fails, the others are never
tried). Every host of the inventory is in the artifact, each with a status that says what happened to it
(playbooks/tasks/outcome_begin.yml). The single-host outcomes of deploy and migrate are test_deploy_verdicts.py's and
test_migrate_artifacts.py's."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import typing as t

import ansible_runner
import pytest
import yaml
from local_ports import free_port  # pylint: disable=import-error

from testbed import PG_SOURCE, collections_root, finish_module, module_env, start_module

ARTIFACTS = {"backup": "lifeboat_backup_outcome", "verify": "lifeboat_verify_outcome",
             "restore": "lifeboat_restore_outcome", "status": "lifeboat_status_outcome",
             "schedule": "lifeboat_schedule_outcome", "edge": "lifeboat_edge_outcome",
             "deploy": "lifeboat_deploy_outcome", "migrate": "lifeboat_migrate_outcome"}

# The keys of each playbook's entry besides status and failed, as docs/awx.md lists them (deploy's entry is the run's
# history entry, whose keys depend on how far the run got).
KEYS = {"backup": {"archives"}, "verify": {"archives"}, "restore": {"restored"},
        "status": {"state", "summary", "destinations", "jobs", "offsite", "deploys"},
        "schedule": {"jobs", "probes"}, "edge": {"sites", "tunnel", "probes"},
        "migrate": {"action", "rolled_back", "archive", "validation", "failure"}}


@dataclasses.dataclass
class Run:
    status: str
    rc: int
    stdout: str
    artifact: dict[str, t.Any]


def run(base: t.Any, playbook: str, hosts: dict[str, dict[str, t.Any]], env: dict[str, str] | None = None,
        before: tuple[str, ...] = (), **extravars: t.Any) -> Run:
    """lifeboat.ops.PLAYBOOK through ansible-runner as AWX runs it, on every host of the inventory (migrate's default
    is localhost), after the playbooks named in `before` in the same run; the hosts named "unreachable*" are an SSH
    port where nothing listens."""
    private = base / f"private-{playbook}-{len(list(base.iterdir()))}"
    for directory in (private / "inventory", private / "project", private / "env"):
        directory.mkdir(parents=True)
    inventory = {}
    for name, host_vars in hosts.items():
        if name.startswith("unreachable"):
            inventory[name] = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": free_port(),
                               "ansible_user": "nobody", "ansible_ssh_common_args": "-o BatchMode=yes "
                               "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5",
                               **host_vars}
        else:
            inventory[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": inventory}}))
    (private / "project" / "site.yml").write_text(yaml.safe_dump(
        [{"import_playbook": f"lifeboat.ops.{name}"} for name in (*before, playbook)]))
    (private / "env" / "extravars").write_text(yaml.safe_dump({"lifeboat_target": "all", **extravars}))
    envvars = {"ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(base / "ansible-tmp"), "PYTHONPATH": module_env()["PYTHONPATH"],
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]), **(env or {})}
    runner = ansible_runner.run(private_data_dir=str(private), playbook="site.yml", ident="job", envvars=envvars,
                                quiet=True, timeout=600)
    artifacts = private / "artifacts" / "job"
    events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").iterdir())]
    (stats,) = [event["event_data"] for event in events if event.get("event") == "playbook_on_stats"]
    artifact = (stats.get("artifact_data") or {}).get(ARTIFACTS[playbook], {})
    return Run(runner.status, runner.rc, (artifacts / "stdout").read_text(errors="replace"), artifact)


@pytest.fixture(scope="module")
def archive_roots(pg, tmp_path_factory) -> dict[str, str]:
    """A backup root whose one job has a fresh, verified archive, and one whose archive was cut short."""
    roots = {}
    for kind in ("whole", "cut"):
        root = tmp_path_factory.mktemp(f"root-{kind}")
        dump_args = pg.login(database=PG_SOURCE, job="journal", destination=str(root / "journal"))
        made = finish_module(start_module("postgresql_dump", dump_args, root))
        assert made.rc == 0, made.stdout
        archive = made.result["archive"]
        if kind == "cut":
            with open(archive, "r+b") as handle:
                handle.truncate(os.path.getsize(archive) // 2)
        else:
            checked = finish_module(start_module("backup_verify", {"archive": archive, "level": "checksum"}, root))
            assert checked.rc == 0, checked.stdout
        roots[kind] = str(root)
    return roots


def good_and_bad(playbook: str, pg: t.Any, roots: dict[str, str], base: t.Any) -> tuple[dict, dict]:
    """Host variables with which the playbook succeeds on a host, and with which it fails there (bad input or a
    failed step, never anything written outside the test's directories)."""
    job = {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host,
           "login_port": pg.port, "login_user": pg.user, "login_password_file": pg.password_file}
    if playbook == "backup":
        root = str(base / "roots") + "/{{ inventory_hostname }}"  # the hosts share this machine
        return ({"backup_jobs": [job], "backup_root": root},
                {"backup_jobs": [{**job, "login_password_file": str(base / "no-such-password-file")}],
                 "backup_root": root})
    if playbook == "verify":
        return {"backup_root": roots["whole"]}, {"backup_root": roots["cut"]}
    if playbook == "status":  # an empty backup root is CRITICAL (no backup at all)
        (base / "empty-root").mkdir(exist_ok=True)
        return {"backup_root": roots["whole"]}, {"backup_root": str(base / "empty-root")}
    if playbook == "restore":
        return ({"restore_jobs": [job], "restore_items": []},
                {"restore_jobs": [job], "restore_items": [{"job": "no-such-job"}]})
    if playbook in ("schedule", "edge"):  # nothing declared: nothing to do; a malformed declaration: refused
        bad = ({"backup_schedule_jobs": "not a list"} if playbook == "schedule"
               else {"reverse_proxy_sites": ["not a site"]})
        return {}, bad
    if playbook == "deploy":
        return {}, {"deploy_app": "Not A Valid Name!"}
    return {}, {"migrate_engine": "postgresql"}  # migrate: neither source nor target


def assert_placeholders(artifact: dict[str, t.Any], expected: dict[str, str], playbook: str) -> None:
    assert {host: entry["status"] for host, entry in artifact.items()} == expected, artifact
    for host, status in expected.items():
        entry = artifact[host]
        if playbook in KEYS:  # whatever happened to the host, its entry has the documented keys, no others
            assert set(entry) == KEYS[playbook] | {"status", "failed"}, entry
        if status == "ok":
            assert entry["failed"] == [], entry
        else:
            assert entry["failed"] and all(isinstance(line, str) and line for line in entry["failed"]), entry
        if status == "unreachable":
            assert entry["failed"][0].startswith("the host was unreachable: "), entry
        if status == "not_tried":
            assert "stopped before this host was tried" in entry["failed"][0], entry


@pytest.mark.parametrize("playbook", sorted(ARTIFACTS))
def test_every_host_is_in_the_artifact_on_a_partial_failure_and_an_early_stop(
        playbook, pg, archive_roots, tmp_path):
    good, bad = good_and_bad(playbook, pg, archive_roots, tmp_path)
    has_good = playbook not in ("deploy", "migrate")  # their successes need a bed: test_deploy_verdicts, ...

    if has_good:
        success = run(tmp_path, playbook, {"first": good, "second": good})
        assert success.status == "successful" and success.rc == 0, success.stdout[-3000:]
        assert_placeholders(success.artifact, {"first": "ok", "second": "ok"}, playbook)

    hosts = {"good": good, "bad": bad, "unreachable": {}} if has_good else {"bad": bad, "unreachable": {}}
    partial = run(tmp_path, playbook, hosts)
    assert partial.status == "failed" and partial.rc != 0, partial.stdout[-3000:]
    expected = {"bad": "failed", "unreachable": "unreachable"} | ({"good": "ok"} if has_good else {})
    assert_placeholders(partial.artifact, expected, playbook)

    # in batches of one, no failure allowed: the first host fails and the run stops before the others
    early = run(tmp_path, playbook, {"bad": bad, "later": good, "unreachable": {}},
                lifeboat_serial=1, lifeboat_max_fail_percentage=0)
    assert early.status == "failed" and early.rc != 0, early.stdout[-3000:]
    assert "NO MORE HOSTS LEFT" in early.stdout, early.stdout[-3000:]
    assert_placeholders(early.artifact, {"bad": "failed", "later": "not_tried", "unreachable": "not_tried"}, playbook)


def test_an_archive_made_before_its_job_failed_is_in_the_artifact(pg, tmp_path):
    """The dump succeeded, the retention step after it failed: the job and the host fail, the archive is listed."""
    job = {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host,
           "login_port": pg.port, "login_user": pg.user, "login_password_file": pg.password_file,
           "retention": {"keep_last": -5}}
    done = run(tmp_path, "backup", {"host": {"backup_jobs": [job], "backup_root": str(tmp_path / "root")}})
    assert done.status == "failed", done.stdout[-3000:]
    entry = done.artifact["host"]
    assert entry["status"] == "failed" and entry["failed"][0].startswith("journal: prune failed: keep_last is -5"), entry
    (archive,) = entry["archives"]
    assert os.path.exists(archive["archive"]) and archive["verification"]["ok"] is True, archive


def test_a_host_stopped_by_another_hosts_fatal_error_is_named_as_stopped(pg, archive_roots, tmp_path):
    """any_errors_fatal (here from the environment, as an AWX job's settings may set it): ansible-core ends the run at
    the first unreachable host even though the reaching task ignores it, before any host of the batch reported: both
    are `stopped` (being tried when the run stopped), neither `ok` nor missing."""
    good, _bad = good_and_bad("verify", pg, archive_roots, tmp_path)
    done = run(tmp_path, "verify", {"reached": good, "unreachable": {}}, env={"ANSIBLE_ANY_ERRORS_FATAL": "True"})
    assert done.status == "failed", done.stdout[-3000:]
    assert_placeholders(done.artifact, {"reached": "stopped", "unreachable": "stopped"}, "verify")


def test_a_playbook_after_another_in_the_same_run_names_the_hosts_it_never_tried(pg, archive_roots, tmp_path):
    """Two lifeboat playbooks in one run (a site.yml importing schedule, then verify): the hosts the first one reported
    are not taken as reported by the second, whose early stop still names the host it never tried."""
    good, bad = good_and_bad("verify", pg, archive_roots, tmp_path)
    done = run(tmp_path, "verify", {"bad": bad, "later": good}, before=("schedule",),
               lifeboat_serial=1, lifeboat_max_fail_percentage=0)
    assert done.status == "failed", done.stdout[-3000:]
    assert_placeholders(done.artifact, {"bad": "failed", "later": "not_tried"}, "verify")


def test_the_edge_playbook_records_no_probe_password(tmp_path):
    """A health probe may hold a password: no job event of the edge playbook holds it (the probe's second option is
    unknown, so the healthcheck role refuses it before it installs anything)."""
    secret = "rplays-probe-password-5521"
    done = run(tmp_path, "edge", {"host": {"healthcheck_probes": [
        {"name": "db", "type": "postgresql", "password": secret, "no_such_option": 1}]}})
    assert done.status == "failed" and done.artifact["host"]["probes"] == ["db"], done.stdout[-3000:]
    (private,) = tmp_path.glob("private-edge-*")
    holding = [str(path) for path in (private / "artifacts").rglob("*") if path.is_file() and secret in path.read_text()]
    assert holding == [], holding


def test_a_host_that_fails_the_first_task_is_failed_not_stopped(pg, archive_roots, tmp_path):
    """A host reached whose Python cannot run a module (here a missing interpreter) fails at the playbook's first
    module: its entry says failed, with the reason, not that the run stopped."""
    good, _bad = good_and_bad("verify", pg, archive_roots, tmp_path)
    done = run(tmp_path, "verify", {"nopython": {**good, "ansible_python_interpreter": str(tmp_path / "no-python")},
                                    "good": good})
    assert done.status == "failed", done.stdout[-3000:]
    assert_placeholders(done.artifact, {"nopython": "failed", "good": "ok"}, "verify")
