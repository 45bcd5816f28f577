# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Migration validation: does the target hold what the source holds? Checks, a result and a report.

The entry point is :func:`validate`. A side is a live database, or an archive made by this collection,
which is first restored into a scratch database on the target's server (and dropped afterwards).
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass, field

from . import _archive, _params, _signing, _sources
from ._codecs import Decryption
from ._common import LifeboatError, friendly_errors
from ._module_frame import Outcome, Run
from ._mongo import MongoConnection
from ._postgres import PgConnection
from ._validate_core import (
    CATEGORIES,
    DATA_CATEGORIES,
    DEFAULT_REQUIRED,
    Checks,
    ContentStats,
    Options,
    build_result,
    health_checks,
    write_report,
)

ENGINES = _sources.DATABASES


@dataclass
class Endpoint:
    """One side: a connection and its database, or (source only) an archive to restore for the comparison."""

    connection: PgConnection | MongoConnection
    database: str | None = None
    archive: str | None = None
    decryption: Decryption = field(default_factory=Decryption)
    trust: _signing.Trust = field(default_factory=_signing.host_trust)  # whose signature a source archive must carry
    auth_database: str = "admin"
    tools_dir: str | None = None
    pg_bin_dir: str | None = None

    def describe(self, engine: str) -> str:
        if self.archive:
            return f"archive {self.archive}"
        where = self.connection.display if isinstance(self.connection, MongoConnection) else \
            self.connection.describe().rsplit("/", 1)[0]
        return f"{engine}://{where}/{self.database}"


@dataclass
class ValidateRequest:
    engine: str
    source: Endpoint
    target: Endpoint
    options: Options = field(default_factory=Options)
    report_path: str | None = None
    check_mode: bool = False
    scratch_database: str | None = None

    def validate(self) -> None:
        _sources.get(self.engine)
        self.options.validate()
        if self.target.archive:
            raise LifeboatError("target must be a live database; only the source can be an archive")
        if not self.target.database:
            raise LifeboatError("target.database is required: the database the migration wrote")
        if not self.source.archive and not self.source.database:
            raise LifeboatError("source.database is required (or source.archive, an archive made by this collection)")
        if self.report_path and not self.report_path.startswith("/"):
            raise LifeboatError(f"report_path must be an absolute path, not {self.report_path!r}")


def _driver_error(exc: Exception) -> str | None:
    """The engines' own one-line messages for their drivers' errors (an engine whose driver is missing is skipped)."""
    for source in _sources.SOURCES.values():
        try:
            message = source.describe_error(exc)
        except LifeboatError:
            continue
        if message is not None:
            return message
    return None


@friendly_errors(_driver_error)
def validate(request: ValidateRequest) -> dict[str, t.Any]:
    """Run the checks; return the result (``passed``, ``summary``, ``checks``...) and write the report."""
    request.validate()
    started = time.perf_counter()
    options = request.options
    checks = Checks(options)
    source, target = request.source, request.target
    engine = _sources.get(request.engine)
    source_label = source.describe(request.engine)
    content = ContentStats()
    # Security and application look at the target alone: without a data check, no side's data is read (and an
    # archive source is not restored).
    if any(options.wanted(category) for category in DATA_CATEGORIES):
        if source.archive and request.check_mode:
            _archive.load_trusted(source.archive, source.trust)  # a forged archive is refused in check mode too
            result = build_result(checks, source_label, target.describe(request.engine), request.engine,
                                  ContentStats(), started)
            result.update(passed=False, summary="NOT COMPARED: check mode does not restore the source archive"
                          " into a scratch database, so nothing was compared; run without check mode")
            return result
        content = _compare_data(request, engine, checks)
    if options.wanted("security"):
        engine.security(target, checks)
    if options.wanted("application"):
        health_checks(checks)
    result = build_result(checks, source_label, target.describe(request.engine), request.engine, content, started)
    if request.report_path and not request.check_mode:
        result["report_json"], result["report_markdown"] = write_report(result, request.report_path)
    return result


def _compare_data(request: ValidateRequest, engine: _sources.Source, checks: Checks) -> ContentStats:
    """The data checks; an archive source is first restored into a scratch database on the target's server."""
    source, target = request.source, request.target
    if not source.archive:
        return engine.compare(source, target, checks)
    # As every restore: the manifest's signature first, before anything is read or written.
    manifest = _archive.load_trusted(source.archive, source.trust)
    if not manifest.get("database"):
        raise LifeboatError("source.archive holds a whole server; validation compares one database: give an archive"
                            " of one database")
    with _sources.scratch_database(engine, target.connection, "lifeboat_validate",
                                   request.scratch_database) as scratch:
        engine.restore_scratch(target.connection, source.archive, manifest, scratch, source.decryption,
                               getattr(target, engine.bin_dir_option), keep_owners=True)
        restored = Endpoint(connection=target.connection, database=scratch, auth_database=target.auth_database)
        return engine.compare(restored, target, checks)


# ---------------------------------------------------------------- module arguments

def endpoint_options() -> dict[str, t.Any]:
    """Suboptions of the module's source and target: both engines' connection options, the database, an archive."""
    spec = {name: option for source in _sources.SOURCES.values() for name, option in source.connection_options().items()}
    spec["login_database"] = {"type": "str"}  # admin by default, for MongoDB only
    spec.update({
        "database": {"type": "str", "aliases": ["db"]},
        "archive": {"type": "path"},
        "age_identity_files": {"type": "list", "elements": "path", "default": [], "no_log": False},
        "age_passphrase_file": {"type": "path", "no_log": False},
        **_params.trust_options(),
    })
    return spec


def endpoint(params: dict[str, t.Any], engine: str, side: str) -> Endpoint:
    """The module's ``source`` or ``target`` dict as an Endpoint; options of the other engine are refused."""
    source = _sources.get(engine)
    for other in _sources.SOURCES.values():
        wrong = [name for name in other.own_options if other is not source and params.get(name)]
        if wrong:
            raise LifeboatError(f"{side}.{wrong[0]} is a {other.label} option, but engine is {engine}; remove it")
    auth_database = params.get("login_database") or "admin"
    connection = source.connection({**params, "login_database": auth_database})
    return Endpoint(
        connection=connection,
        database=params.get("database"),
        archive=params.get("archive"),
        decryption=_params.decryption(params),
        trust=_params.trust(params) if params.get("archive") else _signing.Trust(),
        auth_database=auth_database,
        tools_dir=params.get("tools_dir"),
        pg_bin_dir=params.get("pg_bin_dir"),
    )


def migration_validate_spec() -> dict[str, t.Any]:
    endpoint_option = {"type": "dict", "required": True, "options": endpoint_options(),
                       "mutually_exclusive": _params.CONNECTION_EXCLUSIVE}
    return {
        "engine": {"type": "str", "required": True, "choices": list(ENGINES)},
        "source": endpoint_option,
        "target": dict(endpoint_option),
        "checks": {"type": "list", "elements": "str", "choices": list(CATEGORIES), "default": list(CATEGORIES)},
        "required_checks": {"type": "list", "elements": "str", "choices": list(CATEGORIES),
                            "default": list(DEFAULT_REQUIRED)},
        "objects": {"type": "list", "elements": "str", "default": []},
        "exclude_objects": {"type": "list", "elements": "str", "default": []},
        "count_tolerance_percent": {"type": "float", "default": 0},
        "content_mode": {"type": "str", "choices": ["full", "sample", "none"], "default": "full"},
        "sample_size": {"type": "int", "default": 1000},
        "chunk_rows": {"type": "int", "default": 100000},
        "bisect_threshold": {"type": "int", "default": 1000},
        "max_differences": {"type": "int", "default": 20},
        "timing_queries": {"type": "list", "elements": "dict", "default": []},
        "timing_runs": {"type": "int", "default": 5},
        "timing_max_ratio": {"type": "float"},
        "require_authentication": {"type": "bool", "default": True},
        "require_tls": {"type": "bool", "default": False},
        "expected_users": {"type": "list", "elements": "dict", "default": []},
        "health_checks": {"type": "list", "elements": "dict", "default": []},
        "report_path": {"type": "path"},
        "scratch_database": {"type": "str"},
    }


def migration_validate(run: Run) -> Outcome:
    params = run.params
    source = endpoint(params["source"], params["engine"], "source")
    target = endpoint(params["target"], params["engine"], "target")
    options = Options(
        checks=tuple(params["checks"]),
        required=tuple(params["required_checks"]),
        objects=tuple(params["objects"]),
        exclude_objects=tuple(params["exclude_objects"]),
        count_tolerance_percent=params["count_tolerance_percent"],
        content_mode=params["content_mode"],
        sample_size=params["sample_size"],
        chunk_rows=params["chunk_rows"],
        bisect_threshold=params["bisect_threshold"],
        max_differences=params["max_differences"],
        timing_queries=params["timing_queries"],
        timing_runs=params["timing_runs"],
        timing_max_ratio=params["timing_max_ratio"],
        require_authentication=params["require_authentication"],
        require_tls=params["require_tls"],
        expected_users=params["expected_users"],
        health_checks=params["health_checks"],
    )
    request = ValidateRequest(
        engine=params["engine"], source=source, target=target, options=options,
        report_path=params["report_path"], check_mode=run.check_mode,
        scratch_database=params["scratch_database"],
    )
    result = validate(request)
    # In check mode an archive source is only inspected, not restored: its checks cannot pass yet.
    passed = result["passed"] or (run.check_mode and params["source"].get("archive"))
    return Outcome(result=result, failure=None if passed else result["summary"])
