# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""What data expectations read of a live database, one class per engine: its tables or collections, their exact
counts and indexes, and how a missing index is made. ``_sources`` hands out the right one
(``Source.data_catalog``); ``_expectations`` judges what they read, never asking which engine it has.

A database in a container is read the way the container jobs read their counts: from this host, over the
container's network address (``_params.container_defaults``). The catalogue queries need a driver connection
(psycopg, pymongo) that keeps state across queries; the container client (``_clients.ContainerClient``) runs
one-shot tools through the Docker Engine API's exec, and a psql/mongosh in the container would leave us parsing
their text output (and mongosh is in no FerretDB image).
"""

from __future__ import annotations

import contextlib
import typing as t
from dataclasses import dataclass

from ._common import LifeboatError
from ._mongo import MongoConnection, _pymongo
from ._postgres import PgConnection, _psycopg, quote_ident

# Relations an application reads as tables: tables, partitioned tables, views, materialized views, foreign tables.
_PG_READABLE = "('r', 'p', 'v', 'm', 'f')"
_PG_MAX_NAME = 63  # NAMEDATALEN - 1 bytes: PostgreSQL cuts longer names (with a notice)


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str | None, ...]  # columns or fields in order; None for an expression
    unique: bool
    usable: bool = True  # False: partial (covers some rows only) or invalid (a failed concurrent build)
    why_unusable: str = ""


class PgDataCatalog:
    """Tables of one PostgreSQL database, named ``schema.table`` as pg_dump and the manifests name them."""

    kind = "table"
    unit = "rows"

    def __init__(self, connection: PgConnection) -> None:
        self._database = connection.database or ""
        self._conn = connection.connect()  # autocommit: CREATE INDEX CONCURRENTLY cannot run in a transaction
        self._relations: dict[str, tuple[int, str]] | None = None

    def close(self) -> None:
        self._conn.close()

    @staticmethod
    def normalize(name: str) -> str:
        """``table`` is ``public.table``; a name's first dot ends its schema."""
        return name if "." in name else f"public.{name}"

    @staticmethod
    def _split(name: str) -> tuple[str, str]:
        schema, table = name.split(".", 1)
        return schema, table

    def _quoted(self, name: str) -> str:
        schema, table = self._split(name)
        return f"{quote_ident(schema)}.{quote_ident(table)}"

    def names(self) -> set[str]:
        return set(self._relation_table())

    def _relation_table(self) -> dict[str, tuple[int, str]]:
        if self._relations is None:
            rows = self._conn.execute(
                "SELECT n.nspname || '.' || c.relname, c.oid, c.relkind FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                f" WHERE c.relkind IN {_PG_READABLE}"
                " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"
            ).fetchall()
            self._relations = {name: (oid, kind) for name, oid, kind in rows}
        return self._relations

    def count(self, name: str) -> int:
        """Exact rows. ONLY, as the manifests count (pg_dump dumps each child table itself), except for a
        partitioned table, whose rows are all in its partitions."""
        only = "" if self._relation_table()[name][1] == "p" else "ONLY "
        return int(self._conn.execute(f"SELECT count(*) FROM {only}{self._quoted(name)}").fetchone()[0])

    def indexes(self, name: str) -> list[Index]:
        relations = self._relation_table()
        rows = self._conn.execute(
            "SELECT i.relname, x.indisunique, x.indisvalid, x.indpred IS NOT NULL,"
            " ARRAY(SELECT a.attname FROM generate_series(0, x.indnkeyatts - 1) AS k"
            "       LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[k] ORDER BY k)"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s ORDER BY 1",
            (relations[name][0],),
        ).fetchall()
        found = []
        for index_name, unique, valid, partial, keys in rows:
            why = "invalid (a failed concurrent build: drop it)" if not valid else "partial" if partial else ""
            found.append(Index(index_name, tuple(keys), bool(unique), not why, why))
        return found

    def new_index_name(self, name: str, keys: t.Sequence[str]) -> str:
        """PostgreSQL's own pattern (``table_col_idx``), made unique in the schema."""
        schema, table = self._split(name)
        base = _cut_bytes(f"{table}_{'_'.join(keys)}_idx", _PG_MAX_NAME)
        candidate, number = base, 0
        while self._relation_exists(schema, candidate):
            number += 1
            suffix = str(number)
            candidate = _cut_bytes(base, _PG_MAX_NAME - len(suffix)) + suffix
        return candidate

    def _relation_exists(self, schema: str, relation: str) -> bool:
        return self._conn.execute(
            "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s)", (schema, relation)).fetchone()[0]

    def name_taken(self, name: str, index_name: str) -> bool:
        return self._relation_exists(self._split(name)[0], index_name)

    def create_index(self, name: str, keys: t.Sequence[str], unique: bool, index_name: str) -> None:
        """CREATE INDEX CONCURRENTLY: the table stays writable while the index builds (a plain CREATE INDEX holds
        a SHARE lock that stops every INSERT, UPDATE and DELETE of the live app until it is done). It takes longer
        and, when it fails (a duplicate for a unique index), leaves an invalid index behind: that one is ours (the
        name was free before), so it is dropped, and the next run tries again."""
        schema, _table = self._split(name)
        columns = ", ".join(quote_ident(key) for key in keys)
        psycopg = _psycopg()
        try:
            self._conn.execute(f"CREATE {'UNIQUE ' if unique else ''}INDEX CONCURRENTLY {quote_ident(index_name)}"
                               f" ON {self._quoted(name)} ({columns})")
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(schema)}.{quote_ident(index_name)}")
            # The primary message only: its DETAIL line would show the duplicated values, the table's data.
            primary = exc.diag.message_primary if exc.diag and exc.diag.message_primary else type(exc).__name__
            raise LifeboatError(f"PostgreSQL error: {primary}") from exc

    def baseline(self, counts: dict[str, int], database: str) -> dict[str, int]:
        """The manifest's counts by table: a PostgreSQL archive holds one database, its names as ours."""
        return dict(counts)


class MongoDataCatalog:
    """Collections of one MongoDB database, named as in the database (collection names may hold dots)."""

    kind = "collection"
    unit = "documents"

    def __init__(self, connection: MongoConnection, database: str) -> None:
        self._client = connection.client()
        self._database = self._client[database]

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def normalize(name: str) -> str:
        return name

    def names(self) -> set[str]:
        return set(self._database.list_collection_names())

    def count(self, name: str) -> int:
        return int(self._database[name].count_documents({}))

    def indexes(self, name: str) -> list[Index]:
        found = []
        for index_name, info in sorted(self._database[name].index_information().items()):
            why = "partial" if info.get("partialFilterExpression") else ""
            found.append(Index(index_name, tuple(str(field) for field, _order in info.get("key", [])),
                               bool(info.get("unique")), not why, why))
        return found

    def new_index_name(self, name: str, keys: t.Sequence[str]) -> str:
        return "_".join(f"{key}_1" for key in keys)  # the server's own default name for ascending keys

    def name_taken(self, name: str, index_name: str) -> bool:
        return index_name in self._database[name].index_information()

    def create_index(self, name: str, keys: t.Sequence[str], unique: bool, index_name: str) -> None:
        pymongo = _pymongo()
        try:
            self._database[name].create_index([(key, 1) for key in keys], unique=unique, name=index_name)
        except pymongo.errors.DuplicateKeyError as exc:  # its message shows the duplicated values: the data
            raise LifeboatError("MongoDB error: duplicate key values; remove the duplicates first") from exc

    def baseline(self, counts: dict[str, int], database: str) -> dict[str, int]:
        """The manifest's counts of ``database``'s collections (a whole-server archive holds every database)."""
        prefix = f"{database}."
        return {namespace[len(prefix):]: count for namespace, count in counts.items() if namespace.startswith(prefix)}


def _cut_bytes(text: str, limit: int) -> str:
    encoded = text.encode()
    return text if len(encoded) <= limit else encoded[:limit].decode(errors="ignore")


def unsupported(label: str) -> LifeboatError:
    return LifeboatError(f"data expectations look inside a database; engine {label} has none: use postgresql or "
                         "mongodb")
