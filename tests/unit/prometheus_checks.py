# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks the unit tests of every Prometheus text file share (lifeboat status, the probe runner, the writer)."""

from __future__ import annotations

import os
import stat
import subprocess
import typing as t

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


def promtool_check(text: str) -> None:
    """The metrics pass Prometheus' own linter (promtool from Debian's package, fetched by the test bed script)."""
    subprocess.run(["bash", os.path.join(REPO, "scripts", "testbed", "get-promtool.sh")], check=True,
                   capture_output=True)
    promtool = os.path.join(os.environ.get("LIFEBOAT_CACHE") or os.path.expanduser("~/.cache/lifeboat"), "bin", "promtool")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def assert_replaced_whole_and_world_readable(write: t.Callable[[str, str], None], path: t.Any) -> None:
    """``write(path, text)`` twice under a service's private umask: the second text replaced the first whole, the
    file is 0644 (node_exporter runs as another user), and nothing else was left beside it."""
    old_umask = os.umask(0o077)
    try:
        write(str(path), "a 1\n")
        write(str(path), "a 2\n")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "a 2\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(path.parent) == [path.name]
