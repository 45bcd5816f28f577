# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one webhook poster (``lifeboat notify`` and the probe runner) against a real HTTP server on loopback:
its retries, and that no part of a webhook URL (it holds a token) ever shows in what it says."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import typing as t
import urllib.error

import pytest
from local_ports import free_port  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import _webhook

TOKEN = "T0k3n-s3cret"


class Receiver:
    """Answers each POST with the next of ``answers`` (an HTTP status, or None: close the connection unanswered)."""

    def __init__(self, *answers: int | None) -> None:
        self.answers = list(answers)
        self.received: list[dict[str, t.Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.received.append({"path": self.path, "body": body, "type": self.headers["Content-Type"],
                                       "agent": self.headers["User-Agent"], "auth": self.headers["Authorization"]})
                answer = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(name="pauses")
def fixture_pauses(monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(_webhook.time, "sleep", pauses.append)
    return pauses


def post(receiver: Receiver, path: str = f"/hooks/{TOKEN}?key={TOKEN}", **kwargs: t.Any) -> str | None:
    try:
        return _webhook.post_json(receiver.url + path, {"text": "x"}, user_agent="lifeboat-test", **kwargs)
    finally:
        receiver.stop()


def test_delivered_at_the_first_2xx_as_json(pauses):
    receiver = Receiver(204)
    assert post(receiver) is None
    assert receiver.received == [{"path": f"/hooks/{TOKEN}?key={TOKEN}", "body": {"text": "x"},
                                  "type": "application/json", "agent": "lifeboat-test", "auth": None}]
    assert pauses == []


def test_a_5xx_is_tried_three_times_with_growing_pauses(pauses):
    receiver = Receiver(503)
    assert post(receiver) == "HTTP 503"
    assert len(receiver.received) == 3
    assert pauses == [1, 2]  # none after the last try


def test_a_4xx_is_final(pauses):
    receiver = Receiver(404)
    assert post(receiver) == "HTTP 404"
    assert len(receiver.received) == 1 and pauses == []


def test_a_dropped_connection_then_a_5xx_then_success(pauses):
    receiver = Receiver(None, 502, 200)
    assert post(receiver) is None
    assert len(receiver.received) == 3 and pauses == [1, 2]


def test_nobody_listening_says_why_without_the_url(pauses):
    port = free_port()
    problem = _webhook.post_json(f"http://127.0.0.1:{port}/hooks/{TOKEN}", {}, user_agent="t")
    assert problem is not None and "refused" in problem and TOKEN not in problem and str(port) not in problem
    assert pauses == [1, 2]


def test_user_and_password_of_the_url_become_basic_authentication(pauses):
    receiver = Receiver(200)
    receiver.url = receiver.url.replace("http://", f"http://hook:{TOKEN}%21@")
    assert post(receiver, "/alerts") is None
    assert receiver.received[0]["path"] == "/alerts"
    assert receiver.received[0]["auth"] == "Basic " + base64.b64encode(f"hook:{TOKEN}!".encode()).decode()


@pytest.mark.parametrize("url", [
    f"hooks.example.org/services/T0/B0/{TOKEN}",       # the scheme forgotten: urllib says "unknown url type: '...'"
    f"https://hook:{TOKEN}@hooks.example.org:x/alerts",  # a port that is no number: "nonnumeric port: '...'"
    f"https://{TOKEN}@hooks.example.org:{TOKEN}/",
    f"ftp://hooks.example.org/{TOKEN}",
    f"file:///etc/{TOKEN}",
    "",
])
def test_a_bad_url_is_one_line_without_the_url(url, pauses):
    assert _webhook.post_json(url, {}, user_agent="t") == _webhook.BAD_URL
    assert pauses == []


def test_no_piece_of_the_url_survives_in_a_message(monkeypatch, pauses):
    """Whatever urllib puts in its reason (here: the whole URL, its path and query unquoted), the message hides it."""
    url = f"https://hook:{TOKEN}@hooks.example.org/services/{TOKEN}%2F?token={TOKEN}#{TOKEN}"

    class Refusing:
        def open(self, request: t.Any, timeout: float) -> t.NoReturn:
            raise urllib.error.URLError(f"cannot reach {url} (/services/{TOKEN}/, token={TOKEN})\nsecond line")

    monkeypatch.setattr(_webhook.urllib.request, "build_opener", Refusing)
    problem = _webhook.post_json(url, {}, user_agent="t")
    assert problem is not None and TOKEN not in problem and "\n" not in problem
    assert problem.startswith("cannot reach ")


def test_an_answer_that_is_no_http_is_tried_again(pauses):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        served: list[int] = []

        def serve() -> None:
            for _attempt in range(3):
                connection, _address = server.accept()
                with connection:
                    connection.recv(65536)
                    connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                    served.append(1)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        problem = _webhook.post_json(f"http://127.0.0.1:{server.getsockname()[1]}/{TOKEN}", {}, user_agent="t")
        thread.join(5)
    assert problem == "no HTTP answer (BadStatusLine)"
    assert len(served) == 3 and pauses == [1, 2]
