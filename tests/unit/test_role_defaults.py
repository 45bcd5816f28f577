# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/ci/check_role_defaults.py: a role's argument specs and defaults must agree, or lint fails."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import yaml

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "ci", "check_role_defaults.py")
_spec = importlib.util.spec_from_file_location("check_role_defaults", SCRIPT)
assert _spec is not None and _spec.loader is not None  # the file exists: a module spec with a loader
checker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checker)

SPECS = yaml.safe_load("""
argument_specs:
  main:
    options:
      demo_root: {type: path, default: /var/backups}
      demo_retries: {type: int, default: 3}
      demo_enabled: {type: bool, default: true}
      demo_jobs: {type: list, elements: dict}
      demo_host: {type: str, default: "{{ inventory_hostname }}"}
  extra:
    options:
      demo_select: {type: str, default: all}
""")


def write_role(root, name, specs, defaults):
    os.makedirs(root / name / "meta")
    os.makedirs(root / name / "defaults")
    (root / name / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(specs))
    (root / name / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))


def test_agreeing_role_passes():
    defaults = {"demo_root": "/var/backups", "demo_retries": 3, "demo_enabled": True, "demo_host": "{{ inventory_hostname }}",
                "demo_select": "all", "demo_jobs": "{{ other_jobs | default([]) }}"}
    assert checker.compare("demo", SPECS, defaults) == []


def test_each_mismatch_is_one_line():
    defaults = {"demo_root": "/srv/backups", "demo_retries": 3, "demo_enabled": 1, "demo_jobs": [], "demo_typo": 1,
                "demo_select": "all"}
    assert checker.compare("demo", SPECS, defaults) == [
        "roles/demo: demo_root is '/srv/backups' in defaults/main.yml but '/var/backups' in meta/argument_specs.yml",
        "roles/demo: demo_enabled is 1 in defaults/main.yml but True in meta/argument_specs.yml",
        "roles/demo: demo_jobs is [] in defaults/main.yml but has no default in meta/argument_specs.yml",
        "roles/demo: demo_host has default '{{ inventory_hostname }}' in meta/argument_specs.yml but is missing from "
        "defaults/main.yml",
        "roles/demo: demo_typo is in defaults/main.yml but not in meta/argument_specs.yml",
    ]


def test_other_entry_points_are_compared_too():
    defaults = {"demo_root": "/var/backups", "demo_retries": 3, "demo_enabled": True, "demo_host": "{{ inventory_hostname }}",
                "demo_select": "newest"}
    assert checker.compare("demo", SPECS, defaults) == [
        "roles/demo: demo_select is 'newest' in defaults/main.yml but 'all' in meta/argument_specs.yml (extra)"]


def test_the_script_fails_on_a_mismatching_pair(tmp_path):
    write_role(tmp_path, "good", {"argument_specs": {"main": {"options": {"good_x": {"type": "int", "default": 1}}}}},
               {"good_x": 1})
    write_role(tmp_path, "bad", {"argument_specs": {"main": {"options": {"bad_x": {"type": "int", "default": 1}}}}},
               {"bad_x": 2})
    done = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stdout == "roles/bad: bad_x is 2 in defaults/main.yml but 1 in meta/argument_specs.yml\n"


def test_the_collection_roles_agree():
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
