# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_schedule_install_packages: false means no package work at all: no apt, and nothing of MongoDB's (its
signing key, repository or tools download), for a MongoDB job too.

The role's install tasks run in check mode against this machine through ansible-playbook; a callback records every
task that ran (skipped ones left out). Check mode changes nothing, and the tasks asserted absent never run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Actions that install packages or fetch them (or their keys) from the network.
PACKAGE_ACTIONS = {"apt", "get_url", "deb822_repository", "apt_repository", "apt_key", "unarchive", "package", "pip"}

RECORDER = textwrap.dedent('''\
    import json
    import os

    from ansible.plugins.callback import CallbackBase


    class CallbackModule(CallbackBase):
        """Writes each task that ran (not skipped) as [action, name] to $RECORD_TASKS."""

        CALLBACK_VERSION = 2.0
        CALLBACK_TYPE = "aggregate"
        CALLBACK_NAME = "record_tasks"
        CALLBACK_NEEDS_ENABLED = True

        def _record(self, result):
            with open(os.environ["RECORD_TASKS"], "a", encoding="utf-8") as handle:
                handle.write(json.dumps([result._task.action, result._task.name]) + "\\n")

        def v2_runner_on_ok(self, result):
            self._record(result)

        def v2_runner_on_failed(self, result, ignore_errors=False):
            self._record(result)

        def v2_playbook_on_include(self, included_file):
            with open(os.environ["RECORD_TASKS"], "a", encoding="utf-8") as handle:
                handle.write(json.dumps(["include", os.path.basename(included_file._filename)]) + "\\n")
    ''')


def run_install_tasks(tmp_path, role_vars):
    """The role's install.yml in check mode on localhost; the tasks that ran, as (action, name)."""
    (tmp_path / "callbacks").mkdir()
    (tmp_path / "callbacks" / "record_tasks.py").write_text(RECORDER)
    play = [{"hosts": "localhost", "gather_facts": True, "tasks": [{
        "name": "Run the role's install tasks",
        "ansible.builtin.include_role": {"name": "lifeboat.ops.backup_schedule", "tasks_from": "install.yml"},
        "vars": role_vars}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    record = tmp_path / "tasks.jsonl"
    env = {**os.environ, "ANSIBLE_CALLBACK_PLUGINS": str(tmp_path / "callbacks"),
           "ANSIBLE_CALLBACKS_ENABLED": "record_tasks", "RECORD_TASKS": str(record), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "--check",
                           "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=600, check=False, cwd=tmp_path)
    ran = [tuple(json.loads(line)) for line in record.read_text().splitlines()] if record.exists() else []
    return done, ran


MONGO_JOB = {"name": "nightscout", "engine": "mongodb", "database": "nightscout",
             "login_uri": "mongodb://127.0.0.1:27017/?authSource=admin"}


def test_no_package_work_when_install_packages_is_false(tmp_path):
    """Once, the MongoDB job fetched https://pgp.mongodb.com/server-8.0.asc anyway (in check mode too). Whatever
    backup_schedule_mongodb_tools_src says (repository here), mongodb_tools.yml is not even included."""
    done, ran = run_install_tasks(tmp_path, {"backup_schedule_jobs": [MONGO_JOB],
                                             "backup_schedule_install_packages": False})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The recording works: the role's own files and user are there (in check mode, as ran).
    assert ("ansible.builtin.user", "Create the service user") in ran, ran
    package_work = [task for task in ran if task[0].rpartition(".")[2] in PACKAGE_ACTIONS
                    or task == ("include", "mongodb_tools.yml")]
    assert package_work == [], package_work
