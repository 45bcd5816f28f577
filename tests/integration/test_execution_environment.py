# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment (examples/execution-environment/, built by scripts/testbed/ee.sh on the test bed's own
base image, no registry): ansible-builder's introspection finds the collection's dependencies, and the backup,
verify and restore playbooks run inside the image as AWX runs a job: ansible-runner with process isolation
(docker), the project's playbooks and its collections folder in the private data dir, the credentials injected as
!unsafe extra vars. The image holds the dependencies; the collection comes from the project (the checkout, built
and installed into project/collections as AWX installs a project's collections/requirements.yml). One image build,
cached across runs, and one run of each playbook; the runs reach the test bed through the host's network. The backup
signs its manifests (ssh-keygen) and copies the journal job off site to the real S3 server (boto3), so an image that
lacks either fails here, not only in the introspected list. A PostgreSQL 17 container is dumped and verified over TCP
with the image's own client (the server is newer than the test bed's 15). LIFEBOAT_EE_IMAGE=NAME runs these tests
against an image built elsewhere instead of building one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing as t

import ansible_runner
import pytest
import yaml
from test_runner_secrets import (  # pylint: disable=import-error
    MARKERS,
    RunnerRun,
    artifact_data,
    assert_no_secret,
    jobs,
    new_entries,
    runner_failed,
    sha256_of,
)
from test_runner_secrets import hostile as hostile_fixture  # noqa: F401  # pylint: disable=import-error,unused-import

from containers import ContainerBed  # pylint: disable=import-error
from testbed import MONGO_SOURCE, PG_SOURCE, REPO_ROOT, Unsafe, UnsafeDumper

CACHE = os.environ.get("LIFEBOAT_CACHE", os.path.expanduser("~/.cache/lifeboat"))
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def ee_image() -> str:
    """The image, built once and cached (~0.2 s when it is there); LIFEBOAT_EE_IMAGE names another one."""
    if os.environ.get("LIFEBOAT_EE_IMAGE"):
        return os.environ["LIFEBOAT_EE_IMAGE"]
    done = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "testbed", "ee.sh")], capture_output=True,
                          text=True, check=False, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> str:
    """The checkout as a project's collection: built, then installed into project/collections."""
    base = tmp_path_factory.mktemp("ee-project")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(base / "built"),
                    REPO_ROOT], check=True, capture_output=True)
    tarball = next((base / "built").glob("lifeboat-ops-*.tar.gz"))
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "--force", "-p",
                    str(base / "collections"), str(tarball)], check=True, capture_output=True)
    return str(base / "collections")


def test_introspect_lists_the_collection_dependencies(project, ee_image):
    builder = os.path.join(CACHE, "ansible-builder-3.2.0", "bin", "ansible-builder")  # ee.sh installs it
    done = subprocess.run([builder, "introspect", project], capture_output=True, text=True, check=True)
    found = yaml.safe_load(done.stdout.split("\n", 1)[1])
    assert [line.split()[0] for line in found["python"]] == [
        "psycopg[binary]>=3.1", "pymongo>=4.6", "docker>=7.0", "boto3>=1.36"]
    assert [line.split("  #")[0] for line in found["system"]] == [
        "postgresql-client [platform:dpkg]", "postgresql [platform:rpm]", "zstd", "age",
        "openssh-client [platform:dpkg]", "openssh-clients [platform:rpm]"]
    assert all(line.endswith("# from collection lifeboat.ops") for line in found["python"] + found["system"])


def run_in_ee(base: t.Any, image: str, project: str, hostile: dict[str, t.Any], playbook: str,
              host_vars: dict[str, t.Any], backups: t.Any, secrets: t.Any) -> RunnerRun:
    """lifeboat.ops.PLAYBOOK inside IMAGE through ansible-runner's process isolation (docker) at -vvvv, the folder
    BACKUPS mounted on /backups, SECRETS (the signing key, the S3 keys) read-only on /secrets."""
    private = base / playbook / "private"
    for directory in (private / "env", private / "inventory", private / "project"):
        directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", project, str(private / "project" / "collections")], check=True)
    (private / "env" / "extravars").write_text(yaml.dump(hostile["injected"], Dumper=UnsafeDumper))
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3", **host_vars}}}}))
    (private / "project" / "site.yml").write_text(yaml.safe_dump([{"import_playbook": f"lifeboat.ops.{playbook}"}]))
    for writable in (private, backups):  # the image runs as uid 1000, as AWX's images do
        os.chmod(writable, 0o777)
    before = set(os.listdir("/tmp"))
    runner = ansible_runner.run(
        private_data_dir=str(private), playbook="site.yml", ident="job", verbosity=4, quiet=True, timeout=900,
        process_isolation=True, process_isolation_executable="docker", container_image=image,
        container_options=["--network=host"],  # the test bed listens on the host's loopback
        container_volume_mounts=[f"{backups}:/backups", f"{secrets}:/secrets:ro"],
        envvars={"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    with open(private / "artifacts" / "job" / "stdout", encoding="utf-8", errors="replace") as handle:
        stdout = handle.read()
    return RunnerRun(runner.status, runner.rc, stdout, str(private), [str(private), str(backups), *new_entries(before)])


def test_backup_verify_restore_inside_the_execution_environment(pg, mongo, hostile_fixture, ee_image, project,  # noqa: F811
                                                                s3_server, tmp_path, unique_name):
    hostile = hostile_fixture  # test_runner_secrets' fixture: the role and user with hostile passwords
    inside = "/backups"
    outside = tmp_path / "backups"
    outside.mkdir()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lifeboat", "-f", str(secrets / "signing_key")],
                   check=True)
    s3_server.credentials_file(str(secrets))
    for secret in secrets.iterdir():
        os.chown(secret, 1000, 1000)  # the image's user; the files stay 0600
    bucket = s3_server.bucket()
    offsite = {"enabled": True, "bucket": bucket, "prefix": "ee", "endpoint_url": s3_server.endpoint,
               "path_style": True, "credentials_file": "/secrets/s3-credentials"}
    backup_jobs = jobs(pg, mongo, hostile["user"], signing_key_file="/secrets/signing_key")
    backup_jobs[0]["offsite"] = offsite  # journal
    common = {"backup_root": inside, "backup_jobs": backup_jobs}

    def run(playbook: str, **host_vars: t.Any) -> RunnerRun:
        return run_in_ee(tmp_path, ee_image, project, hostile, playbook, {**common, **host_vars}, outside, secrets)

    backup = run("backup", backup_verify_level="restore")
    assert backup.status == "successful", runner_failed(backup)
    with open(os.path.join(backup.private_data_dir, "artifacts", "job", "command"), encoding="utf-8") as handle:
        assert ee_image in handle.read()  # ansible-runner ran the image
    assert "/usr/bin/python3" in backup.stdout
    made = artifact_data(backup)["lifeboat_backup_outcome"]["localhost"]
    assert made["status"] == "ok" and made["failed"] == []
    assert sorted(a["name"] for a in made["archives"]) == ["journal", "journal_uri", "nightscout"]
    for archive in made["archives"]:
        assert archive["archive"].startswith(inside + "/")
        on_host = str(outside) + archive["archive"].removeprefix(inside)
        assert archive["sha256"] == sha256_of(on_host) and archive["size"] == os.path.getsize(on_host)
        assert archive["verification"] == {"level": "restore", "ok": True} and archive["counts"]
        assert os.path.exists(on_host + ".manifest.json.sig")  # signed inside the image
        if archive["engine"] == "postgresql":  # the image's client of the server's version, of its two (15, 17)
            with open(on_host + ".manifest.json", encoding="utf-8") as handle:
                manifest = json.load(handle)
            server_major = manifest["server"]["version"].split(".")[0]
            assert f" {server_major}." in manifest["tool"]["version"], (manifest["server"], manifest["tool"])
    journal = os.path.basename(next(a["archive"] for a in made["archives"] if a["name"] == "journal"))
    stored = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="ee/")["Contents"]
    assert sorted(entry["Key"] for entry in stored) == sorted(
        f"ee/{journal}{suffix}" for suffix in ("", ".manifest.json", ".manifest.json.sig"))

    verify = run("verify", backup_verify_level="restore")
    assert verify.status == "successful", runner_failed(verify)
    proven = artifact_data(verify)["lifeboat_verify_outcome"]["localhost"]
    assert {a["archive"] for a in proven["archives"]} == {a["archive"] for a in made["archives"]}
    assert all(a["ok"] and a["level"] == "restore" for a in proven["archives"])

    try:
        restore = run("restore", restore_items=[{"job": "journal", "target_database": unique_name},
                                                {"job": "nightscout", "target_database": unique_name}])
        assert restore.status == "successful", runner_failed(restore)
        restored = artifact_data(restore)["lifeboat_restore_outcome"]["localhost"]
        expected = [("journal", unique_name), ("nightscout", unique_name)]
        assert [(r["job"], r["target"]) for r in restored["restored"]] == expected
        assert pg.fingerprint(unique_name)["hashes"] == pg.fingerprint(PG_SOURCE)["hashes"]
        assert mongo.fingerprint(unique_name)["hashes"] == mongo.fingerprint(MONGO_SOURCE)["hashes"]
    finally:
        pg.drop(unique_name)
        mongo.drop(unique_name)
    for run in (backup, verify, restore):
        assert_no_secret(run, MARKERS[:2])


def test_postgresql_17_container_dumped_from_inside_the_execution_environment(container_bed: ContainerBed, ee_image,
                                                                              project, tmp_path):
    """A plain TCP job (no `container`): the image's own pg_dump and pg_restore do the work, so a client older than
    the server (the bookworm image's 15) fails the backup here. Verified at restore level: restored into a scratch
    database of the same server and compared."""
    box = container_bed.postgres("ee-pg17", user="journal_owner", database="journal")
    with box.connect_pg() as conn:
        conn.execute("CREATE TABLE entry (id bigint PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL)")
        conn.execute("INSERT INTO entry SELECT n, repeat(md5(n::text), 3), "
                     "'2026-01-01'::timestamptz + n * interval '1 h' FROM generate_series(1, 1234) AS n")
        assert conn.info.server_version // 10000 == 17
    backups = tmp_path / "backups"
    backups.mkdir()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    injected = {"injected": {"lifeboat_pg17_password": Unsafe(box.password)}}  # as a credential injects it
    job = {"name": "journal17", "engine": "postgresql", "database": box.database, "login_host": box.ip,
           "login_port": box.port, "login_user": box.user, "login_password": "{{ lifeboat_pg17_password }}"}
    backup = run_in_ee(tmp_path, ee_image, project, injected, "backup",
                       {"backup_root": "/backups", "backup_jobs": [job], "backup_verify_level": "restore"},
                       backups, secrets)
    assert backup.status == "successful", runner_failed(backup)
    made = artifact_data(backup)["lifeboat_backup_outcome"]["localhost"]
    [archive] = made["archives"]
    assert archive["verification"] == {"level": "restore", "ok": True}
    assert archive["counts"] == {"public.entry": 1234}
    on_host = str(backups) + archive["archive"].removeprefix("/backups")
    assert archive["sha256"] == sha256_of(on_host)
    with open(on_host + ".manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["server"]["version"].startswith("17.") and " 17." in manifest["tool"]["version"], manifest["tool"]
    assert box.password
    assert_no_secret(backup, (box.password.split()[0].encode(),))  # PgBox<run id>: the password's distinct start


DOCS = os.path.join(REPO_ROOT, "docs", "awx.md")
# ansible-runner's event markers (ESC[K base64 ESC[nD ESC[K, invisible on a terminal) and colours in navigator's
# stdout mode when the output is not a terminal.
_RUNNER_EVENT = re.compile(r"\x1b\[K[A-Za-z0-9+/=]*\x1b\[\d+D")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def documented_console(path: str, section: str) -> list[tuple[str, list[str]]]:
    """The commands (``$ ...``) of the console blocks of SECTION in PATH, each with the output shown after it."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text[start:end if end > 0 else None], re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line.rstrip())
    return steps


def matches_shown(shown: list[str], actual: list[str]) -> bool:
    """ACTUAL is what SHOWN shows: the same lines, where a line `...` stands for any lines and `...` within a line
    for any text (counts that change with the collection's tasks)."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if line == "..." else "[^\n]*".join(map(re.escape, line.split("..."))) + "\n"
                      for line in shown)
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


def shell_environment() -> dict[str, str]:
    """A reader's shell: this run's environment without the Ansible settings the test session made (navigator
    hands ANSIBLE_* variables to the container), the test venv's ansible-galaxy on PATH."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    return {**kept, "PATH": f"{BIN}:{os.environ['PATH']}"}


def test_the_documented_commands_run_as_written(ee_image):
    """docs/awx.md's console blocks of "The execution environment", run in one shell from the checkout: each
    command succeeds and prints what the page shows (the introspection, the image's PostgreSQL clients, the
    navigator run's recap). ansible-navigator and ansible-builder come from scripts/testbed/navigator.sh, as the
    page says."""
    steps = documented_console(DOCS, "The execution environment")
    assert any("ansible-navigator run" in command and "--ce docker" in command for command, _shown in steps)
    script = ["set -euo pipefail"]
    for number, (command, _shown) in enumerate(steps):
        script += [command, f"echo '@@step {number}@@'"]
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=900, check=False, env=shell_environment())
    outputs = re.split(r"^@@step \d+@@\n", _ANSI.sub("", _RUNNER_EVENT.sub("", done.stdout)), flags=re.MULTILINE)
    assert done.returncode == 0 and len(outputs) == len(steps) + 1, (
        f"the documented commands stopped after {len(outputs) - 1} of {len(steps)}:\n{done.stdout[-2000:]}"
        f"\n{done.stderr[-3000:]}")
    for (command, shown), output in zip(steps, outputs[:-1], strict=True):
        actual = [line.rstrip() for line in output.splitlines()]
        while actual and not actual[-1]:
            actual.pop()
        assert matches_shown(shown, actual), "\n".join([f"$ {command}", "shown:", *shown, "printed:", *actual])
