# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/ci/check_role_docs.py: a role's README variable table and YAML examples say what its argument specs do,
or lint fails; and each role's README names the modules the role runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils import _sources

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(ROOT, "scripts", "ci", "check_role_docs.py")
_spec = importlib.util.spec_from_file_location("check_role_docs", SCRIPT)
assert _spec is not None and _spec.loader is not None  # the file exists: a module spec with a loader
checker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checker)

SPECS = {"argument_specs": {"main": {"options": {
    "demo_root": {"type": "path", "default": "/var/backups", "description": "Where. O(demo_jobs) go there."},
    "demo_jobs": {"type": "list", "elements": "dict", "default": [], "description": "The jobs, e.g. two.",
                  "options": {"name": {"type": "str", "required": True, "description": "Its name."},
                              "engine": {"type": "str", "choices": ["postgresql", "mongodb"], "description": "Engine."},
                              "port": {"type": "int", "description": "Port."}}},
}}}}

README = """# demo

## Role variables

| Variable | Default | Meaning |
|---|---|---|
| `demo_root` | `/var/backups` | where |
| `demo_jobs` | `[]` | the jobs |
| `demo_jobs[].engine` | - | engine |

## Example

```yaml
- hosts: all
  roles:
    - role: lifeboat.ops.demo
      vars:
        demo_jobs:
          - {name: journal, engine: postgresql, port: "{{ vault_port }}"}
```
"""

DEFAULTS = """---
# The jobs:
# demo_jobs:
#   - name: journal
#     engine: mongodb                  # a comment
#     port: 27017
demo_jobs: []
demo_root: /var/backups
"""


def write_role(root, readme=README, defaults=DEFAULTS, specs=None):
    role = root / "demo"
    for folder in ("meta", "defaults"):
        (role / folder).mkdir(parents=True, exist_ok=True)
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(specs or SPECS))
    (role / "defaults" / "main.yml").write_text(defaults)
    (role / "README.md").write_text(readme)
    return role


def test_an_agreeing_role_passes(tmp_path):
    write_role(tmp_path)
    assert checker.check(str(tmp_path)) == []


def test_each_disagreement_is_one_line(tmp_path):
    readme = (README.replace("| `demo_root` | `/var/backups` |", "| `demo_root` | `/srv` |")
              .replace("| `demo_jobs[].engine` |", "| `demo_jobs[].engin` |")
              .replace("engine: postgresql,", "engine: mysql, nam: x,"))
    defaults = DEFAULTS.replace("#     port: 27017", "#     port: many")
    specs = yaml.safe_load(yaml.safe_dump(SPECS))
    specs["argument_specs"]["main"]["options"]["demo_new"] = {"type": "bool", "description": "New."}
    write_role(tmp_path, readme, defaults, specs)
    assert checker.check(str(tmp_path)) == [
        "roles/demo/README.md:7: demo_root defaults to '/srv' here but to '/var/backups' in meta/argument_specs.yml",
        "roles/demo/README.md:9: demo_jobs[].engin is not an option of meta/argument_specs.yml",
        "roles/demo/README.md: the variable table lacks demo_new (meta/argument_specs.yml)",
        "roles/demo/README.md:14: value of engine must be one of: postgresql, mongodb, got: mysql found in demo_jobs",
        "roles/demo/README.md:14: demo_jobs.nam is not an option of the role",
        "roles/demo/defaults/main.yml:3: argument 'port' is of type str found in 'demo_jobs'. and we were unable to "
        "convert to int: \"'many'\" cannot be converted to an int",
    ]


def test_a_generated_table_is_written_and_then_checked(tmp_path):
    readme = README.replace("| Variable | Default | Meaning |\n|---|---|---|\n| `demo_root` | `/var/backups` | where |\n"
                            "| `demo_jobs` | `[]` | the jobs |\n| `demo_jobs[].engine` | - | engine |\n",
                            f"{checker.GENERATED_START}\n{checker.GENERATED_END}\n")
    role = write_role(tmp_path, readme)
    assert checker.check(str(tmp_path)) == [
        "roles/demo/README.md: the variable table is not what meta/argument_specs.yml says: run python "
        "scripts/ci/check_role_docs.py --write",
        "roles/demo/README.md has no variable table (| Variable | ...)",
    ]
    assert checker.check(str(tmp_path), write=True) == []
    assert "| `demo_jobs` | `[]` | The jobs, e.g. two. |\n| `demo_root` | `/var/backups` | Where. |\n" in (
        role / "README.md").read_text()
    assert checker.check(str(tmp_path)) == []


def test_the_collection_documents_and_examples_are_validated_too(tmp_path):
    write_role(tmp_path / "roles")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "demo.md").write_text(
        "# Demo\n\n```yaml\n# host_vars/a.yml\ndemo_jobs:\n  - {name: a, on: 1}\ndemo_typo: 1\nother_variable: 2\n```\n")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "play.yml").write_text(yaml.safe_dump([{"hosts": "all", "tasks": [
        {"ansible.builtin.include_role": {"name": "lifeboat.ops.demo"}, "vars": {"demo_jobs": [{"name": "x", "port": "y"}]}}]}]))
    assert checker.check(str(tmp_path / "roles")) == [
        "docs/demo.md:4: demo_typo is not a variable of role demo",
        "docs/demo.md:4: demo_jobs[].True is True to YAML, not a string: quote it ('on':)",
        "examples/play.yml:1: argument 'port' is of type str found in 'demo_jobs'. and we were unable to convert to int: "
        "\"'y'\" cannot be converted to an int",
    ]


@pytest.mark.parametrize(("description", "sentence"), [
    ("Command run before the gate, e.g. the app's migration. A rollback after it.",
     "Command run before the gate, e.g. the app's migration."),
    (["V(deploy) the release in O(image). More."], "`deploy` the release in image."),
    ("Volumes (C(NAME:/path[:ro])).", "Volumes (`NAME:/path[:ro]`)."),
    ("Directory (M(lifeboat.ops.reverse_proxy_sites)) of O(site=x)", "Directory (lifeboat.ops.reverse_proxy_sites) of site=x."),
])
def test_a_first_sentence_is_whole_and_without_markup(description, sentence):
    assert checker.first_sentence(description) == sentence


def test_the_collection_roles_agree():
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def _role_modules() -> dict[str, set[str]]:
    from test_role_module_calls import CALLS  # pylint: disable=import-outside-toplevel

    modules: dict[str, set[str]] = {}
    for call in CALLS:
        modules.setdefault(call.where.split("/")[1], set()).add(call.module)
    return modules


@pytest.mark.parametrize(("role", "modules"), sorted(_role_modules().items()))
def test_a_role_readme_names_every_module_the_role_runs(role, modules):
    """The backup role's README once said PostgreSQL and MongoDB only, long after files and compose jobs came."""
    with open(os.path.join(ROOT, "roles", role, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    unnamed = sorted(module for module in modules if f"lifeboat.ops.{module}" not in readme)
    assert not unnamed, f"roles/{role}/README.md does not name {', '.join(unnamed)}"


@pytest.mark.parametrize(("role", "variable"), [("backup", "backup_jobs"), ("backup_schedule", "backup_schedule_jobs"),
                                                ("restore", "restore_items")])
def test_a_job_takes_every_engine_of_the_library(role, variable):
    options = checker.role_options(os.path.join(ROOT, "roles"), role)
    assert checker.lookup(options, f"{variable}[].engine")["choices"] == list(_sources.NAMES)
