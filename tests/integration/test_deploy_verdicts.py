# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every outcome of the deploy playbook, as AWX sees it: ansible-runner's status and rc, its stdout, its job events
and the artifact (set_stats: artifact_data.lifeboat_deploy_outcome).

A deploy that did not deploy (health gate, migration, watch, held lock, missing site, nothing to roll back, bad
input) must end with status ``failed``, the module's one line in stdout and in the failed job event, and its
outcome published all the same. Every run is at -vvvv with the secret given as AWX gives credentials (an extra-vars
file, ``!unsafe``), and no form of the hostile password appears in anything the run leaves under its artifacts.
Also: failed releases do not pile up beyond keep_releases (real engine).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import sys
import typing as t
import urllib.parse

import ansible_runner
import pytest
import test_deploy  # pylint: disable=import-error
import yaml
from test_deploy import containers_of, history_files, release, serving  # pylint: disable=import-error

from containers import PG_PASSWORD  # pylint: disable=import-error
from testbed import RUN_ID, Unsafe, UnsafeDumper, collections_root, module_env  # pylint: disable=import-error

bed, app = test_deploy.bed, test_deploy.app  # its fixtures: the engine, nginx, the database, a fresh app

# Every form of the password a leak could take: whole (raw, JSON-escaped, URL-encoded), its URL-special parts, and
# its marker, which no other string of the run holds.
LEAKS = sorted({PG_PASSWORD, json.dumps(PG_PASSWORD)[1:-1], urllib.parse.quote(PG_PASSWORD, safe=""),
                urllib.parse.quote_plus(PG_PASSWORD), "p@ss:w/rd", "p%40ss", f"PgBox{RUN_ID}"})


@dataclasses.dataclass
class Verdict:
    status: str
    rc: int
    stdout: str
    events: list[dict[str, t.Any]]
    outcome: dict[str, t.Any] | None  # this host's lifeboat_deploy_outcome, None when none was published
    artifacts: str

    def failed_messages(self) -> list[str]:
        return [event["event_data"]["res"].get("msg", "") for event in self.events
                if event.get("event") == "runner_on_failed"]


def run_deploy(base: t.Any, args: dict[str, t.Any], secret_environment: t.Any) -> Verdict:
    """lifeboat.ops.deploy through ansible-runner at -vvvv; the secret environment as AWX injects a credential."""
    private = base / "private"
    for directory in (private / "inventory", private / "project", private / "env"):
        directory.mkdir(parents=True)
    host_vars = {name if name.startswith("deploy_") else f"deploy_{name}": value for name, value in args.items()
                 if name != "secret_environment"}
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
    (private / "project" / "site.yml").write_text(yaml.safe_dump([{"import_playbook": "lifeboat.ops.deploy"}]))
    unsafe = ({key: Unsafe(value) for key, value in secret_environment.items()}
              if isinstance(secret_environment, dict) else Unsafe(secret_environment))
    (private / "env" / "extravars").write_text(yaml.dump({"deploy_secret_environment": unsafe}, Dumper=UnsafeDumper))
    envvars = {"ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(base / "ansible-tmp"), "PYTHONPATH": module_env()["PYTHONPATH"],
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    runner = ansible_runner.run(private_data_dir=str(private), playbook="site.yml", ident="job", envvars=envvars,
                                quiet=True, timeout=600, verbosity=4)
    artifacts = private / "artifacts" / "job"
    events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").iterdir())]
    (stats,) = [event["event_data"] for event in events if event.get("event") == "playbook_on_stats"]
    outcome = (stats.get("artifact_data") or {}).get("lifeboat_deploy_outcome", {}).get("localhost")
    stdout = (artifacts / "stdout").read_text(errors="replace")
    return Verdict(runner.status, runner.rc, stdout, events, outcome, str(artifacts))


def no_leak(verdict: Verdict, *more: str) -> None:
    """0 hits of any form of the password in stdout and in every file under the run's artifacts."""
    texts = {"stdout": verdict.stdout, **{f"extra {index}": text for index, text in enumerate(more)}}
    for directory, _dirs, files in os.walk(verdict.artifacts):
        for name in files:
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as handle:
                texts[os.path.join(directory, name)] = handle.read()
    hits = [(where, leak) for where, text in texts.items() for leak in LEAKS if leak in text]
    assert not hits, hits[:5]


def did_not_deploy(verdict: Verdict, outcome: str, *reason: str) -> str:
    """Status failed, rc != 0, the module's one line in stdout and in the failed event, the outcome published."""
    assert verdict.status == "failed" and verdict.rc != 0, (verdict.status, verdict.rc, verdict.stdout[-3000:])
    messages = verdict.failed_messages()
    assert messages, verdict.stdout[-3000:]
    message = messages[-1]  # the play's own failure, after the rescue kept the history
    assert message and "\n" not in message and "Traceback" not in message, message
    assert all(part in message for part in reason), message
    assert message in verdict.stdout, verdict.stdout[-3000:]
    assert verdict.outcome is not None, verdict.stdout[-3000:]
    assert verdict.outcome["outcome"] == outcome and verdict.outcome["reason"], verdict.outcome
    assert verdict.outcome["reason"] in message
    no_leak(verdict)
    return message


def deploy_first(bed: dict[str, t.Any], app: dict[str, t.Any], run_module: t.Any) -> None:
    done = run_module("app_deploy", release(bed, app, "v1"))
    assert done.rc == 0, done.stdout + done.stderr


def secret(args: dict[str, t.Any]) -> dict[str, t.Any]:
    return args["secret_environment"]


def test_a_deploy_publishes_deployed(bed, app, tmp_path):
    args = release(bed, app, "v1")
    verdict = run_deploy(tmp_path, args, secret(args))
    assert verdict.status == "successful" and verdict.rc == 0, verdict.stdout[-3000:]
    assert verdict.outcome is not None and verdict.outcome["outcome"] == "deployed", verdict.outcome
    assert f"deployed: v1 ({verdict.outcome['container']})" in verdict.stdout
    assert serving(bed) == "200 version v1, 40 notes"
    no_leak(verdict, *history_files(app))


def test_a_failed_health_gate_fails_the_play(bed, app, tmp_path, run_module):
    deploy_first(bed, app, run_module)
    args = release(bed, app, "v2", health_timeout=3, environment={"APP_NEVER_HEALTHY": "1"})
    verdict = run_deploy(tmp_path, args, secret(args))
    did_not_deploy(verdict, "rolled_back", "health gate failed", "traffic stayed on", "kept for inspection")
    assert serving(bed) == "200 version v1, 40 notes"


def test_a_failed_migration_fails_the_play(bed, app, tmp_path, run_module):
    deploy_first(bed, app, run_module)
    args = release(bed, app, "v2", migration_command=["python3", "-c", "import sys; print('boom'); sys.exit(1)"])
    verdict = run_deploy(tmp_path, args, secret(args))
    did_not_deploy(verdict, "rolled_back", "the migration command exited with 1", "boom", "traffic stayed on")
    assert serving(bed) == "200 version v1, 40 notes"


def test_a_failed_watch_rolls_back_and_fails_the_play(bed, app, tmp_path, run_module):
    deploy_first(bed, app, run_module)
    args = release(bed, app, "v2", environment={"APP_FAIL_AFTER": "6"}, watch_probes=20)
    verdict = run_deploy(tmp_path, args, secret(args))
    did_not_deploy(verdict, "rolled_back", "the watch saw", "traffic returned to")
    assert serving(bed) == "200 version v1, 40 notes"


def test_a_held_lock_fails_the_play(bed, app, tmp_path):
    os.makedirs(app["state"], mode=0o700)
    holder = os.open(os.path.join(app["state"], "deploy.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    os.write(holder, json.dumps({"pid": os.getpid(), "started": "now", "step": "gate"}).encode())
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        args = release(bed, app, "v1")
        verdict = run_deploy(tmp_path, args, secret(args))
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    did_not_deploy(verdict, "refused", f"another deploy of {app['name']} holds the lock", "refused: traffic and "
                   "releases stay as they were")
    assert containers_of(bed, app["name"]) == {}


def test_a_missing_site_fails_the_play(bed, app, tmp_path):
    args = release(bed, app, "v1", site="nosuchsite")
    verdict = run_deploy(tmp_path, args, secret(args))
    did_not_deploy(verdict, "refused", "site nosuchsite does not exist", "refused")
    assert containers_of(bed, app["name"]) == {}


def test_a_rollback_with_nothing_to_roll_back_fails_the_play(bed, app, tmp_path, run_module):
    deploy_first(bed, app, run_module)
    args = {**app["args"], "deploy_action": "rollback"}
    verdict = run_deploy(tmp_path, args, secret(args))
    message = did_not_deploy(verdict, "refused", "nothing to roll back", "(release v1) still serves")
    assert verdict.outcome["action"] == "rollback", verdict.outcome
    assert message.startswith("nothing to roll back: no previous release of")
    assert serving(bed) == "200 version v1, 40 notes"


def test_a_secret_environment_given_as_a_string_is_refused_unsplit(bed, app, tmp_path):
    """A survey field 'K=V K=V' (here with the hostile password as a value): refused naming the key, never shown."""
    args = release(bed, app, "v1")
    verdict = run_deploy(tmp_path, args, f"APP_DB_PASSWORD={PG_PASSWORD} APP_OTHER=x")
    did_not_deploy(verdict, "refused", "secret_environment must be a mapping of NAME: value, not a string")
    assert containers_of(bed, app["name"]) == {}


def test_failed_releases_do_not_pile_up_beyond_keep_releases(bed, app, run_module):
    """keep_releases 2, v1 live, then three failed deploys: the newest failed release is kept for inspection, the one
    before it counts against keep_releases, older ones are removed after each failure."""
    deploy_first(bed, app, run_module)
    names = []
    for version in ("v2", "v3", "v4"):
        failed = run_module("app_deploy", release(bed, app, version, health_timeout=2,
                                                  environment={"APP_NEVER_HEALTHY": "1"}))
        assert failed.rc != 0 and failed.result["history"]["outcome"] == "rolled_back", failed.stdout
        names.append(failed.result["history"]["container"])
    assert failed.result["history"]["pruned"] == [names[0]], failed.result["history"]
    assert f"removed {names[0]} (beyond keep_releases 2)" in failed.result["msg"]
    statuses = containers_of(bed, app["name"])
    assert sorted(statuses) == sorted([f"{app['name']}-blue-1", names[1], names[2]]), statuses
    assert statuses[names[2]] == "exited" and serving(bed) == "200 version v1, 40 notes"
    # The next good deploy brings the host back to keep_releases: the live release and the one it replaced.
    done = run_module("app_deploy", release(bed, app, "v5"))
    assert done.rc == 0, done.stdout
    assert sorted(containers_of(bed, app["name"])) == sorted([f"{app['name']}-blue-1", done.result["history"]["container"]])


@pytest.mark.parametrize("keep", [1])
def test_keep_releases_one_keeps_only_the_failed_release_for_inspection(bed, app, run_module, keep):
    deploy_first(bed, app, run_module)
    for version in ("v2", "v3"):
        failed = run_module("app_deploy", release(bed, app, version, health_timeout=2, keep_releases=keep,
                                                  environment={"APP_NEVER_HEALTHY": "1"}))
        assert failed.rc != 0, failed.stdout
    statuses = containers_of(bed, app["name"])
    assert sorted(statuses.values()) == ["exited", "running"] and failed.result["history"]["container"] in statuses
