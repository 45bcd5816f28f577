# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bounded load loop for deploy tests and the deploy benchmark: GETs through the proxy at a steady rate.

One client thread (new connection per request, as a browser behind a fresh keep-alive would be worst case) on
loopback; it counts requests sent, non-2xx answers, connection errors, and each request's latency.
"""

from __future__ import annotations

import http.client
import threading
import time
import typing as t


class LoadLoop:
    def __init__(self, port: int, host: str = "localhost", path: str = "/", rate: float = 200.0,
                 limit: int = 100_000, address: str = "127.0.0.1") -> None:
        self.port, self.host, self.path, self.address = port, host, path, address
        self.interval = 1.0 / rate
        self.limit = limit  # bounded: never more requests than this, whatever happens
        self.sent = 0
        self.non_2xx: list[tuple[float, int, str]] = []  # (time, status, start of the body)
        self.errors: list[tuple[float, str]] = []
        self.latencies: list[tuple[float, float]] = []  # (time sent, seconds)
        self.bodies: dict[str, int] = {}  # first line of each answer -> how often (which version served)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set() and self.sent < self.limit:
            started = time.monotonic()
            self.sent += 1
            try:
                connection = http.client.HTTPConnection(self.address, self.port, timeout=10)
                connection.request("GET", self.path, headers={"Host": self.host})
                response = connection.getresponse()
                body = response.read().decode("utf-8", "replace")
                connection.close()
                if not 200 <= response.status < 300:
                    self.non_2xx.append((started, response.status, body[:80]))
                else:
                    first = body.splitlines()[0] if body else ""
                    self.bodies[first] = self.bodies.get(first, 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append((started, repr(exc)))
            self.latencies.append((started, time.monotonic() - started))
            next_at += self.interval
            pause = next_at - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
            else:
                next_at = time.monotonic()

    def failed(self) -> int:
        return len(self.non_2xx) + len(self.errors)

    def summary(self) -> str:
        return f"{self.sent} requests sent, {len(self.non_2xx)} non-2xx, {len(self.errors)} connection errors"

    def p99_ms(self, start: float = 0.0, end: float = float("inf")) -> float:
        values = sorted(seconds for at, seconds in self.latencies if start <= at < end)
        if not values:
            return 0.0
        return round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 1)
