# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Monitoring pings around a backup run: healthchecks.io-style checks, Uptime Kuma push monitors, ntfy topics.

A run pings ``start`` before it begins, then ``success`` or ``fail`` (with the tail of its log) when it ends:

- healthchecks (healthchecks.io, self-hosted Healthchecks, Cronitor's and others' compatible endpoints):
  POST ``URL/start``, ``URL``, ``URL/fail``; the fail ping's body is the log tail (the check shows it).
- uptime_kuma (a push monitor's URL): GET ``URL?status=up|down&msg=...``; Kuma has no start state.
- ntfy (a topic's URL, ``https://ntfy.sh/TOPIC``): POST the message on success and on failure (high priority).

Every URL holds a token (the check's UUID, the push token, a topic name is a shared secret): no message of this
module repeats any part of one (``_webhook._without_url``). A ping that cannot be delivered never fails the
backup: ``send`` returns one line per target that did not take it, for the caller to log once.
Standard library only (the host command runs it on hosts).
"""

from __future__ import annotations

import json
import typing as t
import urllib.parse
import urllib.request
from dataclasses import dataclass

from . import _webhook
from ._common import LifeboatError, read_secret_file
from ._module_frame import Outcome, Run

KINDS = ("healthchecks", "uptime_kuma", "ntfy")
STATES = ("start", "success", "fail")
TIMEOUT = 10  # seconds per ping
ATTEMPTS = 2  # a blip passes; a receiver that is down costs one second, not a stalled backup
BODY_LIMIT = 10_000  # healthchecks keeps the first 10 kB of a ping's body (its default PING_BODY_LIMIT)


def ping_options() -> dict[str, t.Any]:
    """The targets as module/config options: each a list of URLs, all secret."""
    return {kind: {"type": "list", "elements": "str", "default": [], "no_log": True} for kind in KINDS}


@dataclass(frozen=True)
class Targets:
    healthchecks: tuple[str, ...] = ()
    uptime_kuma: tuple[str, ...] = ()
    ntfy: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: t.Mapping[str, t.Any] | None) -> Targets:
        """Each kind a URL or a list of them; an unknown kind or a URL that is no http(s) one is refused in one
        line (which never quotes the URL)."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(KINDS))
        if unknown:
            raise LifeboatError(f"pings: unknown kind {', '.join(unknown)}; the kinds are {', '.join(KINDS)}")
        found: dict[str, tuple[str, ...]] = {}
        for kind in KINDS:
            value = options.get(kind) or []
            urls = (value,) if isinstance(value, str) else tuple(value)
            for index, url in enumerate(urls, start=1):
                parts = urllib.parse.urlsplit(str(url))
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise LifeboatError(f"pings: {kind} URL #{index} is no http:// or https:// URL")
            found[kind] = tuple(str(url) for url in urls)
        return cls(**found)

    def __bool__(self) -> bool:
        return bool(self.healthchecks or self.uptime_kuma or self.ntfy)

    def secrets(self) -> list[str]:
        return [*self.healthchecks, *self.uptime_kuma, *self.ntfy]


@dataclass(frozen=True)
class Ping:
    """One HTTP request of a ping (what ``requests_for`` plans; ``deliver`` sends it)."""

    kind: str
    url: str  # the configured URL, for the message scrubbing
    method: str
    request_url: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def _with_path(url: str, suffix: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def _with_query(url: str, **values: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(key, value) for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
             if key not in values]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode([*query, *values.items()])))


def requests_for(targets: Targets, state: str, message: str, log_tail: str = "") -> list[Ping]:
    """The requests a ping of ``state`` makes: ``message`` is one line (what happened), ``log_tail`` the end of
    the run's log (sent with a failure)."""
    if state not in STATES:
        raise LifeboatError(f"ping state {state!r} is none of {', '.join(STATES)}")
    body = (log_tail if state == "fail" and log_tail else message).encode()[-BODY_LIMIT:]
    text = ("Content-Type", "text/plain; charset=utf-8")
    pings = [Ping("healthchecks", url, "POST", _with_path(url, {"start": "/start", "fail": "/fail"}.get(state, "")),
                  body, (text,)) for url in targets.healthchecks]
    if state != "start":
        pings += [Ping("uptime_kuma", url, "GET",
                       _with_query(url, status="up" if state == "success" else "down", msg=message[:250]))
                  for url in targets.uptime_kuma]
        failed = state == "fail"
        ntfy_body = (f"{message}\n\n{log_tail}" if failed and log_tail else message).encode()[-BODY_LIMIT:]
        pings += [Ping("ntfy", url, "POST", url, ntfy_body,
                       (text, ("Title", "lifeboat: backup failed" if failed else "lifeboat: backup done"),
                        ("Priority", "high" if failed else "low"), ("Tags", "warning" if failed else "floppy_disk")))
                  for url in targets.ntfy]
    return pings


def deliver(ping: Ping, *, attempts: int = ATTEMPTS, timeout: float = TIMEOUT) -> str | None:
    """Send one ping: None once a 2xx answer came, else why not (one line, without any part of the URL)."""
    request_url, _shown, auth = _webhook.split_url(ping.request_url)
    headers = {"User-Agent": "lifeboat-ping", **dict(ping.headers), **auth}
    request = urllib.request.Request(request_url, data=ping.body if ping.method == "POST" else None,
                                     method=ping.method, headers=headers)
    try:  # pings retry at once: the backup waits for them
        problem = _webhook.send_request(request, attempts=attempts, timeout=timeout, backoff=False)
    except Exception as exc:  # noqa: BLE001 - a ping never fails the backup; the message is scrubbed below
        problem = type(exc).__name__
    if not problem:
        return None
    return _webhook.without_url(_webhook.without_url(problem, ping.url), ping.request_url)


def send(targets: Targets, state: str, message: str, log_tail: str = "") -> list[str]:
    """Ping every target; one line per target that did not take the ping (``"healthchecks #1: ..."``)."""
    problems = []
    numbers: dict[str, int] = {}
    for ping in requests_for(targets, state, message, log_tail):
        numbers[ping.kind] = numbers.get(ping.kind, 0) + 1
        problem = deliver(ping)
        if problem:
            problems.append(f"{ping.kind} #{numbers[ping.kind]}: {problem}")
    return problems


def load_file(path: str) -> Targets:
    """The targets of a pings file: one line of JSON (``{"healthchecks": [URL], ...}``), mode 0600 as a password
    file, since its URLs are secrets."""
    text = read_secret_file(path, "pings")
    try:
        options = json.loads(text)
    except ValueError:
        raise LifeboatError(f"pings file {path} is no JSON on one line") from None
    if not isinstance(options, dict):
        raise LifeboatError(f"pings file {path} holds no JSON object of {', '.join(KINDS)}")
    return Targets.from_options(options)


def monitoring_ping_spec() -> dict[str, t.Any]:
    """The ping module's options: the targets, the state, what the ping says."""
    return {**ping_options(), "state": {"type": "str", "required": True, "choices": list(STATES)},
            "summary": {"type": "str", "default": ""}, "log": {"type": "str", "default": ""}}


def monitoring_ping(run: Run) -> Outcome:
    """The module's task: never fails on a ping that was not taken; each such ping is one warning."""
    targets = Targets.from_options({kind: run.params.get(kind) or [] for kind in KINDS})
    message = run.params.get("summary") or f"lifeboat backup {run.params['state']}"
    if run.check_mode:
        return Outcome(result={"pinged": 0, "problems": []})
    problems = send(targets, run.params["state"], message, run.params.get("log") or "")
    for problem in problems:
        run.warn(f"monitoring ping {run.params['state']} not delivered: {problem}")
    pinged = len(requests_for(targets, run.params["state"], message)) - len(problems)
    return Outcome(result={"pinged": pinged, "problems": problems})
