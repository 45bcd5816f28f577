# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container test bed itself (scripts/testbed/images.sh, containers.py): each container starts, answers its
password over the bridge, carries the tools it must, keeps the password out of everything but its Env, and a
ContainerBed removes exactly what it made."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess

import docker.errors
import psycopg
import pymongo.errors
import pytest

from containers import (  # pylint: disable=import-error
    Box,
    ContainerBed,
    ContainerBedError,
    exec_output,
    files_containing,
    image_names,
)
from testbed import RUN_ID  # pylint: disable=import-error


def major(version_line: str) -> int:
    match = re.search(r"\(PostgreSQL\) (\d+)", version_line)
    assert match, version_line
    return int(match[1])


def test_names_carry_the_run_id(pg17_container, ferret_container, app_container):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    prefix = f"lifeboat-test-{RUN_ID}-{worker}-" if worker else f"lifeboat-test-{RUN_ID}-"
    for box, purpose in ((pg17_container, "pg17"), (ferret_container, "ferret"), (app_container, "app")):
        assert box.name == f"{prefix}{purpose}"
        assert box.volume == f"{prefix}{purpose}-data"


def test_pg17_answers_its_password_over_the_bridge(pg17_container: Box):
    with pg17_container.connect_pg() as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int, current_user, current_database()").fetchone()
    assert row is not None
    version, user, database = row
    assert version // 10000 == 17
    assert (user, database) == ("journal_owner", "journal")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg17_container.connect_pg(password="not-the-password")


def test_pg17_clients_inside_are_17_and_the_host_pg_dump_older(container_bed: ContainerBed, pg17_container: Box):
    container = container_bed.client.containers.get(pg17_container.id)
    for tool in ("pg_dump", "pg_restore", "psql"):
        code, output = exec_output(container, [tool, "--version"])
        assert code == 0 and major(output) == 17, output
    host_pg_dump = shutil.which("pg_dump")
    assert host_pg_dump, "the host has no pg_dump (scripts/testbed/packages.sh installs PostgreSQL 15)"
    host = subprocess.run([host_pg_dump, "--version"], capture_output=True, text=True, check=True).stdout
    assert major(host) < 17, host


def test_pg17_tcp_inside_needs_the_password_the_socket_does_not(container_bed: ContainerBed, pg17_container: Box):
    container = container_bed.client.containers.get(pg17_container.id)
    code, output = exec_output(container, ["psql", "-h", "127.0.0.1", "-U", "journal_owner", "-d", "journal", "-w",
                                           "-Atc", "SELECT 1"])
    assert code != 0 and "no password supplied" in output, output
    code, output = exec_output(container, ["psql", "-U", "journal_owner", "-d", "journal", "-Atc", "SELECT 1"])
    assert (code, output.strip()) == (0, "1")


def test_pg17_data_lives_in_the_named_volume(container_bed: ContainerBed, pg17_container: Box):
    mounts = container_bed.client.api.inspect_container(pg17_container.id)["Mounts"]
    mount = next(mount for mount in mounts if mount["Destination"] == "/var/lib/postgresql/data")
    assert (mount["Type"], mount["Name"]) == ("volume", pg17_container.volume)
    with open(os.path.join(mount["Source"], "PG_VERSION"), encoding="utf-8") as handle:
        assert handle.read().strip() == "17"
    assert os.stat(mount["Source"]).st_uid == 999  # the official image's postgres uid


def test_pg17_without_a_password_exits_with_one_line(container_bed: ContainerBed):
    with pytest.raises(ContainerBedError) as error:
        container_bed.postgres("pg17-nopassword", password="")
    assert "POSTGRES_PASSWORD is not set" in str(error.value)
    assert "exited" in str(error.value)


def test_ferret_answers_its_password_only(ferret_container: Box):
    client = ferret_container.mongo_client()
    try:
        client.smoke.things.insert_one({"n": 1})
        assert client.smoke.things.find_one({"n": 1}, {"_id": 0}) == {"n": 1}
    finally:
        client.close()
    for password in ("not-the-password", ""):
        wrong = ferret_container.mongo_client(password=password) if password else pymongo.MongoClient(
            ferret_container.ip, ferret_container.port, serverSelectionTimeoutMS=5000)
        try:
            with pytest.raises(pymongo.errors.OperationFailure):
                wrong.smoke.things.find_one()
        finally:
            wrong.close()


def test_ferret_has_the_mongo_tools_inside(container_bed: ContainerBed, ferret_container: Box):
    container = container_bed.client.containers.get(ferret_container.id)
    for tool in ("mongodump", "mongorestore", "bsondump"):
        code, output = exec_output(container, [tool, "--version"])
        assert code == 0 and f"{tool} version" in output, output
    code, output = exec_output(container, ["ps", "-o", "user=,args=", "-p", "1"])
    assert output.split() == ["mongodb", "ferretdb"], output


@pytest.mark.parametrize("box_fixture", ["pg17_container", "ferret_container"])
def test_password_only_in_the_server_containers_env(container_bed: ContainerBed, box_fixture, request):
    """The server container's Env holds the password (unavoidable: POSTGRES_PASSWORD, MONGO_INITDB_ROOT_PASSWORD
    are how the official images take it); nothing else of `docker inspect`, its log or any file of its file system
    (image, container layer, volumes) does."""
    box: Box = request.getfixturevalue(box_fixture)
    assert box.password
    attrs = container_bed.client.api.inspect_container(box.id)
    env = attrs["Config"].pop("Env")
    assert sum(box.password in entry for entry in env) == 1
    rest = json.dumps(attrs)
    assert box.password not in rest and json.dumps(box.password)[1:-1] not in rest
    logs = container_bed.client.api.logs(box.id)
    assert box.password.encode() not in logs
    assert files_containing(container_bed.client, box.id, box.password.encode()) == []


def tree(root: str) -> dict[str, tuple]:
    """Per path: type, mode, owner, size and content hash (or symlink target)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                detail = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    detail = hashlib.sha256(handle.read()).hexdigest()
            else:
                detail = ""
            found[os.path.relpath(path, root)] = (stat.filemode(info.st_mode), info.st_uid, info.st_size, detail)
    return found


def test_app_fills_its_volume_and_survives_a_restart(container_bed: ContainerBed, app_container: Box):
    source = container_bed.client.volumes.get(app_container.volume).attrs["Mountpoint"]
    before = tree(source)
    assert set(before) >= {"README.txt", "config.json", "uploads", "uploads/photo.bin", "uploads/note-1.txt",
                           "uploads/note-1-hardlink.txt", "latest-photo", "sparse.img", "private",
                           "private/secret.env"}
    assert before["uploads/photo.bin"][2] == 4 * 1024 * 1024
    assert before["latest-photo"][0].startswith("l") and before["latest-photo"][3] == "uploads/photo.bin"
    assert os.stat(os.path.join(source, "uploads/note-1.txt")).st_nlink == 2
    sparse = os.stat(os.path.join(source, "sparse.img"))
    assert sparse.st_size == 16 * 1024 * 1024 and sparse.st_blocks * 512 < sparse.st_size // 4
    assert before["private/secret.env"][:2] == ("-rw-------", 1000)
    assert os.getxattr(os.path.join(source, "README.txt"), "user.lifeboat.origin") == b"app-writer"

    container = container_bed.client.containers.get(app_container.id)
    container.stop(timeout=10)
    container.reload()
    assert container.status == "exited" and container.attrs["State"]["ExitCode"] == 0  # SIGTERM, not a kill
    container.start()
    container.reload()
    assert container.status == "running"
    assert tree(source) == before  # a volume with files in it is left as it is


def test_close_removes_exactly_what_the_bed_made(container_bed: ContainerBed, app_container: Box):
    other = ContainerBed.connect(run_id=f"{RUN_ID}-close")
    box = other.app("app")
    extra_volume = other.volume("spare")
    assert box.name.startswith(f"lifeboat-test-{RUN_ID}-close-") and box.name.endswith("-app")
    other.close()
    client = container_bed.client
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(box.id)
    for volume in (box.volume, extra_volume):
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get(volume)
    assert client.containers.get(app_container.id).status == "running"  # the session's bed keeps its own


def test_a_missing_image_fails_with_one_line():
    images = {**image_names(), "APP_IMAGE": "lifeboat/app-writer:never-built"}
    with pytest.raises(ContainerBedError) as error:
        ContainerBed.connect(images=images)
    message = str(error.value)
    assert "\n" not in message
    assert "lifeboat/app-writer:never-built" in message and "scripts/testbed/images.sh" in message


def test_the_file_scan_finds_a_planted_secret(container_bed: ContainerBed):
    """files_containing is the check above: it must find a secret in the container layer and in a volume."""
    marker = f"planted-{RUN_ID}-secret"
    box = container_bed.app("app-planted", environment={"PLANTED": marker})
    container = container_bed.client.containers.get(box.id)
    # printenv writes the value from the environment: it is on no command line.
    code, output = exec_output(container, ["sh", "-c", "printenv PLANTED >/tmp/leak && printenv PLANTED >/data/leak"])
    assert code == 0, output
    assert sorted(files_containing(container_bed.client, box.id, marker.encode())) == ["/data/leak", "/tmp/leak"]
