# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Looks at the built docs site as a newcomer would, in headless Chromium: serves it over HTTP, loads the landing
page, follows every link of its text to another page of the site, and fails unless each followed page was served
(no 404) and rendered with a heading, and unless backup, restore, deploy, off-site and AWX each have a page one click
from the landing page (a followed page whose heading names it).
Usage: browse_site.py SITE_DIR [SCREENSHOT_DIR]   (with a directory: landing.png and guide.png of the backup guide)
Needs `chromium` (scripts/ci/docs-site.sh installs it)."""

from __future__ import annotations

import base64
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from typing import Any, ClassVar

# The tests' ports block, never the kernel's ephemeral range (tests/shared/local_ports.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "shared"))
from local_ports import free_port

# What a newcomer comes for, and how the heading of the page that answers it reads.
ONE_CLICK = {
    "backup": re.compile(r"\bback up\b|\bbackup\b", re.IGNORECASE),
    "restore": re.compile(r"\brestore\b", re.IGNORECASE),
    "deploy": re.compile(r"\bdeploys?\b", re.IGNORECASE),
    "off-site": re.compile(r"\boff-site\b", re.IGNORECASE),
    "AWX": re.compile(r"\bAWX\b"),
}
GUIDE_SHOT = "guides/backup-and-verify.html"


class Dom(html.parser.HTMLParser):
    """The links of a page's text (the article, not the navigation around it) and its first heading."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.heading = ""
        self._depth = 0  # >0 inside the article body
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if self._depth:
            self._depth += tag not in ("br", "img", "hr", "meta", "link", "input", "wbr")
        elif values.get("itemprop") == "articleBody" or values.get("role") == "main":
            self._depth = 1
        if self._depth and tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        if tag == "h1" and not self.heading:
            self._in_h1 = True

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag not in ("br", "img", "hr", "meta", "link", "input", "wbr"):
            self._depth -= 1
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.heading += data


class Served(http.server.SimpleHTTPRequestHandler):
    statuses: ClassVar[dict[str, int]] = {}  # path -> status of its first request (one server per run)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.statuses.setdefault(urllib.parse.urlsplit(self.path).path, int(code))  # the first load of a page

    def log_message(self, format: str, *args: object) -> None:  # quiet: the statuses above are what counts
        pass


class Browser:
    """One headless Chromium for every page, driven over its DevTools pipe (fd 3 in, fd 4 out, NUL-separated JSON):
    a Chromium started per page costs 2-3 s, a navigation in a running one a fraction of that."""

    def __init__(self) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if not binary:
            raise SystemExit("browse_site: chromium is not installed (apt-get install chromium)")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # As root Chromium starts only without its sandbox; the pages are the site's own, served from this machine.
        argv = [binary, "--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars", "--remote-debugging-pipe",
                "--window-size=1280,1000"] + (["--no-sandbox"] if os.geteuid() == 0 else []) + ["about:blank"]
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, pass_fds=(3, 4),
                                         # only dup/dup2 in the child: no lock the server thread could hold
                                         preexec_fn=functools.partial(_as_fds, commands_read, replies_write))  # noqa: PLW1509
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise SystemExit("browse_site: chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise SystemExit(f"browse_site: chromium: {method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def dom(self, url: str) -> str:
        """The page's DOM once it has loaded (its scripts run), as --dump-dom gives it."""
        self._next_id += 1
        os.write(self._commands, json.dumps({"id": self._next_id, "method": "Page.navigate", "params": {"url": url},
                                             "sessionId": self._session}).encode() + b"\0")
        navigated = loaded = False
        while not (navigated and loaded):
            reply = self._read()
            navigated = navigated or reply.get("id") == self._next_id
            loaded = loaded or (reply.get("method") == "Page.loadEventFired" and navigated)
        result = self.call("Runtime.evaluate", session=True, expression="document.documentElement.outerHTML",
                           returnByValue=True)
        return str(result["result"]["value"])

    def screenshot(self, path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except SystemExit:
            pass
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _as_fds(commands: int, replies: int) -> None:
    """In the child: the command pipe as fd 3, the reply pipe as fd 4, where --remote-debugging-pipe looks."""
    commands, replies = os.dup(commands), os.dup(replies)  # above 4: neither dup2 below overwrites the other's source
    os.dup2(commands, 3)
    os.dup2(replies, 4)


def render(browser: Browser, url: str) -> Dom:
    dom = Dom()
    dom.feed(browser.dom(url))
    dom.heading = " ".join(dom.heading.replace("\uf0c1", "").replace("\u00b6", "").split())
    return dom


def main(site: str, shots: str | None) -> int:
    port = free_port()
    handler = functools.partial(Served, directory=site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{port}/"
    try:
        browser = Browser()
        try:
            landing = render(browser, base + "index.html")
            if shots:
                os.makedirs(shots, exist_ok=True)
                browser.screenshot(os.path.join(shots, "landing.png"))
            pages = sorted({urllib.parse.urljoin(base + "index.html", link).split("#", 1)[0] for link in landing.links
                            if not urllib.parse.urlsplit(link).scheme and not link.startswith("#")})
            followed = {page: render(browser, page) for page in pages}
            if shots:
                render(browser, base + GUIDE_SHOT)
                browser.screenshot(os.path.join(shots, "guide.png"))
        finally:
            browser.close()
    finally:
        server.shutdown()
    problems = []
    if not landing.heading:
        problems.append("the landing page has no heading")
    for url, dom in followed.items():
        path = urllib.parse.urlsplit(url).path
        status = Served.statuses.get(path)
        if status != 200:
            problems.append(f"{path}: served {status or 'never'} (linked from the landing page)")
        elif not dom.heading:
            problems.append(f"{path}: rendered no heading")
    for topic, pattern in ONE_CLICK.items():
        answers = [urllib.parse.urlsplit(url).path for url, dom in followed.items() if pattern.search(dom.heading)]
        if not answers:
            problems.append(f"{topic}: no page one click from the landing page has it in its heading")
        else:
            print(f"browse_site: {topic}: one click: {answers[0]}")
    for line in problems:
        print(f"browse_site: {line}")
    print(f"browse_site: landing page '{landing.heading}', {len(followed)} pages followed, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
