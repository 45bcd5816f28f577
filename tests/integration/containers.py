# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container test bed: PostgreSQL 17, FerretDB and app containers on the real Docker engine.

The images are built by scripts/testbed/images.sh (names in scripts/testbed/images/versions.env). A ContainerBed
starts containers through the docker SDK, named ``lifeboat-test-<run id>-<purpose>`` (the run id is testbed.RUN_ID,
so two test runs never collide), waits until each server answers its password on the container's bridge address
(no port is published), and removes exactly the containers and volumes it created, by id, in ``close()``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
import typing as t

import docker
import docker.errors
import psycopg
import pymongo
import pymongo.errors
from docker.models.containers import Container as DockerContainer

from testbed import REPO_ROOT, RUN_ID  # pylint: disable=import-error

VERSIONS_FILE = os.path.join(REPO_ROOT, "scripts", "testbed", "images", "versions.env")
WAIT_SECONDS = float(os.environ.get("LIFEBOAT_TESTBED_WAIT", "60"))
# Hostile passwords: URL, YAML, shell and libpq quoting characters. The run id makes a leak search specific.
PG_PASSWORD = f"PgBox{RUN_ID} p@ss:w/rd?#&%'\"{{{{x}}}}!*[a]|>$HOME `id` \\end"
MONGO_PASSWORD = f"MgBox{RUN_ID}:p@ss/w?rd#&%'\"{{{{ y }}}}, {{z: 1}} -$HOME \\end"
LABEL_RUN = "lifeboat.test.run"  # on every container and volume a ContainerBed makes
BUILD_COMPOSE = os.path.join(REPO_ROOT, "scripts", "testbed", "build-compose.sh")


class ContainerBedError(Exception):
    """The engine or an image is missing: one line that says what to run."""


def image_names(path: str = VERSIONS_FILE) -> dict[str, str]:
    """The NAME=value lines of versions.env (PG17_IMAGE, FERRETDB_IMAGE, APP_IMAGE...)."""
    with open(path, encoding="utf-8") as handle:
        return dict(re.findall(r"^([A-Z0-9_]+)=(\S+)$", handle.read(), re.MULTILINE))


@dataclasses.dataclass
class Box:
    """A running container of the test bed, and how to log in to the server inside (None for the app)."""

    name: str
    id: str
    ip: str
    image: str
    port: int | None = None
    user: str | None = None
    password: str | None = None
    database: str | None = None
    volume: str | None = None  # the named volume mounted at the data directory, when one was asked for
    data_dir: str | None = None  # where the data lives inside the container

    def connect_pg(self, database: str | None = None, password: str | None = None) -> psycopg.Connection:
        return psycopg.connect(host=self.ip, port=self.port, user=self.user, dbname=database or self.database,
                               password=self.password if password is None else password, autocommit=True,
                               connect_timeout=5)

    def mongo_client(self, password: str | None = None) -> pymongo.MongoClient[t.Any]:
        return pymongo.MongoClient(self.ip, self.port, username=self.user, authSource="admin",
                                   password=self.password if password is None else password,
                                   serverSelectionTimeoutMS=5000)


class ContainerBed:
    """Starts the test bed's containers for one test run and removes what it started."""

    def __init__(self, client: docker.DockerClient, images: dict[str, str], run_id: str = RUN_ID) -> None:
        self.client = client
        self.images = images
        self.run_id = run_id
        self.containers: list[str] = []  # ids, in the order they were created
        self.volumes: list[str] = []
        self.projects: list[tuple[str, str]] = []  # compose projects (name, compose file) this bed brought up
        self._compose_config: str | None = None

    @classmethod
    def connect(cls, images: dict[str, str] | None = None, run_id: str = RUN_ID) -> ContainerBed:
        """The engine answers and every image is there, or ContainerBedError says what to run."""
        images = image_names() if images is None else images
        try:
            client = docker.from_env(timeout=120)
            client.ping()
        except docker.errors.DockerException as error:
            raise ContainerBedError(f"the Docker engine does not answer ({str(error).splitlines()[0]}): "
                                    "run scripts/testbed/images.sh (it starts the engine and builds the images)") from None
        missing = []
        for key in ("PG17_IMAGE", "FERRETDB_IMAGE", "APP_IMAGE"):
            try:
                client.images.get(images[key])
            except docker.errors.ImageNotFound:
                missing.append(images[key])
        if missing:
            client.close()
            raise ContainerBedError(f"image {', '.join(missing)} missing in the Docker engine: run "
                                    "scripts/testbed/images.sh (it builds them, or loads them from its cache)")
        return cls(client, images, run_id)

    def name(self, purpose: str) -> str:
        """``lifeboat-test-<run id>-<purpose>``; under pytest-xdist the worker (gw0...) comes before the purpose, as
        each worker has session fixtures of its own."""
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        return f"lifeboat-test-{self.run_id}-{worker}-{purpose}" if worker else f"lifeboat-test-{self.run_id}-{purpose}"

    def volume(self, purpose: str) -> str:
        """A new named volume of this run (``lifeboat-test-<run id>-<purpose>``), removed by close()."""
        volume = self.client.volumes.create(self.name(purpose), labels={LABEL_RUN: self.run_id})
        self.volumes.append(volume.name)
        return volume.name

    def _run(self, image_key: str, purpose: str, *, environment: dict[str, str], data_dir: str,
             volume: bool | str, labels: dict[str, str] | None, binds: dict[str, str] | None = None,
             **extra: t.Any) -> tuple[DockerContainer, str | None]:
        volume_name = (self.volume(f"{purpose}-data") if volume is True else volume) or None
        mounts = {volume_name: {"bind": data_dir, "mode": "rw"}} if volume_name else {}
        mounts.update({source: {"bind": target, "mode": "rw"} for source, target in (binds or {}).items()})
        container = self.client.containers.run(
            self.images[image_key], name=self.name(purpose), detach=True, environment=environment, volumes=mounts,
            labels={LABEL_RUN: self.run_id, **(labels or {})}, **extra)
        self.containers.append(container.id)
        return container, volume_name

    def _wait(self, container: DockerContainer, ready: t.Callable[[str], bool]) -> str:
        """The container's bridge address, once ready(address) is true; a container that exits is reported."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            container.reload()
            if container.status not in ("created", "running"):
                raise ContainerBedError(f"container {container.name} {container.status}: "
                                        f"{container.logs(tail=5).decode(errors='replace').strip()}")
            address = bridge_address(container)
            if address and ready(address):
                return address
            if time.monotonic() > deadline:
                raise ContainerBedError(f"container {container.name} did not answer within {WAIT_SECONDS:.0f} s: "
                                        f"{container.logs(tail=5).decode(errors='replace').strip()}")
            time.sleep(0.3)

    def postgres(self, purpose: str = "pg17", *, user: str = "journal_owner", database: str = "journal",
                 password: str = PG_PASSWORD, volume: bool | str = False, labels: dict[str, str] | None = None,
                 environment: dict[str, str] | None = None) -> Box:
        """PostgreSQL 17 (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB as in the official image); volume=True
        mounts a new named volume of this run on its data directory, a string mounts that volume."""
        data_dir = "/var/lib/postgresql/data"
        env = {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": database, **(environment or {})}
        container, volume_name = self._run("PG17_IMAGE", purpose, environment=env, data_dir=data_dir, volume=volume,
                                           labels=labels)

        def ready(address: str) -> bool:
            return _pg_answers(address, user, password, database)

        return Box(container.name, container.id, self._wait(container, ready), self.images["PG17_IMAGE"], 5432, user,
                   password, database, volume_name, data_dir)

    def ferretdb(self, purpose: str = "ferret", *, user: str = "nightscout_root", password: str = MONGO_PASSWORD,
                 volume: bool | str = False, labels: dict[str, str] | None = None,
                 environment: dict[str, str] | None = None) -> Box:
        """FerretDB with mongodump/mongorestore inside (MONGO_INITDB_ROOT_USERNAME/PASSWORD as in the official mongo
        image, user in `admin`); data in /data/db."""
        data_dir = "/data/db"
        env = {"MONGO_INITDB_ROOT_USERNAME": user, "MONGO_INITDB_ROOT_PASSWORD": password, **(environment or {})}
        container, volume_name = self._run("FERRETDB_IMAGE", purpose, environment=env, data_dir=data_dir,
                                           volume=volume, labels=labels)

        def ready(address: str) -> bool:
            return _mongo_answers(address, user, password)

        return Box(container.name, container.id, self._wait(container, ready), self.images["FERRETDB_IMAGE"], 27017,
                   user, password, None, volume_name, data_dir)

    def app(self, purpose: str = "app", *, volume: bool | str = True, labels: dict[str, str] | None = None,
            environment: dict[str, str] | None = None, binds: dict[str, str] | None = None) -> Box:
        """The app that fills /data (by default a new named volume of this run) with files, then sleeps; binds maps
        host paths to paths in the container."""
        data_dir = "/data"
        container, volume_name = self._run("APP_IMAGE", purpose, environment=environment or {}, data_dir=data_dir,
                                           volume=volume, labels=labels, binds=binds)
        address = self._wait(container, lambda _address: b"app-writer: ready" in container.logs())
        return Box(container.name, container.id, address, self.images["APP_IMAGE"], volume=volume_name,
                   data_dir=data_dir)

    def compose(self, project: str, compose_file: str, *args: str, environment: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker compose -p PROJECT -f FILE ARGS`` with real Docker Compose v2, the test bed's CLI plugin
        (scripts/testbed/build-compose.sh: cached, instant once built). ``environment`` reaches compose only."""
        if self._compose_config is None:
            built = subprocess.run(["bash", BUILD_COMPOSE], capture_output=True, text=True, check=False)
            if built.returncode != 0:
                raise ContainerBedError(f"Docker Compose could not be built: {built.stderr.strip()[-500:]}")
            self._compose_config = built.stdout.strip().splitlines()[-1]
        env = {**os.environ, "DOCKER_CONFIG": self._compose_config, **(environment or {})}
        done = subprocess.run(["docker", "compose", "--project-name", project, "--file", compose_file, *args],
                              capture_output=True, text=True, env=env, timeout=600, check=False)
        if check and done.returncode != 0:
            raise ContainerBedError(f"docker compose {' '.join(args)} of {project} failed: {done.stderr.strip()}")
        return done

    def compose_up(self, project: str, compose_file: str, environment: dict[str, str] | None = None
                   ) -> dict[str, DockerContainer]:
        """``up --detach`` of a real compose project (removed with ``down --volumes`` by close()): its containers by
        service, as compose labelled them."""
        if (project, compose_file) not in self.projects:
            self.projects.append((project, compose_file))
        self.compose(project, compose_file, "up", "--detach", environment=environment)
        return self.compose_services(project)

    def compose_services(self, project: str) -> dict[str, DockerContainer]:
        found = self.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
        return {container.labels["com.docker.compose.service"]: container for container in found}

    def pg_box(self, container: DockerContainer, user: str, password: str, database: str) -> Box:
        """A compose service's PostgreSQL 17 container, once it answers its password."""
        address = self._wait(container, lambda address: _pg_answers(address, user, password, database))
        return Box(container.name, container.id, address, self.images["PG17_IMAGE"], 5432, user, password, database,
                   _volume_at(container, "/var/lib/postgresql/data"), "/var/lib/postgresql/data")

    def ferret_box(self, container: DockerContainer, user: str, password: str) -> Box:
        """A compose service's FerretDB container, once it answers its password."""
        address = self._wait(container, lambda address: _mongo_answers(address, user, password))
        return Box(container.name, container.id, address, self.images["FERRETDB_IMAGE"], 27017, user, password, None,
                   _volume_at(container, "/data/db"), "/data/db")

    def app_box(self, container: DockerContainer) -> Box:
        """A compose service's app container, once it wrote its files."""
        address = self._wait(container, lambda _address: b"app-writer: ready" in container.logs())
        return Box(container.name, container.id, address, self.images["APP_IMAGE"], volume=_volume_at(container, "/data"),
                   data_dir="/data")

    def close(self) -> None:
        """Removes the compose projects (``down --volumes``), the containers (with their anonymous volumes) and the
        named volumes this bed created."""
        for project, compose_file in reversed(self.projects):
            self.compose(project, compose_file, "down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)
        self.projects.clear()
        for container_id in reversed(self.containers):
            try:
                self.client.api.remove_container(container_id, v=True, force=True)
            except docker.errors.NotFound:
                pass
        for name in reversed(self.volumes):
            try:
                self.client.api.remove_volume(name, force=True)
            except docker.errors.NotFound:
                pass
        self.containers.clear()
        self.volumes.clear()
        self.client.close()


def _pg_answers(address: str, user: str, password: str, database: str) -> bool:
    try:
        with psycopg.connect(host=address, port=5432, user=user, password=password, dbname=database,
                             connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def _mongo_answers(address: str, user: str, password: str) -> bool:
    client: pymongo.MongoClient[t.Any] = pymongo.MongoClient(
        address, 27017, username=user, password=password, authSource="admin", serverSelectionTimeoutMS=1000,
        connectTimeoutMS=1000)
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.ServerSelectionTimeoutError:
        return False
    finally:
        client.close()


def _volume_at(container: DockerContainer, destination: str) -> str | None:
    container.reload()
    return next((mount["Name"] for mount in container.attrs["Mounts"]
                 if mount["Type"] == "volume" and mount["Destination"] == destination), None)


def bridge_address(container: DockerContainer) -> str:
    networks = container.attrs["NetworkSettings"].get("Networks") or {}
    return next((network["IPAddress"] for network in networks.values() if network.get("IPAddress")), "")


def exec_output(container: DockerContainer, command: list[str], user: str = "") -> tuple[int, str]:
    """Runs a command inside the container (through the Engine API): exit code and stdout+stderr."""
    result = container.exec_run(command, user=user)
    return result.exit_code, result.output.decode(errors="replace")


def files_containing(client: docker.DockerClient, container_id: str, needle: bytes) -> list[str]:
    """Every file of the container's file system (image layers, its own layer, its volumes) that holds needle,
    read from the host side (overlay2's merged dir and the mounts' sources): nothing runs inside the container."""
    attrs = client.api.inspect_container(container_id)
    roots = [(attrs["GraphDriver"]["Data"]["MergedDir"], "")]
    roots += [(mount["Source"], mount["Destination"]) for mount in attrs["Mounts"]]
    found = []
    for root, inside in roots:
        for directory, _dirs, files in os.walk(root):
            for file_name in files:
                path = os.path.join(directory, file_name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                if contains(path, needle):
                    found.append(inside + path[len(root):])
    return found


def contains(path: str, needle: bytes, chunk: int = 1 << 20) -> bool:
    try:
        with open(path, "rb") as handle:
            tail = b""
            while block := handle.read(chunk):
                if needle in tail + block:
                    return True
                tail = (tail + block)[len(tail) + len(block) - len(needle) + 1:]  # a match across two blocks
    except OSError:  # a socket or a file gone meanwhile
        return False
    return False
