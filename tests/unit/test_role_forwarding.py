# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles forward every connection and job option of the library's argument specs, and declare each one.

The modules' argument specs come from plugins/module_utils/_params.py (the host command's jobs take the same,
see _config.engine_options). A role that re-states them by hand drifts (it once refused connect_timeout, ssl_cert,
ssl_key and MongoDB's auth_mechanism and TLS options): this test names the role file and the key it lacks.
"""

from __future__ import annotations

import os
import re
import typing as t

import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils import _config, _files_source, _params, _retention, _sources

ROLES = os.path.join(os.path.dirname(__file__), "..", "..", "roles")
ENGINES = _sources.NAMES
CONNECTION = {name: source.connection_options() for name, source in _sources.SOURCES.items()}
# What a restore of each kind takes beyond its connection and how the archive is read.
RESTORE_OWN = {"files": _files_source.files_restore_options()}
MODULES = {"files": ("files_backup", "files_restore")}
# Job keys only the backup role reads, and why.
BACKUP_ROLE_ONLY = {"compose_project"}  # the role asks docker_app_info for the app's parts; the host command does not
# Keys of the library's specs a role sets itself rather than taking them from a job or an item, and why.
SET_BY_THE_ROLE = {
    "job": "the job's name is its archives' job name",
}


def _load(role: str, path: str) -> t.Any:
    with open(os.path.join(ROLES, role, path), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _task_args(role: str, tasks_file: str, module: str) -> set[str]:
    """The option names a role's task file gives ``lifeboat.ops.<module>``."""
    found = [task[f"lifeboat.ops.{module}"] for task in _load(role, f"tasks/{tasks_file}")
             if f"lifeboat.ops.{module}" in task]
    assert found, f"roles/{role}/tasks/{tasks_file} has no lifeboat.ops.{module} task"
    return set(found[0])


def _job_options(role: str, variable: str, entry_point: str = "main") -> set[str]:
    spec = _load(role, "meta/argument_specs.yml")["argument_specs"][entry_point]["options"][variable]
    return set(spec.get("options") or {})


def _check(wanted: t.Iterable[str], present: set[str], where: str) -> None:
    missing = sorted(key for key in wanted if key not in present and key not in SET_BY_THE_ROLE)
    assert not missing, f"{where}: {', '.join(missing)}"


def job_keys(engine: str) -> set[str]:
    """What a backup job of ``engine`` takes: the options of the engine's dump module."""
    return set(_config.engine_options(engine))


def restore_spec(engine: str) -> dict[str, t.Any]:
    """What a restore item of ``engine`` takes from the library: the connection and how archives are read."""
    return {**CONNECTION[engine], **_params.restore_archive_options(), **RESTORE_OWN.get(engine, {})}


def restore_keys(engine: str) -> set[str]:
    return set(restore_spec(engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_backup_tasks_forward_every_job_option(engine):
    given = _task_args("backup", f"{engine}.yml", MODULES.get(engine, (f"{engine}_dump",))[0])
    _check(job_keys(engine), given, f"roles/backup/tasks/{engine}.yml does not forward these")


@pytest.mark.parametrize("engine", ENGINES)
def test_restore_tasks_forward_every_connection_and_archive_option(engine):
    given = _task_args("restore", f"{engine}.yml", MODULES.get(engine, ("", f"{engine}_restore"))[1])
    _check(restore_keys(engine), given, f"roles/restore/tasks/{engine}.yml does not forward these")


@pytest.mark.parametrize("entry_point", ["main", "verify"])
def test_backup_argument_spec_declares_every_job_option(entry_point):
    declared = _job_options("backup", "backup_jobs", entry_point)
    wanted = set().union(*map(job_keys, ENGINES))
    _check(wanted, declared, f"roles/backup/meta/argument_specs.yml ({entry_point}) backup_jobs lacks these")


def test_schedule_argument_spec_declares_every_job_option():
    declared = _job_options("backup_schedule", "backup_schedule_jobs")
    wanted = set().union(*map(job_keys, ENGINES))
    _check(wanted, declared, "roles/backup_schedule/meta/argument_specs.yml backup_schedule_jobs lacks these")


def test_restore_argument_spec_declares_every_connection_and_archive_option():
    declared = _job_options("restore", "restore_items")
    wanted = set().union(*map(restore_keys, ENGINES))
    _check(wanted, declared, "roles/restore/meta/argument_specs.yml restore_items lacks these")


def test_restore_test_connection_keys_cover_every_connection_option():
    """backup_verify's restore test reaches the job's server with these keys of the job."""
    keys = set(_load("backup", "defaults/main.yml")["backup_connection_keys"])
    wanted = set(CONNECTION["postgresql"]) | set(CONNECTION["mongodb"])
    _check(wanted, keys, "roles/backup/defaults/main.yml backup_connection_keys lacks these")
    for entry_point in ("main", "verify"):
        spec = _load("backup", "meta/argument_specs.yml")["argument_specs"][entry_point]["options"]
        assert set(spec["backup_connection_keys"]["default"]) == keys, entry_point


def test_backup_jobs_and_schedule_jobs_have_one_shape():
    """One list of jobs serves both roles: the same keys, each role reading what it needs."""
    backup = _job_options("backup", "backup_jobs") - BACKUP_ROLE_ONLY
    schedule = _job_options("backup_schedule", "backup_schedule_jobs")
    assert sorted(backup - schedule) == [], "backup_jobs keys that backup_schedule_jobs lacks"
    assert sorted(schedule - backup) == [], "backup_schedule_jobs keys that backup_jobs lacks"


def test_restore_items_replace_what_the_library_holds_exclusive():
    """An item's connection key drops the job's keys the modules take only instead of it: the library's pairs."""
    pairs = _load("restore", "vars/main.yml")["__restore_exclusive_keys"]
    assert sorted(map(sorted, pairs)) == sorted(map(sorted, _params.CONNECTION_EXCLUSIVE))


# What a role's declaration of a library option must say as the library does: a secret declared without no_log
# would reach the role's argument validation results, a type or choice of its own would refuse (or let through)
# what the module does not.
DECLARED_AS_THE_LIBRARY = ("type", "elements", "choices", "no_log")


def _declared_differently(declared: dict[str, t.Any], library: dict[str, t.Any]) -> list[str]:
    wrong = []
    for key in sorted(set(declared) & set(library)):
        role_option, library_option = declared[key] or {}, library[key]
        for attribute in DECLARED_AS_THE_LIBRARY:
            role_value, library_value = role_option.get(attribute), library_option.get(attribute)
            if attribute == "no_log":
                role_value, library_value = bool(role_value), bool(library_value)
            elif attribute == "type":
                role_value, library_value = role_value or "str", library_value or "str"
            if role_value != library_value:
                wrong.append(f"{key}.{attribute} is {role_value!r}, the library's {library_value!r}")
    return wrong


@pytest.mark.parametrize(("role", "variable", "entry_point"), [
    ("backup", "backup_jobs", "main"), ("backup", "backup_jobs", "verify"),
    ("backup_schedule", "backup_schedule_jobs", "main"), ("restore", "restore_items", "main")])
def test_role_specs_declare_the_library_options_as_the_library_does(role, variable, entry_point):
    spec = _load(role, "meta/argument_specs.yml")["argument_specs"][entry_point]["options"][variable]["options"]
    library = {key: value for engine in ENGINES for key, value in {**_config.engine_options(engine),
                                                                   **restore_spec(engine)}.items()}
    wrong = _declared_differently(spec, library)
    assert not wrong, f"roles/{role}/meta/argument_specs.yml {variable}: {'; '.join(wrong)}"


URIS = [
    "postgresql://backup:s3cret@db.example.org:5432/journal", "postgresql://backup:@db/journal",
    "postgresql://backup@db.example.org:5432/journal", "postgresql://db.example.org:5432/journal",
    "postgresql://db/journal?password=s3cret", "postgresql://db/journal?sslmode=require&password=s3cret",
    "postgresql://db/journal?xpassword=s3cret", "postgresql://db/journal#password=s3cret",
    "postgresql:///journal?host=/run/postgresql", "postgresql://backup:p/ss@db/journal",
    "mongodb://backup:p%40ss@h1:27017,h2:27017/?authSource=admin", "mongodb+srv://backup@cluster.example.org/?tls=true",
    "mongodb://h1/?authMechanism=MONGODB-X509&password=x", "host=db user=backup password=s3cret dbname=journal",
    "host=db password = s3cret", "password=s3cret host=db", "host=db user=backup passwordfile=/x dbname=journal",
    "host=db\npassword=s3cret", "",
]


@pytest.mark.parametrize("uri", URIS)
def test_schedule_role_finds_a_password_in_login_uri_as_the_library_does(uri):
    """The role refuses a password-holding login_uri before it renders the config (and its diff); `lifeboat check`
    refuses it after: both must find the same ones."""
    pattern = _load("backup_schedule", "vars/main.yml")["__backup_schedule_uri_password_pattern"]
    assert (re.search(pattern, uri) is not None) == _config.uri_has_password(uri)


def test_the_uri_table_holds_both_answers():
    assert {_config.uri_has_password(uri) for uri in URIS} == {True, False}


def test_reverse_proxy_argument_spec_declares_every_site_option():
    """The role hands its whole reverse_proxy_sites list to reverse_proxy_sites: each key the module takes is declared."""
    from ansible_collections.lifeboat.ops.plugins.module_utils import _reverse_proxy  # pylint: disable=import-outside-toplevel

    declared = _job_options("reverse_proxy", "reverse_proxy_sites")
    _check(_reverse_proxy.SITE_OPTIONS, declared, "roles/reverse_proxy/meta/argument_specs.yml reverse_proxy_sites lacks these")
    assert sorted(declared - set(_reverse_proxy.SITE_OPTIONS)) == [], "declared site keys the module does not take"


def _options_at(role: str, path: str) -> dict[str, t.Any]:
    options = {name: option for entry in _load(role, "meta/argument_specs.yml")["argument_specs"].values()
               for name, option in (entry.get("options") or {}).items()}
    for part in path.replace("[]", "").split("."):
        options = (options.get(part) or {}).get("options") or {}
    return options


# The server a migration moves, on both sides: every connection option but container (the migration reaches its
# servers from the host: its dump and restore take no container) and the database.
MIGRATION_SERVER = {"database": {"type": "str"}, **{key: value for engine in ("postgresql", "mongodb")
                                                    for key, value in CONNECTION[engine].items() if key != "container"}}
SECTIONS = [
    ("backup", "backup_jobs[].retention", _config.RETENTION_OPTIONS),
    # enabled: a job's retention.enabled (or prune) turns a job's prune off; the role-wide switch is backup_prune.
    ("backup", "backup_retention", _retention.policy_options()),
    ("backup", "backup_jobs[].offsite", _config.OFFSITE_OPTIONS),
    ("backup_schedule", "backup_schedule_jobs[].retention", _config.RETENTION_OPTIONS),
    ("backup_schedule", "backup_schedule_retention", _config.RETENTION_OPTIONS),
    ("backup_schedule", "backup_schedule_jobs[].offsite", _config.OFFSITE_OPTIONS),
    ("restore", "restore_items[].offsite", {**_config.OFFSITE_OPTIONS, "fetch_directory": {"type": "path"}}),
    ("migrate", "migrate_source", MIGRATION_SERVER),
    ("migrate", "migrate_target", MIGRATION_SERVER),
]


@pytest.mark.parametrize(("role", "path", "library"), SECTIONS, ids=[f"{role}:{path}" for role, path, _library in SECTIONS])
def test_role_sections_declare_the_library_keys_as_the_library_does(role, path, library):
    """A job's retention and offsite, a migration's servers: each key the library takes is declared (the role's
    argument validation then refuses a misspelt one), typed and defaulted as the library does it, and no other."""
    declared = _options_at(role, path)
    where = f"roles/{role}/meta/argument_specs.yml {path}"
    lacking, extra = sorted(set(library) - set(declared)), sorted(set(declared) - set(library))
    assert not lacking, f"{where} lacks {', '.join(lacking)}"
    assert not extra, f"{where} declares keys the library does not take: {', '.join(extra)}"
    wrong = _declared_differently(declared, library)
    wrong += [f"{key}.default is {declared[key].get('default')!r}, the library's {library[key].get('default')!r}"
              for key in declared if declared[key].get("default") != library[key].get("default")]
    assert not wrong, f"{where}: {'; '.join(wrong)}"
