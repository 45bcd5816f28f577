# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmarks under bench/ are not run in CI, so a moved library function breaks them silently (it happened
once: bench_container and bench_verify still called `_params` functions after they moved). This checks, without
running them, that every name a benchmark takes from the library or from another benchmark still exists there."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
LIBRARY = "ansible_collections.lifeboat.ops.plugins.module_utils"


def _top_level_names(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(target.id for target in targets if isinstance(target, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def missing_names(path: pathlib.Path) -> list[str]:
    """``module.name`` for every library or benchmark name the script uses that does not exist."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: dict[str, object] = {}  # local name -> library module
    siblings: dict[str, set[str]] = {}  # local name -> top-level names of a benchmark it imports
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == LIBRARY:
            for alias in node.names:
                modules[alias.asname or alias.name] = importlib.import_module(f"{LIBRARY}.{alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(f"{LIBRARY}."):
            library = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names if not hasattr(library, a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and (BENCH / f"{node.module}.py").exists():
            defined = _top_level_names(BENCH / f"{node.module}.py")
            missing += [f"{node.module}.{a.name}" for a in node.names if a.name not in defined]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if (BENCH / f"{alias.name}.py").exists():
                    siblings[alias.asname or alias.name] = _top_level_names(BENCH / f"{alias.name}.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = node.value.id
            absent_from_library = owner in modules and not hasattr(modules[owner], node.attr)
            if absent_from_library or (owner in siblings and node.attr not in siblings[owner]):
                missing.append(f"{owner}.{node.attr}")
    return sorted(set(missing))


@pytest.mark.parametrize("path", sorted(BENCH.glob("bench_*.py")), ids=lambda path: path.name)
def test_every_name_a_benchmark_takes_from_the_library_exists(path: pathlib.Path) -> None:
    compile(path.read_text(encoding="utf-8"), str(path), "exec")
    assert missing_names(path) == []
