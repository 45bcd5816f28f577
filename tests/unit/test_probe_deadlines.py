# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every HTTP probe's timeout is a total deadline: a loopback server that sends its headers, then trickles its body
a byte every 0.5 s, fails a probe of timeout 2 within 3 s (with per-read timeouts it held it for the whole body)."""

from __future__ import annotations

import socket
import threading
import time
import typing as t

import pytest
from local_ports import free_port  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import _deploy_checks, _http_probe, _nginx, _probes
from ansible_collections.lifeboat.ops.plugins.module_utils import _healthcheck as healthcheck

BODY = 40  # bytes: 20 s at 0.5 s a byte


class Trickler:
    """A loopback HTTP server (a thread of the test's own) that answers headers at once, then one body byte every
    ``every`` seconds. ``headers_too`` trickles the header lines as well."""

    def __init__(self, every: float = 0.5, headers_too: bool = False) -> None:
        self.every = every
        self.headers_too = headers_too
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads = [threading.Thread(target=self.serve, daemon=True)]
        self.threads[0].start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _peer = self.listener.accept()
            except OSError:
                return
            worker = threading.Thread(target=self.answer, args=(conn,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {BODY}\r\n\r\n".encode()
            try:
                if self.headers_too:
                    for line in head.splitlines(keepends=True):
                        conn.sendall(line)
                        if self.stopping.wait(self.every):
                            return
                else:
                    conn.sendall(head)
                for _byte in range(BODY):
                    if self.stopping.wait(self.every):
                        return
                    conn.sendall(b"x")
            except OSError:  # the probe gave up and closed
                return

    def stop(self) -> None:
        self.stopping.set()
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread (close alone does not)
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture(name="trickler", params=[False, True], ids=["body", "headers-and-body"])
def fixture_trickler(request: pytest.FixtureRequest) -> t.Iterator[Trickler]:
    server = Trickler(headers_too=request.param)
    yield server
    server.stop()


def probes_http_status(port: int) -> bool:
    status, _detail = _probes.http_status(f"http://127.0.0.1:{port}/ready", 2)
    return status is not None


def runner_http(port: int) -> bool:
    return healthcheck.probe_http({"url": f"http://127.0.0.1:{port}/health"}, 2)[0]


def deploy_http_get(port: int) -> bool:
    status, _body, _millis, _error = _deploy_checks.http_get("127.0.0.1", port, "/health", timeout=2)
    return status is not None


def nginx_probe_once(port: int) -> bool:
    return _nginx.Probe(host="localhost", port=port, tls=False, timeout=2).once()[0]


@pytest.mark.parametrize("probe", [probes_http_status, runner_http, deploy_http_get, nginx_probe_once],
                         ids=["_probes.http_status", "healthcheck.probe_http", "_deploy_checks.http_get", "_nginx.Probe.once"])
def test_a_trickling_answer_fails_the_probe_at_its_deadline(trickler: Trickler, probe: t.Callable[[int], bool]) -> None:
    started = time.monotonic()
    ok = probe(trickler.port)
    elapsed = time.monotonic() - started
    assert not ok, f"a body of {BODY} bytes at 2 a second passed a probe of timeout 2 (after {elapsed:.1f} s)"
    assert elapsed <= 3, f"the probe took {elapsed:.1f} s, its timeout is 2 s"


def test_the_failure_says_no_complete_answer_within_the_timeout(trickler: Trickler) -> None:
    with pytest.raises(_http_probe.ProbeFailed, match=r"^no complete answer within 2 s \((waiting for the headers|"
                                                      r"reading the body)\)$"):
        _http_probe.get("127.0.0.1", trickler.port, "/", timeout=2)
    status, _body, _millis, error = _deploy_checks.http_get("127.0.0.1", trickler.port, "/health", timeout=2)
    assert status is None and error.startswith("no complete answer within 2 s")


def test_a_prompt_answer_passes_and_a_closed_port_fails_at_once() -> None:
    server = Trickler(every=0.0)
    try:
        answer = _http_probe.get("127.0.0.1", server.port, "/", timeout=2)
        assert (answer.status, answer.body) == (200, b"x" * BODY)
        assert _deploy_checks.http_get("127.0.0.1", server.port, "/health", timeout=2)[:2] == (200, "x" * BODY)
        assert _nginx.Probe(host="localhost", port=server.port, tls=False, timeout=2).once() == (True, "HTTP 200")
        assert _probes.http_status(f"http://127.0.0.1:{server.port}/", 2) == (200, "HTTP 200")
    finally:
        server.stop()
    closed = free_port()
    started = time.monotonic()
    with pytest.raises(_http_probe.ProbeFailed, match="Connection refused"):
        _http_probe.get("127.0.0.1", closed, "/", timeout=2)
    assert time.monotonic() - started < 1


def test_a_path_that_would_split_the_request_is_refused() -> None:
    with pytest.raises(_http_probe.ProbeFailed, match=r"^the path '/a\\r\\nX-Injected: 1' has a space or a control "
                                                      r"character; percent-encode it$"):
        _http_probe.get("127.0.0.1", 9, "/a\r\nX-Injected: 1", timeout=1)
