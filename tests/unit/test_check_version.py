# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/ci/check_version.py: fragments pending under a released version fail CI in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "ci", "check_version.py")


def collection(tmp_path, version: str, released: list[str], fragments: list[str]) -> str:
    (tmp_path / "changelogs" / "fragments").mkdir(parents=True)
    (tmp_path / "galaxy.yml").write_text(f"namespace: lifeboat\nname: ops\nversion: {version}\n")
    releases = "".join(f"  {name}:\n    release_date: '2026-11-01'\n" for name in released)
    (tmp_path / "changelogs" / "changelog.yaml").write_text(f"ancestor: null\nreleases:\n{releases or '  {}'}\n")
    for name in fragments:
        (tmp_path / "changelogs" / "fragments" / name).write_text("minor_changes:\n  - x\n")
    return str(tmp_path)


@pytest.mark.parametrize(("version", "released", "fragments", "code", "says"), [
    ("0.1.0", ["0.1.0"], ["new.yml"], 1, "raise galaxy.yml's version above 0.1.0 (e.g. 0.2.0)"),
    ("0.2.0", ["0.1.0"], ["new.yml"], 0, "1 fragment(s) pending"),
    ("0.1.0", ["0.1.0"], [], 0, "0 fragment(s) pending"),
    ("0.1.0", ["0.1.0", "0.2.0"], [], 1, "older than the last release 0.2.0"),
    ("0.1.0", [], ["new.yml"], 0, "last release none"),
])
def test_version_against_the_last_release(tmp_path, version, released, fragments, code, says):
    done = subprocess.run([sys.executable, SCRIPT, collection(tmp_path, version, released, fragments)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == code and says in done.stdout and len(done.stdout.splitlines()) == 1, done


def test_no_fragments_folder_is_none_pending(tmp_path):
    root = collection(tmp_path, "0.2.0", ["0.2.0"], [])
    os.rmdir(os.path.join(root, "changelogs", "fragments"))
    done = subprocess.run([sys.executable, SCRIPT, root], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "version 0.2.0: last release 0.2.0, 0 fragment(s) pending\n"), done
