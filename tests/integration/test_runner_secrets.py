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
import json
import os
import shutil
import stat
import subprocess
import sys
import typing as t
import urllib.parse
import uuid

import ansible_runner
import jinja2
import pytest
import yaml
from psycopg import sql

from testbed import MONGO_SOURCE, PG_SOURCE, Unsafe, UnsafeDumper, collections_root, system_state

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
                    verbosity: int, cmdline: str = "", outputs: tuple[str, ...] = (),
                    project_playbook: str = "", envvars: dict[str, str] | None = None) -> RunnerRun:
    """Run lifeboat.ops.PLAYBOOK through ansible-runner as AWX does, and list where its files may be.
    An ``Unsafe`` host variable is written ``!unsafe`` (a password given inline in the inventory); PROJECT_PLAYBOOK
    (a path) runs instead of a wrapper of the collection's playbook; ENVVARS reach the run's environment as an AWX
    credential type's env injector puts them there."""
    private = base / "private"
    temp = base / "tmp"
    for directory in (private / "env", private / "inventory", private / "project", temp / "local", temp / "remote"):
        directory.mkdir(parents=True)
    (private / "env" / "extravars").write_text(yaml.dump(hostile["injected"], Dumper=UnsafeDumper))
    (private / "inventory" / "hosts.yml").write_text(yaml.dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}},
        Dumper=UnsafeDumper))
    if project_playbook:
        shutil.copy(project_playbook, private / "project" / "site.yml")
    else:
        (private / "project" / "site.yml").write_text(
            yaml.safe_dump([{"import_playbook": f"lifeboat.ops.{playbook}"}]))
    envvars = {"ANSIBLE_COLLECTIONS_PATH": collections_root(), "TMPDIR": str(temp),
               "ANSIBLE_LOCAL_TEMP": str(temp / "local"), "ANSIBLE_REMOTE_TEMP": str(temp / "remote"),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]), **(envvars or {})}
    before = set(os.listdir("/tmp"))
    runner = ansible_runner.run(private_data_dir=str(private), playbook="site.yml", ident="job", verbosity=verbosity,
                                cmdline=cmdline or None, envvars=envvars, quiet=True, timeout=900)
    with open(private / "artifacts" / "job" / "stdout", encoding="utf-8", errors="replace") as handle:
        stdout = handle.read()
    own = [os.path.realpath(path) for path in (private, temp, *outputs)]  # followed: the test made them
    return RunnerRun(runner.status, runner.rc, stdout, own[0], [*own, *new_entries(before)])


def count_markers(path: str, markers: tuple[bytes, ...] = MARKERS) -> int:
    """Occurrences of the markers in a file, read in chunks (a new file of /tmp may be large)."""
    count, tail = 0, b""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                window = tail + chunk  # the tail is shorter than a marker: nothing is counted twice
                count += sum(window.count(marker) for marker in markers)
                tail = window[-(max(map(len, markers)) - 1):]
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


def marker_hits(run: RunnerRun, markers: tuple[bytes, ...] = MARKERS, inputs: tuple[str, ...] = ()) -> dict[str, int]:
    """Occurrences of the secrets' markers in every file under the run's roots (the run's inputs aside: the
    injected extra vars, the inventory, the files INPUTS names)."""
    hits: dict[str, int] = {}
    given = {os.path.join(run.private_data_dir, "env", "extravars"),
             os.path.join(run.private_data_dir, "inventory", "hosts.yml"), *map(os.path.realpath, inputs)}
    for root in run.scanned:
        for path in files_under(root):
            count = count_markers(path, markers) if path not in given else 0
            if count:
                hits[path] = count
    return hits


def assert_no_secret(run: RunnerRun, markers: tuple[bytes, ...] = MARKERS, inputs: tuple[str, ...] = ()) -> None:
    # The scan can find them: the run's inputs hold every secret looked for.
    given = b""
    for path in (os.path.join(run.private_data_dir, "env", "extravars"), *inputs):
        with open(path, "rb") as handle:
            given += handle.read()
    assert all(marker in given for marker in markers)
    assert os.listdir(os.path.join(run.private_data_dir, "artifacts", "job", "job_events")), "no job events"
    hits = marker_hits(run, markers, inputs)
    short = {os.path.relpath(path, os.path.dirname(run.private_data_dir)): count for path, count in hits.items()}
    assert hits == {}, f"{sum(hits.values())} occurrences of a secret in {len(hits)} files: {short}"


def artifact_data(run: RunnerRun) -> dict[str, t.Any]:
    """What the playbook published with set_stats, as AWX reads it: the artifact_data of the run's stats event in
    artifacts/ID/job_events (the run's stats, where each playbook keys its hosts)."""
    events = os.path.join(run.private_data_dir, "artifacts", "job", "job_events")
    stats = []
    for name in os.listdir(events):
        with open(os.path.join(events, name), encoding="utf-8") as handle:
            event = json.load(handle)
        if event.get("event") == "playbook_on_stats":
            stats.append(event["event_data"])
    assert len(stats) == 1, f"{len(stats)} stats events"
    return stats[0]["artifact_data"]


def sha256_of(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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
    # The workflow artifact: every archive made, as its file and manifest are.
    outcome = artifact_data(run)["lifeboat_backup_outcome"]
    assert list(outcome) == ["localhost"]
    assert outcome["localhost"]["status"] == "ok" and outcome["localhost"]["failed"] == []
    archives = outcome["localhost"]["archives"]
    assert sorted(a["name"] for a in archives) == ["journal", "journal_uri", "nightscout"]
    for archive in archives:
        with open(archive["archive"] + ".manifest.json", encoding="utf-8") as handle:
            manifest = json.load(handle)
        assert archive["engine"] == manifest["engine"]
        assert archive["size"] == os.path.getsize(archive["archive"]) > 0
        assert archive["sha256"] == sha256_of(archive["archive"])
        assert archive["counts"] and sum(archive["counts"].values()) > 0
        assert archive["verification"] == {"level": "restore", "ok": True}


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
    outcome = artifact_data(run)["lifeboat_verify_outcome"]["localhost"]
    assert outcome["status"] == "ok" and outcome["failed"] == []
    made = {a["archive"] for a in artifact_data(archives[1])["lifeboat_backup_outcome"]["localhost"]["archives"]}
    assert {a["archive"] for a in outcome["archives"]} >= made
    assert {(a["level"], a["ok"]) for a in outcome["archives"]} == {("restore", True)}


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
        outcome = artifact_data(run)["lifeboat_restore_outcome"]["localhost"]
        assert outcome["status"] == "ok" and outcome["failed"] == []
        expected = [("journal", unique_name), ("nightscout", unique_name)]
        assert [(r["job"], r["target"]) for r in outcome["restored"]] == expected
        assert all("is the newest verified archive of job" in r["archive_reason"] for r in outcome["restored"])
        assert all(os.path.isfile(r["archive"]) for r in outcome["restored"])
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
        outcome = artifact_data(run)["lifeboat_migrate_outcome"]["localhost"]
        assert outcome["status"] == "ok" and outcome["action"] == "migrate"
        assert outcome["validation"]["passed"] is True and outcome["validation"]["failed_checks"] == []
        assert os.path.isfile(outcome["validation"]["report_json"]) and os.path.isfile(outcome["archive"])
    finally:
        pg.drop(unique_name)


@pytest.fixture(params=["fresh host", "config dir already there"])
def config_dir(request):
    """A host the schedule never ran on, and one where /etc/lifeboat exists without the lifeboat group (a backup run
    made its signing key there): in check mode the group is not created, and a file task naming it failed."""
    made = False
    if request.param == "config dir already there" and not os.path.exists("/etc/lifeboat"):
        os.mkdir("/etc/lifeboat", 0o700)
        made = True
    yield request.param
    if made:
        os.rmdir("/etc/lifeboat")


def test_schedule_playbook_in_check_mode_at_vvvv(pg, mongo, hostile, tmp_path, config_dir):
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
    assert artifact_data(run)["lifeboat_schedule_outcome"] == {
        "localhost": {"status": "ok", "jobs": ["journal", "nightscout"], "probes": ["app"], "failed": []}}


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


def test_status_playbook_publishes_the_job_states(archives, tmp_path):
    """Each job's state in the artifact; a missing destination fails the host, which the artifact says too."""
    root = archives[0]
    missing = tmp_path / "never-written"
    run = run_with_runner(tmp_path, {"injected": {}}, "status", {
        "backup_status_destinations": [str(root), str(missing)]}, 4)
    assert run.status == "failed", runner_failed(run)
    outcome = artifact_data(run)["lifeboat_status_outcome"]["localhost"]
    assert outcome["status"] == "failed" and outcome["state"] in ("CRITICAL", "UNKNOWN")
    assert (outcome["destinations"][0]["destination"], outcome["destinations"][0]["state"]) == (str(root), "OK")
    assert outcome["destinations"][1]["destination"] == str(missing)
    assert outcome["destinations"][1]["state"] == outcome["state"]
    assert sorted((j["job"], j["state"]) for j in outcome["jobs"]) == [
        ("journal", "OK"), ("journal_uri", "OK"), ("nightscout", "OK")]
    assert outcome["summary"] == " | ".join(d["summary"] for d in outcome["destinations"])


def test_failed_job_with_its_password_inline_in_the_inventory(pg, hostile, tmp_path):
    """Passwords written into the inventory itself (!unsafe), one of them wrong: the artifact names the failed job
    with its one-line reason and holds the other job's archive; neither password shows anywhere."""
    root = tmp_path / "backups"
    login = {"engine": "postgresql", "database": PG_SOURCE, "login_host": pg.host, "login_port": pg.port,
             "login_user": hostile["user"]}
    run = run_with_runner(tmp_path, {"injected": {}}, "backup", {
        "backup_root": str(root), "backup_verify_level": "structure", "backup_prune": False,
        "backup_jobs": [{"name": "journal", **login, "login_password": Unsafe(PG_PASSWORD)},
                        {"name": "wrongpw", **login, "login_password": Unsafe(f"{PG_PASSWORD} but wrong")}],
    }, 4, outputs=(str(root),))
    assert run.status == "failed", runner_failed(run)
    inventory = os.path.join(run.private_data_dir, "inventory", "hosts.yml")
    assert_no_secret(run, MARKERS[:1], inputs=(inventory,))
    outcome = artifact_data(run)["lifeboat_backup_outcome"]["localhost"]
    assert outcome["status"] == "failed"
    assert [a["name"] for a in outcome["archives"]] == ["journal"]
    assert outcome["archives"][0]["verification"] == {"level": "structure", "ok": True}
    assert len(outcome["failed"]) == 1 and outcome["failed"][0].startswith("wrongpw: dump failed: ")
    assert "\n" not in outcome["failed"][0] and "password authentication failed" in outcome["failed"][0]


AWX_PROJECT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "awx-project")


def test_awx_credential_type_hands_password_and_identity_to_the_job(pg, hostile, tmp_path):
    """The example project's credential type, injected as AWX does (its injectors rendered with the inputs: env
    variables and files in the job's private directory), runs the project's backup job template playbook with
    encryption, signing and a restore test that decrypts: the password, the identity and the key show nowhere."""
    identity = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
    secret_key = next(line for line in identity.splitlines() if line.startswith("AGE-SECRET-KEY-"))
    recipient = subprocess.run(["age-keygen", "-y"], input=identity, capture_output=True, text=True,
                               check=True).stdout.strip()
    with open(os.path.join(AWX_PROJECT, "credential-type", "injectors.yml"), encoding="utf-8") as handle:
        injectors = yaml.safe_load(handle)
    credential_dir = tmp_path / "credential"  # AWX: the job's private data dir, removed after the job
    credential_dir.mkdir(mode=0o700)
    signing_key = tmp_path / "signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(signing_key)], check=True)
    inputs = {"db_password": PG_PASSWORD, "age_identity": identity, "signing_key": signing_key.read_text()}
    render = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string
    files = {}
    for name, template in injectors["file"].items():
        path = credential_dir / name.removeprefix("template.")
        path.write_text(render(template).render(**inputs))
        path.chmod(0o600)
        files[name.removeprefix("template.")] = str(path)
    envvars = {key: render(value).render(**inputs, tower={"filename": files}) for key, value in injectors["env"].items()}
    root = tmp_path / "backups"
    with open(os.path.join(AWX_PROJECT, "inventory", "group_vars", "all.yml"), encoding="utf-8") as handle:
        project_vars = yaml.safe_load(handle)
    job = {**project_vars["backup_jobs"][0], "database": PG_SOURCE, "login_host": pg.host, "login_port": pg.port,
           "login_user": hostile["user"]}
    run = run_with_runner(tmp_path, {"injected": {}}, "backup", {
        **project_vars, "backup_root": str(root), "backup_encryption_recipients": [recipient],
        "backup_verify_level": "restore", "backup_prune": False, "backup_jobs": [job],
    }, 4, outputs=(str(root),), project_playbook=os.path.join(AWX_PROJECT, "backup.yml"), envvars=envvars)
    assert run.status == "successful", runner_failed(run)
    outcome = artifact_data(run)["lifeboat_backup_outcome"]["localhost"]
    assert [(a["name"], a["verification"]) for a in outcome["archives"]] == [
        ("journal", {"level": "restore", "ok": True})]
    assert outcome["archives"][0]["archive"].endswith(".age")
    key_body = signing_key.read_text().splitlines()[2].encode()  # a line of the private key's base64
    assert_no_secret(run, (MARKERS[0], secret_key.encode(), key_body), inputs=tuple(files.values()))
    assert not any(MARKERS[0].decode() in value or "AGE-SECRET" in value for value in envvars.values())
