# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's switch (_switch): a real HAProxy between a client and two loopback colors, switched in place.

What it must hold: a keep-alive connection opened before a switch is answered by the new color after it, with no
error; the old color's open connection keeps going while it drains; a restarted HAProxy routes to the color its
configuration says; a changed configuration replaces the process; HAProxy runs at the niceness it is given, not
at the deploy's. HAProxy is stopped by PID.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import typing as t

import pytest
from proxy_bed import Upstream, free_port  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import _switch
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def ask(connection: http.client.HTTPConnection, probe: bool = True) -> tuple[int, str, str | None]:
    connection.request("GET", "/", headers={_switch.PROBE_HEADER: "1"} if probe else {})
    response = connection.getresponse()
    return response.status, response.read().decode().strip(), response.getheader(_switch.COLOR_HEADER)


@pytest.fixture
def switch(tmp_path: t.Any) -> t.Iterator[tuple[_switch.Switch, dict[str, Upstream]]]:
    if not shutil.which("haproxy") and not os.path.exists("/usr/sbin/haproxy"):
        pytest.fail("haproxy is not installed (scripts/testbed/packages.sh installs it)", pytrace=False)
    colors = {"blue": Upstream("blue"), "green": Upstream("green")}
    sockets = tempfile.mkdtemp(prefix="lbt-sw-")
    made = _switch.switch_of("app", str(tmp_path / "state"), sockets, "127.0.0.1",
                             {color: upstream.port for color, upstream in colors.items()}, "/usr/sbin/haproxy")
    yield made, colors
    pid = made.running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    for upstream in colors.values():
        upstream.stop()
    shutil.rmtree(sockets, ignore_errors=True)


def test_a_switch_moves_a_kept_alive_connection_without_an_error(switch: t.Any) -> None:
    made, _colors = switch
    assert made.ensure("blue")["started"] and made.serving() == "blue"
    assert made.ensure("blue") == {"started": False, "pid": made.running_pid()}  # same shape: left alone
    connection = UnixConnection(made.socket_path)
    assert ask(connection)[2] == "blue"
    assert ask(connection, probe=False)[2] is None  # clients that do not ask never see the color
    routed = made.route("green")
    assert routed["changed"] and routed["after"] == {"blue": "drain", "green": "ready"}
    for _request in range(5):  # the same connection, opened before the switch
        status, _body, color = ask(connection)
        assert (status, color) == (200, "green")
    assert not made.route("green")["changed"]  # idempotent
    assert "server green 127.0.0.1" in open(made.config_path, encoding="utf-8").read()
    assert "server blue 127.0.0.1:" in open(made.config_path, encoding="utf-8").read()
    assert made.render("green").count(" disabled") == 1


def test_the_old_color_drains_what_it_carries_then_leaves(switch: t.Any, tmp_path: t.Any) -> None:
    made, colors = switch
    slow = socket.socket()  # blue, answering one request 1.5 s late: a request in flight across the switch
    slow.bind(("127.0.0.1", 0))
    slow.listen()

    def answer_late() -> None:
        peer, _address = slow.accept()
        peer.recv(65536)
        time.sleep(1.5)
        peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
        time.sleep(0.2)
        peer.close()

    threading.Thread(target=answer_late, daemon=True).start()
    made = _switch.Switch(made.app, made.directory, made.socket_path,
                          (("blue", f"127.0.0.1:{slow.getsockname()[1]}"), ("green", colors["green"].address)),
                          made.binary)
    made.ensure("blue")
    answers: list[tuple[int, str, str | None]] = []
    in_flight = threading.Thread(target=lambda: answers.append(ask(UnixConnection(made.socket_path))))
    in_flight.start()
    time.sleep(0.3)
    assert made.sessions("blue") == 1
    made.route("green")
    assert ask(UnixConnection(made.socket_path))[2] == "green"  # new requests: green, while blue still works
    drained = made.drain("blue", 5)
    in_flight.join(5)
    assert answers == [(200, "late", "blue")]  # the request in flight finished on blue, unharmed
    assert 0.7 < drained["seconds"] < 4 and drained["open_after_drain"] == 0, drained
    assert made.states() == {"blue": "maint", "green": "ready"}
    slow.close()


def test_a_restarted_switch_routes_as_its_configuration_says(switch: t.Any) -> None:
    made, _colors = switch
    made.ensure("blue")
    made.route("green")
    os.kill(made.running_pid(), signal.SIGKILL)  # the host rebooted, or someone killed it
    time.sleep(0.2)
    assert made.running_pid() is None
    assert made.ensure("blue")["started"]  # the live color: what the deploy state says
    assert made.serving() == "blue"


def test_a_changed_configuration_replaces_the_process_and_bad_commands_raise(switch: t.Any, tmp_path: t.Any) -> None:
    made, colors = switch
    first = made.ensure("blue")["pid"]
    moved = _switch.Switch(made.app, made.directory, made.socket_path,
                           (("blue", f"127.0.0.1:{colors['blue'].port}"), ("green", f"127.0.0.1:{free_port()}")),
                           made.binary)
    again = moved.ensure("blue")
    assert again["started"] and again["replaced"] == first and again["pid"] != first
    with pytest.raises(LifeboatError, match="refused 'set server colors/purple state ready'"):
        moved.command("set server colors/purple state ready")


def test_a_switch_its_systemd_unit_started_at_boot_is_kept(switch: t.Any) -> None:
    """At boot the unit lifeboat-switch@APP starts HAProxy from the configuration on disk, outside this library: the
    next deploy must take it as loaded (no replacement: a soft reload would close nginx's idle connections)."""
    made, _colors = switch
    made.ensure("blue")
    made.route("green")  # the file now names green live
    os.kill(made.running_pid(), signal.SIGKILL)  # the host went down
    os.unlink(os.path.join(made.directory, "loaded"))
    time.sleep(1.1)  # a process's start is known to the second (the kernel's boot time is whole seconds)
    booted = subprocess.run(["/usr/sbin/haproxy", "-D", "-f", made.config_path, "-p", made.pid_file], check=True)
    assert booted.returncode == 0
    deadline = time.monotonic() + 5
    while made.running_pid() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = made.running_pid()
    assert made.serving() == "green"  # what the file said
    assert made.ensure("green") == {"started": False, "pid": pid}
    assert not made.route("green")["changed"]


def test_the_switch_runs_at_the_niceness_it_is_given_not_at_the_deploys(switch: t.Any) -> None:
    """A deploy lowers its priority (nice 10); the HAProxy it starts serves all the site's traffic afterwards, in every
    later deploy's CPU contention too: it is started at the niceness the deploy had before (Switch.niceness)."""
    made, _colors = switch
    base = os.getpriority(os.PRIO_PROCESS, 0)
    given = _switch.Switch(made.app, made.directory, made.socket_path, made.servers, made.binary, niceness=base)
    done: dict[str, t.Any] = {}

    def as_a_deploy() -> None:  # on Linux a niceness is the thread's: this thread, as _deploy.run's, at nice 10
        os.nice(10)
        done.update(given.ensure("blue"))

    deploy = threading.Thread(target=as_a_deploy)
    deploy.start()
    deploy.join(30)
    assert done["started"] and os.getpriority(os.PRIO_PROCESS, done["pid"]) == base == done["niceness"], done
    assert "note" not in done
    assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the test's own thread was never niced
