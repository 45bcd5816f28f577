# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy tests' app: ``serve`` (default) answers HTTP on APP_PORT (8080), ``migrate`` adds a column.

Endpoints: /health (200 "ok" when ``SELECT count(*) FROM notes`` answers, else 503), /version (APP_VERSION),
/ (the version and the row count). The database: APP_DB_HOST, APP_DB_PORT, APP_DB_NAME, APP_DB_USER and
APP_DB_PASSWORD (from the environment only). Switches that make a bad release:
  APP_FAIL_AFTER=N      answer 500 on every path after N requests (a release that breaks after the switch)
  APP_NEVER_HEALTHY=1   /health answers 503 forever (a release whose gate never passes)
``migrate`` runs ``ALTER TABLE notes ADD COLUMN IF NOT EXISTS APP_MIGRATION_COLUMN`` (default ``tag``) with a
default value, so that the table's content changes too.
"""

from __future__ import annotations

import http.server
import os
import signal
import sys
import threading
import types

import psycopg2  # type: ignore[import-untyped]

VERSION = os.environ.get("APP_VERSION", "unknown")
FAIL_AFTER = int(os.environ.get("APP_FAIL_AFTER", "0") or 0)
NEVER_HEALTHY = os.environ.get("APP_NEVER_HEALTHY", "") == "1"


class Counter:
    """Requests answered so far (for APP_FAIL_AFTER), shared by the server's threads."""

    def __init__(self) -> None:
        self.lock, self.value = threading.Lock(), 0

    def next(self) -> int:
        with self.lock:
            self.value += 1
            return self.value


REQUESTS = Counter()


def connect() -> psycopg2.extensions.connection:
    return psycopg2.connect(host=os.environ.get("APP_DB_HOST", "localhost"),
                            port=int(os.environ.get("APP_DB_PORT", "5432")),
                            dbname=os.environ.get("APP_DB_NAME", "app"), user=os.environ.get("APP_DB_USER", "app"),
                            password=os.environ.get("APP_DB_PASSWORD", ""), connect_timeout=3)


def row_count() -> int:
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notes")
        return int(cursor.fetchone()[0])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        seen = REQUESTS.next()
        if FAIL_AFTER and seen > FAIL_AFTER:
            self.answer(500, f"broken after {FAIL_AFTER} requests\n")
            return
        if self.path == "/version":
            self.answer(200, f"{VERSION}\n")
            return
        if self.path not in ("/", "/health"):
            self.answer(404, "not found\n")
            return
        if self.path == "/health" and NEVER_HEALTHY:
            self.answer(503, "never healthy\n")
            return
        try:
            rows = row_count()
        except psycopg2.Error as exc:
            self.answer(503, f"database: {str(exc).strip().splitlines()[0]}\n")
            return
        self.answer(200, "ok\n" if self.path == "/health" else f"version {VERSION}, {rows} notes\n")

    def log_message(self, *args: object) -> None:
        pass


def stop(_signum: int, _frame: types.FrameType | None) -> None:
    sys.exit(0)


def serve() -> None:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("APP_PORT", "8080"))), Handler)
    server.daemon_threads = True
    print(f"deploy-app {VERSION}: listening", flush=True)
    server.serve_forever()


def migrate() -> None:
    column = os.environ.get("APP_MIGRATION_COLUMN", "tag")
    if not column.isidentifier():
        sys.exit(f"APP_MIGRATION_COLUMN {column!r} is not a plain column name")
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"ALTER TABLE notes ADD COLUMN IF NOT EXISTS {column} text NOT NULL DEFAULT 'migrated'")
    print(f"deploy-app: column {column} added", flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    {"serve": serve, "migrate": migrate}[sys.argv[1] if len(sys.argv) > 1 else "serve"]()
