# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fail when a role's meta/argument_specs.yml and defaults/main.yml disagree (run by scripts/ci/lint.sh).

For the entry point ``main`` of every role under roles/: each variable in defaults/main.yml must be an option
of the spec with the same default, and each option with a default must be in defaults/main.yml. One line per
mismatch; exit code 1 when there is any.

    python scripts/ci/check_role_defaults.py [ROLES_DIR]
"""

from __future__ import annotations

import os
import sys
import typing as t

import yaml

MISSING = object()


def _load(path: str) -> t.Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def compare(role: str, specs: t.Any, defaults: t.Any) -> list[str]:
    """The mismatches between a role's argument specs (parsed YAML) and its defaults (parsed YAML).

    defaults/main.yml serves every entry point (tasks_from) of a role, so each entry point's options are compared
    with it. A default computed from other variables ("{{ backup_root }}") cannot take the option's type in the
    spec: such an option may leave its default out of the spec.
    """
    where = f"roles/{role}"
    entry_points = (specs or {}).get("argument_specs") if isinstance(specs, dict) else None
    if not isinstance(entry_points, dict) or not isinstance(entry_points.get("main"), dict):
        return [f"{where}: meta/argument_specs.yml has no argument_specs.main"]
    defaults = defaults or {}
    if not isinstance(defaults, dict):
        return [f"{where}: defaults/main.yml is not a mapping"]
    problems = []
    declared: set[str] = set()
    for entry_name, entry in entry_points.items():
        options = (entry or {}).get("options") or {}
        declared.update(options)
        spec = "meta/argument_specs.yml" + ("" if entry_name == "main" else f" ({entry_name})")
        for name, option in options.items():
            spec_default = (option or {}).get("default", MISSING)
            value = defaults.get(name, MISSING)
            if value is MISSING:
                if spec_default is not MISSING:
                    problems.append(f"{where}: {name} has default {spec_default!r} in {spec} but is missing from "
                                    "defaults/main.yml")
            elif spec_default is MISSING:
                if not (isinstance(value, str) and "{{" in value):
                    problems.append(f"{where}: {name} is {value!r} in defaults/main.yml but has no default in {spec}")
            elif not _same(spec_default, value):
                problems.append(f"{where}: {name} is {value!r} in defaults/main.yml but {spec_default!r} in {spec}")
    for name in defaults:
        if name not in declared:
            problems.append(f"{where}: {name} is in defaults/main.yml but not in meta/argument_specs.yml")
    return problems


def _same(left: t.Any, right: t.Any) -> bool:
    # bool is an int in Python: True must not equal 1 here.
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return left == right


def check(roles_dir: str) -> list[str]:
    problems = []
    for role in sorted(os.listdir(roles_dir)):
        specs_path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
        defaults_path = os.path.join(roles_dir, role, "defaults", "main.yml")
        if not os.path.isfile(specs_path):
            if os.path.isdir(os.path.join(roles_dir, role)):
                problems.append(f"roles/{role}: meta/argument_specs.yml is missing")
            continue
        defaults = _load(defaults_path) if os.path.isfile(defaults_path) else {}
        problems += compare(role, _load(specs_path), defaults)
    return problems


def main(argv: list[str]) -> int:
    roles_dir = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "roles")
    problems = check(roles_dir)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"argument specs and defaults agree in {len(os.listdir(roles_dir))} roles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
