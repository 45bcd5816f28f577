# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks every link between the pages of a built HTML site: the page exists and so does the #anchor it names.
External links are listed, not fetched (the site is not published, and no network is assumed).
Usage: check_links.py SITE_DIR; exit 1 with one line per broken link."""

from __future__ import annotations

import html.parser
import os
import sys
import urllib.parse


class Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key):
                self.anchors.add(str(values[key]))
        target = values.get("href") if tag in ("a", "link") else values.get("src") if tag in ("img", "script") else None
        if target:
            self.links.append(target)


def parse(path: str) -> Page:
    page = Page()
    with open(path, encoding="utf-8") as handle:
        page.feed(handle.read())
    return page


def main(site: str) -> int:
    pages = [os.path.join(folder, name) for folder, _dirs, names in os.walk(site) for name in names
             if name.endswith(".html")]
    parsed = {path: parse(path) for path in pages}
    broken: list[str] = []
    external = 0
    for path, page in sorted(parsed.items()):
        for link in page.links:
            url = urllib.parse.urlsplit(link)
            if url.scheme or url.netloc:
                external += url.scheme in ("http", "https")
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(path), urllib.parse.unquote(url.path))) \
                if url.path else path
            if not os.path.exists(target):
                broken.append(f"{os.path.relpath(path, site)}: {link}: no such file")
            elif url.fragment and target.endswith(".html"):
                anchors = (parsed.get(target) or parse(target)).anchors
                if urllib.parse.unquote(url.fragment) not in anchors:
                    broken.append(f"{os.path.relpath(path, site)}: {link}: no such anchor")
    for line in broken:
        print(line)
    print(f"check_links: {len(parsed)} pages, {sum(len(p.links) for p in parsed.values())} links "
          f"({external} external, not fetched), {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
