# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/docs/check_links.py, the docs site's link check: a missing page or anchor fails, the rest passes."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "docs", "check_links.py")


def check(tmp_path, pages: dict[str, str]) -> subprocess.CompletedProcess:
    for name, body in pages.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"<html><body>{body}</body></html>")
    return subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True, check=False)


def test_a_whole_site_passes(tmp_path):
    done = check(tmp_path, {
        "index.html": '<a href="sub/page.html#options">x</a> <a href="#top">t</a> <a id="top"></a>'
                      '<a href="https://docs.ansible.com/">ext</a>',
        "sub/page.html": '<h2 id="options">Options</h2><a href="../index.html">up</a><img src="../index.html">'})
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip() == "check_links: 2 pages, 5 links (1 external, not fetched), 0 broken"


def test_a_missing_page_and_a_missing_anchor_fail(tmp_path):
    done = check(tmp_path, {"index.html": '<a href="gone.html">g</a> <a href="page.html#nothing">n</a>',
                            "page.html": '<p id="something">s</p>'})
    assert done.returncode == 1
    assert done.stdout.splitlines()[:2] == ["index.html: gone.html: no such file",
                                            "index.html: page.html#nothing: no such anchor"]
