# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bounded load loop for deploy tests and the deploy benchmark: GETs through the proxy at a steady rate.

``workers`` client threads (a new connection per request, the worst case for a switch) on loopback share the rate;
they count requests sent, non-2xx answers, connection errors, and each request's latency.
"""

from __future__ import annotations

import http.client
import threading
import time
import typing as t


class LoadLoop:
    def __init__(self, port: int, host: str = "localhost", path: str = "/", rate: float = 200.0,
                 limit: int = 100_000, address: str = "127.0.0.1", workers: int = 1) -> None:
        self.port, self.host, self.path, self.address = port, host, path, address
        self.interval = workers / rate
        self.limit = limit  # bounded: never more requests than this, whatever happens
        self.sent = 0
        self.non_2xx: list[tuple[float, int, str]] = []  # (time, status, start of the body)
        self.errors: list[tuple[float, str]] = []
        self.latencies: list[tuple[float, float]] = []  # (time sent, seconds)
        self.bodies: dict[str, int] = {}  # first line of each answer -> how often (which version served)
        self._stop = threading.Event()
        self._count = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _worker in range(workers)]

    def __enter__(self) -> LoadLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set() and self.sent < self.limit:
            started = time.monotonic()
            with self._count:
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
                    with self._count:
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
