# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host program (roles/host_program) is installed by one private role for every role whose units run it: a play
that applies it directly fails; no other role copies the library, the lifeboat command or the unit checker, and every
role that names the host program's paths includes it. (That two roles on one host leave one copy of the library is
shown on a real host by the backup_schedule molecule scenario, which applies backup_schedule and healthcheck.)"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"


def test_the_install_role_refuses_a_play_that_applies_it_directly(tmp_path):
    play = [{"hosts": "localhost", "gather_facts": False, "roles": ["lifeboat.ops.host_program"]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
           "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "--check",
                           "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp_path)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "lifeboat.ops.host_program is private to the lifeboat.ops collection" in done.stdout
    assert "failed=1" in done.stdout and "changed=0" in done.stdout


def role_files(role: str) -> dict[str, str]:
    return {str(path.relative_to(ROLES)): path.read_text(encoding="utf-8")
            for path in sorted((ROLES / role).rglob("*")) if path.is_file()}


def test_only_the_install_role_installs_the_library_the_command_and_the_unit_checker():
    copies = []
    for role in sorted(path.name for path in ROLES.iterdir() if path.name != "host_program"):
        for name, text in role_files(role).items():
            if "/tasks/" not in name:
                continue
            copies += [f"{name}: {found}" for found in re.findall(r"plugins/module_utils|bin/lifeboat'|lifeboat_ops"
                                                                  r"|src: verify-unit", text)]
        copies += [f"roles/{role}/files/{path.name}" for path in (ROLES / role / "files").glob("*")
                   if path.name == "verify-unit" or path.suffix == ".py"]
    assert copies == []


def test_every_role_that_runs_the_host_program_includes_the_install_role():
    for role in sorted(path.name for path in ROLES.iterdir() if path.name != "host_program"):
        files = role_files(role)
        uses = sorted(name for name, text in files.items() if "__host_program_" in text)
        includes = [name for name, text in files.items()
                    if re.search(r"include_role:\n\s+name: lifeboat\.ops\.host_program\n\s+public: true", text)]
        assert not uses or includes, f"roles/{role} uses the host program ({', '.join(uses)}) but does not include it"
