# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One home per module (docs/architecture.md, "Modules and their homes"): every module's argument spec and its work
sit side by side in one library file, named after it, and its main() only joins them:

    module = AnsibleModule(argument_spec=_area.<module>_spec(), supports_check_mode=True[, **_area.<MODULE>_RULES])
    run_module(module, _area.<module>)          # or _stopped_notes.restarting_first(_area.<module>)

Nothing else in the library is named a spec: options several modules share are pieces (``*_options()``)."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "plugins" / "module_utils"
MODULES = sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py"))


def _main(module: str) -> ast.FunctionDef:
    tree = ast.parse((ROOT / "plugins" / "modules" / f"{module}.py").read_text(encoding="utf-8"))
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    assert found, f"plugins/modules/{module}.py has no main()"
    return found[0]


def _dotted(node: ast.AST) -> str:
    """``_area.name`` of an attribute of an imported library file, else a description of what it is."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return ast.unparse(node)


def _calls(function: ast.FunctionDef, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(function)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name]


def main_joins(module: str) -> dict[str, str | list[str]]:
    """What a module's main() gives AnsibleModule and run_module, as ``_area.name`` strings."""
    main = _main(module)
    made, ran = _calls(main, "AnsibleModule"), _calls(main, "run_module")
    assert len(made) == 1 and len(ran) == 1, f"{module}: main() makes one AnsibleModule and calls run_module once"
    keywords = {keyword.arg: keyword.value for keyword in made[0].keywords}
    spec = keywords.get("argument_spec")
    assert isinstance(spec, ast.Call) and not spec.args and not spec.keywords, \
        f"{module}: argument_spec is not a call of <area>.{module}_spec(): {ast.unparse(spec) if spec else None}"
    task = ran[0].args[1]
    while isinstance(task, ast.Call):  # through a wrapper such as _stopped_notes.restarting_first(...)
        task = task.args[0]
    return {"spec": _dotted(spec.func), "task": _dotted(task),
            "rules": [_dotted(keyword.value) for keyword in made[0].keywords if keyword.arg is None],
            "other": sorted(name for name in keywords if name not in (None, "argument_spec", "supports_check_mode"))}


def top_level_names(library_file: str) -> set[str]:
    tree = ast.parse((LIBRARY / f"{library_file}.py").read_text(encoding="utf-8"))
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


@pytest.mark.parametrize("module", MODULES)
def test_a_module_main_joins_its_spec_and_its_work_from_one_library_file(module):
    joined = main_joins(module)
    area = joined["task"].partition(".")[0]
    assert joined["task"] == f"{area}.{module}", f"{module}: main() hands {joined['task']} to run_module"
    assert joined["spec"] == f"{area}.{module}_spec", \
        f"{module}: main() takes its argument spec from {joined['spec']}(), not from {area}.{module}_spec()"
    assert joined["rules"] in ([], [f"{area}.{module.upper()}_RULES"]), \
        f"{module}: rules come from {joined['rules']}, not from {area}.{module.upper()}_RULES"
    assert joined["other"] == [], f"{module}: main() gives AnsibleModule {joined['other']} itself"
    defined = top_level_names(area)
    wanted = {module, f"{module}_spec", *(rule.split(".")[1] for rule in joined["rules"])}
    assert sorted(wanted - defined) == [], f"{area}.py does not define these of {module}"


def spec_names(path: pathlib.Path) -> list[str]:
    """Every function, method or variable of a library file named a spec: ``*_spec`` or ``*SPEC*``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [(node.name, node.lineno)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [(target.id, node.lineno) for target in targets if isinstance(target, ast.Name)]
        else:
            continue
        found += [f"{path.stem}.{name} (line {line})" for name, line in names if name.endswith("_spec") or "SPEC" in name]
    return sorted(found, key=lambda name: int(name.split("line ")[1].rstrip(")")))


def test_nothing_but_a_module_home_is_named_a_spec():
    homes = {f"{main_joins(module)['task'].partition('.')[0]}.{module}_spec" for module in MODULES}
    named = [name for path in sorted(LIBRARY.glob("*.py")) for name in spec_names(path)]
    misnamed = [name for name in named if name.partition(" ")[0] not in homes]
    assert misnamed == [], f"rename to *_options() (a piece of modules' specs) or move to a module's home: {misnamed}"


def test_the_spec_finder_sees_methods_and_constants(tmp_path):
    """The finder itself: a method, a constant and a private function named a spec are found."""
    sample = tmp_path / "_sample.py"
    sample.write_text("class Source:\n    def connection_spec(self):\n        return {}\n\n\n"
                      "SITES_ARGUMENT_SPEC = {}\n_PIECE_SPECS: dict = {}\n\n\ndef _database_spec():\n    return {}\n"
                      "\n\ndef specimen():\n    return {}\n")
    assert spec_names(sample) == ["_sample.connection_spec (line 2)", "_sample.SITES_ARGUMENT_SPEC (line 6)",
                                  "_sample._PIECE_SPECS (line 7)", "_sample._database_spec (line 10)"]
