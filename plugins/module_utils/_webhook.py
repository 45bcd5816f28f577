# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""One JSON POST to the operator's webhook (chat, incident tool): the backup notifier's and the probe runner's.

Retry policy: up to ``ATTEMPTS`` tries, ``1 s``, then ``2 s`` apart (none after the last). An HTTP 4xx answer is
final: the receiver refuses this message and another try gets the same answer. 5xx answers, timeouts and network
errors are tried again. (The notifier had this policy; the probe runner had one try per run, leaving a blip to the
next run: it keeps that retry across runs, and a blip now passes within one.)

A webhook URL holds a token (in its path, its query, or a ``user:password@`` part, sent as Basic authentication):
no message of this module repeats any part of it. Standard library only: the probe runner imports it on hosts.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request

from ._common import one_line

ATTEMPTS = 3
TIMEOUT = 10  # seconds per try
BAD_URL = "the webhook URL is no http:// or https:// URL"


def split_url(url: str) -> tuple[str, str, dict[str, str]]:
    """The URL to request, the URL to show, and the headers its user:password part becomes.

    What is shown (journal, alerts) carries neither the user information nor the query, which may hold a token.
    """
    parts = urllib.parse.urlsplit(url)
    headers = {}
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _colon, password = userinfo.partition(":")
        credentials = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    request_url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    shown = urllib.parse.urlunsplit(parts._replace(netloc=netloc, query="..." if parts.query else "", fragment=""))
    return request_url, shown, headers


def post_json(url: str, payload: t.Any, *, user_agent: str, attempts: int = ATTEMPTS,
              timeout: float = TIMEOUT) -> str | None:
    """POST ``payload`` as JSON: None once a 2xx answer came, else why not (one line, without the URL)."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:  # .port checks it too
            return BAD_URL
        request_url, _shown, auth = split_url(url)
        request = urllib.request.Request(request_url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": user_agent,
                                                  **auth})
    except ValueError:  # urllib's message would quote the URL
        return BAD_URL
    problem = send_request(request, attempts=attempts, timeout=timeout)
    return _without_url(problem, url) if problem else None


def send_request(request: urllib.request.Request, *, attempts: int = ATTEMPTS, timeout: float = TIMEOUT,
                 backoff: bool = True) -> str:
    """Send ``request`` until a 2xx answer ("" then), a 4xx or ``attempts`` tries: else why not, in one line that
    may still quote the URL (callers scrub it with without_url)."""
    # urllib's own opener: the library imports nothing from Ansible (whose open_url ansible-test suggests).
    opener = urllib.request.build_opener()
    problem = "not tried"
    for attempt in range(max(1, attempts)):
        if attempt and backoff:
            time.sleep(2 ** (attempt - 1))
        try:
            with opener.open(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return ""
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if 400 <= exc.code < 500:
                break
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc)) or type(exc).__name__
        except (http.client.InvalidURL, ValueError):  # urllib's message would quote the URL
            return BAD_URL
        except http.client.HTTPException as exc:  # an answer that is no HTTP (BadStatusLine ...): tried again
            problem = f"no HTTP answer ({type(exc).__name__})"
    return problem


def _without_url(text: str, url: str) -> str:
    """Belt and braces: no piece of the URL that may be secret survives in a message."""
    parts = urllib.parse.urlsplit(url)
    pieces = {url, parts.netloc.rpartition("@")[0], parts.path, parts.query, parts.fragment,
              urllib.parse.unquote(parts.path), urllib.parse.unquote(parts.query)}
    for piece in sorted((piece for piece in pieces if len(piece) >= 4), key=len, reverse=True):
        text = text.replace(piece, "...")
    return one_line(text) or "no reason given"


without_url = _without_url  # for the other posters (monitoring pings) of the library
