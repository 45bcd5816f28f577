# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/runtime.yml's action groups against the modules that exist: `all` reaches every one of them, and each
engine's or the bucket's group holds exactly the modules that take its connection options."""

from __future__ import annotations

import os

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def modules() -> set[str]:
    folder = os.path.join(ROOT, "plugins", "modules")
    return {name[:-3] for name in os.listdir(folder) if name.endswith(".py") and not name.startswith("_")}


def groups() -> dict[str, set[str]]:
    with open(os.path.join(ROOT, "meta", "runtime.yml"), encoding="utf-8") as handle:
        declared = yaml.safe_load(handle)["action_groups"]
    expanded: dict[str, set[str]] = {}
    for name, entries in declared.items():
        members: set[str] = set()
        for entry in entries:
            if isinstance(entry, dict):
                for extended in entry["metadata"]["extend_group"]:
                    members |= {member for member in declared[extended] if isinstance(member, str)}
            else:
                members.add(entry)
        expanded[name] = members
    return expanded


def test_the_all_group_reaches_every_module_and_nothing_else() -> None:
    assert groups()["all"] == modules()


def test_the_connection_groups_hold_the_modules_of_their_prefix() -> None:
    found = groups()
    for group, prefix in (("postgresql", "postgresql_"), ("mongodb", "mongodb_"), ("offsite", "offsite_")):
        assert found[group] == {name for name in modules() if name.startswith(prefix)}, group
