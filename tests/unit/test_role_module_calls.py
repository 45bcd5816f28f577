# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every ``lifeboat.ops.*`` task of every role, read from the role's task files and held to the module's own
argument spec (taken from the module's ``main()``, so it is the spec Ansible validates against).

Options are forwarded by hand (``keep_within: "{{ backup_policy.keep_within | default(omit) }}"``): a key deleted
from a task, misspelt, or reading another key's value would go unnoticed by every other check. Here each call gives
only options its module takes, gives every option its module takes or says why not (NOT_FORWARDED), and each
forwarded value reads the option of its own name. The backup role's step map (``__backup_steps``, the first words of
a failed job's line) names every module a job's tasks call.
"""

from __future__ import annotations

import functools
import glob
import importlib
import os
import re
import typing as t
from dataclasses import dataclass
from unittest import mock

import pytest
import yaml
from test_role_forwarding import _declared_differently

from ansible_collections.lifeboat.ops.plugins.module_utils import _sources

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
ROLES = os.path.join(ROOT, "roles")
PREFIX = "lifeboat.ops."


class _Captured(Exception):
    """Raised by the stand-in AnsibleModule: it carries the keyword arguments main() gave it."""


@functools.cache
def module_spec(module: str) -> dict[str, t.Any]:
    """The argument spec ``plugins/modules/<module>.py`` hands AnsibleModule (main() stops right there)."""
    loaded = importlib.import_module(f"ansible_collections.lifeboat.ops.plugins.modules.{module}")

    def stand_in(**kwargs: t.Any) -> t.NoReturn:
        raise _Captured(kwargs)

    try:
        with mock.patch.object(loaded, "AnsibleModule", stand_in):
            loaded.main()
    except _Captured as captured:
        return captured.args[0]["argument_spec"]
    raise AssertionError(f"plugins/modules/{module}.py: main() made no AnsibleModule")


@dataclass(frozen=True)
class Call:
    """One task of a role that runs a module of this collection."""

    where: str  # roles/ROLE/tasks/FILE.yml
    module: str
    task: str
    args: dict[str, t.Any]

    @property
    def key(self) -> str:
        return f"{self.where.removeprefix('roles/')}:{self.module}"


def _tasks(tasks: t.Any) -> t.Iterator[dict[str, t.Any]]:
    for task in tasks or []:
        if isinstance(task, dict):
            yield task
            for section in ("block", "rescue", "always"):
                yield from _tasks(task.get(section))


def _load_tasks(path: str) -> t.Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def role_calls(roles_dir: str = ROLES) -> list[Call]:
    calls = []
    for path in sorted(glob.glob(os.path.join(roles_dir, "*", "tasks", "*.yml"))):
        where = os.path.relpath(path, os.path.dirname(roles_dir))
        for task in _tasks(_load_tasks(path)):
            for action, args in task.items():
                if action.startswith(PREFIX):
                    assert isinstance(args, dict), f"{where}: {action} takes its options as a mapping"
                    calls.append(Call(where, action.removeprefix(PREFIX), task.get("name", "?"), args))
    return calls


CALLS = role_calls()


def _names(spec: dict[str, t.Any]) -> set[str]:
    return set(spec) | {alias for option in spec.values() for alias in option.get("aliases", [])}


# Options of a module that a role's call leaves to the module's default, and why; the key is
# "ROLE/tasks/FILE.yml:MODULE" and each entry names one or more options (space separated).
UPLOAD_ONLY = "how objects are uploaded (checksum, part size, object lock): this module uploads nothing"
NOT_FORWARDED: dict[str, dict[str, str]] = {
    "backup/tasks/keep.yml:backup_verify": {
        "destination job select": "verifies the one archive the job just made (archive)",
        "record": "the record of the verification is the module's default (kept beside the archive)",
    },
    "backup/tasks/keep.yml:offsite_copy": {
        "only_verified": "runs after the verify step; only verified archives go off site, as the host command does"},
    "backup/tasks/keep.yml:offsite_prune": {"checksum lock_days lock_mode part_size_mib": UPLOAD_ONLY},
    "backup/tasks/keep.yml:backup_prune": {"remove_partials": "a run's partial files are always removed"},
    "backup/tasks/main.yml:monitoring_ping": {"log": "the start ping has no log tail yet"},
    "backup/tasks/verify_one.yml:backup_verify": {
        "archive": "verifies the archives of a directory (destination, job, select)",
        "record": "the record of the verification is the module's default (kept beside the archive)",
    },
    "cloudflare_tunnel/tasks/check.yml:cloudflared_ingress": {
        "cloudflared": "the check runs before cloudflared is installed: the module's own rules only"},
    "cloudflare_tunnel/tasks/service.yml:wait_ready": {
        "expect_status interval": "cloudflared's /ready answers 200 when ready; the module's interval"},
    "migrate/tasks/dump_source.yml:postgresql_dump": {
        "compression compression_level encryption_passphrase_file encryption_recipients encryption_recipients_files "
        "signing_key_file": "the migration's own dump, kept in its 0700 work directory for the restore that follows",
        "format jobs globals schemas exclude_schemas tables exclude_tables exclude_table_data":
            "a migration moves the whole database",
        "container": "the source is a server the host reaches, not a container of the host",
    },
    "migrate/tasks/dump_source.yml:mongodb_dump": {
        "compression compression_level encryption_passphrase_file encryption_recipients encryption_recipients_files "
        "signing_key_file": "the migration's own dump, kept in its 0700 work directory for the restore that follows",
        "collections exclude_collections exclude_collections_with_prefix oplog parallel_collections":
            "a migration moves the whole database",
        "container": "the source is a server the host reaches, not a container of the host",
    },
    "migrate/tasks/restore_target.yml:postgresql_restore": {
        "destination job select": "restores the one archive the migration chose (archive)",
        "age_passphrase_file": "the migration's dump is not encrypted; an archive source takes age identities",
        "container": "the target is a server the host reaches, not a container of the host",
        "jobs maintenance_database no_owner no_privileges recreate safety_dump_dir":
            "the target is new and empty (overwrite refuses otherwise): the module's defaults",
    },
    "migrate/tasks/restore_target.yml:mongodb_restore": {
        "destination job select": "restores the one archive the migration chose (archive)",
        "age_passphrase_file": "the migration's dump is not encrypted; an archive source takes age identities",
        "container": "the target is a server the host reaches, not a container of the host",
        "drop insertion_workers_per_collection parallel_collections safety_dump_dir ns_exclude ns_from ns_include ns_to":
            "the target is new and empty, restored whole under target_database: the module's defaults",
    },
    "migrate/tasks/switch_over.yml:migration_validate": {
        "bisect_threshold chunk_rows content_mode count_tolerance_percent exclude_objects expected_users "
        "max_differences objects require_authentication require_tls required_checks sample_size scratch_database "
        "timing_max_ratio timing_queries timing_runs": "after the switch only the application's health is checked",
    },
    "migrate/tasks/validate_target.yml:migration_validate": {
        "health_checks": "the application is checked after the switch (switch_over.yml)",
        "bisect_threshold chunk_rows max_differences require_authentication sample_size scratch_database "
        "timing_max_ratio timing_queries timing_runs": "not offered by the role yet: the module's defaults",
    },
    "restore/tasks/item.yml:offsite_fetch": {"checksum lock_days lock_mode part_size_mib": UPLOAD_ONLY},
    "reverse_proxy/tasks/sites.yml:reverse_proxy_sites": {
        "nginx_binary nginx_config nginx_pid_file nginx_prefix probe_address reload_timeout sites_dir":
            "the host's packaged nginx, as the role installs it: the module's defaults",
        "acme_account_key htpasswd_group": "the module's defaults (a key under tls_dir; root's group)",
    },
}


def not_forwarded(call: Call) -> dict[str, str]:
    return {name: why for names, why in NOT_FORWARDED.get(call.key, {}).items() for name in names.split()}


def _ids(calls: list[Call]) -> list[str]:
    return [f"{call.key}:{call.task}" for call in calls]


@pytest.mark.parametrize("call", CALLS, ids=_ids(CALLS))
def test_a_role_gives_a_module_only_options_it_takes(call):
    unknown = sorted(set(call.args) - _names(module_spec(call.module)))
    assert not unknown, f"{call.where}: task '{call.task}' gives {call.module} options it does not take: {', '.join(unknown)}"


@pytest.mark.parametrize("call", CALLS, ids=_ids(CALLS))
def test_a_role_forwards_every_option_of_a_module_or_says_why_not(call):
    missing = sorted(set(module_spec(call.module)) - set(call.args) - set(not_forwarded(call)))
    assert not missing, (f"{call.where}: task '{call.task}' does not forward {', '.join(missing)} to {call.module} "
                         f"(forward it, or say why not in {__name__}.NOT_FORWARDED)")


def test_what_is_not_forwarded_is_still_so():
    """An entry of NOT_FORWARDED that a role now forwards, or a module no longer takes, is stale."""
    stale = []
    for key, reasons in NOT_FORWARDED.items():
        calls = [call for call in CALLS if call.key == key]
        if not calls:
            stale.append(f"{key}: no such call")
        for name in (not_forwarded(calls[0]) if calls else {}):
            if all(name in call.args or name not in module_spec(call.module) for call in calls):
                stale.append(f"{key}: {name}")
        names = [name for names in reasons for name in names.split()]
        stale += [f"{key}: {name} twice" for name in set(names) if names.count(name) > 1]
    assert not stale, f"stale entries of NOT_FORWARDED: {'; '.join(sorted(set(stale)))}"


# An attribute read as a value: followed by a filter, the end of the expression or of the string (not a test such as
# ``is defined``, a call, or a part of a longer expression).
_VALUE_READ = re.compile(r"\.([a-z][a-z0-9_]*)\s*(?=\||}}|$)")


@pytest.mark.parametrize("call", CALLS, ids=_ids(CALLS))
def test_each_forwarded_value_reads_the_option_of_its_own_name(call):
    """``keep_daily: "{{ policy.keep_weekly }}"`` (a copied line not renamed) reads another option of the module."""
    spec = module_spec(call.module)
    options = _names(spec)
    crossed = []
    for name, value in call.args.items():
        read = set(_VALUE_READ.findall(str(value))) & options
        own = {name, *spec.get(name, {}).get("aliases", [])}
        if read and not read & own:
            crossed.append(f"{name} reads {', '.join(sorted(read))}")
    assert not crossed, f"{call.where}: task '{call.task}' ({call.module}): {'; '.join(crossed)}"


# Where a role's tasks read the values they forward: a variable of its tasks and the options of its
# meta/argument_specs.yml the variable holds (NAME[] is an element of the list NAME).
SOURCES: dict[str, dict[str, list[str]]] = {
    "backup": {"backup_job": ["backup_jobs[]"], "backup_policy": ["backup_jobs[].retention", "backup_retention"],
               "__backup_offsite": ["backup_jobs[].offsite"], "backup_pings": ["backup_pings"]},
    "restore": {"restore_spec": ["restore_items[]"], "restore_spec.offsite": ["restore_items[].offsite"]},
    "migrate": {"migrate_source": ["migrate_source"], "migrate_target": ["migrate_target"]},
}
# A role option handed to two modules that type it differently, and why that is fine.
TYPED_FOR_ANOTHER_MODULE = {
    ("restore_items[]", "archive", "offsite_fetch"): "a path for the restore modules; for the fetch, the name of an archive "
                                                     "in the bucket (path only expands ~ and variables)",
}
_READ = re.compile(r"\b([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)\s*(?=\||}}|$)")


def role_options(role: str) -> dict[str, t.Any]:
    """The options of every entry point of a role."""
    with open(os.path.join(ROLES, role, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        entry_points = yaml.safe_load(handle)["argument_specs"]
    return {name: option for entry in entry_points.values() for name, option in (entry.get("options") or {}).items()}


def options_at(options: dict[str, t.Any], path: str) -> dict[str, t.Any] | None:
    """The sub-options declared at ``path`` (``backup_jobs[].retention``), or None where none are declared."""
    found: dict[str, t.Any] | None = options
    for part in path.replace("[]", "").split("."):
        found = ((found or {}).get(part) or {}).get("options")
        if found is None:
            return None
    return found


def names_set_by_tasks(role: str) -> set[str]:
    """Variables a role's tasks make themselves (registered results, loop variables, facts, vars of a task)."""
    names: set[str] = set()
    role_vars = os.path.join(ROLES, role, "vars", "main.yml")
    if os.path.exists(role_vars):
        names.update(_load_tasks(role_vars) or {})
    for path in glob.glob(os.path.join(ROLES, role, "tasks", "*.yml")):
        for task in _tasks(_load_tasks(path)):
            names.update([task["register"]] if "register" in task else [])
            names.update([(task.get("loop_control") or {}).get("loop_var", "item")])
            names.update(task.get("vars") or {})
            names.update(task.get("ansible.builtin.set_fact") or {})
    return names


@pytest.mark.parametrize("call", CALLS, ids=_ids(CALLS))
def test_a_role_declares_every_value_it_forwards(call):
    """A key a role reads from a job (``backup_job.retention.keep_within``) or a variable of its own is declared in its
    meta/argument_specs.yml as the module declares the option: else the role's argument validation refuses what the
    module takes, or lets a misspelt key pass unread."""
    role = call.where.split("/")[1]
    options, sources, made = role_options(role), SOURCES.get(role, {}), names_set_by_tasks(role)
    spec = module_spec(call.module)
    problems = []
    for name, value in call.args.items():
        for read in _READ.findall(str(value)):
            source, _dot, key = read.rpartition(".")
            if source in sources:
                for path in sources[source]:
                    declared = options_at(options, path)
                    if declared is None or key not in declared:
                        problems.append(f"{path}.{key} (read for {name}) is not declared")
                    elif key == name and (path, key, call.module) not in TYPED_FOR_ANOTHER_MODULE:
                        problems += [f"{path}.{wrong}" for wrong in _declared_differently(
                            {key: declared[key]}, {key: spec[name]})]
            elif not source and read.startswith(f"{role}_") and read not in made and read not in options:
                problems.append(f"{read} (read for {name}) is not a variable of the role")
    assert not problems, f"roles/{role}/meta/argument_specs.yml, for {call.where} ({call.module}): {'; '.join(problems)}"


# The backup role's step map: a failed job's line starts with the step that failed, found from the failed task's module.

def _include_targets(task: dict[str, t.Any], tasks_dir: str) -> list[str]:
    """The task files an include_tasks may run; a templated name may be any engine's file or compose.yml."""
    target = task.get("ansible.builtin.include_tasks")
    if target is None:
        return []
    target = target if isinstance(target, str) else target["file"]
    if "{{" in target:
        return [f"{name}.yml" for name in (*_sources.NAMES, "compose")
                if os.path.exists(os.path.join(tasks_dir, f"{name}.yml"))]
    return [target]


def modules_run_from(role: str, tasks_file: str) -> set[str]:
    """Every module of this collection that ``tasks_file`` of ``role`` runs, through its includes."""
    tasks_dir = os.path.join(ROLES, role, "tasks")
    seen: set[str] = set()
    modules: set[str] = set()
    waiting = [tasks_file]
    while waiting:
        name = waiting.pop()
        if name in seen:
            continue
        seen.add(name)
        for task in _tasks(_load_tasks(os.path.join(tasks_dir, name))):
            modules.update(action.removeprefix(PREFIX) for action in task if action.startswith(PREFIX))
            waiting += _include_targets(task, tasks_dir)
    return modules


def test_the_backup_step_map_names_every_module_a_job_runs():
    """tasks/job.yml's rescue names the failed step from __backup_steps; a module missing there is reported as
    'backup failed', a name left there after its module went is dead."""
    with open(os.path.join(ROLES, "backup", "vars", "main.yml"), encoding="utf-8") as handle:
        steps = yaml.safe_load(handle)["__backup_steps"]
    run = modules_run_from("backup", "job.yml")
    lacking, dead = sorted(run - set(steps)), sorted(set(steps) - run)
    assert not lacking, f"roles/backup/vars/main.yml __backup_steps lacks modules a job runs: {', '.join(lacking)}"
    assert not dead, f"roles/backup/vars/main.yml __backup_steps names modules no job runs: {', '.join(dead)}"


def test_every_module_of_the_collection_has_a_spec():
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                     if name.endswith(".py") and name != "__init__.py")
    assert all(module_spec(name) for name in modules)
    assert {call.module for call in CALLS} <= set(modules)
