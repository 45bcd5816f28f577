# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bounded load loop for deploy tests and the deploy benchmark: GETs through the proxy at a steady rate.

``workers`` client threads (a new connection per request, the worst case for a switch) on loopback share the rate;
they count requests sent, non-2xx answers, connection errors by kind (connect, write, read, timeout: the phase of the
request that failed, as wrk counts them), each request's latency and the ``X-App-Version`` header of each answer.
``window(start, end)`` gives the figures of the requests sent in a time window (Figures, shared with wrk_load.py).
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import threading
import time
import typing as t

ERROR_KINDS = ("connect", "read", "write", "timeout")


@dataclasses.dataclass
class Figures:
    """What a load tool saw in a window: requests answered or failed, errors by kind, non-2xx/3xx answers by status,
    the X-App-Version values answered, latency percentiles (ms, of every request, failed ones included)."""

    requests: int
    seconds: float
    errors: dict[str, int]  # connect, read, write, timeout (no answer)
    statuses: dict[int, int]  # answers outside 200-399, by status
    versions: dict[str, int]  # X-App-Version of the answers ("-" when an answer had none)
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values()) + sum(self.statuses.values())

    def describe(self) -> str:
        errors = ", ".join(f"{kind} {count}" for kind, count in self.errors.items() if count) or "none"
        statuses = ", ".join(f"{status}: {count}" for status, count in self.statuses.items()) or "none"
        return (f"{self.requests} requests in {self.seconds:.1f} s ({self.rate:.0f}/s), errors {errors}, "
                f"non-2xx/3xx {statuses}, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms")


def pooled_percentile(weighted: list[tuple[float, float]], percent: float) -> float:
    """The percentile of values that each stand for a number of requests (value, weight); 0.0 when empty."""
    if not weighted:
        return 0.0
    ordered = sorted(weighted)
    total = sum(weight for _value, weight in ordered)
    threshold, seen = total * percent / 100, 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= threshold:
            return round(value, 2)
    return round(ordered[-1][0], 2)


class Answer(t.NamedTuple):
    at: float  # time.monotonic() when the request was sent
    seconds: float
    status: int  # 0: no answer (see kind)
    kind: str  # "" for an answer, else one of ERROR_KINDS
    version: str  # the X-App-Version header ("-" when absent or no answer)


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
        self.answers: list[Answer] = []  # every request, in the order they ended
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
            status, kind, version = 0, "", "-"
            phase = "connect"
            try:
                connection = http.client.HTTPConnection(self.address, self.port, timeout=10)
                try:
                    connection.connect()
                    phase = "write"
                    connection.request("GET", self.path, headers={"Host": self.host})
                    phase = "read"
                    response = connection.getresponse()
                    body = response.read().decode("utf-8", "replace")
                    status, version = response.status, response.getheader("X-App-Version", "-")
                finally:
                    connection.close()
                if not 200 <= response.status < 300:
                    self.non_2xx.append((started, response.status, body[:80]))
                else:
                    first = body.splitlines()[0] if body else ""
                    with self._count:
                        self.bodies[first] = self.bodies.get(first, 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                kind = "timeout" if isinstance(exc, (TimeoutError, socket.timeout)) else phase
                self.errors.append((started, repr(exc)))
            elapsed = time.monotonic() - started
            self.latencies.append((started, elapsed))
            self.answers.append(Answer(started, elapsed, status, kind, version))
            next_at += self.interval
            pause = next_at - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
            else:
                next_at = time.monotonic()

    def failed(self) -> int:
        return len(self.non_2xx) + len(self.errors)

    def window(self, start: float = 0.0, end: float = float("inf")) -> Figures:
        """Figures of the requests sent in [start, end) (time.monotonic() values); non-2xx/3xx answers by status."""
        chosen = [answer for answer in list(self.answers) if start <= answer.at < end]
        errors = dict.fromkeys(ERROR_KINDS, 0)
        statuses: dict[int, int] = {}
        versions: dict[str, int] = {}
        for answer in chosen:
            if answer.kind:
                errors[answer.kind] += 1
            elif not 200 <= answer.status < 400:
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
            if not answer.kind:
                versions[answer.version] = versions.get(answer.version, 0) + 1
        weighted = [(answer.seconds * 1000, 1.0) for answer in chosen]
        seconds = (min(end, max(answer.at + answer.seconds for answer in chosen)) - max(start, min(answer.at for answer in chosen))
                   if chosen else 0.0)
        return Figures(requests=len(chosen), seconds=seconds, errors=errors, statuses=dict(sorted(statuses.items())),
                       versions=versions, p50_ms=pooled_percentile(weighted, 50),
                       p99_ms=pooled_percentile(weighted, 99))

    def summary(self) -> str:
        return f"{self.sent} requests sent, {len(self.non_2xx)} non-2xx, {len(self.errors)} connection errors"

    def p99_ms(self, start: float = 0.0, end: float = float("inf")) -> float:
        values = sorted(seconds for at, seconds in self.latencies if start <= at < end)
        if not values:
            return 0.0
        return round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 1)
