# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy tests' load tools (wrk_load, load_loop, ws_clients) against one container of the deploy test app.

The app (DEPLOY_APP_IMAGE, no database: /version and /ws need none) is published on a free loopback port; the
containers are named ``lbt-loadtools-<run id>-...`` and removed after each test. The tools must count what the app
does: wrk at full speed with no error and no ~44 ms keep-alive stall, the new-connection client alike, and on a
``docker stop`` every WebSocket client closed with 1001 after whole messages; a SIGKILL must show as 1006 (the check
that would catch an app that cuts its connections).
"""

from __future__ import annotations

import http.client
import threading
import time
import typing as t
import uuid

import docker
import docker.errors
import pytest
from docker.models.containers import Container
from load_loop import LoadLoop  # pylint: disable=import-error
from proxy_bed import free_port  # pylint: disable=import-error
from wrk_load import WrkLoad  # pylint: disable=import-error
from ws_clients import WsClients  # pylint: disable=import-error

from containers import LABEL_RUN, PG_PASSWORD, ContainerBed, image_names  # pylint: disable=import-error
from testbed import RUN_ID  # pylint: disable=import-error

Start = t.Callable[..., tuple[Container, int]]


@pytest.fixture
def app() -> t.Iterator[Start]:
    """start(version, environment): a running app container on a free loopback port, answering /version; removed after."""
    client = docker.from_env(timeout=120)
    image = image_names()["DEPLOY_APP_IMAGE"]
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {image} missing: run scripts/testbed/images.sh", pytrace=False)
    started: list[Container] = []

    def start(version: str, environment: dict[str, str] | None = None) -> tuple[Container, int]:
        port = free_port()
        container = client.containers.run(image, name=f"lbt-loadtools-{RUN_ID}-{uuid.uuid4().hex[:6]}", detach=True,
                                          environment={"APP_VERSION": version, **(environment or {})}, labels={LABEL_RUN: RUN_ID},
                                          ports={"8080/tcp": ("127.0.0.1", port)})
        started.append(container)
        deadline = time.monotonic() + 30
        while b"listening" not in container.logs():
            container.reload()
            assert container.status in ("created", "running") and time.monotonic() < deadline, container.logs()
            time.sleep(0.1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/version", headers={"Host": "localhost"})
        answer = connection.getresponse()
        assert (answer.status, answer.read(), answer.getheader("X-App-Version")) == (200, f"{version}\n".encode(),
                                                                                     version)
        connection.close()
        return container, port

    yield start
    for container in started:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    client.close()


def test_wrk_and_load_loop_count_the_app(app: Start) -> None:
    _container, port = app("tools-1")
    with WrkLoad(port, path="/version", duration=4) as wrk, LoadLoop(port, path="/version", rate=100) as loop:
        wrk.wait()
    figures, loop_figures = wrk.total(), loop.window()
    print(f"wrk: {figures.describe()}; new connection per request: {loop_figures.describe()}")
    assert wrk.failures == [] and len(wrk.segments) >= 3
    assert figures.failed == 0 and figures.versions == {"tools-1": figures.requests}, figures
    # Plausible for 16 keep-alive connections on 2 shared cores; the old app's stall (~44 ms per answer on a reused
    # connection) put the median at 40+ ms and the rate near 16/0.044 = 360/s.
    assert figures.rate > 400 and figures.p50_ms < 30, figures.describe()
    assert loop_figures.failed == 0 and set(loop_figures.versions) == {"tools-1"} and loop_figures.requests >= 50
    # A window: the segments that overlap the last second are a part of the whole.
    last = wrk.window(wrk.segments[-1].start, wrk.segments[-1].end)
    assert 0 < last.requests < figures.requests


def test_wrk_counts_errors_by_kind(app: Start) -> None:
    container, port = app("tools-2")
    with WrkLoad(port, path="/missing", duration=1) as wrk:
        wrk.wait()
    assert wrk.total().statuses.keys() == {404} and wrk.total().errors["connect"] == 0, wrk.total().describe()
    container.remove(force=True)
    with WrkLoad(port, path="/version", duration=1) as wrk, LoadLoop(port, path="/version", rate=50) as loop:
        wrk.wait()
    assert wrk.total().errors["connect"] > 0 and wrk.total().requests == 0, wrk.total().describe()
    assert loop.window().errors["connect"] > 0 and loop.window().requests == loop.failed(), loop.window().describe()


@pytest.mark.parametrize(("how", "code"), [("stop", 1001), ("kill", 1006)])
def test_ws_clients_see_how_the_app_ends(app: Start, how: str, code: int) -> None:
    """docker stop: every client gets a close frame 1001 after whole messages, and the app exits by itself (0, not
    Docker's SIGKILL after its 10 s); docker kill (SIGKILL) shows as 1006, so the first check can fail."""
    container, port = app("tools-3")
    with WsClients(port, count=8, echo_every=0.3) as clients:
        assert clients.wait_connected(messages=5), clients.summary()
        began = time.monotonic()
        if how == "stop":
            container.stop(timeout=10)
        else:
            container.kill()
        assert clients.wait_ended(timeout=15), clients.summary()
        took = time.monotonic() - began
    print(f"docker {how}: {clients.summary()} in {took:.2f} s")
    for record in clients.records:
        assert record.intact and record.gaps == 0 and record.received >= 5, record.describe()
        assert record.echoes >= 1 and record.versions.keys() == {"tools-3"}, record.describe()
    assert clients.ended() == {f"{'closed' if code == 1001 else 'abnormal'} {code}": 8}, clients.summary()
    container.reload()
    exit_code = container.attrs["State"]["ExitCode"]
    if how == "stop":
        assert exit_code == 0 and took < 9, (exit_code, took, container.logs(tail=3))
        assert all(record.close_reason.startswith("going away") for record in clients.records)
    else:
        assert exit_code == 137


def test_an_answer_in_flight_is_finished_on_docker_stop(app: Start) -> None:
    """/ waits on a table lock in PostgreSQL; docker stop comes while it waits; the lock goes 1.5 s later: the answer
    still arrives whole (200), and the app then exits by itself."""
    bed = ContainerBed.connect()
    try:
        db = bed.postgres("loadtools-db", user="journal_owner", database="journal", password=PG_PASSWORD)
        with db.connect_pg() as conn:
            conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO notes (body) VALUES ('one'), ('two')")
        environment = {"APP_DB_HOST": db.ip, "APP_DB_NAME": "journal", "APP_DB_USER": "journal_owner",
                       "APP_DB_PASSWORD": PG_PASSWORD}
        container, port = app("tools-4", environment)
        answers: list[tuple[int, str]] = []

        def ask() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            connection.request("GET", "/", headers={"Host": "localhost"})
            response = connection.getresponse()
            answers.append((response.status, response.read().decode()))

        with db.connect_pg() as locker:
            locker.autocommit = False
            locker.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
            asker = threading.Thread(target=ask)
            asker.start()
            time.sleep(0.5)  # the request is in the app, its query waiting on the lock
            stopper = threading.Thread(target=container.stop, kwargs={"timeout": 10})
            began = time.monotonic()
            stopper.start()
            time.sleep(1.5)
            assert not answers, answers
            locker.rollback()  # the lock goes: the query answers
        asker.join(20)
        stopper.join(20)
        took = time.monotonic() - began
        container.reload()
        assert answers == [(200, "version tools-4, 2 notes\n")], answers
        assert container.attrs["State"]["ExitCode"] == 0 and took < 9, (took, container.logs(tail=3))
    finally:
        bed.close()
