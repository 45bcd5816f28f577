# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A local HTTP receiver standing in for healthchecks.io, Uptime Kuma and ntfy: it records every request."""

from __future__ import annotations

import http.server
import threading
import typing as t
import urllib.parse
from dataclasses import dataclass

from local_ports import free_port  # pylint: disable=import-error


@dataclass
class Hit:
    method: str
    path: str
    query: dict[str, str]
    body: str
    headers: dict[str, str]


class Receiver:
    def __init__(self) -> None:
        self.hits: list[Hit] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                receiver.hits.append(Hit(self.command, parts.path, dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
                                         self.rfile.read(length).decode(errors="replace"), dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _record  # noqa: N815 - http.server's names

            def log_message(self, *args: t.Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kinds(self, prefix: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path.startswith(prefix)]


def closed_port_url() -> str:
    """An http URL on a loopback port where nothing listens (a receiver that is down)."""
    return f"http://127.0.0.1:{free_port()}"
