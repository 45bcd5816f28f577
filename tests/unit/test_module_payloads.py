# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Ansible packs into a module's payload: every module_util the module's import chain names (Ansible's own
ModuleDepFinder, nested imports included). Every file packed is also compiled and imported on each run, so a
database module must carry its own engine's code only (bench/bench_module_overhead.py measures the cost)."""

from __future__ import annotations

import ast
import os

import pytest
from ansible.executor.module_common import ModuleDepFinder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "ansible_collections.lifeboat.ops.plugins"
UTILS = os.path.join(ROOT, "plugins", "module_utils")


def packed(module: str) -> set[str]:
    """The collection's module_utils that Ansible packs for the module (names without the package)."""
    found: set[str] = set()
    todo = [(os.path.join(ROOT, "plugins", "modules", f"{module}.py"), f"{PACKAGE}.modules.{module}")]
    while todo:
        path, fqn = todo.pop()
        with open(path, encoding="utf-8") as handle:
            finder = ModuleDepFinder(fqn, ast.parse(handle.read()))
        for parts in finder.submodules:
            if parts[:5] != tuple(f"{PACKAGE}.module_utils".split(".")):
                continue
            for name in parts[5:7]:  # "from ..module_utils import _x" names _x after the package; "._x import y" first
                candidate = os.path.join(UTILS, f"{name}.py")
                if os.path.exists(candidate) and name not in found:
                    found.add(name)
                    todo.append((candidate, f"{PACKAGE}.module_utils.{name}"))
                    break
    return found


# Areas a database module does not need: the other engine's code, validation, status, verification, Docker apps.
ELSEWHERE = {"_sources", "_validate", "_validate_core", "_validate_pg", "_validate_mongo", "_status", "_verify",
             "_docker_apps", "_files_source", "_tar_index", "_offsite", "_tasks", "_data_catalog"}


@pytest.mark.parametrize("module, engine, other", [
    ("postgresql_dump", "_postgres", "_mongo"), ("postgresql_restore", "_postgres", "_mongo"),
    ("mongodb_dump", "_mongo", "_postgres"), ("mongodb_restore", "_mongo", "_postgres"),
])
def test_a_database_module_packs_its_own_engine_only(module, engine, other):
    names = packed(module)
    assert not names & (ELSEWHERE | {other, f"{other}_module", f"{other}_staging", f"{other}_restore", f"{other}_merge"}), \
        sorted(names)
    assert {engine, f"{engine}_module", "_params", "_module_frame", "_clients", "_docker_exec"} <= names


def test_every_module_util_a_module_util_names_is_packed():
    """A module_util named by a relative import anywhere (top level or inside a function) is in the payload."""
    for module in ("postgresql_restore", "mongodb_restore", "migration_validate", "backup_verify"):
        names = packed(module)
        for name in names:
            with open(os.path.join(UTILS, f"{name}.py"), encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 1:
                    named = [node.module] if node.module else [alias.name for alias in node.names]
                    assert set(named) <= names, (module, name, named)
