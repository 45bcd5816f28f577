# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for tests against the real test bed: PostgreSQL 15 and FerretDB started by scripts/testbed/up.sh."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import typing as t
import uuid

import psycopg
import pymongo
import yaml
from bson.raw_bson import RawBSONDocument

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The seeded sample databases carry this session's run id, so that two suites on one test bed (a developer's
# and CI's) never drop each other's: it is set once here, when conftest.py first imports this module, and
# inherited from the environment by scripts/testbed/seed.py, module subprocesses and xdist workers.
RUN_ID = os.environ.setdefault("LIFEBOAT_RUN_ID", uuid.uuid4().hex[:8])
# The notes of containers stopped during a backup (plugins/module_utils/_stopping.py): the session's own directory,
# not the host's, for every module, playbook and `lifeboat` command the tests start.
STOPPED_DIR = os.environ.setdefault("LIFEBOAT_STOPPED_DIR", f"/tmp/lifeboat-stopped-{RUN_ID}")
PG_SOURCE = f"journal_{RUN_ID}"
PG_SECOND = f"recipes_{RUN_ID}"
MONGO_SOURCE = f"nightscout_{RUN_ID}"
MONGO_SECOND = f"research_{RUN_ID}"
T = t.TypeVar("T")


def collections_root() -> str:
    """tests/conftest.py links the checkout into a collections tree and exports its path."""
    return os.environ["ANSIBLE_COLLECTIONS_PATH"]


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


class PgServer:
    engine = "postgresql"
    sample = PG_SOURCE  # the seeded database tests read from

    def __init__(self) -> None:
        self.host = os.environ.get("LIFEBOAT_PG_HOST", "127.0.0.1")
        self.port = int(os.environ["LIFEBOAT_PG_PORT"])
        self.user = os.environ["LIFEBOAT_PG_USER"]
        self.password_file = os.environ["LIFEBOAT_PG_PASSWORD_FILE"]
        self.password = read(self.password_file)

    def login(self, **extra: t.Any) -> dict[str, t.Any]:
        """Module options that connect as the test bed's admin through its 0600 password file."""
        return {"login_host": self.host, "login_port": self.port, "login_user": self.user,
                "login_password_file": self.password_file, **extra}

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=database, autocommit=True)

    def drop(self, database: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    @contextlib.contextmanager
    def copy_of(self, source: str, name: str) -> t.Iterator[str]:
        """``name`` made as a template copy of ``source`` (every byte equal), dropped again afterwards."""
        self.execute("postgres", f"CREATE DATABASE {name} TEMPLATE {source}")
        try:
            yield name
        finally:
            self.drop(name)

    def execute(self, database: str, *statements: str) -> None:
        """Run each statement in ``database``, autocommitted (CREATE DATABASE cannot run in a transaction)."""
        with self.connect(database) as conn:
            for statement in statements:
                conn.execute(statement)

    def has_database(self, database: str) -> bool:
        with self.connect() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None

    def fingerprint(self, database: str) -> dict[str, t.Any]:
        """Row counts, a content hash per table (rows in a canonical order) and sequence positions."""
        result: dict[str, t.Any] = {"counts": {}, "hashes": {}, "sequences": {}}
        with self.connect(database) as conn:
            tables = conn.execute(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), n.nspname || '.' || c.relname"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 2"
            ).fetchall()
            for quoted, name in tables:
                count, digest = conn.execute(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM ONLY {quoted} t"
                ).fetchone() or (None, None)  # an aggregate: always one row
                result["counts"][name] = count
                result["hashes"][name] = digest
            for (name,) in conn.execute(
                "SELECT schemaname || '.' || sequencename FROM pg_sequences ORDER BY 1"
            ).fetchall():
                result["sequences"][name] = conn.execute(
                    "SELECT last_value, is_called FROM " + ".".join(f'"{p}"' for p in name.split("."))
                ).fetchone()
        return result


class MongoServer:
    engine = "mongodb"
    sample = MONGO_SOURCE

    def __init__(self) -> None:
        self.host = os.environ.get("LIFEBOAT_MONGO_HOST", "127.0.0.1")
        self.port = int(os.environ["LIFEBOAT_MONGO_PORT"])
        self.user = os.environ["LIFEBOAT_MONGO_USER"]
        self.password_file = os.environ["LIFEBOAT_MONGO_PASSWORD_FILE"]
        self.password = read(self.password_file)
        self.client: pymongo.MongoClient[t.Any] = pymongo.MongoClient(
            self.host, self.port, username=self.user, password=self.password, authSource="admin",
            serverSelectionTimeoutMS=10000)

    def login(self, **extra: t.Any) -> dict[str, t.Any]:
        return {"login_host": self.host, "login_port": self.port, "login_user": self.user,
                "login_password_file": self.password_file, **extra}

    def drop(self, database: str) -> None:
        self.client.drop_database(database)

    def has_database(self, database: str) -> bool:
        return database in self.client.list_database_names()

    def fingerprint(self, database: str) -> dict[str, t.Any]:
        """Counts, a hash of every document's exact BSON bytes in _id order (types included), and indexes."""
        result: dict[str, t.Any] = {"counts": {}, "hashes": {}, "indexes": {}}
        db = self.client.get_database(database, codec_options=self.client.codec_options.with_options(
            document_class=RawBSONDocument))
        for name in sorted(db.list_collection_names()):
            digest = hashlib.sha256()
            count = 0
            for document in db[name].find().sort("_id", 1):
                digest.update(document.raw)
                count += 1
            result["counts"][name] = count
            result["hashes"][name] = digest.hexdigest()
            result["indexes"][name] = sorted(
                (index["name"], json.dumps(dict(index["key"])), bool(index.get("unique")))
                for index in self.client[database][name].list_indexes()
            )
        return result


class ModuleRun(t.NamedTuple):
    rc: int
    result: dict[str, t.Any]
    stdout: str
    stderr: str


def module_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = collections_root()
    return env


def start_module(name: str, args: dict[str, t.Any], tmp_path: t.Any, check_mode: bool = False) -> subprocess.Popen:
    """Start a module the way Ansible does on a host: its own Python process reading an args file."""
    args_file = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}))
    return subprocess.Popen(
        [sys.executable, "-m", f"ansible_collections.lifeboat.ops.plugins.modules.{name}", str(args_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=module_env(), cwd=str(tmp_path),
    )


def finish_module(process: subprocess.Popen) -> ModuleRun:
    stdout, stderr = process.communicate(timeout=600)
    try:
        result = json.loads(stdout)
    except ValueError:
        result = {}
    return ModuleRun(process.returncode, result, stdout, stderr)


class PlaybookRun(t.NamedTuple):
    status: str  # ansible-runner's: successful, failed, timeout
    rc: int
    artifact: dict[str, t.Any]  # what the run published with set_stats: the artifact_data of its stats event
    stdout: str


def run_with_runner(base: t.Any, playbook: str, host_vars: dict[str, t.Any], cmdline: str | None = None) -> PlaybookRun:
    """lifeboat.ops.PLAYBOOK on localhost through ansible-runner, as AWX runs it, in a private data directory of its
    own under ``base`` (a pathlib folder)."""
    import ansible_runner  # only the tests that run playbooks need it

    private = base / f"runner-{playbook}-{uuid.uuid4().hex[:6]}"
    for directory in (private / "inventory", private / "project"):
        directory.mkdir(parents=True)
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
    (private / "project" / "site.yml").write_text(yaml.safe_dump([{"import_playbook": f"lifeboat.ops.{playbook}"}]))
    envvars = {"ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(base / "ansible-tmp"),
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    run = ansible_runner.run(private_data_dir=str(private), playbook="site.yml", ident="job", envvars=envvars,
                             quiet=True, timeout=600, cmdline=cmdline)
    events = private / "artifacts" / "job" / "job_events"
    (stats,) = [event["event_data"] for event in (json.loads(path.read_text()) for path in events.iterdir())
                if event.get("event") == "playbook_on_stats"]
    stdout = (private / "artifacts" / "job" / "stdout").read_text(errors="replace")
    return PlaybookRun(run.status, run.rc, stats.get("artifact_data") or {}, stdout)


def resign(manifest_path: str) -> None:
    """Sign a manifest a test rewrote with the session's host key, as if the backup had written it so: what the test
    then checks comes after the signature check (which would otherwise refuse the edited manifest first)."""
    from ansible_collections.lifeboat.ops.plugins.module_utils import _signing  # pylint: disable=import-outside-toplevel

    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    signature = _signing.sign(_signing.signed_bytes(manifest), _signing.default_key_file())
    _signing.write_signature(manifest_path, signature)


def listing(directory: t.Any) -> list[str]:
    """Every name in a directory, hidden temporary files included."""
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


# What the schedule and edge playbooks would change on this machine (their check mode must change none of it).
SYSTEM_PATHS = ("/etc/lifeboat", "/etc/lifeboat-healthcheck", "/usr/local/lib/lifeboat",
                "/usr/local/lib/lifeboat-healthcheck", "/usr/local/bin", "/etc/systemd/system", "/etc/passwd",
                "/etc/group", "/etc/shadow", "/var/lib/dpkg/status", "/etc/apt/sources.list.d", "/etc/apt/keyrings",
                "/var/lib/prometheus", "/etc/nginx", "/etc/lifeboat-proxy")


def system_state() -> dict[str, t.Any]:
    """SYSTEM_PATHS as they are: file contents, directory trees, or None where nothing is."""
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


def sample_jobs(pg: PgServer, mongo: MongoServer, **extra: t.Any) -> list[dict[str, t.Any]]:
    """backup_jobs of the backup role for the two sample databases, logged in through the password files."""
    return [
        {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login(), **extra},
        {"name": "nightscout", "engine": "mongodb", "database": MONGO_SOURCE, **mongo.login(), **extra},
    ]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if match and match[1] == name:
            pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2]))
            if all(pairs.get(key) == value for key, value in labels.items()):
                found.append(float(match[3]))
    assert len(found) == 1, f"{name} {labels}: {found} in\n{text}"
    return found[0]


class Unsafe(str):
    """A value written as ``!unsafe`` (as AWX writes credentials into extra vars): Ansible never templates it."""


class UnsafeDumper(yaml.SafeDumper):
    pass


UnsafeDumper.add_representer(Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value), style="'"))


def unsafe_extra_vars(path: t.Any, variables: dict[str, t.Any]) -> str:
    """Write VARIABLES for ``-e @PATH``, each string value tagged ``!unsafe``; returns the ``-e`` argument."""
    path.write_text(yaml.dump({key: Unsafe(value) if isinstance(value, str) else value
                               for key, value in variables.items()}, Dumper=UnsafeDumper))
    return f"@{path}"


def children(parent: int, name: str) -> list[tuple[int, list[bytes]]]:
    """The processes called ``name`` whose parent is ``parent``, with their argv."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                comm, rest = handle.read().rsplit(")", 1)
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue  # gone while we looked
        if comm.split("(", 1)[1] == name and int(rest.split()[1]) == parent:
            found.append((int(pid), argv))
    return found


def wait_for_child(process: subprocess.Popen, name: str, with_arg: bytes | None = None, timeout: float = 60) -> int:
    """The pid of the ``name`` child of ``process`` (with ``with_arg`` in its argv, if given), once it runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid, argv in children(process.pid, name):
            if with_arg is None or with_arg in argv:
                return pid
        assert process.poll() is None, f"the module ended before {name} started: {finish_module(process)}"
        time.sleep(0.02)
    raise AssertionError(f"no {name} below the module within {timeout} s")


def wait_until(condition: t.Callable[[], T], seconds: float, interval: float = 0.01,
               give_up: t.Callable[[], bool] = lambda: False) -> T:
    """``condition()``'s value once it is true; its last value when ``seconds`` have passed or ``give_up()`` is true."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline and not give_up():
        time.sleep(interval)
    return value
