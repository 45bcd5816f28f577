# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data expectations: bad input is one line that names what to fix, before any server is asked; the healthcheck
role declares the library's options as the library has them (never a hand-kept copy that drifts)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.module_utils import _expectations, _probes
from ansible_collections.lifeboat.ops.plugins.module_utils import _healthcheck as healthcheck
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
# Nothing listens here: a test that reached a server would fail on the connection, not on the expected message.
NOWHERE = {"login_host": "127.0.0.1", "login_port": 9, "connect_timeout": 1}


@pytest.mark.parametrize("engine, connection, expectations, message", [
    ("redis", NOWHERE, {"database": "app"}, "unknown engine 'redis'; use one of: postgresql, mongodb, files"),
    ("files", {}, {"database": "app"}, "data expectations look inside a database; engine files has none"),
    ("postgresql", NOWHERE, {}, "database is required: the database whose data to check"),
    ("postgresql", NOWHERE, {"database": "app", "tables": ["x"]}, "unknown expectation tables; use: database, present"),
    ("postgresql", NOWHERE, {"database": "app", "present": "notes"}, "present must be a list of table or collection"),
    ("postgresql", NOWHERE, {"database": "app", "indexes": [{"on": "notes"}]},
     "indexes[0] needs keys: a non-empty list of column or field names"),
    ("postgresql", NOWHERE, {"database": "app", "indexes": [{"on": "notes", "keys": "title"}]},
     "indexes[0] needs keys: a non-empty list"),
    ("postgresql", NOWHERE, {"database": "app", "indexes": [{"keys": ["title"]}]},
     "indexes[0] needs on: the table or collection the index is on"),
    ("postgresql", NOWHERE, {"database": "app", "indexes": [{True: "notes", "keys": ["title"]}]},
     "indexes[0] has the key true: YAML reads a bare on: as true; write 'on': (quoted), or table: or collection:"),
    ("postgresql", NOWHERE, {"database": "app", "indexes": [{"on": "a", "table": "b", "keys": ["c"]}]},
     "indexes[0] names its table or collection twice"),
    ("postgresql", NOWHERE, {"database": "app", "indexes": [{"on": "a", "keys": ["c"], "uniq": True}]},
     "indexes[0] has unknown key uniq; use: on, keys, unique, name"),
    ("postgresql", NOWHERE, {"database": "app", "indexes": ["notes(title)"]}, "indexes[0] must be a dict with on and keys"),
    ("postgresql", NOWHERE, {"database": "app", "min_counts": {"notes": -1}},
     "min_counts[notes] must be a whole number 0 or more, not -1"),
    ("postgresql", NOWHERE, {"database": "app", "baseline_manifest": "/x.manifest.json", "max_drop_percent": -5},
     "max_drop_percent must be between 0 and 100 (percent fewer than the baseline), not -5"),
    ("postgresql", NOWHERE, {"database": "app", "baseline_manifest": "/x.manifest.json", "max_drop_percent": 150.0},
     "max_drop_percent must be between 0 and 100"),
    ("postgresql", NOWHERE, {"database": "app", "max_drop_percent": 5},
     "max_drop_percent needs baseline_manifest: the archive whose counts are the baseline"),
    ("postgresql", NOWHERE, {"database": "app", "baseline_manifest": "/nonexistent/app.dump.zst"},
     "baseline_manifest: no manifest at /nonexistent/app.dump.zst.manifest.json; give an archive made by lifeboat.ops"),
    ("mongodb", {**NOWHERE, "ssl_mode": "require"}, {"database": "app"},
     "ssl_mode is a PostgreSQL option, but engine is mongodb; remove it"),
    ("postgresql", {**NOWHERE, "login_hots": "db"}, {"database": "app"},
     "unknown connection option login_hots for postgresql; use: login_uri, login_host"),
])
def test_bad_input_is_one_line_before_any_connection(engine, connection, expectations, message):
    with pytest.raises(LifeboatError) as caught:
        _expectations.check_expectations(engine, connection, expectations)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_whole_job_and_the_other_engines_defaults_pass_as_a_connection():
    """What the deploy role hands over (a dump job) and what the module holds (both engines' options, unset or at
    their defaults) are taken; only the engine's connection options reach the connection."""
    job = {"name": "notes", "engine": "postgresql", "database": "notes", "destination": "/backups", "format": "custom",
           "login_host": "db", "login_database": "admin", "tls": False, "tools_dir": None}
    assert _expectations.connection_params(_expectations._sources.get("postgresql"), job) == {"login_host": "db"}


def test_an_unreachable_server_is_one_line(tmp_path):
    with pytest.raises(LifeboatError) as caught:
        _expectations.check_expectations("postgresql", NOWHERE, {"database": "app"})
    assert str(caught.value).startswith("cannot connect to PostgreSQL at 127.0.0.1:9/app: ")


def test_the_module_takes_the_library_spec():
    spec = _expectations.database_expect_spec()
    assert {name: spec[name] for name in _expectations.EXPECTATIONS_OPTIONS} == _expectations.EXPECTATIONS_OPTIONS
    assert spec["engine"]["choices"] == ["postgresql", "mongodb"]


def test_the_healthcheck_role_declares_the_probe_settings_as_the_library_has_them():
    with open(os.path.join(REPO, "roles", "healthcheck", "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        declared = yaml.safe_load(handle)["argument_specs"]["main"]["options"]["healthcheck_probes"]["options"]
    assert "database_expect" in declared["type"]["choices"]
    for name, option in _expectations.EXPECTATIONS_OPTIONS.items():
        if name == "create_missing_indexes":  # a probe only reads
            assert name not in declared
            continue
        assert declared[name]["type"] == option["type"], name
    # A role's argument spec takes no aliases: the aliases of `on` are options of their own there.
    shape = ("type", "elements", "default")
    library = {name: {key: spec.get(key) for key in shape} for name, spec in _expectations.INDEX_OPTIONS.items()}
    library.update({alias: library["on"] for alias in _expectations.INDEX_OPTIONS["on"]["aliases"]})
    assert {name: {key: spec.get(key) for key in shape} for name, spec in declared["indexes"]["options"].items()} == library
    assert declared["indexes"]["options"]["keys"]["required"] is True
    assert set(_probes.EXPECT_CONNECTION) <= set(declared)


@pytest.mark.parametrize("extra, message", [
    ({"create_missing_indexes": True}, "create_missing_indexes is for the database_expect module: a probe only reads"),
    ({"indexes": [{"on": "notes"}]}, "indexes[0] needs keys"),
    ({"ssl_mode": "require", "engine": "mongodb"}, "ssl_mode is no setting of a MongoDB database_expect probe; remove it"),
    ({"expect_status": [200]}, "unknown setting expect_status of a database_expect probe"),
    ({"engine": None}, "a database_expect probe needs engine"),
    ({"engine": "files"}, "engine must be one of: postgresql, mongodb, not 'files'"),
])
def test_healthcheck_refuses_a_bad_database_expect_probe_in_one_line(tmp_path, extra, message):
    probe = {"name": "data", "type": "database_expect", "engine": "postgresql", "host": "127.0.0.1",
             "database": "app", **extra}
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"probes": [probe]}))
    with pytest.raises(healthcheck.ConfigError) as caught:
        healthcheck.load_config(str(config))
    assert str(caught.value).startswith("probe data: ") and message in str(caught.value)
