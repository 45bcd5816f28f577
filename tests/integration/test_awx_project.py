# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every job template of examples/awx-project, launched as AWX launches it, works as shipped.

Each job gets what AWX gives it: a fresh private data dir holding the project's whole tree; extra vars made from
the template's survey (each question's default, or the test's answer, checked against its type and choices); the
"lifeboat database" credential's injectors rendered with its inputs (files in the job's private directory, their
paths in the environment); the project's inventory with its group_vars, the host pointed at the test bed. Every
job also gets a signing-key location of its own, as the execution environment's /etc/lifeboat is new for each job.

The jobs, in the order an operator runs them: backup (encrypted to the credential's age identity, restore-level
verification that decrypts), verify (restore level), restore (the survey's scalars; decrypts with the same
identity, trusts the credential's signing key), status (OK), migrate (from the encrypted archive), then schedule,
edge and deploy in check mode (job type "check") with inputs that keep them on this machine: schedule and edge
render their units and sites and change nothing; deploy names the survey's image and release in its artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import typing as t

import ansible_runner
import jinja2
import pytest
import yaml

from testbed import PG_SOURCE, collections_root, system_state

PROJECT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "awx-project")
PLAYBOOKS = ("backup", "verify", "restore", "status", "schedule", "migrate", "deploy", "edge")


def load(*parts: str, project: str = PROJECT) -> t.Any:
    with open(os.path.join(project, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def survey_extra_vars(template: dict[str, t.Any], answers: dict[str, t.Any]) -> dict[str, t.Any]:
    """The extra vars AWX makes from a survey: each answer checked against its question, a default where none."""
    spec = template["survey_spec"]["spec"]
    questions = {question["variable"]: question for question in spec}
    assert set(answers) <= set(questions), f"no survey question for {set(answers) - set(questions)}"
    extra = {}
    for variable, question in questions.items():
        value = answers.get(variable, question.get("default", ""))
        if question["required"]:
            assert value not in ("", None), f"{template['name']}: {variable} is required"
        if question["type"] == "multiplechoice":
            assert value in question["choices"], (variable, value)
        elif question["type"] == "integer":
            assert isinstance(value, int) and question["min"] <= value <= question["max"], (variable, value)
        else:
            assert isinstance(value, str), (variable, value)
        extra[variable] = value
    return extra


class Job(t.NamedTuple):
    status: str
    stdout: str
    artifact: dict[str, t.Any]


class Awx:
    """Launches the project's job templates as AWX does, with one credential of the project's type."""

    def __init__(self, base: t.Any, project: str, credential: dict[str, str], host_vars: dict[str, t.Any]) -> None:
        self.base, self.project, self.credential, self.host_vars = base, project, credential, host_vars
        self.count = 0

    def launch(self, playbook: str, answers: dict[str, t.Any], host_vars: dict[str, t.Any] | None = None,
               job_type: str = "run") -> Job:
        template = yaml.safe_load(open(os.path.join(PROJECT, "job-templates", f"{playbook}.yml"), encoding="utf-8"))
        assert template["playbook"] == f"{playbook}.yml" and template["survey_enabled"]
        extra = survey_extra_vars(template, answers)
        self.count += 1
        private = self.base / f"job{self.count}-{playbook}"
        shutil.copytree(self.project, private / "project")
        # The template's inventory: the project's own (its group_vars), with the host on this machine.
        shutil.copytree(os.path.join(self.project, "inventory"), private / "inventory")
        (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"backup-runner": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            **self.host_vars, **(host_vars or {})}}}}))
        (private / "env").mkdir()
        (private / "env" / "extravars").write_text(yaml.safe_dump(extra))
        envvars = {"ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
                   "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
                   # the execution environment's /etc/lifeboat: new for every job
                   "LIFEBOAT_SIGNING_KEY_FILE": str(private / "ee-etc-lifeboat" / "signing_key")}
        if "lifeboat database" in template["credential_types"]:
            envvars.update(self.inject(private / "credential"))
        cmdline = "--check --diff" if job_type == "check" else None
        runner = ansible_runner.run(private_data_dir=str(private), playbook=template["playbook"], ident="job",
                                    envvars=envvars, cmdline=cmdline, quiet=True, timeout=900)
        stdout = (private / "artifacts" / "job" / "stdout").read_text(errors="replace")
        self.assert_no_secret(private / "artifacts")
        artifact: dict[str, t.Any] = {}
        for event in runner.events:
            if event.get("event") == "playbook_on_stats":
                artifact = event["event_data"].get("artifact_data", {})
        return Job(runner.status, stdout, artifact)

    def assert_no_secret(self, artifacts: t.Any) -> None:
        """No file of the job's artifacts (its events, stdout, command and environment) holds a line of a secret of
        the credential: the password, the age identity, the signing key's body."""
        lines = {line for value in self.credential.values() for line in value.splitlines()
                 if len(line) >= 16 and not line.startswith("-----") and not line.startswith("#")}
        holding = {str(path) for path in artifacts.rglob("*") if path.is_file()
                   for line in lines if line in path.read_text(errors="replace")}
        assert lines and holding == set(), f"a secret of the credential in {sorted(holding)}"

    def inject(self, directory: t.Any) -> dict[str, str]:
        """The credential type's injectors rendered as AWX renders them: files in the job's private directory."""
        injectors = load("credential-type", "injectors.yml", project=self.project)
        inputs = {field["id"]: self.credential.get(field["id"], "")
                  for field in load("credential-type", "inputs.yml", project=self.project)["fields"]}
        render = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string
        directory.mkdir(mode=0o700)
        files = {}
        for name, template in injectors.get("file", {}).items():
            path = directory / name.removeprefix("template.")
            path.write_text(render(template).render(**inputs))
            path.chmod(0o600)
            files[name.removeprefix("template.")] = str(path)
        return {key: render(value).render(**inputs, tower={"filename": files})
                for key, value in injectors.get("env", {}).items()}


def failed(job: Job) -> str:
    return f"{job.status}: {job.stdout[-4000:]}"


@pytest.fixture(scope="module")
def credential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A credential of the project's type: the test bed's password, a new age identity and signing key."""
    identity = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
    recipient = subprocess.run(["age-keygen", "-y"], input=identity, capture_output=True, text=True,
                               check=True).stdout.strip()
    key = tmp_path_factory.mktemp("signing") / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "awx", "-f", str(key)], check=True)
    return {"age_identity": identity, "signing_key": key.read_text(), "recipient": recipient,
            "signer": " ".join(key.with_suffix(".pub").read_text().split()[:2])}


def project_host_vars(pg: t.Any, root: t.Any, recipient: str) -> dict[str, t.Any]:
    """The project's backup job, pointed at the test bed; its password still the credential's file."""
    (job,) = load("inventory", "group_vars", "all.yml")["backup_jobs"]
    return {"backup_root": str(root), "backup_encryption_recipients": [recipient], "backup_prune": False,
            "backup_jobs": [{**job, "database": PG_SOURCE, "login_host": pg.host, "login_port": pg.port,
                             "login_user": pg.user}]}


def test_every_playbook_has_a_job_template():
    wrappers = {name[:-4] for name in os.listdir(PROJECT) if name.endswith(".yml")}
    templates = {name[:-4] for name in os.listdir(os.path.join(PROJECT, "job-templates"))}
    assert wrappers == templates == set(PLAYBOOKS)
    for playbook in PLAYBOOKS:
        template = load("job-templates", f"{playbook}.yml")
        for question in template["survey_spec"]["spec"]:  # scalars only: AWX surveys cannot give lists or dicts
            assert question["type"] in ("text", "integer", "multiplechoice"), question


@pytest.fixture(scope="module")
def awx(pg, credential, tmp_path_factory):
    base = tmp_path_factory.mktemp("awx")
    secret = {"db_password": pg.password, "age_identity": credential["age_identity"],
              "signing_key": credential["signing_key"]}
    return Awx(base, PROJECT, secret, project_host_vars(pg, base / "backups", credential["recipient"]))


def test_backup_verify_restore_status_migrate_as_awx_runs_them(awx, pg, credential, unique_name):
    backup = awx.launch("backup", {"backup_verify_level": "restore"})
    assert backup.status == "successful", failed(backup)
    (archive,) = backup.artifact["lifeboat_backup_outcome"]["backup-runner"]["archives"]
    assert archive["archive"].endswith(".pgdump.zst.age") and archive["verification"] == {"level": "restore", "ok": True}
    with open(archive["archive"] + ".manifest.json", encoding="utf-8") as handle:
        assert json.load(handle)["signer"].startswith(credential["signer"])  # the credential's key, not the job's

    verify = awx.launch("verify", {})
    assert verify.status == "successful", failed(verify)
    checked = verify.artifact["lifeboat_verify_outcome"]["backup-runner"]["archives"]
    assert [(a["level"], a["ok"]) for a in checked] == [("restore", True)]

    target = f"{unique_name}_awx_restore"
    try:
        restore = awx.launch("restore", {"restore_job": "journal", "restore_target_database": target})
        assert restore.status == "successful", failed(restore)
        (restored,) = restore.artifact["lifeboat_restore_outcome"]["backup-runner"]["restored"]
        assert restored["archive"] == archive["archive"] and restored["database"] == target
        assert pg.fingerprint(target)["counts"] == pg.fingerprint(PG_SOURCE)["counts"]
    finally:
        pg.drop(target)

    status = awx.launch("status", {})
    assert status.status == "successful", failed(status)
    assert status.artifact["lifeboat_status_outcome"]["backup-runner"]["state"] == "OK"

    target = f"{unique_name}_awx_migrate"
    switched = awx.base / "switched"  # the app's setting the switch-over tasks change
    switch = awx.base / "switch.yml"
    switch.write_text(yaml.safe_dump([{"name": "Point the app at the target", "ansible.builtin.copy": {
        "dest": str(switched), "content": "DATABASE_URL=target\n", "mode": "0600"}}]))
    try:
        migrate = awx.launch("migrate", {}, host_vars={
            "migrate_engine": "postgresql", "migrate_source_archive": archive["archive"],
            "migrate_target": pg.login(database=target), "migrate_work_dir": str(awx.base / "migrate"),
            "migrate_switch_tasks": str(switch)})
        assert migrate.status == "successful", failed(migrate)
        outcome = migrate.artifact["lifeboat_migrate_outcome"]["backup-runner"]
        assert outcome["validation"]["passed"] and outcome["archive"] == archive["archive"]
        assert set(outcome) == {"status", "failed", "action", "rolled_back", "archive", "validation", "failure"}, outcome
        assert (outcome["status"], outcome["failed"], outcome["failure"]) == ("ok", [], None), outcome
        assert pg.fingerprint(target)["counts"] == pg.fingerprint(PG_SOURCE)["counts"]
        assert switched.read_text() == "DATABASE_URL=target\n"
    finally:
        pg.drop(target)


def test_schedule_and_edge_in_check_mode(awx, pg):
    before = system_state()
    schedule = awx.launch("schedule", {}, job_type="check", host_vars={
        "backup_schedule_jobs": [{"name": "journal", "engine": "postgresql", "database": PG_SOURCE,
                                  "login_host": pg.host, "login_port": pg.port, "login_user": pg.user,
                                  "login_password_file": "/etc/lifeboat/journal.password"}]})
    assert schedule.status == "successful", failed(schedule)
    assert "lifeboat-backup-journal.timer" in schedule.stdout
    assert schedule.artifact["lifeboat_schedule_outcome"]["backup-runner"] == {
        "status": "ok", "jobs": ["journal"], "probes": [], "failed": []}

    edge = awx.launch("edge", {"reverse_proxy_acme_email": "ops@example.org"}, job_type="check", host_vars={
        "reverse_proxy_sites": [{"name": "awxsite", "server_names": ["awx.example.org"],
                                 "upstreams": ["127.0.0.1:8000"], "tls": "self_signed"}],
        "healthcheck_probes": [{"name": "awxsite", "type": "http", "url": "http://127.0.0.1:9/health"}]})
    assert edge.status == "successful", failed(edge)
    assert edge.artifact["lifeboat_edge_outcome"]["backup-runner"] == {
        "status": "ok", "sites": ["awxsite"], "tunnel": False, "probes": ["awxsite"], "failed": []}
    assert "lifeboat-awxsite.conf" in edge.stdout  # the site's file rendered and diffed
    assert system_state() == before, "check mode changed this machine"


def test_deploy_in_check_mode_names_the_surveys_release(awx):
    """Check mode plans the deploy of the survey's image, under the survey's release name, and starts nothing."""
    sites = awx.base / "nginx-sites"  # the site the reverse_proxy role made, as far as the plan reads it
    sites.mkdir()
    (sites / "lifeboat-awxsite.conf").write_text("server {\n    server_name awx.example.org;\n}\n")
    deploy = awx.launch("deploy", {"deploy_image": "lifeboat/deploy-app:2", "deploy_release": "awx-r2"},
                        job_type="check", host_vars={
                            "deploy_app": "awxapp", "deploy_site": "awxsite", "deploy_sites_dir": str(sites),
                            "deploy_include_dir": str(awx.base / "nginx-include"),
                            "deploy_state_dir": str(awx.base / "deploy-state"),
                            "deploy_switch_socket_dir": str(awx.base / "switch")})
    assert deploy.status == "successful", failed(deploy)
    outcome = deploy.artifact["lifeboat_deploy_outcome"]["backup-runner"]
    assert (outcome["outcome"], outcome["release"], outcome["status"]) == ("would_deploy", "awx-r2", "ok"), outcome
    started = subprocess.run(["docker", "ps", "-a", "-q", "--filter", "label=lifeboat.deploy.app=awxapp"],
                             capture_output=True, text=True, check=True).stdout
    assert started == ""
