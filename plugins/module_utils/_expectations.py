# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Data expectations of a live database: tables or collections present, indexes present (missing ones optionally
created), row or document counts at least a minimum and not collapsed against an archive's manifest.

One decision, made here, for every caller: the ``database_expect`` module, the deploy gate and the healthcheck
role's ``database_expect`` probe all pass the options of :data:`EXPECTATIONS_OPTIONS` to :func:`check_expectations`.
What a database holds is read through its source's data catalog (``_sources``, ``_data_catalog``), so nothing
here asks which engine it has. Unmet expectations come back as failures, one line each; bad input and an
unreachable server raise a one-line LifeboatError.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t

from . import _data_catalog, _manifest, _params, _sources
from ._common import LifeboatError
from ._module_frame import Outcome, Run

# The argument-spec entries of the expectation options (never copied by a caller: forward this dict).
# YAML 1.1 (Ansible's, PyYAML's) reads a bare `on:` key as true: hence the aliases, and a hint when true comes.
INDEX_OPTIONS: dict[str, dict[str, t.Any]] = {
    "on": {"type": "str", "required": True, "aliases": ["table", "collection"]},
    "keys": {"type": "list", "elements": "str", "required": True, "no_log": False},  # index keys, not secrets
    "unique": {"type": "bool", "default": False},
    "name": {"type": "str"},
}
EXPECTATIONS_OPTIONS: dict[str, dict[str, t.Any]] = {
    "database": {"type": "str", "required": True},
    "present": {"type": "list", "elements": "str", "default": []},
    "indexes": {"type": "list", "elements": "dict", "default": [], "options": INDEX_OPTIONS},
    "min_counts": {"type": "dict", "default": {}},
    "baseline_manifest": {"type": "path"},
    "max_drop_percent": {"type": "float", "default": 0.0},
    "create_missing_indexes": {"type": "bool", "default": False},
}


@dataclasses.dataclass
class ExpectationResult:
    ok: bool
    failures: list[str]  # one line each, what is wrong and where
    created_indexes: list[str]  # what was created (or would be, in dry_run)
    counts: dict[str, int]  # what was counted

    def as_dict(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class IndexExpectation:
    on: str
    keys: tuple[str, ...]
    unique: bool = False
    name: str | None = None

    def describe(self, on: str) -> str:
        return f"{'unique ' if self.unique else ''}index on {on} ({', '.join(self.keys)})"


@dataclasses.dataclass(frozen=True)
class Expectations:
    database: str
    present: tuple[str, ...] = ()
    indexes: tuple[IndexExpectation, ...] = ()
    min_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    baseline_manifest: str | None = None
    max_drop_percent: float = 0.0
    create_missing_indexes: bool = False


def _is_text(value: t.Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _text_list(value: t.Any, option: str, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(_is_text(item) for item in value):
        raise LifeboatError(f"{option} must be a list of {what}")
    return tuple(value)


def _index(value: t.Any, position: int) -> IndexExpectation:
    where = f"indexes[{position}]"
    if not isinstance(value, dict):
        raise LifeboatError(f"{where} must be a dict with on and keys, e.g. {{on: notes, keys: [title]}}")
    if True in value or "true" in value:
        raise LifeboatError(f"{where} has the key true: YAML reads a bare on: as true; write 'on': (quoted), "
                            "or table: or collection:")
    names = ["on", *INDEX_OPTIONS["on"]["aliases"]]
    if len({value[name] for name in names if name in value}) > 1:  # Ansible's spec keeps the alias beside `on`
        raise LifeboatError(f"{where} names its table or collection twice; give one of on, table, collection")
    value = {("on" if name in names else name): item for name, item in value.items()}
    unknown = sorted(str(name) for name in set(value) - set(INDEX_OPTIONS))
    if unknown:
        raise LifeboatError(f"{where} has unknown key {unknown[0]}; use: {', '.join(INDEX_OPTIONS)}")
    if not _is_text(value.get("on")):
        raise LifeboatError(f"{where} needs on: the table or collection the index is on")
    keys = value.get("keys")
    if not keys or not isinstance(keys, (list, tuple)) or not all(_is_text(key) for key in keys):
        raise LifeboatError(f"{where} needs keys: a non-empty list of column or field names, in index order")
    if not isinstance(value.get("unique", False), bool):
        raise LifeboatError(f"{where}.unique must be true or false")
    name = value.get("name")
    if name is not None and not _is_text(name):
        raise LifeboatError(f"{where}.name must be a non-empty string, or left unset")
    return IndexExpectation(value["on"], tuple(keys), bool(value.get("unique", False)), name)


def parse(expectations: t.Mapping[str, t.Any]) -> Expectations:
    """The expectation options checked and typed, or a one-line LifeboatError that names the option to fix."""
    if not isinstance(expectations, t.Mapping):
        raise LifeboatError("expectations must be a dict with database and what to expect of it")
    unknown = sorted(set(expectations) - set(EXPECTATIONS_OPTIONS))
    if unknown:
        raise LifeboatError(f"unknown expectation {unknown[0]}; use: {', '.join(EXPECTATIONS_OPTIONS)}")
    if not _is_text(expectations.get("database")):
        raise LifeboatError("database is required: the database whose data to check")
    indexes = expectations.get("indexes") or []
    if not isinstance(indexes, (list, tuple)):
        raise LifeboatError("indexes must be a list of dicts with on and keys")
    min_counts = expectations.get("min_counts") or {}
    if not isinstance(min_counts, t.Mapping):
        raise LifeboatError("min_counts must be a dict of table or collection: least count")
    for name, least in min_counts.items():
        if not _is_text(name) or isinstance(least, bool) or not isinstance(least, int) or least < 0:
            raise LifeboatError(f"min_counts[{name}] must be a whole number 0 or more, not {least!r}")
    drop = expectations.get("max_drop_percent")
    drop = 0.0 if drop is None else drop
    if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop <= 100 or math.isnan(drop):
        raise LifeboatError(f"max_drop_percent must be between 0 and 100 (percent fewer than the baseline), not {drop!r}")
    manifest = expectations.get("baseline_manifest")
    if manifest is not None and not _is_text(manifest):
        raise LifeboatError("baseline_manifest must be the path of an archive or its manifest")
    if expectations.get("max_drop_percent") and not manifest:
        raise LifeboatError("max_drop_percent needs baseline_manifest: the archive whose counts are the baseline")
    create = expectations.get("create_missing_indexes", False)
    if not isinstance(create, bool):
        raise LifeboatError("create_missing_indexes must be true or false")
    return Expectations(
        database=expectations["database"],
        present=_text_list(expectations.get("present"), "present", "table or collection names"),
        indexes=tuple(_index(value, position) for position, value in enumerate(indexes)),
        min_counts=dict(min_counts),
        baseline_manifest=manifest,
        max_drop_percent=float(drop),
        create_missing_indexes=create,
    )


def connection_params(source: _sources.Source, connection: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The engine's connection options of ``connection``. A whole job (its dump options, name, engine) may be
    passed; an option of another engine, or one no job takes, is refused. Unset options say nothing: a module
    whose spec holds both engines' options passes the other engine's as None or their defaults."""
    own = set(source.job_options()) | {"name", "engine"}
    for name, value in connection.items():
        if name in own or value is None:
            continue
        other = next((other for other in _sources.SOURCES.values() if name in other.connection_options()), None)
        if other is None:
            raise LifeboatError(f"unknown connection option {name} for {source.name}; use: "
                                f"{', '.join(source.connection_options())}")
        if value != other.connection_options()[name].get("default"):
            raise LifeboatError(f"{name} is a {other.label} option, but engine is {source.name}; remove it")
    return {name: value for name, value in connection.items() if name in source.connection_options()}


def _baseline(source: _sources.Source, path: str, database: str) -> dict[str, int]:
    """The manifest's counts by namespace as it names them (``schema.table``, ``db.collection``), internal ones out."""
    try:
        manifest = _manifest.load(path)
    except LifeboatError as exc:
        raise LifeboatError(f"baseline_manifest: {exc}") from None
    if manifest.get("engine") != source.name:
        raise LifeboatError(f"baseline_manifest {path} is a {manifest.get('engine')} archive; give one of "
                            f"{source.name} database {database}")
    if manifest.get("database") and manifest["database"] != database:
        raise LifeboatError(f"baseline_manifest {path} is of database {manifest['database']}, not {database}; "
                            "give an archive of the database checked")
    return {name: int(count) for name, count in manifest["counts"].items() if not source.is_internal(name)}


def check_expectations(engine: str, connection: dict[str, t.Any], expectations: dict[str, t.Any], *,
                       dry_run: bool = False) -> ExpectationResult:
    """engine: 'postgresql' | 'mongodb'; connection: the engine's dump-module connection options (``container``
    included). Raises LifeboatError (one line) for bad input or an unreachable server; returns failures for
    unmet expectations. With ``dry_run``, nothing is created: what would be is reported."""
    source = _sources.get(engine)
    if source.name not in _sources.DATABASES:
        raise _data_catalog.unsupported(source.name)
    wanted = parse(expectations)
    params = connection_params(source, connection)
    baseline = _baseline(source, wanted.baseline_manifest, wanted.database) if wanted.baseline_manifest else {}
    try:
        with source.data_catalog(source.connection(params), wanted.database) as catalog:
            return _check(source, catalog, wanted, catalog.baseline(baseline, wanted.database), dry_run)
    except LifeboatError:
        raise
    except Exception as exc:  # a driver's error, as one line; anything else is a bug and stays a traceback
        message = source.describe_error(exc)
        if message is None:
            raise
        raise LifeboatError(message) from exc


def _check(source: _sources.Source, catalog: t.Any, wanted: Expectations, baseline: dict[str, int],
           dry_run: bool) -> ExpectationResult:
    kind, unit = catalog.kind, catalog.unit
    where = f"in database {wanted.database}"
    failures: list[str] = []
    created: list[str] = []
    counts: dict[str, int] = {}
    existing = catalog.names()

    def count(name: str) -> int:
        if name not in counts:
            counts[name] = catalog.count(name)
        return counts[name]

    for name in dict.fromkeys(catalog.normalize(item) for item in wanted.present):
        if name not in existing:
            failures.append(f"{kind} {name} missing {where}")

    for item, least in wanted.min_counts.items():
        name = catalog.normalize(item)
        if name not in existing:
            failures.append(f"{kind} {name} missing {where} (at least {least} {unit} expected)")
        elif count(name) < least:
            failures.append(f"{kind} {name} has {counts[name]} {unit}, at least {least} expected")

    for name, before in sorted(baseline.items()):
        least = math.ceil(before * (1 - wanted.max_drop_percent / 100))
        if name not in existing:
            failures.append(f"{kind} {name} missing {where}; the baseline archive has {before} {unit}")
        elif count(name) < least:
            failures.append(f"{kind} {name} has {counts[name]} {unit}, the baseline {before}: more than "
                            f"{wanted.max_drop_percent:g}% fewer (at least {least} expected)")

    for index in wanted.indexes:
        name = catalog.normalize(index.on)
        what = index.describe(name)
        if name not in existing:
            failures.append(f"{what}: {kind} {name} missing {where}")
            continue
        indexes = catalog.indexes(name)
        if any(found.usable and found.keys == index.keys and (found.unique or not index.unique) for found in indexes):
            continue
        unusable = [found for found in indexes if found.keys == index.keys and not found.usable]
        note = f" (index {unusable[0].name} has these keys but is {unusable[0].why_unusable})" if unusable else ""
        if not wanted.create_missing_indexes:
            failures.append(f"{what} missing{note}")
            continue
        index_name = index.name or catalog.new_index_name(name, index.keys)
        if index.name and catalog.name_taken(name, index.name):
            failures.append(f"{what} missing, and its name {index.name} is taken by another index or relation: "
                            "name a free one")
            continue
        if not dry_run:
            try:
                catalog.create_index(name, index.keys, index.unique, index_name)
            except LifeboatError as exc:  # the server's reason (duplicates, a column that does not exist)
                failures.append(f"{what} missing and could not be created: {exc}")
                continue
            except Exception as exc:  # another driver error, as one line
                reason = source.describe_error(exc)
                if reason is None:
                    raise
                failures.append(f"{what} missing and could not be created: {reason}")
                continue
        created.append(f"{what} as {index_name}")
    return ExpectationResult(ok=not failures, failures=failures, created_indexes=created, counts=counts)


def database_expect_spec() -> dict[str, t.Any]:
    """The database_expect module's options: the engine, both engines' connection options, the expectations."""
    connection = {name: option for source in _sources.SOURCES.values() for name, option in source.connection_options().items()}
    return {"engine": {"type": "str", "required": True, "choices": list(_sources.DATABASES)}, **connection,
            **EXPECTATIONS_OPTIONS}


DATABASE_EXPECT_RULES: dict[str, t.Any] = {"mutually_exclusive": _params.CONNECTION_EXCLUSIVE}


def database_expect(run: Run) -> Outcome:
    """The database_expect module's work (a _module_frame task): fails when an expectation is unmet."""
    params = run.params
    connection = {name: value for name, value in params.items() if name not in EXPECTATIONS_OPTIONS and name != "engine"}
    expectations = {name: params.get(name) for name in EXPECTATIONS_OPTIONS}
    result = check_expectations(params["engine"], connection, expectations, dry_run=run.check_mode)
    failure = None
    if not result.ok:
        failure = f"{len(result.failures)} data expectation(s) unmet: {'; '.join(result.failures)}"
    return Outcome(changed=bool(result.created_indexes), result=result.as_dict(), failure=failure)
