# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every playbook run as AWX runs it leaves no secret anywhere.

ansible-runner runs each playbook with its credentials injected the way an AWX credential injector does it: as
extra vars in ``env/extravars``, tagged ``!unsafe`` (AWX never templates a credential), which the inventory's
jobs reference (``login_password: "{{ lifeboat_pg_password }}"``). The passwords hold URL and YAML special
characters and a marker (``PgTok`` and the like, with an id new for every run) that every form of them keeps: raw, JSON- or repr-escaped, URL-encoded.
The marker is then searched in stdout, ``job_events/``, every artifact and every file the run created (the
private data dir but its input ``env/extravars``, the destinations, the run's temporary directories and any new
entry of /tmp, without following a link or crossing a mount in it, since another suite's new entries are there
too): 0 hits.

Verbosity: job events record every task result whatever the verbosity, and each level of the callback's stdout
prints what the one below prints and more. So every playbook runs at -vvvv, and the backup playbook (the most
tasks and loops, the dump and verify modules) also at -v, -vv and -vvv; about 3 minutes in all.
The schedule playbook installs packages, users and systemd units: it runs with --check --diff against this
machine, which renders every template and diff and changes nothing (checked).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import typing as t
import urllib.parse
import uuid

import ansible_runner
import pytest
import yaml
from psycopg import sql

from testbed import MONGO_SOURCE, PG_SOURCE, Unsafe, UnsafeDumper, collections_root

# One marker per secret: what the scan looks for, in any encoding of the secret that keeps letters and digits.
# Each marker is new for every run, so a copy of this file (another checkout, a built collection under /tmp)
# never counts as a leak.
RUN = uuid.uuid4().hex[:10]
MARKERS = tuple(f"{kind}{RUN}".encode() for kind in ("PgTok", "MgTok", "WhTok", "HcTok"))
PG_PASSWORD = MARKERS[0].decode() + " p@ss:w/rd?#&%'\"{{x}}!*[a]|>\\end"
MONGO_PASSWORD = MARKERS[1].decode() + ":p@ss/w?rd#&%'\"{{ y }}, {z: 1} -\\end"
WEBHOOK_TOKEN = MARKERS[2].decode() + uuid.uuid4().hex
PROBE_PASSWORD = MARKERS[3].decode() + ":p@ss/w?rd#'\""


@pytest.fixture(scope="module")
def hostile(pg, mongo) -> t.Iterator[dict[str, t.Any]]:
    """A PostgreSQL role and a FerretDB user whose passwords hold every character that breaks naive quoting."""
    name = "lb_runner_" + uuid.uuid4().hex[:8]
    with pg.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(PG_PASSWORD)))
    mongo.client.admin.command("createUser", name, pwd=MONGO_PASSWORD, roles=[])  # FerretDB: all rights
    uri = (f"postgresql://{name}:{urllib.parse.quote(PG_PASSWORD, safe='')}@{pg.host}:{pg.port}/{PG_SOURCE}")
    quoted = PG_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")  # libpq's keyword=value quoting
    keywords = f"host={pg.host} port={pg.port} user={name} password='{quoted}' dbname={PG_SOURCE}"
    injected = {"lifeboat_pg_password": Unsafe(PG_PASSWORD), "lifeboat_mongo_password": Unsafe(MONGO_PASSWORD),
                "lifeboat_pg_uri": Unsafe(uri), "lifeboat_pg_keywords": Unsafe(keywords),
                "lifeboat_webhook_url": Unsafe(f"https://hooks.example.org/services/{WEBHOOK_TOKEN}"),
                "lifeboat_probe_url": Unsafe(
                    f"http://monitor:{urllib.parse.quote(PROBE_PASSWORD, safe='')}@127.0.0.1:9/health")}
    yield {"user": name, "injected": injected}
    mongo.client.admin.command("dropUser", name)
    with pg.connect() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def jobs(pg, mongo, user: str, **extra: t.Any) -> list[dict[str, t.Any]]:
    """backup_jobs whose passwords come from the injected extra vars, one of them through a login_uri."""
    return [
        {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host,
         "login_port": pg.port, "login_user": user, "login_password": "{{ lifeboat_pg_password }}", **extra},
        {"name": "nightscout", "engine": "mongodb", "database": MONGO_SOURCE, "login_host": mongo.host,
         "login_port": mongo.port, "login_user": user, "login_database": "admin",
         "login_password": "{{ lifeboat_mongo_password }}", **extra},
        {"name": "journal_uri", "engine": "postgresql", "database": PG_SOURCE, "login_uri": "{{ lifeboat_pg_uri }}",
         **extra},
    ]


class RunnerRun(t.NamedTuple):
    status: str
    rc: int
    stdout: str
    private_data_dir: str
    scanned: list[str]  # the roots searched for the markers


def new_entries(before: set[str]) -> list[str]:
    return [os.path.join("/tmp", name) for name in sorted(set(os.listdir("/tmp")) - before)]


def run_with_runner(base: t.Any, hostile: dict[str, t.Any], playbook: str, host_vars: dict[str, t.Any],
                    verbosity: int, cmdline: str = "", outputs: tuple[str, ...] = ()) -> RunnerRun:
    """Run lifeboat.ops.PLAYBOOK through ansible-runner as AWX does, and list where its files may be."""
    private = base / "private"
    temp = base / "tmp"
    for directory in (private / "env", private / "inventory", private / "project", temp / "local", temp / "remote"):
        directory.mkdir(parents=True)
    (private / "env" / "extravars").write_text(yaml.dump(hostile["injected"], Dumper=UnsafeDumper))
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
    (private / "project" / "site.yml").write_text(yaml.safe_dump([{"import_playbook": f"lifeboat.ops.{playbook}"}]))
    envvars = {"ANSIBLE_COLLECTIONS_PATH": collections_root(), "TMPDIR": str(temp),
               "ANSIBLE_LOCAL_TEMP": str(temp / "local"), "ANSIBLE_REMOTE_TEMP": str(temp / "remote"),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    before = set(os.listdir("/tmp"))
    runner = ansible_runner.run(private_data_dir=str(private), playbook="site.yml", ident="job", verbosity=verbosity,
                                cmdline=cmdline or None, envvars=envvars, quiet=True, timeout=900)
    with open(private / "artifacts" / "job" / "stdout", encoding="utf-8", errors="replace") as handle:
        stdout = handle.read()
    own = [os.path.realpath(path) for path in (private, temp, *outputs)]  # followed: the test made them
    return RunnerRun(runner.status, runner.rc, stdout, own[0], [*own, *new_entries(before)])


def count_markers(path: str) -> int:
    """Occurrences of the markers in a file, read in chunks (a new file of /tmp may be large)."""
    count, tail = 0, b""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                window = tail + chunk  # the tail is shorter than a marker: nothing is counted twice
                count += sum(window.count(marker) for marker in MARKERS)
                tail = window[-(max(map(len, MARKERS)) - 1):]
    except OSError:
        pass
    return count


def files_under(root: str) -> t.Iterator[str]:
    """The regular files under ``root`` on its own file system. A new entry of /tmp may belong to another suite
    running beside this one (molecule's work tree, a test bed): a link or a mount in it (a chroot's /proc) leads
    out of what any run writes, and a FIFO or device would block the read."""
    try:
        top = os.lstat(root)
    except OSError:  # removed by its owner since the listing
        return
    if stat.S_ISREG(top.st_mode):
        yield root
    if not stat.S_ISDIR(top.st_mode):
        return
    for folder, dirs, names in os.walk(root):
        dirs[:] = [name for name in dirs if _same_device(os.path.join(folder, name), top.st_dev)]
        for name in names:
            path = os.path.join(folder, name)
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    yield path
            except OSError:
                continue


def _same_device(path: str, device: int) -> bool:
    try:
        return os.lstat(path).st_dev == device
    except OSError:
        return False


def marker_hits(run: RunnerRun) -> dict[str, int]:
    """Occurrences of the secrets' markers in every file under the run's roots (the input extra vars aside)."""
    hits: dict[str, int] = {}
    extravars = os.path.join(run.private_data_dir, "env", "extravars")
    for root in run.scanned:
        for path in files_under(root):
            count = count_markers(path) if path != extravars else 0
            if count:
                hits[path] = count
    return hits


def assert_no_secret(run: RunnerRun) -> None:
    # The scan can find them: the run's input holds every injected secret.
    with open(os.path.join(run.private_data_dir, "env", "extravars"), "rb") as handle:
        extravars = handle.read()
    assert all(marker in extravars for marker in MARKERS)
    assert os.listdir(os.path.join(run.private_data_dir, "artifacts", "job", "job_events")), "no job events"
    hits = marker_hits(run)
    short = {os.path.relpath(path, os.path.dirname(run.private_data_dir)): count for path, count in hits.items()}
    assert hits == {}, f"{sum(hits.values())} occurrences of a secret in {len(hits)} files: {short}"


def runner_failed(run: RunnerRun) -> str:
    return f"ansible-runner {run.status} (rc {run.rc}):\n{run.stdout[-4000:]}"


@pytest.fixture(scope="module")
def archives(pg, mongo, hostile, tmp_path_factory) -> tuple[t.Any, RunnerRun]:
    """The archives of the three jobs, made by the backup playbook through ansible-runner at -vvvv."""
    base = tmp_path_factory.mktemp("runner-backup")
    root = base / "backups"
    run = run_with_runner(base, hostile, "backup", {
        "backup_root": str(root), "backup_verify_level": "restore",
        "backup_jobs": jobs(pg, mongo, hostile["user"])}, 4, outputs=(str(root),))
    return root, run


def test_backup_playbook_at_vvvv(archives):
    root, run = archives
    assert run.status == "successful", runner_failed(run)
    for job in ("journal", "nightscout", "journal_uri"):
        assert [n for n in os.listdir(root / job) if n.endswith(".manifest.json")], f"no archive of {job}"
    assert_no_secret(run)


@pytest.mark.parametrize("verbosity", [1, 2, 3])
def test_backup_playbook_at_lower_verbosity(pg, mongo, hostile, tmp_path, verbosity):
    root = tmp_path / "backups"
    run = run_with_runner(tmp_path, hostile, "backup", {
        "backup_root": str(root), "backup_verify_level": "structure", "backup_prune": False,
        "backup_jobs": jobs(pg, mongo, hostile["user"])}, verbosity, outputs=(str(root),))
    assert run.status == "successful", runner_failed(run)
    assert_no_secret(run)


def test_verify_playbook_at_vvvv(pg, mongo, hostile, archives, tmp_path):
    root = archives[0]
    run = run_with_runner(tmp_path, hostile, "verify", {
        "backup_root": str(root), "backup_verify_level": "restore",
        "backup_jobs": jobs(pg, mongo, hostile["user"])}, 4, outputs=(str(root),))
    assert run.status == "successful", runner_failed(run)
    assert "3 archives proven, 0 failed" in run.stdout
    assert_no_secret(run)


def test_restore_playbook_at_vvvv(pg, mongo, hostile, archives, tmp_path, unique_name):
    root = archives[0]
    run = run_with_runner(tmp_path, hostile, "restore", {
        "backup_root": str(root), "backup_jobs": jobs(pg, mongo, hostile["user"]),
        "restore_items": [
            {"job": "journal", "target_database": unique_name},
            # an item that carries its own password (an override of the job's)
            {"job": "nightscout", "target_database": unique_name, "login_password": "{{ lifeboat_mongo_password }}"},
        ]}, 4, outputs=(str(root),))
    try:
        assert run.status == "successful", runner_failed(run)
        assert pg.fingerprint(unique_name)["hashes"] == pg.fingerprint(PG_SOURCE)["hashes"]
        assert mongo.fingerprint(unique_name)["hashes"] == mongo.fingerprint(MONGO_SOURCE)["hashes"]
        assert_no_secret(run)
    finally:
        pg.drop(unique_name)
        mongo.drop(unique_name)


def test_migrate_playbook_at_vvvv(pg, hostile, tmp_path, unique_name):
    marker = tmp_path / "switched.marker"
    switch = tmp_path / "switch.yml"
    switch.write_text(yaml.safe_dump([{"name": "Point the app at the target", "ansible.builtin.copy": {
        "dest": str(marker), "content": "DATABASE_URL=target\n", "mode": "0600"}}]))
    login = {"login_host": pg.host, "login_port": pg.port, "login_user": hostile["user"],
             "login_password": "{{ lifeboat_pg_password }}"}
    work = tmp_path / "work"
    run = run_with_runner(tmp_path, hostile, "migrate", {
        "migrate_engine": "postgresql", "migrate_source": {**login, "database": PG_SOURCE},
        "migrate_target": {**login, "database": unique_name}, "migrate_work_dir": str(work),
        "migrate_switch_tasks": str(switch)}, 4, outputs=(str(work), str(marker)))
    try:
        assert run.status == "successful", runner_failed(run)
        assert marker.read_text() == "DATABASE_URL=target\n"
        assert_no_secret(run)
    finally:
        pg.drop(unique_name)


SYSTEM_PATHS = ("/etc/lifeboat", "/etc/lifeboat-healthcheck", "/usr/local/lib/lifeboat",
                "/usr/local/lib/lifeboat-healthcheck", "/usr/local/bin", "/etc/systemd/system", "/etc/passwd",
                "/etc/group", "/etc/shadow", "/var/lib/dpkg/status", "/etc/apt/sources.list.d", "/etc/apt/keyrings",
                "/var/lib/prometheus")


def system_state() -> dict[str, t.Any]:
    """What the schedule playbook would change on this machine: file contents and directory trees."""
    state: dict[str, t.Any] = {}
    for path in SYSTEM_PATHS:
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                state[path] = hashlib.sha256(handle.read()).hexdigest()
        elif os.path.isdir(path):
            state[path] = sorted(os.path.join(folder, name) for folder, dirs, names in os.walk(path)
                                 for name in dirs + names)
        else:
            state[path] = None
    return state


def test_schedule_playbook_in_check_mode_at_vvvv(pg, mongo, hostile, tmp_path):
    tools = os.path.dirname(os.path.realpath(shutil.which("mongodump") or "mongodump"))
    before = system_state()
    run = run_with_runner(tmp_path, hostile, "schedule", {
        "backup_schedule_jobs": [
            {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host,
             "login_port": pg.port, "login_user": hostile["user"], "login_password": "{{ lifeboat_pg_password }}"},
            {"name": "nightscout", "engine": "mongodb", "database": MONGO_SOURCE, "login_host": mongo.host,
             "login_port": mongo.port, "login_user": hostile["user"], "login_database": "admin",
             "login_password": "{{ lifeboat_mongo_password }}"},
        ],
        "backup_schedule_alert_webhook_url": "{{ lifeboat_webhook_url }}",
        "backup_schedule_mongodb_tools_src": tools,
        "healthcheck_probes": [{"name": "app", "type": "http", "url": "{{ lifeboat_probe_url }}"}],
        "healthcheck_webhook_url": "{{ lifeboat_webhook_url }}",
    }, 4, cmdline="--check --diff")
    assert run.status == "successful", runner_failed(run)
    assert system_state() == before, "check mode changed this machine"
    # Every template was rendered and diffed: the units and the jobs' configuration.
    for rendered in ("lifeboat-backup-journal.service", "lifeboat-backup-nightscout.timer", "lifeboat.yml",
                     "lifeboat-healthcheck.service"):
        assert rendered in run.stdout
    assert_no_secret(run)


def test_schedule_playbook_refuses_a_password_for_the_config_file(pg, hostile, tmp_path):
    before = system_state()
    run = run_with_runner(tmp_path, hostile, "schedule", {"backup_schedule_jobs": [
        {"name": "journal", "engine": "postgresql", "database": PG_SOURCE,
         "options": {"login_uri": "{{ lifeboat_pg_uri }}"}},
        {"name": "recipes", "engine": "postgresql", "database": "recipes", "login_host": pg.host,
         "options": {"login_password": "{{ lifeboat_pg_password }}"}},
        {"name": "research", "engine": "postgresql", "database": "research",
         "options": {"login_uri": f"postgresql://{hostile['user']}@{pg.host}:{pg.port}/research"}},
    ]}, 4, cmdline="--check --diff")
    assert run.status == "failed", runner_failed(run)
    assert system_state() == before
    refusal = ("backup_schedule_jobs: journal, recipes: a password in login_uri (or in options) would be written into"
               " /etc/lifeboat/lifeboat.yml; put it in a 0600 file on the host and give login_password_file (or give"
               " login_password, which the role writes to such a file), and leave it out of the URI")
    assert refusal in run.stdout
    assert_no_secret(run)


def test_schedule_playbook_refuses_a_password_in_a_keyword_login_uri(pg, hostile, tmp_path):
    """libpq's keyword=value form holds a password too: refused before the config's diff would print it."""
    before = system_state()
    run = run_with_runner(tmp_path, hostile, "schedule", {"backup_schedule_jobs": [
        {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, "login_uri": "{{ lifeboat_pg_keywords }}"},
    ]}, 4, cmdline="--check --diff")
    assert_no_secret(run)
    assert run.status == "failed", runner_failed(run)
    assert system_state() == before
    assert "backup_schedule_jobs: journal: a password in login_uri (or in options) would be written into" in run.stdout
