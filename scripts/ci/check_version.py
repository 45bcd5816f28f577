# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fails when changelog fragments wait for a release but galaxy.yml's version is not ahead of the last release in
changelogs/changelog.yaml: a build would carry unreleased changes under a released version (0.1.0 shipped 11 modules;
main had 22 under the same number). Prints one line either way.
    python3 scripts/ci/check_version.py [COLLECTION_ROOT]"""

from __future__ import annotations

import os
import sys

import yaml
from packaging.version import Version


def main(root: str) -> int:
    with open(os.path.join(root, "galaxy.yml"), encoding="utf-8") as handle:
        version = Version(str(yaml.safe_load(handle)["version"]))
    with open(os.path.join(root, "changelogs", "changelog.yaml"), encoding="utf-8") as handle:
        releases = sorted((Version(str(name)) for name in (yaml.safe_load(handle).get("releases") or {})), reverse=True)
    fragments_dir = os.path.join(root, "changelogs", "fragments")
    # A clone keeps no empty folder: without its .keep file the fragments folder is gone, and nothing is pending.
    names = os.listdir(fragments_dir) if os.path.isdir(fragments_dir) else []
    pending = sorted(name for name in names if name.endswith((".yml", ".yaml")))
    last = releases[0] if releases else None
    if pending and last is not None and version <= last:
        print(f"galaxy.yml says version {version}, but {last} is released and {len(pending)} changelog fragment(s) "
              f"wait for the next release: raise galaxy.yml's version above {last} (e.g. {last.major}."
              f"{last.minor + 1}.0)")
        return 1
    if last is not None and version < last:
        print(f"galaxy.yml's version {version} is older than the last release {last}")
        return 1
    print(f"version {version}: last release {last or 'none'}, {len(pending)} fragment(s) pending")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))
