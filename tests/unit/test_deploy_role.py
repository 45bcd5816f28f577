# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy role forwards every option of app_deploy (its argument specs come from the library's DEPLOY_SPEC)."""

from __future__ import annotations

import os

import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils import _deploy

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "deploy")


def role_variable(option: str) -> str:
    return option if option.startswith("deploy_") else f"deploy_{option}"


def test_the_role_takes_and_forwards_every_option_of_the_module() -> None:
    with open(os.path.join(ROLE, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    with open(os.path.join(ROLE, "tasks", "main.yml"), encoding="utf-8") as handle:
        tasks = yaml.safe_load(handle)
    task = next(step for step in tasks[0]["block"] if "lifeboat.ops.app_deploy" in step)["lifeboat.ops.app_deploy"]
    assert set(options) == {role_variable(name) for name in _deploy.DEPLOY_SPEC}
    assert set(task) == set(_deploy.DEPLOY_SPEC)
    for name, spec in _deploy.DEPLOY_SPEC.items():
        assert role_variable(name) in task[name], name
        assert options[role_variable(name)]["type"] == spec["type"], name
        if "default" in spec and name not in ("app", "site"):
            assert options[role_variable(name)]["default"] == spec["default"], name


def test_the_role_fails_the_host_after_keeping_the_history_and_masks_the_secrets() -> None:
    """failed_when: false would erase the module's failure: the module runs in a block whose rescue keeps the history
    entry, then fails with the module's one line."""
    with open(os.path.join(ROLE, "tasks", "main.yml"), encoding="utf-8") as handle:
        (block,) = yaml.safe_load(handle)
    module_task = next(step for step in block["block"] if "lifeboat.ops.app_deploy" in step)
    assert "failed_when" not in module_task and "ignore_errors" not in module_task
    rescue = [next(key for key in task if key.startswith("ansible.builtin.")) for task in block["rescue"]]
    assert rescue == ["ansible.builtin.set_fact", "ansible.builtin.fail"]
    with open(os.path.join(ROLE, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    assert {name for name, spec in options.items() if spec.get("no_log")} == {
        role_variable(name) for name, spec in _deploy.DEPLOY_SPEC.items() if spec.get("no_log")}
