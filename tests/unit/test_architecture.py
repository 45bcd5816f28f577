# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The library's map, docs/architecture.md, held to the code: every library file on one floor, imports only sideways
or down and never in a cycle (late imports included), every module's home, every host program and every ``lifeboat``
subcommand named, and every list of the subcommands complete."""

from __future__ import annotations

import argparse
import ast
import itertools
import pathlib
import re

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "plugins" / "module_utils"
MAP = ROOT / "docs" / "architecture.md"


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a Markdown page."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert found, f"docs/architecture.md has no '## {title}' section"
    return found.group(1)


def map_floors() -> list[tuple[str, list[str]]]:
    """The map's floors, bottom first: (area, files) from its ``### N. Area`` headings and ``- `_file.py`` bullets."""
    floors: list[tuple[str, list[str]]] = []
    for line in section(MAP.read_text(encoding="utf-8"), "Floors").splitlines():
        heading = re.match(r"### (\d+)\. (.+)", line)
        if heading:
            assert int(heading.group(1)) == len(floors) + 1, f"floors out of order at {line!r}"
            floors.append((heading.group(2), []))
        bullet = re.match(r"- `(_\w+)\.py`", line)
        if bullet:
            floors[-1][1].append(bullet.group(1))
    return floors


def library_imports() -> dict[str, dict[str, int]]:
    """Each library file's imports of library files -> the line of the first. Every ``from . import x`` and
    ``from .x import y`` counts, wherever it is: at the top, in a function (late), under TYPE_CHECKING."""
    graph: dict[str, dict[str, int]] = {}
    for path in sorted(LIBRARY.glob("*.py")):
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                for name in [node.module] if node.module else [alias.name for alias in node.names]:
                    edges.setdefault(name, node.lineno)
        graph[path.stem] = dict(sorted(edges.items(), key=lambda item: item[1]))
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle through each group of files that reach each other (Tarjan's strongly connected components, then a
    shortest way back to the group's first file), each as the files in import order, the first one repeated last."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(group)

    for node in graph:
        if node not in index:
            visit(node)
    found = []
    for group in groups:
        start = min(group)
        ways = {start: [start]}
        todo = [start]
        while todo:
            node = todo.pop(0)
            if start in graph[node]:
                found.append(ways[node] + [start])
                break
            for other in graph[node]:
                if other in group and other not in ways:
                    ways[other] = ways[node] + [other]
                    todo.append(other)
    return found


def describe(path: list[str], graph: dict[str, dict[str, int]]) -> str:
    """``_a -> _b (_a.py:12) -> ...``: a cycle with the line of each import."""
    steps = [path[0]] + [f"{later} ({earlier}.py:{graph[earlier][later]})" for earlier, later in itertools.pairwise(path)]
    return " -> ".join(steps)


def test_every_library_file_stands_on_exactly_one_floor_of_the_map():
    floors = map_floors()
    named = [name for _area, files in floors for name in files]
    assert sorted(name for name in named if named.count(name) > 1) == [], "on two floors"
    files = {path.stem for path in LIBRARY.glob("*.py")}
    assert sorted(files - set(named)) == [], "library files missing from docs/architecture.md"
    assert sorted(set(named) - files) == [], "docs/architecture.md names files that do not exist"


MAX_LINES = 700  # issue 31: a file longer than this holds more than one area's work; split it by what the code is


def test_no_library_file_is_longer_than_the_limit():
    lengths = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in LIBRARY.glob("*.py")}
    assert {name: lines for name, lines in lengths.items() if lines > MAX_LINES} == {}, f"over {MAX_LINES} lines"


def test_the_library_has_no_import_cycle():
    graph = library_imports()
    assert [describe(path, graph) for path in cycles(graph)] == []


def test_no_library_file_imports_from_a_higher_floor():
    floors = map_floors()
    floor = {name: (number, area) for number, (area, files) in enumerate(floors, start=1) for name in files}
    upward = [f"{name}.py:{line} ({floor[name][1]}, floor {floor[name][0]}) imports {other} "
              f"({floor[other][1]}, floor {floor[other][0]})"
              for name, edges in library_imports().items() if name in floor
              for other, line in edges.items() if other in floor and floor[other][0] > floor[name][0]]
    assert upward == []


def test_the_cycle_finder_names_a_late_import_cycle():
    """The finder itself: a cycle closed by an import inside a function is found, with the line of each import."""
    graph = {"_a": {"_b": 3}, "_b": {"_c": 4}, "_c": {"_a": 40}, "_d": {"_a": 5}}
    assert [describe(path, graph) for path in cycles(graph)] == ["_a -> _b (_a.py:3) -> _c (_b.py:4) -> _a (_c.py:40)"]
    assert cycles({"_a": {"_b": 1}, "_b": {}}) == []


def module_home(path: pathlib.Path) -> str:
    """``_file.function``: what the module's main() hands to run_module (through any wrapper such as
    ``_stopped_notes.restarting_first(...)``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_module":
            task = node.args[1]
            while isinstance(task, ast.Call):
                task = task.args[0]
            assert isinstance(task, ast.Attribute) and isinstance(task.value, ast.Name), ast.dump(task)
            return f"{task.value.id}.{task.attr}"
    raise AssertionError(f"{path.name}: main() does not call run_module")


def test_every_module_and_its_home_are_on_the_map():
    table = section(MAP.read_text(encoding="utf-8"), "Modules and their homes")
    rows = dict(re.findall(r"^\| `(\w+)` \| `(_\w+\.\w+)` \|$", table, re.M))
    homes = {path.stem: module_home(path) for path in sorted((ROOT / "plugins" / "modules").glob("*.py"))}
    assert rows == homes
    for home in homes.values():
        library_file, function = home.split(".")
        assert re.search(rf"^def {function}\(", (LIBRARY / f"{library_file}.py").read_text(encoding="utf-8"), re.M)


def subcommands() -> dict[str, str | None]:
    """``lifeboat``'s subcommands, as its parser has them, with their help lines."""
    parser = _cli.build_parser()
    action = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return {choice.dest: choice.help for choice in action._choices_actions}


def test_every_subcommand_has_a_help_line():
    """`lifeboat --help` lists a subcommand only when it has a help line."""
    assert {name: line for name, line in subcommands().items() if not line} == {}
    assert set(subcommands()) == set(_cli.build_parser()._actions[-1].choices)


# Every place that lists the subcommands, and how it names them: `lifeboat NAME` or `lifeboat a|b|c`.
SUBCOMMAND_LISTS = ["docs/architecture.md", "README.md", "docs/install.md", "docs/schedule.md",
                    "plugins/module_utils/_cli.py", "bin/lifeboat"]


@pytest.mark.parametrize("place", SUBCOMMAND_LISTS)
def test_every_list_of_the_subcommands_names_them_all(place):
    text = (ROOT / place).read_text(encoding="utf-8").replace("\\|", "|")
    named = {name for listed in re.findall(r"\blifeboat ((?:[a-z-]+\|)*[a-z-]+)", text) for name in listed.split("|")}
    assert sorted(set(subcommands()) - named) == [], f"{place} leaves out these lifeboat subcommands"


def entry_point_imports(path: pathlib.Path) -> set[str]:
    """The library files a host program imports: ``from lifeboat_ops import ...``, ``from plugins.module_utils
    import ...`` and ``importlib.import_module(f"{...}._name")``."""
    text = path.read_text(encoding="utf-8")
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module in ("lifeboat_ops", "plugins.module_utils"):
            names.update(alias.name for alias in node.names)
    names.update(re.findall(r"import_module\(f\"\{[^}]+\}\.(_\w+)\"\)", text))
    return names


def host_programs() -> list[pathlib.Path]:
    candidates = [ROOT / "bin" / "lifeboat", *sorted(ROOT.glob("roles/*/files/*.py"))]
    return [path for path in candidates if "lifeboat_ops" in path.read_text(encoding="utf-8")]


def test_every_host_program_is_on_the_map_with_the_library_files_it_enters():
    table = section(MAP.read_text(encoding="utf-8"), "Host entry points")
    rows = {match.group(1): match.group(2) for match in re.finditer(r"^\| `([\w./-]+)` \|[^|]*\|(.*)\|$", table, re.M)}
    programs = host_programs()
    assert programs == [ROOT / "bin" / "lifeboat"]  # one host program; the roles ship no scripts of their own
    for path in programs:
        relative = str(path.relative_to(ROOT))
        assert relative in rows, f"{relative} (runs the library on a host) is missing from docs/architecture.md"
        named = set(re.findall(r"`(_\w+)", rows[relative]))
        assert entry_point_imports(path) - named == set(), relative


PRIVATE_NOTE = "# PRIVATE to the lifeboat.ops collection while it is 0.x"


@pytest.mark.parametrize("folder", ["module_utils", "doc_fragments"])
def test_every_library_file_and_doc_fragment_is_marked_private(folder):
    """As community.general and community.docker mark theirs: a note in the header, and a doc fragment's name starts
    with an underscore (its FQCN, lifeboat.ops._postgresql, says so wherever it is used)."""
    paths = sorted((ROOT / "plugins" / folder).glob("*.py"))
    assert paths
    assert [path.name for path in paths if not path.name.startswith("_")] == []
    assert [path.name for path in paths if PRIVATE_NOTE not in path.read_text(encoding="utf-8")[:600]] == []
