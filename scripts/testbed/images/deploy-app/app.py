# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy tests' app: ``serve`` (default) answers HTTP on APP_PORT (8080), ``migrate`` adds a column.

Endpoints: /health (200 "ok" when ``SELECT count(*) FROM notes`` answers, else 503), /version (APP_VERSION),
/ (the version and the row count), /ws (a WebSocket: a text frame ``{"seq": N, "version": "V"}`` every 100 ms, N
from 1, and every frame the client sends is echoed back). Every answer carries the header ``X-App-Version: V``.
The database: APP_DB_HOST, APP_DB_PORT, APP_DB_NAME, APP_DB_USER and APP_DB_PASSWORD (from the environment only).
Switches that make a bad release:
  APP_FAIL_AFTER=N      answer 500 on every path after N requests (a release that breaks after the switch)
  APP_NEVER_HEALTHY=1   /health answers 503 forever (a release whose gate never passes)
``migrate`` runs ``ALTER TABLE notes ADD COLUMN IF NOT EXISTS APP_MIGRATION_COLUMN`` (default ``tag``) with a
default value, so that the table's content changes too.

On SIGTERM (``docker stop``) the app stops accepting connections, lets the HTTP requests in flight finish, closes
idle keep-alive connections, closes each WebSocket with code 1001 (going away) after the message being sent (a frame
is never cut), and exits; whatever is still open after APP_STOP_GRACE seconds (8) is cut then, inside Docker's
default stop timeout of 10 s.

aiohttp (Debian's python3-aiohttp, 3.8 in bookworm) on asyncio: a response leaves in one write with TCP_NODELAY set
on every connection (asyncio's default), so a reused keep-alive connection answers at once. (The http.server app
before it wrote headers and body in two writes and answered ~44 ms late on a reused connection: Nagle plus the
peer's delayed ACK.) psycopg2 is blocking: the database queries run in the loop's thread pool.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import typing as t

import psycopg2  # type: ignore[import-untyped]
from aiohttp import WSMsgType, web

VERSION = os.environ.get("APP_VERSION", "unknown")
FAIL_AFTER = int(os.environ.get("APP_FAIL_AFTER", "0") or 0)
NEVER_HEALTHY = os.environ.get("APP_NEVER_HEALTHY", "") == "1"
STOP_GRACE = float(os.environ.get("APP_STOP_GRACE", "8"))
WS_INTERVAL = 0.1
Handler = t.Callable[[web.Request], t.Awaitable[web.StreamResponse]]


def connect() -> psycopg2.extensions.connection:
    return psycopg2.connect(host=os.environ.get("APP_DB_HOST", "localhost"),
                            port=int(os.environ.get("APP_DB_PORT", "5432")),
                            dbname=os.environ.get("APP_DB_NAME", "app"), user=os.environ.get("APP_DB_USER", "app"),
                            password=os.environ.get("APP_DB_PASSWORD", ""), connect_timeout=3)


def row_count() -> int:
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notes")
        return int(cursor.fetchone()[0])


def text(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/plain", charset="utf-8")


class App:
    """The handlers and what a stop needs: requests answered so far (APP_FAIL_AFTER), the stop flag."""

    def __init__(self) -> None:
        self.requests = 0
        self.stopping = asyncio.Event()  # set on SIGTERM: each WebSocket closes with 1001 after its current message

    @web.middleware
    async def fail_after(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        if FAIL_AFTER and self.requests > FAIL_AFTER:
            return text(500, f"broken after {FAIL_AFTER} requests\n")
        return await handler(request)

    @staticmethod
    async def version_header(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-App-Version"] = VERSION

    async def version(self, _request: web.Request) -> web.Response:
        return text(200, f"{VERSION}\n")

    async def health(self, request: web.Request) -> web.Response:
        if NEVER_HEALTHY:
            return text(503, "never healthy\n")
        return await self.with_rows(request)

    async def with_rows(self, request: web.Request) -> web.Response:
        try:
            rows = await asyncio.get_running_loop().run_in_executor(None, row_count)
        except psycopg2.Error as exc:
            return text(503, f"database: {str(exc).strip().splitlines()[0]}\n")
        return text(200, "ok\n" if request.path == "/health" else f"version {VERSION}, {rows} notes\n")

    async def not_found(self, _request: web.Request) -> web.Response:
        return text(404, "not found\n")

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        # timeout: how long close() waits for the client's close frame; no compression, so each frame is one write.
        socket = web.WebSocketResponse(timeout=3.0, compress=False)
        await socket.prepare(request)
        sender = asyncio.create_task(self.numbered(socket))
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    await socket.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await socket.send_bytes(message.data)
        finally:
            if self.stopping.is_set():
                await asyncio.wait([sender], timeout=STOP_GRACE)  # the sender is closing the socket: let it finish
            sender.cancel()
        return socket

    async def numbered(self, socket: web.WebSocketResponse) -> None:
        """A message every 100 ms until the client leaves or the app stops; then the close frame, code 1001."""
        loop = asyncio.get_running_loop()
        seq, next_at = 0, loop.time()
        while not socket.closed and not self.stopping.is_set():
            seq += 1
            try:
                await socket.send_str(json.dumps({"seq": seq, "version": VERSION}))
            except ConnectionError:  # the client is gone
                return
            next_at += WS_INTERVAL
            try:
                await asyncio.wait_for(self.stopping.wait(), max(0.0, next_at - loop.time()))
            except TimeoutError:
                pass
        if not socket.closed:
            await socket.close(code=1001, message=b"going away: the app is stopping")


async def serve_async() -> None:
    state = App()
    app = web.Application(middlewares=[state.fail_after])
    app.on_response_prepare.append(state.version_header)
    app.router.add_get("/", state.with_rows)
    app.router.add_get("/health", state.health)
    app.router.add_get("/version", state.version)
    app.router.add_get("/ws", state.websocket)
    app.router.add_get("/{tail:.*}", state.not_found)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    # Our own listening socket rather than a TCPSite: a site's stop() cancels the requests in flight (aiohttp 3.8).
    listener = await loop.create_server(runner.server, "0.0.0.0", int(os.environ.get("APP_PORT", "8080")),
                                        reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"deploy-app {VERSION}: listening", flush=True)
    await stop.wait()

    listener.close()  # no new connection from here on
    state.stopping.set()
    for connection in runner.server.connections:
        connection.close()  # idle keep-alive connections close now, busy ones once their request is answered
    deadline = loop.time() + STOP_GRACE
    while runner.server.connections and loop.time() < deadline:
        await asyncio.sleep(0.02)
    left = len(runner.server.connections)
    await runner.cleanup()
    print(f"deploy-app {VERSION}: stopped" + (f", {left} connections cut after {STOP_GRACE:g} s" if left else ""),
          flush=True)


def serve() -> None:
    asyncio.run(serve_async())


def migrate() -> None:
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    column = os.environ.get("APP_MIGRATION_COLUMN", "tag")
    if not column.isidentifier():
        sys.exit(f"APP_MIGRATION_COLUMN {column!r} is not a plain column name")
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"ALTER TABLE notes ADD COLUMN IF NOT EXISTS {column} text NOT NULL DEFAULT 'migrated'")
    print(f"deploy-app: column {column} added", flush=True)


if __name__ == "__main__":
    {"serve": serve, "migrate": migrate}[sys.argv[1] if len(sys.argv) > 1 else "serve"]()
