# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the clients run: one request looks its container up once, and the exec helper is found where it lives.

A fake docker SDK stands in for the engine here (only to count what is asked of it); the container clients
themselves run against real containers in tests/integration/test_container_clients.py.
"""

from __future__ import annotations

import os
import pathlib
import re
import types
import typing as t

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _clients, _docker_engine, _docker_exec, _sources

PASSWORD = "p@ss:w/rd?#&%'\"{{x}}"


class FakeAPIClient:
    """The part of docker.APIClient a ContainerClient asks while a request is built: inspect_container, and an exec
    that finds the engine's client."""

    inspected: t.ClassVar[list[str]] = []
    environment: t.ClassVar[list[str]] = []

    def __init__(self, **_options: t.Any) -> None:
        pass

    def inspect_container(self, reference: str) -> dict[str, t.Any]:
        FakeAPIClient.inspected.append(reference)
        return {"Id": "c0ffee" * 10, "Name": f"/{reference}", "Image": "sha256:feed", "State": {"Running": True},
                "Config": {"Image": "postgres:17", "Env": list(FakeAPIClient.environment)},
                "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.9"}}}}

    def exec_create(self, _container: str, argv: list[str], **_options: t.Any) -> dict[str, str]:
        return {"Id": argv[-1]}  # the client looks its tool up (command -v TOOL): it is there

    def exec_start(self, exec_id: str) -> bytes:
        return f"/usr/bin/{exec_id}\n".encode()

    def exec_inspect(self, _exec_id: str) -> dict[str, int]:
        return {"ExitCode": 0}


class FakeDockerError(Exception):
    explanation = None


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> type[FakeAPIClient]:
    errors = types.SimpleNamespace(NotFound=type("NotFound", (FakeDockerError,), {}), DockerException=FakeDockerError,
                                   APIError=FakeDockerError)
    utils = types.SimpleNamespace(kwargs_from_env=lambda: {})  # no DOCKER_HOST, no TLS: the local socket
    monkeypatch.setattr(_clients, "docker_sdk", lambda: types.SimpleNamespace(APIClient=FakeAPIClient, errors=errors,
                                                                              utils=utils))
    FakeAPIClient.inspected = []
    FakeAPIClient.environment = []
    return FakeAPIClient


def job_params(engine: str, **given: t.Any) -> dict[str, t.Any]:
    """A job's options as its dump module gets them: every default, a destination, and ``given``."""
    spec = _sources.get(engine).job_options()
    return {**{name: option.get("default") for name, option in spec.items()}, "destination": "/backups", **given}


@pytest.mark.parametrize("environment, database", [
    (["POSTGRES_USER=journal_owner", f"POSTGRES_PASSWORD={PASSWORD}", "POSTGRES_DB=journal"], "journal"),
    # No POSTGRES_DB: the image's default database is its user's, read from the connection the container implies.
    (["POSTGRES_USER=journal_owner", f"POSTGRES_PASSWORD={PASSWORD}"], "journal_owner"),
])
def test_a_postgresql_dump_request_inspects_its_container_once(engine, environment, database):
    engine.environment = environment
    request = _sources.get("postgresql").dump_request(job_params("postgresql", container="journal-db"))
    assert engine.inspected == ["journal-db"]
    assert request.connection.database == database
    assert request.connection.place.address == "172.17.0.9"


def test_a_mongodb_dump_request_inspects_its_container_once(engine):
    engine.environment = ["MONGO_INITDB_ROOT_USERNAME=root", f"MONGO_INITDB_ROOT_PASSWORD={PASSWORD}"]
    request = _sources.get("mongodb").dump_request(job_params("mongodb", container="dashboard-db", database="dashboard"))
    assert engine.inspected == ["dashboard-db"]
    assert request.connection.place.name == "dashboard-db"


@pytest.mark.parametrize("engine_name", ["postgresql", "mongodb"])
def test_a_connection_inspects_its_container_once(engine, engine_name):
    connection = _sources.get(engine_name).connection(job_params(engine_name, container="db"))
    assert engine.inspected == ["db"]
    assert connection.place.where == "container db"


def test_no_container_no_engine(engine):
    request = _sources.get("postgresql").dump_request(job_params("postgresql", database="journal",
                                                                 login_host="db.internal"))
    assert request.connection.place is _clients.HOST
    assert engine.inspected == []


def test_the_exec_helper_is_imported_from_the_root_its_child_is_given(engine):
    """The child process imports the helper by its full name from the root its argv gives it, not by PYTHONPATH:
    Python would run a sitecustomize.py from there at startup (an AnsiballZ zip holds one)."""
    engine.environment = []
    argv, env = _clients.ContainerClient("db").command(["pg_dump", "--version"])
    root = argv[3]
    assert os.path.join(root, *_docker_exec.__name__.split(".")) + ".py" == _docker_exec.__file__
    assert argv[4:8] == [_docker_exec.__name__, "c0ffee" * 10, "--name", "db"]
    assert env.get("PYTHONPATH") == os.environ.get("PYTHONPATH")


@pytest.mark.parametrize("environment, port", [([], 5432), (["PGPORT=6543"], 6543)])
def test_the_containers_port_is_its_own_never_the_callers(engine, monkeypatch, environment, port):
    """The caller's PGPORT would move the host side's connection while every message named 5432."""
    monkeypatch.setenv("PGPORT", "1")
    engine.environment = environment
    connection = _sources.get("postgresql").connection(job_params("postgresql", container="db"))
    assert str(connection.params["port"]) == str(port)
    assert connection.describe().startswith(f"172.17.0.9:{port}/")
    given = _sources.get("postgresql").connection(job_params("postgresql", container="db", login_port=7000))
    assert str(given.params["port"]) == "7000"


@pytest.mark.parametrize("code, signal_number", [(137, 9), (143, 15), (1, None), (128, None), (255, None)])
def test_an_exec_exit_code_names_the_signal_that_killed_the_client(code, signal_number):
    assert _docker_exec.killed_by(code) == signal_number


def test_the_killed_line_names_the_tool_and_the_container():
    assert _docker_exec.killed_line("/usr/lib/postgresql/17/bin/pg_restore", "journal-db", 9) == (
        "pg_restore in container journal-db was killed (signal 9)")


def test_docker_clients_are_made_in_one_place():
    """Every Engine API client comes from _docker_engine.engine_client, where DOCKER_HOST is read (it was built in
    five places, each reading DOCKER_HOST itself: _clients twice, _docker_exec twice, _deploy by from_env)."""
    library = pathlib.Path(_clients.__file__).parent
    makers = re.compile(r"\.(APIClient|DockerClient)\b|\bfrom_env\(")
    found = sorted({path.name for path in library.glob("*.py") if makers.search(path.read_text(encoding="utf-8"))})
    assert found == ["_docker_engine.py"]


@pytest.mark.parametrize("docker_host, url", [(None, _docker_engine.LOCAL_SOCKET), ("", _docker_engine.LOCAL_SOCKET),
                                              ("tcp://127.0.0.1:2376", "tcp://127.0.0.1:2376")])
def test_the_engine_client_goes_where_docker_host_says(monkeypatch, docker_host, url):
    made: list[tuple[str, dict[str, t.Any]]] = []
    fake = types.SimpleNamespace(
        APIClient=lambda **kwargs: made.append(("api", kwargs)), DockerClient=lambda **kwargs: made.append(("sdk", kwargs)),
        utils=types.SimpleNamespace(kwargs_from_env=lambda: {"base_url": docker_host} if docker_host else {}))
    if docker_host is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    _docker_engine.engine_client(fake)
    _docker_engine.engine_client(fake, high_level=True, timeout=120)
    assert made == [("api", {"base_url": url, "version": "auto"}),
                    ("sdk", {"base_url": url, "version": "auto", "timeout": 120})]
