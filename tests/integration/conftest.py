# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for tests against the real test bed."""

from __future__ import annotations

import os
import subprocess
import sys
import typing as t
import uuid

import pytest
import yaml

from containers import Box, ContainerBed, ContainerBedError  # pylint: disable=import-error
from testbed import (  # pylint: disable=import-error
    MONGO_SECOND,
    MONGO_SOURCE,
    PG_SECOND,
    PG_SOURCE,
    REPO_ROOT,
    ModuleRun,
    MongoServer,
    PgServer,
    collections_root,
    finish_module,
    module_env,
    start_module,
)

REQUIRED = ["LIFEBOAT_PG_PORT", "LIFEBOAT_PG_USER", "LIFEBOAT_PG_PASSWORD_FILE", "LIFEBOAT_MONGO_PORT",
            "LIFEBOAT_MONGO_USER", "LIFEBOAT_MONGO_PASSWORD_FILE"]


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        raise pytest.UsageError(
            f"{', '.join(missing)} not set: run the integration tests with `make integration` (it starts the test bed)"
        )


@pytest.fixture(scope="session")
def pg() -> PgServer:
    return PgServer()


@pytest.fixture(scope="session")
def mongo() -> t.Iterator[MongoServer]:
    server = MongoServer()
    yield server
    server.client.close()


@pytest.fixture(scope="session", autouse=True)
def seeded(pg: PgServer, mongo: MongoServer) -> t.Iterator[None]:
    """The sample databases every test reads as its source (journal, recipes, nightscout and research, each
    named with this run's id: testbed.RUN_ID, which seed.py reads as LIFEBOAT_RUN_ID); dropped at the end."""
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "testbed", "seed.py")], check=True,
                   capture_output=True)
    yield
    for database in (PG_SOURCE, PG_SECOND):
        pg.drop(database)
    for database in (MONGO_SOURCE, MONGO_SECOND):
        mongo.drop(database)


@pytest.fixture
def unique_name() -> str:
    return "t_" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def age_key(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    identity = str(tmp_path_factory.mktemp("age") / "identity.txt")
    subprocess.run(["age-keygen", "-o", identity], capture_output=True, check=True)
    recipient = subprocess.run(["age-keygen", "-y", identity], capture_output=True, check=True, text=True).stdout.strip()
    return {"identity": identity, "recipient": recipient}


@pytest.fixture
def tmpfs(tmp_path: t.Any) -> t.Iterator[t.Callable[[str], t.Any]]:
    """Mounts small tmpfs file systems under tmp_path (a disk that fills up), unmounted after the test."""
    mounts: list[t.Any] = []

    def mount(size: str) -> t.Any:
        assert os.geteuid() == 0, "mounting a tmpfs needs root: run the suite as CI does (as root)"
        path = tmp_path / f"tmpfs-{len(mounts)}"
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def run_module(tmp_path: t.Any) -> t.Callable[..., ModuleRun]:
    def run(name: str, args: dict[str, t.Any], check_mode: bool = False) -> ModuleRun:
        return finish_module(start_module(name, args, tmp_path, check_mode))

    return run


@pytest.fixture
def run_playbook(tmp_path: t.Any) -> t.Callable[..., subprocess.CompletedProcess]:
    """Run one of the collection's playbooks by FQCN against localhost with the given host variables."""

    def run(playbook: str, host_vars: dict[str, t.Any], *extra: str) -> subprocess.CompletedProcess:
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
        env = {**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}
        return subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), f"lifeboat.ops.{playbook}",
             "-i", str(inventory), *extra],
            capture_output=True, text=True, env=env, timeout=900, check=False,
        )

    return run


# One name per test session: two sessions on one test bed (a developer's and CI's) never drop each other's.
BIG_PG = BIG_MONGO = f"lifeboat_big_{os.getpid()}"


@pytest.fixture(scope="session")
def big_pg(pg):
    """A database whose dump lasts long enough to be interrupted (about 150 MB of incompressible text)."""
    pg.drop(BIG_PG)
    with pg.connect() as conn:
        conn.execute(f"CREATE DATABASE {BIG_PG}")
    with pg.connect(BIG_PG) as conn:
        conn.execute("CREATE TABLE blob (id bigint PRIMARY KEY, payload text)")
        conn.execute("INSERT INTO blob SELECT g, repeat(md5(g::text || random()::text), 8)"
                     " FROM generate_series(1, 500000) g")
    yield BIG_PG
    pg.drop(BIG_PG)


@pytest.fixture(scope="session")
def big_mongo(mongo):
    mongo.drop(BIG_MONGO)
    collection = mongo.client[BIG_MONGO].blobs
    for start in range(0, 40000, 5000):
        collection.insert_many([{"n": n, "payload": os.urandom(600).hex()} for n in range(start, start + 5000)])
    yield BIG_MONGO
    mongo.drop(BIG_MONGO)


@pytest.fixture
def server(engine: str, pg: PgServer, mongo: MongoServer) -> PgServer | MongoServer:
    """The test bed server of the engine a test is parametrized with."""
    return pg if engine == "postgresql" else mongo


@pytest.fixture
def big_source(engine: str, big_pg: str, big_mongo: str) -> str:
    return big_pg if engine == "postgresql" else big_mongo


# The container test bed (scripts/testbed/images.sh builds the images; `make integration` and CI run it first).
# A missing engine or image fails the tests that use these fixtures with one line saying so: never a skip.
@pytest.fixture(scope="session")
def container_bed() -> t.Iterator[ContainerBed]:
    """Starts this run's containers (``lifeboat-test-<run id>-<purpose>``); removes them and their volumes at the end."""
    try:
        bed = ContainerBed.connect()
    except ContainerBedError as error:
        pytest.fail(str(error), pytrace=False)
    yield bed
    bed.close()


def started(start: t.Callable[[], Box]) -> Box:
    try:
        return start()
    except ContainerBedError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def pg17_container(container_bed: ContainerBed) -> Box:
    """PostgreSQL 17 (newer than the host's pg_dump 15), its data in a named volume of this run."""
    return started(lambda: container_bed.postgres("pg17", volume=True))


@pytest.fixture(scope="session")
def ferret_container(container_bed: ContainerBed) -> Box:
    """FerretDB with mongodump/mongorestore inside, a root user in `admin`, its data in a named volume of this run."""
    return started(lambda: container_bed.ferretdb("ferret", volume=True))


@pytest.fixture(scope="session")
def app_container(container_bed: ContainerBed) -> Box:
    """The app that wrote its files into a named volume of this run (mounted on /data), then sleeps."""
    return started(lambda: container_bed.app("app"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[t.Any]:
    """A real S3-compatible server (versitygw, POSIX backend) on a free loopback port, stopped by PID at the end."""
    from s3server import S3Server  # pylint: disable=import-error,import-outside-toplevel

    server = S3Server(str(tmp_path_factory.mktemp("s3")))
    server.start()
    yield server
    server.stop()
