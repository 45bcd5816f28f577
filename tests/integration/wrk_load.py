# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep-alive load for deploy tests and the deploy benchmark: Debian's ``wrk`` in the background, in segments.

wrk reports its figures (requests, latency distribution, socket errors by kind) only once, at its end, for its whole
run; a deploy needs them for a window ("before the change", "during the change"). So WrkLoad runs wrk in consecutive
segments of ``segment`` seconds (1 by default: wrk takes whole seconds) on 127.0.0.1:PORT with a Host header,
``connections`` keep-alive connections (16) on ``threads`` threads (2), until stop() or ``duration``. A Lua script
(written to a temporary file) makes each wrk print one JSON line at its end: requests, its duration, wrk's
``summary.errors`` (connect, read, write, timeout, and ``status``: answers >= 400), the count of each status code and
of each ``X-App-Version`` header value, and its latency distribution as 200 quantiles, so that windows made of
several segments get p50/p99 from the pooled quantiles (an approximation within half a percentile).

Caveats, read with the figures: each segment opens its connections afresh (a connection lives at most one segment,
so a keep-alive connection that a proxy closes is reopened at the next segment in any case); a request still
unanswered when its segment ends is not counted at all (a stall shows as fewer requests, not as a timeout, unless it
is longer than ``timeout``); between segments there is a gap of a few milliseconds without load (wrk's start). When
wrk cannot connect at the start of a segment (nothing listens), it exits at once: that segment records one connect
error per connection and the next one starts 0.1 s later.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import typing as t

from load_loop import Figures, pooled_percentile  # pylint: disable=import-error

MARK = "LIFEBOAT-WRK "
QUANTILES = [index * 0.5 + 0.25 for index in range(200)]  # each stands for 0.5 % of a segment's requests

LUA = r"""
-- Written by tests/integration/wrk_load.py: one JSON line at the end, with what each thread counted.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; versions = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local version = headers["X-App-Version"] or headers["x-app-version"] or "-"
  versions[version] = (versions[version] or 0) + 1
end
local function quote(value)
  return '"' .. tostring(value):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end
local function object(map)
  local parts = {}
  for key, count in pairs(map) do table.insert(parts, quote(key) .. ":" .. count) end
  return "{" .. table.concat(parts, ",") .. "}"
end
function done(summary, latency, requests)
  local statuses, versions = {}, {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("statuses")) do statuses[key] = (statuses[key] or 0) + count end
    for key, count in pairs(thread:get("versions")) do versions[key] = (versions[key] or 0) + count end
  end
  local quantiles = {}
  for _, q in ipairs({QUANTILES}) do table.insert(quantiles, latency:percentile(q)) end
  local e = summary.errors
  io.write(string.format('%s{"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"status":%d},"statuses":%s,"versions":%s,"latency_us":[%s],"max_us":%d}\n',
    "MARK", summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status, object(statuses),
    object(versions), table.concat(quantiles, ","), latency.max))
end
""".replace("{QUANTILES}", "{" + ",".join(f"{q:g}" for q in QUANTILES) + "}").replace('"MARK"', json.dumps(MARK))


class Segment(t.NamedTuple):
    start: float  # time.monotonic() when wrk was started
    end: float  # when it exited
    requests: int
    seconds: float  # wrk's own duration
    errors: dict[str, int]  # connect, read, write, timeout, status (answers >= 400)
    statuses: dict[int, int]
    versions: dict[str, int]
    latency_ms: list[float]  # the QUANTILES of this segment's latencies


class WrkLoad:
    """wrk in consecutive segments, in a thread of its own, from __enter__ until stop() (or ``duration`` s)."""

    def __init__(self, port: int, host: str = "localhost", path: str = "/", connections: int = 16, threads: int = 2,
                 duration: float | None = None, segment: int = 1, address: str = "127.0.0.1",
                 timeout: float = 2.0, pause_ms: int = 0) -> None:
        binary = shutil.which("wrk")
        if binary is None:
            raise FileNotFoundError("wrk is not installed (scripts/testbed/packages.sh installs it)")
        self.binary, self.port, self.host, self.path, self.address = binary, port, host, path, address
        self.connections, self.threads, self.duration, self.segment, self.timeout = (
            connections, min(threads, connections), duration, max(1, int(segment)), timeout)
        self.pause_ms = pause_ms  # > 0: each connection waits this long after an answer (a paced load, not flat out)
        self.segments: list[Segment] = []
        self.failures: list[str] = []  # wrk runs that printed no figures (other than "unable to connect")
        self._stop = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._script = ""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WrkLoad:
        handle, self._script = tempfile.mkstemp(prefix="lifeboat-wrk-", suffix=".lua")
        with os.fdopen(handle, "w", encoding="utf-8") as script:
            script.write(LUA)
            if self.pause_ms > 0:  # wrk's own hook: milliseconds to wait before a connection's next request
                script.write(f"function delay() return {int(self.pause_ms)} end\n")
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Ends the segment under way now (wrk's SIGINT: it prints its figures) and waits for the thread."""
        self._stop.set()
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.send_signal(2)  # our own child, by its handle
        self._thread.join(30)
        if self._script:
            os.unlink(self._script)
            self._script = ""

    def wait(self) -> None:
        """Until ``duration`` has passed (or stop() was called)."""
        self._thread.join()

    def _run(self) -> None:
        url = f"http://{self.address}:{self.port}{self.path}"
        argv = [self.binary, f"-t{self.threads}", f"-c{self.connections}", f"-d{self.segment}s",
                f"--timeout={self.timeout:g}s", "-s", self._script, "-H", f"Host: {self.host}", url]
        while not self._stop.is_set():
            if self.duration is not None and time.monotonic() - self.started >= self.duration:
                return
            start = time.monotonic()
            with self._lock:
                if self._stop.is_set():
                    return
                self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                 env={**os.environ, "LC_ALL": "C"})
            output = self._process.communicate()[0]
            end = time.monotonic()
            line = next((line for line in output.splitlines() if line.startswith(MARK)), None)
            if line is not None:
                self.segments.append(parse(line[len(MARK):], start, end))
            elif "unable to connect" in output:
                self._stop.wait(0.1)
                end = time.monotonic()
                refused = {"connect": self.connections, "read": 0, "write": 0, "timeout": 0, "status": 0}
                self.segments.append(Segment(start, end, 0, end - start, refused, {}, {}, []))
            else:
                self.failures.append(output.strip()[-500:])
                self._stop.wait(0.1)

    def window(self, start: float = 0.0, end: float = float("inf")) -> Figures:
        """Figures of the segments that overlap [start, end) (time.monotonic() values): nothing that happened
        inside the window is left out, at the price of up to a segment's worth of requests on either side."""
        chosen = [segment for segment in list(self.segments) if segment.end > start and segment.start < end]
        return combine(chosen)

    def inside(self, start: float, end: float) -> Figures:
        """Figures of the segments that lie wholly inside [start, end] (e.g. "before a change": none of its
        requests were sent after the change began)."""
        return combine([segment for segment in list(self.segments) if segment.start >= start and segment.end <= end])

    def before(self, moment: float) -> Figures:
        """Figures of the segments that ended before moment."""
        return combine([segment for segment in list(self.segments) if segment.end <= moment])

    def total(self) -> Figures:
        return combine(list(self.segments))


def parse(text: str, start: float, end: float) -> Segment:
    data = json.loads(text)
    return Segment(start, end, int(data["requests"]), data["duration_us"] / 1e6,
                   {key: int(value) for key, value in data["errors"].items()},
                   {int(key): int(value) for key, value in data["statuses"].items()},
                   {str(key): int(value) for key, value in data["versions"].items()},
                   [value / 1000 for value in data["latency_us"]])


def combine(segments: list[Segment]) -> Figures:
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    statuses: dict[int, int] = {}
    versions: dict[str, int] = {}
    weighted: list[tuple[float, float]] = []  # (latency ms, how many requests it stands for)
    for segment in segments:
        for kind in errors:
            errors[kind] += segment.errors.get(kind, 0)
        for status, count in segment.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
        for version, count in segment.versions.items():
            versions[version] = versions.get(version, 0) + count
        if segment.requests and segment.latency_ms:
            share = segment.requests / len(segment.latency_ms)
            weighted.extend((value, share) for value in segment.latency_ms)
    return Figures(requests=sum(segment.requests for segment in segments),
                   seconds=sum(segment.seconds for segment in segments), errors=errors,
                   statuses={status: count for status, count in sorted(statuses.items())
                             if not 200 <= status < 400},
                   versions=versions, p50_ms=pooled_percentile(weighted, 50), p99_ms=pooled_percentile(weighted, 99))
