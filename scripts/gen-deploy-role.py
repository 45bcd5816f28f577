# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes roles/deploy/{meta/argument_specs.yml,defaults/main.yml,tasks/main.yml} and the variable table of its
README.md from the app_deploy module.

Options and defaults come from _deploy.app_deploy_spec(), descriptions from the module's DOCUMENTATION (and the
_reverse_proxy doc fragment). Run from the checkout after changing the module: python3 scripts/gen-deploy-role.py

With --check it writes nothing and fails (exit 1, one line per file) when a file differs from what it would write:
scripts/ci/lint.sh runs it so, and so does tests/unit/test_deploy_role.py.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import textwrap

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "scripts", "ci")]
from check_role_docs import first_sentence, with_generated_table  # noqa: E402  pylint: disable=wrong-import-position

from plugins.module_utils import _deploy  # noqa: E402  pylint: disable=wrong-import-position

ROLE = os.path.join(ROOT, "roles", "deploy")


class IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as yamllint (ansible-lint) wants them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def variable(name: str) -> str:
    """The role's variable of a module option: deploy_NAME (deploy_action stays as it is)."""
    return name if name.startswith("deploy_") else f"deploy_{name}"


def documented_options() -> dict[str, dict]:
    with open(os.path.join(ROOT, "plugins", "modules", "app_deploy.py"), encoding="utf-8") as handle:
        source = handle.read()
    text = ast.literal_eval(source.split("DOCUMENTATION = ")[1].split('\n"""')[0] + '\n"""')
    with open(os.path.join(ROOT, "plugins", "doc_fragments", "_reverse_proxy.py"), encoding="utf-8") as handle:
        fragment = handle.read().split('DOCUMENTATION = r"""')[1].split('"""')[0]
    return {**yaml.safe_load(fragment)["options"], **yaml.safe_load(text)["options"]}


def role_markup(entry: dict) -> dict:
    """O(option) of the module -> O(deploy_option) of the role."""
    def rename(match: re.Match) -> str:
        name, rest = match.group(1), match.group(2) or ""
        return f"O({variable(name)}{rest})" if name in _deploy.app_deploy_spec() else match.group(0)

    return yaml.safe_load(re.sub(r"O\(([a-z_]+)((?:\[\]\.|=)[^)]*)?\)", rename, yaml.safe_dump(entry)))


def as_role_option(entry: dict) -> dict:
    entry = {key: value for key, value in entry.items() if key != "aliases"}
    if "suboptions" in entry:
        entry["options"] = {name: as_role_option(sub) for name, sub in entry.pop("suboptions").items()}
    return entry


def render() -> dict[str, str]:
    """The role's generated files (paths relative to roles/deploy) and their text."""
    docs = documented_options()
    module_options = _deploy.app_deploy_spec()
    options, defaults = {}, {}
    for name in module_options:
        entry = role_markup(as_role_option(docs[name]))
        entry.pop("required", None)
        if module_options[name].get("no_log"):  # masked by the role's argument validation too
            entry["no_log"] = True
        if name in ("app", "site"):
            entry["required"] = True
            entry.pop("default", None)
        options[variable(name)] = entry
        if "default" in entry:
            defaults[variable(name)] = entry["default"]
    spec = {"argument_specs": {"main": {
        "short_description": "Blue-green deploy of one Docker app behind a reverse_proxy site, with a verified "
                             "backup first and a rollback",
        "description": [
            "Runs M(lifeboat.ops.app_deploy) once with the deploy_* variables (each is the module option of the same "
            "name without the prefix).",
            "Sets the fact C(deploy_history) to the run's history entry (also in C(STATE_DIR/APP/history/)); the "
            "playbook lifeboat.ops.deploy publishes it with set_stats as C(lifeboat_deploy_outcome).",
            "A run that did not end with the wanted release live (outcome refused, rolled_back or failed) fails the "
            "host with the module's one line (the reason, where traffic is, what was kept), after the fact is set."],
        "author": "lifeboat developers",
        "options": options}}}
    files = {"meta/argument_specs.yml": "---\n# Generated from the app_deploy module's options by scripts/gen-deploy-role.py "
             "(lint.sh checks it).\n" + yaml.dump(spec, Dumper=IndentedDumper, sort_keys=False, width=120)}
    lines = ["---", "# Defaults of the deploy role: each deploy_NAME is the option NAME of lifeboat.ops.app_deploy "
             "(see meta/argument_specs.yml).", "# Required: deploy_app, deploy_site, and deploy_image to deploy."]
    for name, value in defaults.items():
        lines += [f"# {line}" for line in textwrap.wrap(first_sentence(options[name]["description"]), 116)]
        lines.append(f"{name}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(chr(10) + '...')}")
    files["defaults/main.yml"] = "\n".join(lines) + "\n"
    arguments = [f'        {name}: "{{{{ {variable(name)} }}}}"' if variable(name) in defaults or name in ("app", "site")
                 else f'        {name}: "{{{{ {variable(name)} | default(omit) }}}}"' for name in module_options]
    files["tasks/main.yml"] = TASKS_HEAD + "\n".join(arguments) + TASKS_TAIL
    with open(os.path.join(ROLE, "README.md"), encoding="utf-8") as handle:
        readme = with_generated_table(handle.read(), options)
    if readme is None:
        raise SystemExit("roles/deploy/README.md has lost the markers of its generated variable table")
    files["README.md"] = readme
    return files


def differing(role: str = ROLE) -> list[str]:
    """The generated files of ``role`` whose text is not what render() makes."""
    found = []
    for path, text in render().items():
        try:
            with open(os.path.join(role, path), encoding="utf-8") as handle:
                current = handle.read()
        except FileNotFoundError:
            current = None
        if current != text:
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail when a file would change")
    args = parser.parse_args(argv)
    if args.check:
        stale = differing()
        for path in stale:
            print(f"roles/deploy/{path} is not what scripts/gen-deploy-role.py writes from app_deploy: run it")
        if not stale:
            print("roles/deploy is what scripts/gen-deploy-role.py writes")
        return 1 if stale else 0
    for path, text in render().items():
        with open(os.path.join(ROLE, path), "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


TASKS_HEAD = """---
# One deploy (or rollback) of one app: the whole run happens in the module's own process, which holds the app's lock.
# Every deploy_NAME variable is forwarded as the module's option NAME (scripts/gen-deploy-role.py writes this file).
# A run that did not end with the wanted release live (refused, rolled back, failed) fails the host with the module's
# one line, after deploy_history is set: the playbook publishes it either way (its rescue keeps the reason).
- name: Deploy the app, or roll it back (deploy_action)
  block:
    - name: Look for HAProxy, the app's switch (deploy_switch_method haproxy)
      ansible.builtin.stat:
        path: "{{ deploy_haproxy_binary }}"
      register: __deploy_haproxy
      when: deploy_switch_method == 'haproxy'

    - name: Install HAProxy where it is missing
      ansible.builtin.package:
        name: haproxy
        state: present
      when: deploy_switch_method == 'haproxy' and not __deploy_haproxy.stat.exists

    - name: Look for systemd, which starts the app's switch at boot
      ansible.builtin.stat:
        path: /run/systemd/system
      register: __deploy_systemd
      when: deploy_switch_method == 'haproxy'

    - name: Install the switch's unit (lifeboat-switch-APP starts the app's HAProxy at boot)
      ansible.builtin.template:
        src: lifeboat-switch.service.j2
        dest: "/etc/systemd/system/lifeboat-switch-{{ deploy_app }}.service"
        owner: root
        group: root
        mode: "0644"
      register: __deploy_unit
      when: deploy_switch_method == 'haproxy' and __deploy_systemd.stat.isdir | default(false)

    # In check mode a unit whose file is not written yet cannot be enabled: the template task says what it would do.
    - name: Enable the switch's unit for the next boot (the deploy itself starts the switch now)
      ansible.builtin.systemd_service:
        name: "lifeboat-switch-{{ deploy_app }}.service"
        enabled: true
        daemon_reload: "{{ __deploy_unit is changed }}"
      when: >-
        deploy_switch_method == 'haproxy' and __deploy_systemd.stat.isdir | default(false)
        and not (ansible_check_mode and __deploy_unit is changed)

    - name: Run app_deploy (deploy_action)
      lifeboat.ops.app_deploy:
"""
TASKS_TAIL = """
      register: __deploy_result

    - name: Keep the run's history entry
      ansible.builtin.set_fact:
        deploy_history: "{{ __deploy_result.history }}"

    - name: Say what the run did or would do
      ansible.builtin.debug:
        msg: >-
          {{ __deploy_result.plan if __deploy_result.plan | default([])
             else (deploy_history.outcome ~ ': ' ~ (deploy_history.release | default(deploy_app))
                   ~ ((' (' ~ deploy_history.container ~ ')') if deploy_history.container | default('') else '')) }}
  rescue:
    - name: Keep the history entry of the run that did not deploy
      ansible.builtin.set_fact:
        deploy_history: >-
          {{ __deploy_result.history | default({'app': deploy_app, 'action': deploy_action | default('deploy'),
             'outcome': 'refused', 'reason': ansible_failed_result.msg | default('')}) }}

    - name: Fail as the module did, with its one line
      ansible.builtin.fail:
        msg: "{{ ansible_failed_result.msg | default('app_deploy failed') }}"
"""

if __name__ == "__main__":
    sys.exit(main())
