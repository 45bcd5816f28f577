# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every outcome of the migrate playbook publishes its artifact (set_stats, AWX's artifact_data), read from
ansible-runner's artifacts as AWX reads them: a requested rollback, a rollback after a failed health check, and a
migration that fails before it dumped anything."""

from __future__ import annotations

import json
import os
import sys
import typing as t

import ansible_runner
import yaml
from test_migrate_playbook import switch_hooks

from testbed import PG_SECOND, collections_root


def runner_outcome(base: t.Any, host_vars: dict[str, t.Any]) -> tuple[str, dict[str, t.Any] | None, str]:
    """Run lifeboat.ops.migrate through ansible-runner; its status, this host's lifeboat_migrate_outcome (None when
    the run published none) and its stdout."""
    private = base / "private"
    for directory in (private / "inventory", private / "project"):
        directory.mkdir(parents=True)
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
    (private / "project" / "site.yml").write_text(yaml.safe_dump([{"import_playbook": "lifeboat.ops.migrate"}]))
    envvars = {"ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(base / "ansible-tmp"),
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    runner = ansible_runner.run(private_data_dir=str(private), playbook="site.yml", ident="job", envvars=envvars,
                                quiet=True, timeout=600)
    events = private / "artifacts" / "job" / "job_events"
    (stats,) = [event["event_data"] for event in (json.loads(path.read_text()) for path in events.iterdir())
                if event.get("event") == "playbook_on_stats"]
    stdout = (private / "artifacts" / "job" / "stdout").read_text(errors="replace")
    return runner.status, (stats.get("artifact_data") or {}).get("lifeboat_migrate_outcome", {}).get("localhost"), stdout


def test_every_migrate_outcome_publishes_its_artifact(pg, run_module, tmp_path, unique_name):
    dump = run_module("postgresql_dump", pg.login(database=PG_SECOND, destination=str(tmp_path / "export")))
    assert dump.rc == 0, dump.stdout
    hooks, _marker, rolled_back = switch_hooks(tmp_path)
    variables = {"migrate_engine": "postgresql", "migrate_source_archive": dump.result["archive"],
                 "migrate_target": pg.login(database=unique_name), "migrate_work_dir": str(tmp_path / "work"),
                 "migrate_checks": ["presence", "counts"], **hooks}

    # Asked for: only the rollback tasks run.
    status, outcome, stdout = runner_outcome(tmp_path / "asked", {**variables, "migrate_action": "rollback"})
    assert status == "successful" and rolled_back.exists(), stdout[-3000:]
    assert outcome == {"status": "ok", "action": "rollback", "rolled_back": True, "archive": None,
                       "validation": None, "failure": None, "failed": []}, stdout[-3000:]

    # Nothing answers the health check after the switch: the rollback tasks run, the host fails.
    rolled_back.unlink()
    try:
        status, outcome, stdout = runner_outcome(tmp_path / "health", {
            **variables, "migrate_health_checks": [{"url": "http://127.0.0.1:9/health", "timeout": 2}]})
    finally:
        pg.drop(unique_name)
    assert status == "failed" and rolled_back.exists(), stdout[-3000:]
    assert outcome is not None, stdout[-3000:]
    assert outcome["status"] == "failed" and outcome["action"] == "migrate" and outcome["rolled_back"] is True
    assert outcome["validation"]["passed"] is True and outcome["archive"] == dump.result["archive"]
    assert outcome["failure"].startswith("the switch-over failed ("), outcome["failure"]
    assert outcome["failure"].endswith("the rollback tasks ran: the application is back on the source")

    # Fails before the dump: a source archive that is not there.
    status, outcome, stdout = runner_outcome(tmp_path / "early", {
        **variables, "migrate_source_archive": str(tmp_path / "gone.pgdump.zst")})
    assert status == "failed", stdout[-3000:]
    assert outcome is not None and outcome["status"] == "failed" and outcome["rolled_back"] is False, outcome
    assert outcome["validation"] is None and "gone.pgdump.zst" in outcome["failure"], outcome
