# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Ansible packs into a module's payload: every module_util the module's import chain names (Ansible's own
ModuleDepFinder, nested imports included). Every file packed is also compiled and imported on each run, so a
database module must carry its own engine's code only (bench/bench_module_overhead.py measures the cost)."""

from __future__ import annotations

import ast
import functools
import io
import os
import zipfile

import pytest
from ansible.executor.module_common import ModuleDepFinder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "ansible_collections.lifeboat.ops.plugins"
UTILS = os.path.join(ROOT, "plugins", "module_utils")


@functools.cache
def _named(path: str, fqn: str) -> tuple[tuple[str, ...], ...]:
    """What Ansible's ModuleDepFinder finds imported in one file (parsed once per test run)."""
    with open(path, encoding="utf-8") as handle:
        return tuple(ModuleDepFinder(fqn, ast.parse(handle.read())).submodules)


@functools.cache
def packed(module: str) -> frozenset[str]:
    """The collection's module_utils that Ansible packs for the module (names without the package)."""
    found: set[str] = set()
    todo = [(os.path.join(ROOT, "plugins", "modules", f"{module}.py"), f"{PACKAGE}.modules.{module}")]
    while todo:
        path, fqn = todo.pop()
        for parts in _named(path, fqn):
            if parts[:5] != tuple(f"{PACKAGE}.module_utils".split(".")):
                continue
            for name in parts[5:7]:  # "from ..module_utils import _x" names _x after the package; "._x import y" first
                candidate = os.path.join(UTILS, f"{name}.py")
                if os.path.exists(candidate) and name not in found:
                    found.add(name)
                    todo.append((candidate, f"{PACKAGE}.module_utils.{name}"))
                    break
    return frozenset(found)


# Areas a database module does not need: the other engine's code, validation, status, verification, Docker apps.
ELSEWHERE = {"_sources", "_validate", "_validate_core", "_validate_pg", "_validate_mongo", "_status", "_verify",
             "_docker_apps", "_files_source", "_tar_index", "_offsite", "_files_module", "_data_catalog"}


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


# Issue 31 part 6: every module's payload <= 1.5x of community.postgresql's postgresql_db, measured the same way.
# bench/bench_module_overhead.py --payload-only --all --reference DIR (2026-12-07, ansible-core 2.19,
# community.postgresql 4.2.0): postgresql_db's AnsiballZ file is 204,991 bytes. Of every payload, ansible-core's
# part (the wrapper and module_utils.basic with what it imports) is the same: 176,300 bytes, the bench's figure less
# payload_bytes()'s own part below (it agreed within 1 KiB for each of the 24 modules).
REFERENCE_BYTES = 204_991
ANSIBLE_CORE_BYTES = 176_300
GOAL_BYTES = int(1.5 * REFERENCE_BYTES)
# Modules over the goal on 2026-12-08: most pack the source table `_sources` (both engines, the files source, the
# validators); the database modules and the two probe modules (both engines' connections) are 10-21 KiB over
# (bench/README.md, "Payload table", says why and which cuts bring each down). Each is held at about its size that
# day until its cut lands: lower these as the cuts come, and remove a module once it is within the goal.
OVER_GOAL_KIB = {
    "app_deploy": 531, "backup_verify": 437, "cloudflared_ingress": 321, "compose_restore": 440,
    "database_expect": 432, "docker_app_info": 435, "files_backup": 436,
    "files_restore": 435, "migration_validate": 433, "mongodb_dump": 323, "mongodb_restore": 325,
    "postgresql_dump": 314, "postgresql_restore": 316, "wait_ready": 320,
}
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules")) if name.endswith(".py"))


@functools.cache
def payload_bytes(module: str) -> int:
    """The module's AnsiballZ file as Ansible builds it: ansible-core's part, then the module and the module_utils
    it packs in a deflated zip, base64-encoded."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(os.path.join(ROOT, "plugins", "modules", f"{module}.py"), f"{PACKAGE}.modules.{module}")
        for name in packed(module):
            archive.write(os.path.join(UTILS, f"{name}.py"), f"{PACKAGE}.module_utils.{name}")
    return ANSIBLE_CORE_BYTES + len(buffer.getvalue()) * 4 // 3


@pytest.mark.parametrize("module", MODULES)
def test_a_module_payload_stays_within_its_bound(module):
    """A new import that drags the source table (or another area) into a module's payload fails here."""
    bound = OVER_GOAL_KIB[module] * 1024 if module in OVER_GOAL_KIB else GOAL_BYTES
    size = payload_bytes(module)
    biggest = sorted(packed(module), key=lambda name: -os.path.getsize(os.path.join(UTILS, f"{name}.py")))
    assert size <= bound, (f"{module}'s payload is {size / 1024:.0f} KiB, over its bound {bound / 1024:.0f} KiB "
                           f"({size / REFERENCE_BYTES:.2f}x postgresql_db; goal 1.5x); it packs {len(biggest)} files, "
                           f"biggest first: {' '.join(biggest)}")


def test_the_over_goal_list_names_modules_over_the_goal():
    """A module cut below the goal leaves the list: from then on the goal itself holds it."""
    assert set(OVER_GOAL_KIB) <= set(MODULES)
    assert not [module for module in OVER_GOAL_KIB if payload_bytes(module) <= GOAL_BYTES]
