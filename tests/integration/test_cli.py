# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `lifeboat` host command, installed the way the scheduling role installs it, with Ansible out of reach."""

from __future__ import annotations

import glob
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from testbed import REPO_ROOT, listing, metric

BLOCK_ANSIBLE = '''
import sys

class NoAnsible:
    """The host command must run where Ansible is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ansible", "ansible_collections"):
            raise ImportError(name + " imported by the host command")
        return None

sys.meta_path.insert(0, NoAnsible())
'''


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The library as the package lifeboat_ops beside the launcher, as on a managed host."""
    return install_host(tmp_path_factory.mktemp("host"))


def install_host(root):
    """Install the host command under root as the scheduling role does (the library, the launcher, no Ansible)."""
    package = root / "lib" / "lifeboat_ops"
    package.mkdir(parents=True)
    for source in glob.glob(os.path.join(REPO_ROOT, "plugins", "module_utils", "*.py")):
        shutil.copy(source, package)
    (package / "__init__.py").write_text("")
    (root / "bin").mkdir()
    shutil.copy(os.path.join(REPO_ROOT, "bin", "lifeboat"), root / "bin" / "lifeboat")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(BLOCK_ANSIBLE)
    return root


def host_env(host, **extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE", "PYTHON"))}
    return {**env, "LIFEBOAT_LIB": str(host / "lib"), "PYTHONPATH": str(host / "site"), **extra}


def lifeboat(host, *args, env=None, timeout=300):
    return subprocess.run([sys.executable, str(host / "bin" / "lifeboat"), *args], capture_output=True, text=True,
                          env=env or host_env(host), timeout=timeout, check=False)


def write_config(path, pg, mongo, destination, **job_extra):
    config = {
        "defaults": {"destination": str(destination), "login_host": "127.0.0.1"},
        "jobs": {
            "journal": {"engine": "postgresql", "database": pg.sample, "login_port": pg.port, "login_user": pg.user,
                        "login_password_file": pg.password_file, **job_extra},
            "nightscout": {"engine": "mongodb", "database": mongo.sample, "login_port": mongo.port,
                           "login_user": mongo.user, "login_password_file": mongo.password_file, **job_extra},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


VOLATILE = ("started_at", "finished_at", "duration_seconds", "verifications")
VOLATILE_ARCHIVE = ("file", "size", "sha256", "plain_size", "plain_sha256")


def comparable(manifest):
    archive = {k: v for k, v in manifest["archive"].items() if k not in VOLATILE_ARCHIVE}
    commands = [c.replace(manifest["archive"]["file"], "FILE").replace(manifest["archive"]["sha256"], "SHA256")
                for c in manifest["restore_commands"]]
    return {**{k: v for k, v in manifest.items() if k not in VOLATILE}, "archive": archive,
            "restore_commands": commands}


def test_backup_makes_the_same_archive_and_manifest_as_the_module(host, pg, mongo, run_module, tmp_path):
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, tmp_path / "cli", compression_level=5)
    for job, module, server in (("journal", "postgresql_dump", pg), ("nightscout", "mongodb_dump", mongo)):
        run = lifeboat(host, "backup", "--job", job, "--config", config)
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr and f"{job}: wrote " in run.stderr
        (cli_manifest,) = glob.glob(str(tmp_path / "cli" / f"{job}-*.manifest.json"))
        by_module = run_module(module, server.login(database=server.sample, destination=str(tmp_path / "module"),
                                                    job=job, compression_level=5))
        assert by_module.rc == 0, by_module.result
        with open(cli_manifest, encoding="utf-8") as handle:
            cli = json.load(handle)
        with open(by_module.result["manifest"], encoding="utf-8") as handle:
            module_made = json.load(handle)
        assert comparable(cli) == comparable(module_made)
        suffix = os.path.basename(cli_manifest).split(".", 1)[1]
        assert os.path.basename(by_module.result["manifest"]).split(".", 1)[1] == suffix
        if job == "journal":  # same objects in the same order: pg_restore lists both alike (minus its header)
            lists = [subprocess.run(f"zstd -dc {path} | pg_restore --list", shell=True, capture_output=True,
                                    text=True, check=True).stdout for path in (cli_manifest[:-14], by_module.result["archive"])]
            body = [[line for line in text.splitlines() if not line.startswith(";")] for text in lists]
            assert body[0] == body[1] and len(body[0]) > 20


def test_verify_then_a_damaged_archive_fails(host, pg, mongo, tmp_path):
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, tmp_path / "backups")
    for job in ("journal", "nightscout"):
        assert lifeboat(host, "backup", "--job", job, "--config", config).returncode == 0
    run = lifeboat(host, "verify", "--config", config, "--level", "restore")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(" ok (restore, ") == 2
    (archive,) = glob.glob(str(tmp_path / "backups" / "journal-*.zst"))
    with open(archive, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\xff")
    run = lifeboat(host, "verify", "--job", "journal", "--config", config)
    assert run.returncode == 1
    assert f"error: journal: {os.path.basename(archive)}: checksum check failed" in run.stderr


def newest_verification(destination, job):
    (manifest,) = glob.glob(str(destination / f"{job}-*.manifest.json"))
    with open(manifest, encoding="utf-8") as handle:
        return json.load(handle)["verifications"][-1]


def test_auto_level_reads_what_the_host_can_decrypt_and_checks_the_rest(host, pg, mongo, age_key, tmp_path):
    """A host that encrypts to the operators' key holds no private key: its nightly verify must still pass."""
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a long passphrase for the journal\n")
    passphrase.chmod(0o600)
    config = tmp_path / "lifeboat.yml"
    config.write_text(yaml.safe_dump({
        "defaults": {"login_host": "127.0.0.1", "login_port": pg.port, "login_user": pg.user,
                     "login_password_file": pg.password_file, "database": pg.sample},
        "jobs": {
            "to-operators": {"engine": "postgresql", "destination": str(tmp_path / "operators"),
                             "encryption_recipients": [age_key["recipient"]]},
            "with-key": {"engine": "postgresql", "destination": str(tmp_path / "with-key"),
                         "encryption_recipients": [age_key["recipient"]],
                         "verify": {"age_identity_files": [age_key["identity"]]}},
            "passphrase": {"engine": "postgresql", "destination": str(tmp_path / "passphrase-job"),
                           "encryption_passphrase_file": str(passphrase)},
            "plain": {"engine": "postgresql", "destination": str(tmp_path / "plain")},
        },
    }))
    for job in ("to-operators", "with-key", "passphrase", "plain"):
        assert lifeboat(host, "backup", "--job", job, "--config", str(config)).returncode == 0
    run = lifeboat(host, "verify", "--config", str(config))  # the config says nothing: level auto
    assert run.returncode == 0, run.stderr
    levels = {job: newest_verification(tmp_path / folder, job)["level"]
              for job, folder in (("to-operators", "operators"), ("with-key", "with-key"),
                                  ("passphrase", "passphrase-job"), ("plain", "plain"))}
    assert levels == {"to-operators": "checksum", "with-key": "structure", "passphrase": "structure",
                      "plain": "structure"}
    # Asked for explicitly, a level the host cannot reach is a one-line error, not a silent downgrade.
    run = lifeboat(host, "verify", "--job", "to-operators", "--level", "structure", "--config", str(config))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "or verify with level=checksum" in run.stderr


def test_journal_priorities_under_systemd(host, pg, mongo, tmp_path):
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, tmp_path / "backups")
    run = lifeboat(host, "backup", "--job", "journal", "--config", config,
                   env=host_env(host, JOURNAL_STREAM="8:12345"))
    assert run.returncode == 0
    assert all(line.startswith("<6>") for line in run.stderr.splitlines()), run.stderr
    run = lifeboat(host, "backup", "--job", "nope", "--config", config, env=host_env(host, JOURNAL_STREAM="8:1"))
    assert run.returncode == 1 and run.stderr.startswith("<3>backup failed: ")


def big_config(tmp_path, pg, database):
    """A job on the large test database: its dump lasts long enough to watch or interrupt."""
    config = tmp_path / "lifeboat.yml"
    config.write_text(yaml.safe_dump({"jobs": {"big": {
        "engine": "postgresql", "database": database, "destination": str(tmp_path / "backups"),
        "login_host": pg.host, "login_port": pg.port, "login_user": pg.user,
        "login_password_file": pg.password_file}}}))
    return config


def test_progress_line_on_a_terminal(host, pg, mongo, big_pg, tmp_path):
    config = big_config(tmp_path, pg, big_pg)
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, str(host / "bin" / "lifeboat"), "backup", "--job", "big",
                                "--config", str(config)], stdin=secondary, stdout=secondary, stderr=secondary,
                               env=host_env(host), close_fds=True)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=300) == 0
    os.close(primary)
    text = seen.decode()
    assert "\r\x1b[K" in text and " written in " in text, text
    assert "big: wrote " in text


def test_sigterm_leaves_no_archive(host, pg, mongo, big_pg, tmp_path):
    config = big_config(tmp_path, pg, big_pg)
    process = subprocess.Popen([sys.executable, str(host / "bin" / "lifeboat"), "backup", "--job", "big",
                                "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=host_env(host), text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(
            name.startswith(".big-") and os.path.getsize(tmp_path / "backups" / name) > 1 << 20
            for name in (os.listdir(tmp_path / "backups") if (tmp_path / "backups").exists() else [])):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "stopped by SIGTERM before the work was done" in err
    # No archive and no partial file: only the record that the run failed, which `lifeboat status` reports (the
    # signing key's public half comes with a complete archive).
    assert listing(tmp_path / "backups") == [".lifeboat-last-run-big.json"]
    record = json.loads((tmp_path / "backups" / ".lifeboat-last-run-big.json").read_text())
    assert record["ok"] is False and "SIGTERM" in record["failure"]
    status = subprocess.run([sys.executable, str(host / "bin" / "lifeboat"), "status", "--config", str(config)],
                            capture_output=True, text=True, env=host_env(host), check=False)
    assert status.returncode == 2
    assert "big last backup run failed at" in status.stdout


def test_quoted_numbers_are_taken_as_ansible_takes_them(host, pg, mongo, tmp_path):
    """Inventories often quote numbers; the role writes them as given and the config takes them like a module."""
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, tmp_path / "backups", compression_level="5",
                          retention={"keep_last": "1"})
    data = yaml.safe_load(open(config, encoding="utf-8"))
    data["jobs"]["journal"]["login_port"] = str(pg.port)
    open(config, "w", encoding="utf-8").write(yaml.safe_dump(data))
    assert f"login_port: '{pg.port}'" in open(config, encoding="utf-8").read()
    run = lifeboat(host, "backup", "--job", "journal", "--config", config)
    assert run.returncode == 0, run.stderr
    (manifest,) = glob.glob(str(tmp_path / "backups" / "journal-*.manifest.json"))
    assert json.loads(open(manifest, encoding="utf-8").read())["archive"]["compression_level"] == 5
    run = lifeboat(host, "prune", "--job", "journal", "--dry-run", "--config", config)
    assert run.returncode == 0 and "keep journal-" in run.stderr, run.stderr


def test_check_validates_the_config(host, pg, mongo, tmp_path):
    config = tmp_path / "lifeboat.yml"
    write_config(config, pg, mongo, tmp_path / "backups", retention={"keep_daily": 7})
    done = subprocess.run([sys.executable, str(host / "bin" / "lifeboat"), "check", "--config", str(config)],
                          capture_output=True, text=True, env=host_env(host), check=False)
    assert done.returncode == 0
    assert done.stderr.startswith(f"{config}: ") and "valid" in done.stderr
    config.write_text(config.read_text().replace("engine: postgresql", "engine: postgres", 1))
    done = subprocess.run([sys.executable, str(host / "bin" / "lifeboat"), "check", "--config", str(config)],
                          capture_output=True, text=True, env=host_env(host), check=False)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and "needs engine: postgresql or mongodb" in done.stderr
    assert not (tmp_path / "backups").exists()


@pytest.mark.parametrize("job_extra, message", [
    ({"login_password": "secret"}, "passwords do not belong in the config"),
    ({"conection": {}}, "unknown option 'conection'"),
    ({"format": "tar"}, "format must be one of custom, directory (got 'tar')"),
    ({"retention": {"keep_daily": "seven"}}, "retention: keep_daily must be a whole number (got 'seven')"),
])
def test_config_mistakes_give_one_line(host, pg, mongo, tmp_path, job_extra, message):
    config = tmp_path / "lifeboat.yml"
    write_config(config, pg, mongo, tmp_path / "backups")
    data = yaml.safe_load(config.read_text())
    data["jobs"]["journal"].update(job_extra)
    config.write_text(yaml.safe_dump(data))
    run = lifeboat(host, "backup", "--job", "journal", "--config", str(config))
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr
    assert "secret" not in run.stderr
    run = lifeboat(host, "status", "--config", str(config))
    assert run.returncode == 3 and "LIFEBOAT UNKNOWN - " in run.stderr


def test_prune_keeps_what_the_policy_and_the_last_verified_archive_need(host, pg, mongo, tmp_path):
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, tmp_path / "backups", retention={"keep_last": 1})
    for _attempt in range(2):
        assert lifeboat(host, "backup", "--job", "journal", "--config", config).returncode == 0
        time.sleep(1.1)  # archive names carry the start second
    first, second = sorted(glob.glob(str(tmp_path / "backups" / "journal-*.zst")))
    run = lifeboat(host, "prune", "--job", "journal", "--config", config)
    assert run.returncode == 0 and "nothing removed: " in run.stderr and "is not verified" in run.stderr
    assert lifeboat(host, "verify", "--job", "journal", "--select", "all", "--config", config).returncode == 0
    run = lifeboat(host, "prune", "--job", "journal", "--config", config, "--dry-run")
    assert run.returncode == 0 and f"would remove {os.path.basename(first)}" in run.stderr
    assert os.path.exists(first)
    run = lifeboat(host, "prune", "--job", "journal", "--config", config)
    assert run.returncode == 0 and f"remove {os.path.basename(first)}" in run.stderr
    assert "1 archives removed" in run.stderr
    assert sorted(glob.glob(str(tmp_path / "backups" / "journal-*"))) == [
        second, second + ".manifest.json", second + ".manifest.json.sig"]


def test_status_exit_codes_follow_the_states_and_metrics_pass_promtool(host, pg, mongo, tmp_path):
    metrics = tmp_path / "textfile" / "lifeboat.prom"
    metrics.parent.mkdir()
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, tmp_path / "backups")

    def status(*extra):
        run = lifeboat(host, "status", "--config", config, "--metrics-file", str(metrics), *extra)
        check = subprocess.run(["promtool", "check", "metrics"], input=metrics.read_text(), capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        return run

    run = status()  # nothing backed up yet
    assert run.returncode == 2 and run.stdout.startswith("LIFEBOAT CRITICAL - ")
    assert "no archive of job journal" in run.stdout
    assert metric(metrics.read_text(), "lifeboat_backup_status", job="journal") == 2
    for job in ("journal", "nightscout"):
        assert lifeboat(host, "backup", "--job", job, "--config", config).returncode == 0
    run = status()
    assert run.returncode == 1 and run.stdout.startswith("LIFEBOAT WARNING - "), run.stdout
    assert "journal: WARNING: newest journal-" in run.stdout and "not verified" in run.stdout
    assert lifeboat(host, "verify", "--config", config).returncode == 0
    run = status()
    assert run.returncode == 0 and run.stdout.startswith(
        f"LIFEBOAT OK - 2 backup job(s) in {tmp_path / 'backups'} fresh and verified, "), run.stdout
    text = metrics.read_text()
    assert metric(text, "lifeboat_backup_last_verified", job="journal", database=pg.sample) == 1
    assert metric(text, "lifeboat_backup_status", job="nightscout") == 0
    # The nightly job's archive, 27 hours old.
    (manifest,) = glob.glob(str(tmp_path / "backups" / "journal-*.manifest.json"))
    with open(manifest, encoding="utf-8") as handle:
        data = json.load(handle)
    data["finished_at"] = "2020-01-01T00:00:00Z"
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    run = status("--job", "journal")
    assert run.returncode == 2 and "old (max 26 h)" in run.stdout, run.stdout
    assert metric(metrics.read_text(), "lifeboat_backup_status", job="journal") == 2


def test_a_killed_run_is_reported_at_once_and_its_leftovers_go_with_the_next_run(host, pg, mongo, big_pg, tmp_path):
    destination = tmp_path / "backups"
    config = tmp_path / "lifeboat.yml"

    def write(database):
        config.write_text(yaml.safe_dump({"jobs": {"app": {
            "engine": "postgresql", "database": database, "destination": str(destination), "login_host": pg.host,
            "login_port": pg.port, "login_user": pg.user, "login_password_file": pg.password_file}}}))

    write(pg.sample)
    assert lifeboat(host, "backup", "--job", "app", "--config", str(config)).returncode == 0
    assert lifeboat(host, "verify", "--config", str(config)).returncode == 0
    assert lifeboat(host, "status", "--config", str(config)).returncode == 0
    write(big_pg)  # the same job, now long enough to be killed halfway
    process = subprocess.Popen([sys.executable, str(host / "bin" / "lifeboat"), "backup", "--job", "app",
                                "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=host_env(host), text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not [name for name in os.listdir(destination) if name.startswith(".app-")
                                          and os.path.getsize(destination / name) > 1 << 20]:
        time.sleep(0.05)
    record = json.loads((destination / ".lifeboat-last-run-app.json").read_text())
    assert record["state"] == "started" and record["pid"] == process.pid
    running = lifeboat(host, "status", "--config", str(config))
    assert running.returncode == 0, running.stdout  # a live run and its partial file are no problem
    assert f"a backup run is running since {record['at']} (PID {process.pid})" in running.stdout
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    (partial,) = [name for name in os.listdir(destination) if ".partial-" in name]

    status = lifeboat(host, "status", "--config", str(config))  # at once: no waiting for a grace period
    assert status.returncode == 2, status.stdout
    assert status.stdout.startswith("LIFEBOAT CRITICAL - ")
    assert (f"app/{pg.sample} last backup run started at {record['at']} (PID {process.pid}) and never finished"
            in status.stdout)
    assert f"{partial} was left by an interrupted run (its process is gone); the next run or prune of job app " \
           "removes it" in status.stdout

    write(pg.sample)
    again = lifeboat(host, "backup", "--job", "app", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert not [name for name in os.listdir(destination) if ".partial-" in name or (name.startswith(".lifeboat-")
                and not name.startswith(".lifeboat-last-run-"))]
    assert json.loads((destination / ".lifeboat-last-run-app.json").read_text())["ok"] is True


def test_prune_removes_what_a_killed_run_left_and_never_what_a_live_one_writes(host, pg, mongo, tmp_path):
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, tmp_path / "backups", retention={"keep_last": 5})
    assert lifeboat(host, "backup", "--job", "journal", "--config", config).returncode == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    leftovers = [tmp_path / "backups" / f".journal-20261130T000000Z.pgdump.zst.partial-{dead.stdout.strip()}",
                 tmp_path / "backups" / f".lifeboat-{dead.stdout.strip()}-abcd1234"]
    live = tmp_path / "backups" / f".journal-20261130T000001Z.pgdump.zst.partial-{os.getpid()}"
    other_job = tmp_path / "backups" / f".nightscout-20261130T000000Z.mongo.archive.zst.partial-{dead.stdout.strip()}"
    leftovers[0].write_bytes(b"half a dump")
    leftovers[1].mkdir()
    (leftovers[1] / "toc.dat").write_bytes(b"unpacked")
    live.write_bytes(b"being written")
    other_job.write_bytes(b"half")
    dry = lifeboat(host, "prune", "--job", "journal", "--dry-run", "--config", config)
    assert dry.returncode == 0 and f"would remove {leftovers[0].name} (left by an interrupted run)" in dry.stderr
    assert all(path.exists() for path in leftovers)
    run = lifeboat(host, "prune", "--job", "journal", "--config", config)
    assert run.returncode == 0, run.stderr
    assert not any(path.exists() for path in leftovers)
    assert live.exists() and other_job.exists()  # a live writer's file, and another job's (its own run or prune)


def test_backup_of_several_jobs_runs_every_job_and_names_each_failure_once(host, pg, mongo, tmp_path):
    config = tmp_path / "lifeboat.yml"
    write_config(config, pg, mongo, tmp_path / "backups")
    data = yaml.safe_load(config.read_text())
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    # Between the two good jobs (they run in name order): a login that fails.
    data["jobs"]["lost"] = {**data["jobs"]["journal"], "login_password_file": str(wrong)}
    config.write_text(yaml.safe_dump(data))
    run = lifeboat(host, "backup", "--config", str(config))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: backup failed: lost: ") and "password authentication failed" in errors[0]
    assert errors[1:] == ["error: backup: 1 of 3 jobs failed"]
    assert sum(line.count("lost") for line in errors) == 1
    for job in ("journal", "nightscout"):
        assert glob.glob(str(tmp_path / "backups" / f"{job}-*.manifest.json")), run.stderr
    assert lifeboat(host, "verify", "--job", "journal", "--config", str(config)).returncode == 0
    assert lifeboat(host, "verify", "--job", "nightscout", "--config", str(config)).returncode == 0
    record = json.loads((tmp_path / "backups" / ".lifeboat-last-run-lost.json").read_text())
    assert record["ok"] is False and "password authentication failed" in record["failure"]
    # Named jobs, each once however often given.
    run = lifeboat(host, "backup", "--job", "lost", "--job", "journal", "--job", "lost", "--config", str(config))
    assert run.returncode == 1 and run.stderr.count("backup failed: lost: ") == 1
    assert "error: backup: 1 of 2 jobs failed" in run.stderr


@pytest.mark.parametrize("job_extra, message", [
    ({"destination": "backups/journal"}, "job journal: destination 'backups/journal' must be an absolute path"),
    ({"retention": {"keep_daily": -5}}, "job journal: retention: keep_daily is -5; use a count of 0 or more, "
                                        "or -1 for no limit"),
    ({"retention": {"keep_within": "3x"}}, "job journal: retention: keep_within '3x' is not a span"),
    ({"retention": {"keep_daily": None}}, "job journal: retention: the retention policy keeps nothing (like restic, "
                                          "an empty policy is refused rather than removing every archive); set at "
                                          "least one of keep_last"),
    ({"status": {"max_age_hours": -1}}, "job journal: status: max_age_hours -1.0 is not valid"),
    ({"status": {"shrink_ratio": 2}}, "job journal: status: shrink_ratio 2.0 is not valid"),
    ({"login_password_file": "/nonexistent/password"}, "job journal: cannot read password file /nonexistent/password"),
    ({"compression_level": 40}, "job journal: compression_level 40 does not fit zstd; use 1 to 19"),
    ({"encryption_recipients": ["AGE-SECRET-KEY-1XYZ"]}, "job journal: an age secret key was given as a recipient; "
                                                         "give its public key (age-keygen -y)"),
    ({"encryption_recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],
      "verify": {"level": "structure"}},
     "job journal: verify: level structure reads the encrypted archives whole; give age_identity_files, "
     "or use level auto or checksum"),
    ({"verify": {"age_identity_files": ["/nonexistent/key.txt"]}},
     "job journal: verify: age identity file /nonexistent/key.txt does not exist"),
    ({"login_uri": "postgresql://backup:s3cr%40t@127.0.0.1/journal", "login_host": None, "login_user": None},
     "job journal: login_uri holds a password, which does not belong in the config: put it in a 0600 file, give "
     "login_password_file and leave it out of login_uri"),
])
def test_check_refuses_what_backup_or_prune_would_refuse(host, pg, mongo, tmp_path, job_extra, message):
    config = tmp_path / "lifeboat.yml"
    write_config(config, pg, mongo, tmp_path / "backups", retention={"keep_daily": 7})
    assert lifeboat(host, "check", "--config", str(config)).returncode == 0
    data = yaml.safe_load(config.read_text())
    data["jobs"]["journal"].update(job_extra)
    data["jobs"]["journal"] = {key: value for key, value in data["jobs"]["journal"].items() if value is not None}
    config.write_text(yaml.safe_dump(data))
    run = lifeboat(host, "check", "--config", str(config))
    assert run.returncode == 1, run.stderr
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr
    assert "s3cr" not in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "backups").exists()


def test_prune_of_a_missing_destination_fails_in_one_line(host, pg, mongo, tmp_path):
    config = write_config(tmp_path / "lifeboat.yml", pg, mongo, tmp_path / "nowhere", retention={"keep_last": 1})
    run = lifeboat(host, "prune", "--job", "journal", "--config", config)
    assert run.returncode == 1
    assert run.stderr == (f"error: prune failed: destination {tmp_path / 'nowhere'} does not exist: nothing to "
                          "prune; check the path (a backup creates it)\n")


def test_a_missing_program_says_what_to_install(host, pg, mongo, age_key, tmp_path):
    """It used to say "(or point the module at it)", an option that does not exist."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for program in ("zstd", "ssh-keygen"):  # what the job needs but age
        os.symlink(shutil.which(program), tools / program)
    config = tmp_path / "lifeboat.yml"
    write_config(config, pg, mongo, tmp_path / "backups", encryption_recipients=[age_key["recipient"]])
    data = yaml.safe_load(config.read_text())
    data["jobs"]["journal"]["pg_bin_dir"] = os.environ["LIFEBOAT_PG_BINDIR"]
    config.write_text(yaml.safe_dump(data))
    config = str(config)
    run = lifeboat(host, "backup", "--job", "journal", "--config", config, env=host_env(host, PATH=str(tools)))
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == ("error: backup failed: age was not found in PATH; install the age package "
                                           "(apt install age)")
    assert not [name for name in os.listdir(tmp_path / "backups") if ".partial-" in name]
