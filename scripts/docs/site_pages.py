# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lays the pages of the docs site that do not come from antsibull-docs into Sphinx's source tree, at build time:
  - the landing page (scripts/docs/site/index.md) in place of antsibull's boilerplate;
  - every guide docs/*.md, as it is, under guides/ (the Markdown in docs/ is what the site shows; MyST reads it, and
    the lifeboat_sphinx extension turns links to repository files outside docs/ into plain text);
  - a page per playbook (playbooks/*.yml) under playbooks/: its header comment, how to run it, the variables of the
    play and those of the roles it applies (from each role's meta/argument_specs.yml), the modules it calls.
Run by scripts/ci/docs-site.sh with the docs venv's Python (PyYAML, antsibull-docs-parser).
Usage: site_pages.py REPOSITORY_ROOT SPHINX_SOURCE_DIR"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from typing import Any

import yaml
from antsibull_docs_parser import dom
from antsibull_docs_parser.parser import Context, parse
from antsibull_docs_parser.rst import to_rst

COLLECTION = "lifeboat.ops"
# A play keyword or variable read with a default: `{{ lifeboat_target | default('all') }}`.
DEFAULTED = re.compile(r"(?<![\w.])([a-z][a-z0-9_]*)\s*\|\s*default\(((?:[^()]|\([^()]*\))*)\)")
EMPTY_CELL = "\\"  # an empty list-table cell must still hold something
ROLE_TASK = ("ansible.builtin.import_role", "ansible.builtin.include_role", "import_role", "include_role")


def rst_text(text: str) -> str:
    """Plain text made safe inside reStructuredText (no markup characters read as markup)."""
    return re.sub(r"([\\`*_|\[\]<>:])", r"\\\1", text)


def heading(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def markup(text: Any, role: str | None = None, entrypoint: str | None = None) -> str:
    """A description in Ansible's doc markup (O(), C(), M()...) as RST for sphinx_antsibull_ext, as antsibull
    renders the role pages."""
    paragraphs = [text] if isinstance(text, str) else list(text or [])
    plugin = dom.PluginIdentifier(fqcn=f"{COLLECTION}.{role}", type="role") if role else None
    context = Context(current_plugin=plugin, role_entrypoint=entrypoint)
    return to_rst(parse(paragraphs, context, errors="exception"), current_plugin=plugin)


def header_comment(text: str) -> list[str]:
    """The comment lines at the top of a playbook, without their '# '."""
    lines = []
    for line in text.splitlines():
        if line.strip() == "---":
            continue
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return lines


def comment_as_rst(lines: list[str]) -> str:
    """Prose lines become paragraphs; indented lines (command lines, artifact shapes) literal blocks."""
    out: list[str] = []
    block: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            out.append(rst_text(" ".join(prose)) + "\n")
            prose.clear()
        if block:
            out.append(".. code-block:: text\n\n" + "".join(f"   {line}\n" for line in block))
            block.clear()

    for line in lines:
        if line.startswith("  "):
            if prose:
                flush()
            block.append(line.strip() if line.lstrip().startswith("ansible-playbook") else line[2:])
        else:
            if block:
                flush()
            prose.append(line.strip())
    flush()
    return "\n".join(out)


def walk_tasks(node: Any) -> list[dict[str, Any]]:
    """Every task of a play, blocks, rescue and always included."""
    found: list[dict[str, Any]] = []
    if isinstance(node, list):
        for item in node:
            found += walk_tasks(item)
    elif isinstance(node, dict):
        found.append(node)
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            if key in node:
                found += walk_tasks(node[key])
    return found


def roles_applied(plays: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(role, entry point) of every lifeboat.ops role the playbook applies, in order, once each."""
    applied: list[tuple[str, str]] = []
    for play in plays:
        for role in play.get("roles", []):
            name = role if isinstance(role, str) else role.get("role") or role.get("name")
            applied.append((name, "main"))
        for task in walk_tasks(play.get("tasks", [])):
            for key in ROLE_TASK:
                if isinstance(task.get(key), dict):
                    applied.append((task[key]["name"], task[key].get("tasks_from", "main")))
    unique: list[tuple[str, str]] = []
    for name, entry in applied:
        short = name.removeprefix(f"{COLLECTION}.")
        if (short, entry) not in unique:
            unique.append((short, entry))
    return unique


def modules_called(plays: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for play in plays:
        for task in walk_tasks(play.get("tasks", [])):
            for key in task:
                if key.startswith(f"{COLLECTION}.") and key[len(COLLECTION) + 1:] not in names:
                    names.append(key[len(COLLECTION) + 1:])
    return names


def play_variables(text: str, role_options: set[str], internal: set[str]) -> dict[str, str]:
    """The variables the playbook itself reads with a default, the roles' options and its own facts left out."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found: dict[str, str] = {}
    pending = DEFAULTED.findall(code)
    while pending:
        name, default = pending.pop(0)
        pending += DEFAULTED.findall(default)  # a default that reads another variable with its own default
        if name.startswith(("_", "ansible_")) or name in role_options or name in internal or name in found:
            continue
        found[name] = "(unset)" if default.strip() == "omit" else " ".join(default.split())
    return found


def internal_names(plays: list[dict[str, Any]]) -> set[str]:
    """Names the playbook sets itself: registered results, loop variables, play and task vars, facts."""
    names: set[str] = set()
    for play in plays:
        names.update((play.get("vars") or {}).keys())
        for task in walk_tasks(play.get("tasks", [])):
            if "register" in task:
                names.add(task["register"])
            names.update((task.get("vars") or {}).keys())
            names.update((task.get("loop_control") or {}).get("loop_var", "item").split())
            for key in ("ansible.builtin.set_fact", "set_fact"):
                if isinstance(task.get(key), dict):
                    names.update(task[key].keys())
    return names


def role_facts(root: str, roles: list[str]) -> set[str]:
    """Facts and results the applied roles set (deploy_history...): the playbook reads them, the user does not."""
    names: set[str] = set()
    for role in roles:
        folder = os.path.join(root, "roles", role, "tasks")
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                names |= internal_names([{"tasks": yaml.safe_load(handle) or []}])
    return names


def option_rows(role: str, entry: str, spec: dict[str, Any]) -> list[str]:
    rows = []
    for name, option in sorted((spec.get("options") or {}).items()):
        kind = option.get("type", "str")
        if option.get("elements"):
            kind += f" of {option['elements']}"
        if option.get("required"):
            default = "**required**"
        elif "default" in option:
            default = f":literal:`{rst_text(json_like(option['default']))}`"
        else:
            default = ""
        description = textwrap.indent(markup(option.get("description", ""), role, entry), " " * 7).strip()
        rows.append(f"   * - :ansopt:`{COLLECTION}.{role}#role:{entry}:{name}`\n"
                    f"     - {kind}\n"
                    f"     - {default}\n"
                    f"     - {description or EMPTY_CELL}\n")
    return rows


def json_like(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip() or '""'


def playbook_page(root: str, name: str, specs: dict[str, dict[str, Any]]) -> str:
    path = os.path.join(root, "playbooks", f"{name}.yml")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    plays = yaml.safe_load(text) or []
    comment = header_comment(text)
    roles = roles_applied(plays)
    modules = modules_called(plays)
    role_options = {option for role, entry in roles
                    for option in (specs.get(role, {}).get(entry, {}).get("options") or {})}
    variables = play_variables(text, role_options, internal_names(plays) | role_facts(root, [r for r, _e in roles]))

    title = f"{COLLECTION}.{name} playbook"
    lead = comment[0] if comment else ""
    parts = [f".. _playbook_{name}:\n", heading(title, "="),
             f"{rst_text(lead)}\n" if lead else "",
             ".. code-block:: bash\n\n"
             f"   ansible-playbook {COLLECTION}.{name} -i inventory\n",
             f"Source: ``playbooks/{name}.yml`` in the collection. The notes below are its header comment.\n",
             heading("What it does", "-"), comment_as_rst(comment[1:]),
             heading("Variables of the play", "-")]
    if variables:
        parts.append(".. list-table::\n   :header-rows: 1\n   :widths: 30 30\n\n"
                     "   * - Variable\n     - Default\n"
                     + "".join(f"   * - ``{variable}``\n     - :literal:`{rst_text(default)}`\n"
                               for variable, default in variables.items()))
    else:
        parts.append("None besides those of the roles below.\n")
    for role, entry in roles:
        spec = specs.get(role, {}).get(entry)
        if spec is None:
            raise SystemExit(f"playbooks/{name}.yml applies {COLLECTION}.{role} (entry point {entry}), "
                             f"which roles/{role}/meta/argument_specs.yml does not describe")
        label = f"ansible_collections.{COLLECTION}.{role}_role"
        where = "" if entry == "main" else f", entry point ``{entry}``"
        parts.append(heading(f"Variables of the {role} role" + ("" if entry == "main" else f" ({entry})"), "-"))
        parts.append(f"The play applies :ref:`{COLLECTION}.{role} <{label}>`{where}: "
                     f"{rst_text(spec.get('short_description', ''))}. Its variables (the role's page has every "
                     "sub-option):\n")
        rows = option_rows(role, entry, spec)
        if rows:
            parts.append(".. list-table::\n   :header-rows: 1\n   :widths: 25 12 13 50\n\n"
                         "   * - Variable\n     - Type\n     - Default\n     - Description\n" + "".join(rows))
    if modules:
        parts.append(heading("Modules it calls", "-"))
        parts.append("".join(f"- :ref:`{COLLECTION}.{module} <ansible_collections.{COLLECTION}.{module}_module>`\n"
                             for module in modules))
    return "\n".join(part for part in parts if part)


def load_specs(root: str) -> dict[str, dict[str, Any]]:
    specs = {}
    for role in sorted(os.listdir(os.path.join(root, "roles"))):
        path = os.path.join(root, "roles", role, "meta", "argument_specs.yml")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                specs[role] = yaml.safe_load(handle)["argument_specs"]
    return specs


def main(root: str, source: str) -> int:
    # The landing page replaces antsibull's: two sources of one document name would be a Sphinx warning.
    for boilerplate in ("index.rst",):
        if os.path.exists(os.path.join(source, boilerplate)):
            os.remove(os.path.join(source, boilerplate))
    shutil.copyfile(os.path.join(root, "scripts", "docs", "site", "index.md"), os.path.join(source, "index.md"))

    guides = sorted(name for name in os.listdir(os.path.join(root, "docs")) if name.endswith(".md"))
    os.makedirs(os.path.join(source, "guides"))
    for guide in guides:
        shutil.copyfile(os.path.join(root, "docs", guide), os.path.join(source, "guides", guide))

    specs = load_specs(root)
    playbooks = sorted(name[:-4] for name in os.listdir(os.path.join(root, "playbooks")) if name.endswith(".yml"))
    os.makedirs(os.path.join(source, "playbooks"))
    for playbook in playbooks:
        with open(os.path.join(source, "playbooks", f"{playbook}.rst"), "w", encoding="utf-8") as handle:
            handle.write(playbook_page(root, playbook, specs))
    print(f"site_pages: {len(guides)} guides, {len(playbooks)} playbooks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
