# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fail when a role's README or the examples in its comments say what its meta/argument_specs.yml does not (run by
scripts/ci/lint.sh).

For every role under roles/:
- the README's variable table (a table whose first header cell is "Variable") names every option of every entry
  point, names no option the role does not have (``backup_jobs[].offsite`` is looked up as a sub-option), and a
  default written as one `value` is the spec's default;
- every YAML example (the README's yaml blocks: plays that apply a role of this collection, or inventory variables;
  the commented examples in defaults/main.yml, ``# backup_jobs:`` and the lines under it) passes the role's own
  argument validation: no unknown key where the spec declares the keys, no value of the wrong type or choice.

A README may leave its table to this script: between the lines GENERATED_START and GENERATED_END it holds the table
made from the spec (every option, its default, the first sentence of its description), and the check fails when it
is not what ``--write`` would put there now.

The same validation runs over the YAML examples of the collection's other documents (README.md, docs/*.md) and
over examples/ (inventories, playbooks): each variable by the role whose prefix it carries.

One line per problem; exit code 1 when there is any.

    python scripts/ci/check_role_docs.py [--write] [ROLES_DIR]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import textwrap
import typing as t

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

PREFIX = "lifeboat.ops."
GENERATED_START = "<!-- The variable table is generated from meta/argument_specs.yml: python scripts/ci/check_role_docs.py --write -->"
GENERATED_END = "<!-- End of the generated variable table -->"


def _load(path: str) -> t.Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def role_options(roles_dir: str, role: str) -> dict[str, dict[str, t.Any]]:
    """The options of every entry point of a role (an option of several entry points: the first one's)."""
    specs = _load(os.path.join(roles_dir, role, "meta", "argument_specs.yml"))["argument_specs"]
    options: dict[str, dict[str, t.Any]] = {}
    for entry in specs.values():
        for name, option in ((entry or {}).get("options") or {}).items():
            options.setdefault(name, option or {})
    return options


def lookup(options: dict[str, t.Any], path: str) -> dict[str, t.Any] | None:
    """The option at ``path`` (``backup_jobs[].offsite``, ``backup_pings.ntfy``), or None."""
    option: dict[str, t.Any] | None = None
    for part in re.split(r"(?:\[\])?\.", path.removesuffix("[]")):
        if option is not None:
            options = option.get("options") or {}
        option = options.get(part)
        if option is None:
            return None
    return option


def _same(left: t.Any, right: t.Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):  # True must not equal 1
        return type(left) is type(right) and left == right
    return left == right


# Ansible's semantic markup means nothing outside the docs site: names of options and modules stay as plain words,
# values and code go in backquotes.
_MARKUP = re.compile(r"\b(O|V|C|M|RV|I|B|E|P)\(([^()]*(?:\([^()]*\)[^()]*)*)\)")
# A description's first sentence ends at a full stop and a space, not at an abbreviation's.
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)\.(?:\s|$)")


def plain(text: str) -> str:
    return _MARKUP.sub(lambda match: f"`{match.group(2)}`" if match.group(1) in ("V", "C", "RV") else match.group(2), text)


def first_sentence(description: str | list[str]) -> str:
    text = plain(description if isinstance(description, str) else description[0])
    end = _SENTENCE_END.search(text)
    return (text[:end.start()] if end else text.rstrip(".")) + "."


def generated_table(options: dict[str, t.Any]) -> str:
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, option in options.items():
        if option.get("required"):
            default = "required"
        elif "default" in option:
            default = f"`{yaml.safe_dump(option['default'], default_flow_style=True, width=1000).strip().removesuffix(chr(10) + '...')}`"
        else:
            default = "-"
        meaning = first_sentence(option.get("description") or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {default} | {meaning} |")
    return "\n".join(lines)


def with_generated_table(readme: str, options: dict[str, t.Any]) -> str | None:
    """The README with its generated table as the spec says now, or None when it has no generated table."""
    start, end = readme.find(GENERATED_START), readme.find(GENERATED_END)
    if start < 0 or end < start:
        return None
    return readme[:start + len(GENERATED_START)] + "\n\n" + generated_table(options) + "\n\n" + readme[end:]


def _table_rows(text: str) -> list[tuple[int, list[str]]]:
    """The rows (line number, cells) of the tables whose first header cell is "Variable"."""
    rows, in_table = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "Variable":
            in_table = True
        elif in_table and not set(cells[0]) <= {"-", ":"}:
            rows.append((number, cells))
    return rows


def _scalar(text: str) -> t.Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:  # a calendar spec such as *:0/15 is a string
        return text


def check_table(role: str, options: dict[str, t.Any], readme: str) -> list[str]:
    where = f"roles/{role}/README.md"
    rows = _table_rows(readme)
    if not rows:
        return []
    problems, named = [], set()
    for number, cells in rows:
        names = re.findall(r"`([^`]+)`", cells[0])
        for name in names:
            named.add(name)
            if lookup(options, name) is None:
                problems.append(f"{where}:{number}: {name} is not an option of meta/argument_specs.yml")
        default = re.fullmatch(r"`([^`]*)`", cells[1]) if len(cells) > 1 else None
        option = lookup(options, names[0]) if len(names) == 1 else None
        # A default computed from other variables has none in the spec (check_role_defaults.py): nothing to compare.
        if option is not None and default is not None and "default" in option:
            written = _scalar(default.group(1))
            if not _same(written, option["default"]):
                problems.append(f"{where}:{number}: {names[0]} defaults to {written!r} here but to "
                                f"{option['default']!r} in meta/argument_specs.yml")
    problems += [f"{where}: the variable table lacks {name} (meta/argument_specs.yml)"
                 for name in options if name not in named]
    return problems


def validate(options: dict[str, t.Any], values: dict[str, t.Any]) -> list[str]:
    """What the role's argument validation says about ``values`` (variables of the role), one line each."""
    spec = {name: option for name, option in options.items() if name in values}
    # A value left to the inventory ("{{ vault_x }}") is not the example's to type.
    given = {name: _untemplated(value, spec[name]) for name, value in values.items() if name in spec}
    odd = list(_non_string_keys(given, ""))
    if odd:  # Ansible's validation cannot name them: it fails on joining the path
        return [f"{path} is {key!r} to YAML, not a string: quote it ('on':)" for path, key in odd]
    result = ArgumentSpecValidator(_without_required(spec)).validate(given)
    return [_one_line(error) for error in result.errors]


def _one_line(error: t.Any) -> str:
    text = str(error)
    if type(error).__name__ == "UnsupportedError":  # "backup_jobs.engin. Supported parameters include: (all of them)"
        return f"{text.split('. Supported parameters', maxsplit=1)[0]} is not an option of the role"
    return text


def _non_string_keys(value: t.Any, path: str) -> t.Iterator[tuple[str, t.Any]]:
    """Keys YAML read as something else than a string (a bare ``on:`` is True)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield f"{path}.{key}".lstrip("."), key
            yield from _non_string_keys(item, f"{path}.{key}".lstrip("."))
    elif isinstance(value, list):
        for item in value:
            yield from _non_string_keys(item, f"{path}[]")


def _without_required(spec: dict[str, t.Any]) -> dict[str, t.Any]:
    """A role's required variable may come from elsewhere than the example (required sub-options stay)."""
    return {name: {key: value for key, value in option.items() if key != "required"} for name, option in spec.items()}


def _untemplated(value: t.Any, option: dict[str, t.Any]) -> t.Any:
    if isinstance(value, str) and "{{" in value:
        return _placeholder(option)
    if isinstance(value, dict) and option.get("options"):
        return {key: _untemplated(item, option["options"].get(key, {})) for key, item in value.items()}
    if isinstance(value, list) and option.get("type") == "list":
        element = {"type": option.get("elements", "raw"), "options": option.get("options")}
        return [_untemplated(item, element) for item in value]
    return value


_PLACEHOLDERS = {"int": 1, "float": 1.0, "bool": True, "list": [], "dict": {}, "path": "/x", "str": "x", "raw": "x"}


def _placeholder(option: dict[str, t.Any]) -> t.Any:
    if option.get("choices"):
        return option["choices"][0]
    return _PLACEHOLDERS.get(option.get("type", "str"), "x")


def readme_examples(readme: str) -> list[tuple[int, t.Any]]:
    """The YAML blocks of a README (line number, parsed)."""
    found = []
    for match in re.finditer(r"^```ya?ml\n(.*?)^```", readme, re.S | re.M):
        found.append((readme.count("\n", 0, match.start()) + 2, yaml.safe_load(match.group(1))))
    return found


def commented_examples(defaults: str, options: dict[str, t.Any]) -> list[tuple[int, t.Any]]:
    """The commented examples of defaults/main.yml: a comment line ``# NAME:`` (NAME an option of the role) and the
    comment lines indented under it."""
    lines = defaults.splitlines()
    found, number = [], 0
    while number < len(lines):
        start = re.match(r"#(\s*)([a-z_]+):", lines[number])
        if not start or start.group(2) not in options:
            number += 1
            continue
        indent, block = len(start.group(1)), [lines[number][1:]]
        following = number + 1
        while following < len(lines) and re.match(rf"#\s{{{indent}}}\s", lines[following]):
            block.append(lines[following][1:])
            following += 1
        found.append((number + 1, yaml.safe_load(textwrap.dedent("\n".join(block)))))
        number = following
    return found


def check_examples(role: str, all_options: dict[str, dict[str, dict[str, t.Any]]], examples: list[tuple[int, t.Any]],
                   where: str) -> list[str]:
    """Each example is a play (its roles' vars), a list of tasks (include_role vars), or a mapping of variables."""
    problems = []
    for number, example in examples:
        for target, values in _variables(role, example):
            if target not in all_options:
                continue
            options = all_options[target]
            unknown = [name for name in values if name not in options and name.startswith(f"{target}_")]
            problems += [f"{where}:{number}: {name} is not a variable of role {target}" for name in unknown]
            problems += [f"{where}:{number}: {line}" for line in validate(options, values)]
    return problems


def _variables(role: str, example: t.Any) -> t.Iterator[tuple[str, dict[str, t.Any]]]:
    if isinstance(example, dict):
        # Inventory variables (host_vars) or the lines under "# NAME:": each role's by its prefix.
        yield role, example
        return
    for item in example if isinstance(example, list) else []:
        if not isinstance(item, dict):
            continue
        for entry in item.get("roles") or []:
            if isinstance(entry, dict) and str(entry.get("role", "")).startswith(PREFIX):
                yield entry["role"].removeprefix(PREFIX), {**entry.get("vars", {}),
                                                           **{k: v for k, v in entry.items() if k not in ("role", "vars")}}
        for task in (item.get("tasks") or []) + ([item] if "ansible.builtin.include_role" in item else []):
            included = task.get("ansible.builtin.include_role") or task.get("ansible.builtin.import_role") or {}
            if str(included.get("name", "")).startswith(PREFIX):
                yield included["name"].removeprefix(PREFIX), task.get("vars", {})
        if "vars" in item and "roles" not in item:
            yield role, item["vars"]


def _owner(name: t.Any, all_options: dict[str, dict[str, t.Any]]) -> str | None:
    """The role a variable belongs to: the one that declares it, else the one with the longest matching prefix."""
    if not isinstance(name, str):
        return None
    owners = [role for role in all_options if name in all_options[role] or name.startswith(f"{role}_")]
    return max(owners, key=len, default=None)


def check_collection_examples(root: str, all_options: dict[str, dict[str, t.Any]]) -> list[str]:
    """The examples outside the roles: YAML blocks of README.md and docs/*.md, and the files under examples/."""
    found: list[tuple[str, int, t.Any]] = []
    for document in [os.path.join(root, "README.md"), *sorted(glob.glob(os.path.join(root, "docs", "*.md")))]:
        if os.path.isfile(document):
            found += [(document, number, example) for number, example in readme_examples(_read(document))]
    for path in sorted(glob.glob(os.path.join(root, "examples", "**", "*.yml"), recursive=True)):
        with open(path, encoding="utf-8") as handle:
            found += [(path, 1, example) for example in yaml.safe_load_all(handle)]
    problems = []
    for path, number, example in found:
        where = os.path.relpath(path, root)
        if isinstance(example, dict):
            by_role: dict[str, dict[str, t.Any]] = {}
            for name, value in example.items():
                owner = _owner(name, all_options)
                if owner is not None:
                    by_role.setdefault(owner, {})[name] = value
            for role, values in by_role.items():
                problems += check_examples(role, all_options, [(number, values)], where)
        elif isinstance(example, list):
            problems += check_examples("", all_options, [(number, example)], where)
    return problems


def check(roles_dir: str, write: bool = False) -> list[str]:
    roles = sorted(name for name in os.listdir(roles_dir)
                   if os.path.isfile(os.path.join(roles_dir, name, "meta", "argument_specs.yml")))
    all_options = {role: role_options(roles_dir, role) for role in roles}
    problems = []
    for role in roles:
        readme_path = os.path.join(roles_dir, role, "README.md")
        if os.path.isfile(readme_path):
            readme = _read(readme_path)
            generated = with_generated_table(readme, all_options[role])
            if generated is not None and generated != readme:
                if write:
                    with open(readme_path, "w", encoding="utf-8") as handle:
                        handle.write(generated)
                    readme = generated
                else:
                    problems.append(f"roles/{role}/README.md: the variable table is not what meta/argument_specs.yml "
                                    "says: run python scripts/ci/check_role_docs.py --write")
            if not _table_rows(readme):
                problems.append(f"roles/{role}/README.md has no variable table (| Variable | ...)")
            problems += check_table(role, all_options[role], readme)
            problems += check_examples(role, all_options, readme_examples(readme), f"roles/{role}/README.md")
        defaults_path = os.path.join(roles_dir, role, "defaults", "main.yml")
        if os.path.isfile(defaults_path):
            examples = commented_examples(_read(defaults_path), all_options[role])
            problems += check_examples(role, all_options, examples, f"roles/{role}/defaults/main.yml")
    return problems + check_collection_examples(os.path.dirname(os.path.abspath(roles_dir)), all_options)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the generated variable tables first")
    parser.add_argument("roles_dir", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "..", "roles"))
    args = parser.parse_args(argv[1:])
    roles_dir = args.roles_dir
    problems = check(roles_dir, write=args.write)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"READMEs and commented examples agree with the argument specs in {len(os.listdir(roles_dir))} roles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
