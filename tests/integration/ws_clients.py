# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WebSocket clients for deploy tests and the deploy benchmark: N long-lived connections to the test app's /ws.

Each client (the ``websockets`` library, on an asyncio loop in a thread of its own) connects to
ws://127.0.0.1:PORT/ws with the given Host header (the proxy's site), reads the app's numbered messages
(``{"seq": N, "version": "V"}`` every 100 ms), sends an ``echo <client> <n>`` text every ``echo_every`` seconds and
expects it back. It records messages received, whether every one of them parsed completely (a cut frame or a torn
JSON text shows as not intact), gaps in the sequence, the versions that sent them, and how it ended: still open, a
close frame (code and reason, e.g. 1001 "going away" when the app stops), abnormal (1006: the connection dropped
without a close frame) or a connection error. ``stop()`` closes the clients still open with 1000 and records them as
``open`` (they were open until the caller asked).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import threading
import time
import typing as t

import websockets
import websockets.exceptions


@dataclasses.dataclass
class WsRecord:
    """What one client saw."""

    index: int
    connected: bool = False
    received: int = 0  # numbered messages
    echoes: int = 0  # echoes received back
    sent: int = 0  # echo texts sent
    intact: bool = True  # every frame received parsed completely
    bad: list[str] = dataclasses.field(default_factory=list)  # the first few frames that did not
    gaps: int = 0  # numbered messages skipped (a seq that is not the one after the last)
    versions: dict[str, int] = dataclasses.field(default_factory=dict)
    ended: str = "open"  # open, closed (a close frame came), abnormal (1006), error (never connected or failed)
    close_code: int | None = None
    close_reason: str = ""
    error: str = ""
    ended_at: float | None = None  # time.monotonic()

    def describe(self) -> str:
        how = {"open": "still open", "closed": f"closed {self.close_code} {self.close_reason!r}",
               "abnormal": f"abnormal {self.close_code}", "error": f"error {self.error}"}[self.ended]
        return (f"client {self.index}: {self.received} messages ({self.gaps} gaps), {self.echoes}/{self.sent} echoes, "
                f"{'intact' if self.intact else 'CUT: ' + repr(self.bad[:2])}, versions {self.versions}, {how}")


class WsClients:
    """``count`` WebSocket clients from __enter__ until stop(); ``records`` says what each saw so far."""

    def __init__(self, port: int, count: int = 8, host: str = "localhost", path: str = "/ws",
                 address: str = "127.0.0.1", echo_every: float | None = 1.0, open_timeout: float = 10.0) -> None:
        self.port, self.host, self.path, self.address = port, host, path, address
        self.echo_every, self.open_timeout = echo_every, open_timeout
        self.records = [WsRecord(index) for index in range(count)]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks: list[concurrent.futures.Future[None]] = []
        self._closing: asyncio.Event | None = None

    def __enter__(self) -> WsClients:
        self._thread.start()
        self._closing = asyncio.run_coroutine_threadsafe(self._event(), self._loop).result()
        self._tasks = [asyncio.run_coroutine_threadsafe(self._client(record), self._loop) for record in self.records]
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()

    async def _event(self) -> asyncio.Event:
        return asyncio.Event()

    def wait_connected(self, messages: int = 1, timeout: float = 20.0) -> bool:
        """Until every client has received at least ``messages`` numbered messages (False on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(record.received >= messages for record in self.records):
                return True
            if any(record.ended == "error" for record in self.records):
                return False
            time.sleep(0.05)
        return False

    def wait_ended(self, timeout: float = 20.0) -> bool:
        """Until every client's connection has ended (False on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(task.done() for task in self._tasks):
                return True
            time.sleep(0.05)
        return all(task.done() for task in self._tasks)

    def stop(self) -> None:
        """Closes the clients still open (code 1000; they stay recorded as open) and ends the loop's thread."""
        if not self._thread.is_alive():
            return
        if self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)
        for task in self._tasks:
            try:
                task.result(timeout=15)
            except concurrent.futures.TimeoutError:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def ended(self) -> dict[str, int]:
        """How the clients ended, e.g. {"closed 1001": 8} or {"abnormal 1006": 8, "open": 0}."""
        counts: dict[str, int] = {}
        for record in self.records:
            key = record.ended if record.ended in ("open", "error") else f"{record.ended} {record.close_code}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def summary(self) -> str:
        received = sum(record.received for record in self.records)
        cut = sum(not record.intact for record in self.records)
        return f"{len(self.records)} clients, {received} messages, {cut} with a cut message, ended {self.ended()}"

    async def _client(self, record: WsRecord) -> None:
        try:
            await self._session(record)
        except Exception as exc:  # noqa: BLE001 (a client's own bug or surprise is recorded, not lost in a future)
            record.ended, record.error = "error", f"unexpected {exc!r}"

    async def _session(self, record: WsRecord) -> None:
        assert self._closing is not None
        uri = f"ws://{self.host}{self.path}"  # the Host header; the connection itself goes to address:port
        try:
            connection = await websockets.connect(uri, host=self.address, port=self.port, open_timeout=self.open_timeout,
                                                  compression=None, ping_interval=None, max_queue=None)
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            record.ended, record.error, record.ended_at = "error", repr(exc), time.monotonic()
            return
        record.connected = True
        echo = asyncio.create_task(self._echo(connection, record)) if self.echo_every else None
        closing = asyncio.create_task(self._closing.wait())
        reader = asyncio.create_task(self._read(connection, record))
        try:
            await asyncio.wait([reader, closing], return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():  # stop(): the caller is done with a connection that is still open
                await connection.close(1000, "test over")
                await asyncio.wait([reader], timeout=5)
                record.ended, record.close_code, record.close_reason = "open", None, ""
        finally:
            for task in (echo, closing, reader):
                if task is not None:
                    task.cancel()
            record.ended_at = record.ended_at or time.monotonic()

    async def _read(self, connection: t.Any, record: WsRecord) -> None:
        last_seq = 0
        try:
            async for frame in connection:
                text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
                if text.startswith("echo "):
                    record.echoes += 1
                    continue
                try:
                    message = json.loads(text)
                    seq, version = int(message["seq"]), str(message["version"])
                except (ValueError, KeyError, TypeError):
                    record.intact = False
                    if len(record.bad) < 5:
                        record.bad.append(text[:80])
                    continue
                record.received += 1
                if last_seq and seq != last_seq + 1:
                    record.gaps += 1
                last_seq = seq
                record.versions[version] = record.versions.get(version, 0) + 1
        except websockets.exceptions.ConnectionClosed:
            pass  # how it closed is read below, from the connection
        except OSError as exc:
            record.ended, record.error, record.ended_at = "error", repr(exc), time.monotonic()
            return
        record.ended_at = time.monotonic()
        received = connection.protocol.close_rcvd  # the peer's close frame, None when the connection just dropped
        if received is None:
            record.ended, record.close_code, record.close_reason = "abnormal", 1006, "no close frame"
        else:
            record.ended, record.close_code, record.close_reason = "closed", received.code, received.reason

    async def _echo(self, connection: t.Any, record: WsRecord) -> None:
        assert self.echo_every is not None
        while True:
            await asyncio.sleep(self.echo_every)
            try:
                await connection.send(f"echo {record.index} {record.sent + 1}")
            except websockets.exceptions.ConnectionClosed:
                return
            record.sent += 1
