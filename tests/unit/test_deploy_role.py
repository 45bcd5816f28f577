# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy role forwards every option of app_deploy (its argument specs come from the library's app_deploy_spec()), and
its generated files are what scripts/gen-deploy-role.py writes from the module today, descriptions included."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import typing as t

import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils import _deploy

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "deploy")
GENERATOR = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "gen-deploy-role.py")
_spec = importlib.util.spec_from_file_location("gen_deploy_role", GENERATOR)
assert _spec is not None and _spec.loader is not None  # the file exists: a module spec with a loader
generator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generator)


def test_the_role_is_what_the_generator_writes_from_the_module() -> None:
    """A changed option of app_deploy (a description too) fails here until the generator is run again."""
    assert generator.differing() == [], "run python3 scripts/gen-deploy-role.py"


def test_the_check_fails_on_a_changed_description(tmp_path: t.Any) -> None:
    role = tmp_path / "deploy"
    for path, text in generator.render().items():
        (role / path).parent.mkdir(parents=True, exist_ok=True)
        (role / path).write_text(text)
    assert generator.differing(str(role)) == []
    specs = role / "meta" / "argument_specs.yml"
    specs.write_text(specs.read_text().replace("Port the app listens on inside its container.", "Port of the app."))
    assert generator.differing(str(role)) == ["meta/argument_specs.yml"]


def test_the_generator_check_exits_1_with_one_line_per_file() -> None:
    done = subprocess.run([sys.executable, GENERATOR, "--check"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "roles/deploy is what scripts/gen-deploy-role.py writes\n")


@pytest.mark.parametrize(("description", "comment"), [
    ("Command (argv) run in the new container before the gate, e.g. the app's schema migration. A rollback after it.",
     "Command (argv) run in the new container before the gate, e.g. the app's schema migration."),
    (["V(deploy) the release in O(image). More."], "`deploy` the release in image."),
    ("Volumes, as the docker SDK takes them (C(NAME:/path[:ro])).", "Volumes, as the docker SDK takes them (`NAME:/path[:ro]`)."),
    ("Directory (M(lifeboat.ops.reverse_proxy_sites)) of O(site=x)", "Directory (lifeboat.ops.reverse_proxy_sites) of site=x."),
])
def test_a_default_comment_is_the_first_sentence_without_markup(description, comment) -> None:
    assert generator.first_sentence(description) == comment


def test_the_defaults_comments_carry_no_markup() -> None:
    with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as handle:
        comments = [line for line in handle if line.startswith("#")]
    assert [line for line in comments if re.search(r"\b(?:O|V|C|M|RV)\(", line)] == []
    assert [line for line in comments if line.rstrip().endswith(("e.g.", "i.e."))] == []


def role_variable(option: str) -> str:
    return option if option.startswith("deploy_") else f"deploy_{option}"


def test_the_role_takes_and_forwards_every_option_of_the_module() -> None:
    with open(os.path.join(ROLE, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    with open(os.path.join(ROLE, "tasks", "main.yml"), encoding="utf-8") as handle:
        tasks = yaml.safe_load(handle)
    task = next(step for step in tasks[0]["block"] if "lifeboat.ops.app_deploy" in step)["lifeboat.ops.app_deploy"]
    assert set(options) == {role_variable(name) for name in _deploy.app_deploy_spec()}
    assert set(task) == set(_deploy.app_deploy_spec())
    for name, spec in _deploy.app_deploy_spec().items():
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
        role_variable(name) for name, spec in _deploy.app_deploy_spec().items() if spec.get("no_log")}


def test_the_switch_unit_is_a_valid_systemd_unit_that_starts_the_switch_from_its_configuration(tmp_path: t.Any) -> None:
    """The unit the role installs for boot: systemd-analyze verify accepts it, and it runs HAProxy on the very
    configuration and pid file the deploy library writes (a drift would leave the site down after a reboot)."""
    import shutil
    import subprocess

    import jinja2

    from ansible_collections.lifeboat.ops.plugins.module_utils import _switch

    with open(os.path.join(ROLE, "templates", "lifeboat-switch.service.j2"), encoding="utf-8") as handle:
        source = handle.read()
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    environment.filters["comment"] = lambda text: f"# {text}"
    values = {"deploy_app": "journal", "deploy_state_dir": "/var/lib/lifeboat/deploy",
              "deploy_switch_socket_dir": "/run/lifeboat-switch", "deploy_haproxy_binary": "/usr/sbin/haproxy",
              "ansible_managed": "Ansible managed"}
    unit = environment.from_string(source).render(**values)
    switch = _switch.switch_of("journal", values["deploy_state_dir"], values["deploy_switch_socket_dir"], "127.0.0.1",
                               {"blue": 8081, "green": 8082}, values["deploy_haproxy_binary"])
    assert f"ExecStart=/usr/sbin/haproxy -D -f {switch.config_path} -p {switch.pid_file}\n" in unit
    assert f"PIDFile={switch.pid_file}\n" in unit and f"ConditionPathExists={switch.config_path}\n" in unit
    path = tmp_path / "lifeboat-switch-journal.service"
    path.write_text(unit)
    if shutil.which("systemd-analyze") is None:
        raise AssertionError("systemd-analyze is missing (Debian's systemd package)")
    verified = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stderr
