# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source seam: one table decides which engine does the work, one function per engine drops databases."""

from __future__ import annotations

import pathlib
import re

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _common, _sources

LIBRARY = pathlib.Path(_sources.__file__).parent


def library_lines(pattern: str) -> list[str]:
    found = []
    for path in sorted(LIBRARY.glob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(pattern, line) and not line.lstrip().startswith("#"):
                found.append(f"{path.name}:{number}: {line.strip()}")
    return found


def test_no_code_outside_the_table_branches_on_an_engine_name():
    branching = r"""engine\s*[!=]=|[!=]=\s*["'](postgresql|mongodb)["']|["'](postgresql|mongodb)["']\s+(not\s+)?in\b"""
    assert [line for line in library_lines(branching) if not line.startswith("_sources.py")] == []


def test_one_function_drops_postgresql_databases():
    assert [line.split(":")[0] for line in library_lines(r"DROP DATABASE (IF EXISTS )?\{")] == ["_postgres.py"]


def test_every_engine_fills_in_the_whole_interface():
    interface = {name for name, value in vars(_sources.Source).items() if callable(value) and not name.startswith("_")}
    for source in _sources.SOURCES.values():
        shared = {"job_options", "is_internal", "container_data_dir", "container_job"}  # defaults that fit every source
        missing = {name for name in interface - shared
                   if getattr(type(source), name) is getattr(_sources.Source, name)}
        assert missing == set(), f"{source.name} lacks {sorted(missing)}"
        assert set(source.own_options) <= set(source.connection_options()) | {source.bin_dir_option}


def test_an_unknown_engine_is_one_line_naming_the_known_ones():
    with pytest.raises(_common.LifeboatError) as error:
        _sources.get("mysql")
    assert str(error.value) == "unknown engine 'mysql'; use one of: postgresql, mongodb, files"


def test_the_seam_uses_only_public_names_of_the_engine_modules():
    reaching = r"\b_(postgres|mongo|validate_pg|validate_mongo|params)\._[a-z]"
    assert [line for line in library_lines(reaching) if line.startswith("_sources.py")] == []


def test_each_source_describes_its_own_driver_errors_in_one_line():
    import psycopg  # pylint: disable=import-outside-toplevel
    import pymongo.errors  # pylint: disable=import-outside-toplevel

    postgresql, mongodb = _sources.get("postgresql"), _sources.get("mongodb")
    refused = psycopg.OperationalError('connection to server at "db" failed:\n  Connection refused\n')
    assert postgresql.describe_error(refused) == "PostgreSQL error: Connection refused"
    assert mongodb.describe_error(pymongo.errors.OperationFailure("not authorized")) == (
        "MongoDB error: not authorized")
    for source, other in ((postgresql, pymongo.errors.PyMongoError("x")), (mongodb, psycopg.Error("x")),
                          (postgresql, ValueError("x"))):
        assert source.describe_error(other) is None
