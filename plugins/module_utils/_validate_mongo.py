# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""MongoDB side of migration validation: collections, indexes and documents compared by their exact BSON.

Documents are read as raw BSON batches (``find_raw_batches``) and hashed as the bytes the server sent, so a
Decimal128 that became a double, a date that became a string or an int that became a long all change the
hash. MongoDB-compatible servers offer no per-range hash (``dbHash`` covers whole collections and FerretDB
has none), so both sides stream their documents once; each document goes into one of N buckets by a hash of
its ``_id``, and each bucket keeps a count and a sum of document hashes: memory is N pairs, whatever the
size. Only when buckets differ is a second pass made, keeping just the documents of the differing buckets,
so the exact ``_id`` values that are missing, extra or changed are named, with the fields that changed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import math
import time
import typing as t
import zlib

from ._common import LifeboatError, first_few
from ._mongo import MongoConnection, _one_line, _pymongo, _split_uri
from ._validate_core import (
    Checks,
    ContentStats,
    both_sides,
    compare_definitions,
    compare_sets,
    count_check,
    shorten,
    timing_check,
)

_MASK = (1 << 64) - 1
_UNKNOWN_SIZE_BUCKETS = 4096
# Lengths of fixed-size BSON values by type byte; variable ones are read from their length prefix.
_FIXED = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0}
_INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds", "collation", "weights")


def _bson() -> t.Any:
    import bson  # pylint: disable=import-outside-toplevel

    return bson


def split_documents(batch: bytes) -> t.Iterator[bytes]:
    """The documents of a raw batch (concatenated BSON documents) as bytes."""
    view = memoryview(batch)
    offset, end = 0, len(batch)
    while offset < end:
        size = int.from_bytes(view[offset:offset + 4], "little")
        if size < 5 or offset + size > end:
            raise LifeboatError("a raw BSON batch from the server is cut short")
        yield bytes(view[offset:offset + size])
        offset += size


def id_key(document: bytes) -> bytes:
    """The ``_id`` element's type byte and value bytes: a key that keeps the BSON type (1 and 1L differ)."""
    kind = document[4]
    name_end = document.index(b"\x00", 5)
    if document[5:name_end] == b"_id":
        start = name_end + 1
        if kind in _FIXED:
            return document[4:5] + document[start:start + _FIXED[kind]]
        if kind in (0x02, 0x0D, 0x0E):  # string, code, symbol: int32 length then bytes
            return document[4:5] + document[start:start + 4 + int.from_bytes(document[start:start + 4], "little")]
        if kind in (0x03, 0x04):  # document, array: the int32 counts itself
            return document[4:5] + document[start:start + int.from_bytes(document[start:start + 4], "little")]
        if kind == 0x05:  # binary: int32 length, subtype, bytes
            return document[4:5] + document[start:start + 5 + int.from_bytes(document[start:start + 4], "little")]
    # _id not first (or an unusual type): decode the document to find it.
    bson = _bson()
    value = bson.decode(document)["_id"]
    encoded = bson.encode({"_id": value})
    return encoded[4:5] + encoded[9:-1]


def id_value(key: bytes) -> t.Any:
    """The ``_id`` value back from its key (for reports and lookups)."""
    body = key[0:1] + b"_id\x00" + key[1:] + b"\x00"
    return _bson().decode((len(body) + 4).to_bytes(4, "little") + body)["_id"]


def id_text(key: bytes) -> str:
    value = id_value(key)
    # bson decodes a long as a plain int: name the type, since 1 and Int64(1) are different _id values.
    return shorten(f"Int64({value})" if key[0] == 0x12 else repr(value), 80)


def _digest(document: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(document, digest_size=8).digest(), "little")


def bucket_hashes(batches: t.Iterable[bytes], buckets: int) -> tuple[list[int], list[int], int]:
    """Per bucket of ``_id``: documents and the sum of their hashes (mod 2**64); and the documents seen."""
    counts, sums = [0] * buckets, [0] * buckets
    seen = 0
    for batch in batches:
        for document in split_documents(batch):
            index = zlib.crc32(id_key(document)) % buckets
            counts[index] += 1
            sums[index] = (sums[index] + _digest(document)) & _MASK
            seen += 1
    return counts, sums, seen


def documents_in(batches: t.Iterable[bytes], buckets: int, wanted: set[int]) -> tuple[dict[bytes, bytes], int]:
    """``_id`` key -> raw document for the documents of the wanted buckets; and the documents seen."""
    kept, seen = {}, 0
    for batch in batches:
        for document in split_documents(batch):
            seen += 1
            key = id_key(document)
            if zlib.crc32(key) % buckets in wanted:
                kept[key] = document
    return kept, seen


class DocumentDiff(t.NamedTuple):
    missing: list[bytes]
    extra: list[bytes]
    changed: list[tuple[bytes, list[str]]]
    stats: ContentStats


def compare_documents(source: t.Callable[[], t.Iterable[bytes]], target: t.Callable[[], t.Iterable[bytes]],
                      expected: int | None, threshold: int, max_details: int) -> DocumentDiff:
    """Compare two collections given as factories of raw BSON batches (each call streams the whole collection).

    ``expected`` (documents, when counted) sizes the buckets to about ``threshold`` documents each; unknown,
    4096 buckets are used (counting first would cost a full scan on servers like FerretDB).
    """
    started = time.perf_counter()
    stats = ContentStats()
    buckets = _UNKNOWN_SIZE_BUCKETS if expected is None else max(1, min(1 << 16, math.ceil(expected / threshold)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        (counts_s, sums_s, seen_s), (counts_t, sums_t, seen_t) = both_sides(
            pool, lambda: bucket_hashes(source(), buckets), lambda: bucket_hashes(target(), buckets))
        stats.chunks_hashed = buckets
        stats.rows_compared = max(seen_s, seen_t)
        stats.rows_transferred = {"source": seen_s, "target": seen_t}
        differing = {i for i in range(buckets) if counts_s[i] != counts_t[i] or sums_s[i] != sums_t[i]}
        missing: list[bytes] = []
        extra: list[bytes] = []
        changed: list[tuple[bytes, list[str]]] = []
        if differing:
            stats.bisections = len(differing)
            (kept_s, again_s), (kept_t, again_t) = both_sides(
                pool, lambda: documents_in(source(), buckets, differing),
                lambda: documents_in(target(), buckets, differing))
            stats.rows_transferred["source"] += again_s
            stats.rows_transferred["target"] += again_t
            for key in sorted(set(kept_s) | set(kept_t)):
                if key not in kept_t:
                    missing.append(key)
                elif key not in kept_s:
                    extra.append(key)
                elif kept_s[key] != kept_t[key]:
                    fields = field_differences(kept_s[key], kept_t[key]) if len(changed) < max_details else []
                    changed.append((key, fields))
    stats.seconds = time.perf_counter() - started
    return DocumentDiff(missing, extra, changed, stats)


# ---------------------------------------------------------------- field-level differences

_TYPE_NAMES = {"float": "double", "str": "string", "dict": "object", "list": "array", "bytes": "binData",
               "Binary": "binData", "ObjectId": "objectId", "bool": "bool", "datetime": "date", "NoneType": "null",
               "Regex": "regex", "int": "int", "Int64": "long", "Decimal128": "decimal", "Timestamp": "timestamp",
               "MinKey": "minKey", "MaxKey": "maxKey", "Code": "javascript", "DatetimeMS": "date", "UUID": "binData"}


def bson_type(value: t.Any) -> str:
    return _TYPE_NAMES.get(type(value).__name__, type(value).__name__)


def field_differences(source: bytes, target: bytes, limit: int = 10) -> list[str]:
    """Paths whose value or BSON type differ, e.g. ``sensor.calibration.slope: decimal '1.5' -> double 1.5``."""
    bson = _bson()
    options = bson.CodecOptions(document_class=dict, tz_aware=True, uuid_representation=0)
    found: list[str] = []
    _walk(bson.decode(source, codec_options=options), bson.decode(target, codec_options=options), "", found, limit)
    if not found:
        found.append("same fields and values in a different order (or an encoding difference)")
    return found


def _walk(one: t.Any, other: t.Any, path: str, found: list[str], limit: int) -> None:
    if len(found) >= limit:
        return
    if bson_type(one) != bson_type(other):
        found.append(f"{path or '(document)'}: {bson_type(one)} {shorten(repr(one), 60)} -> "
                     f"{bson_type(other)} {shorten(repr(other), 60)}")
    elif isinstance(one, dict):
        for name in list(one) + [k for k in other if k not in one]:
            where = f"{path}.{name}" if path else str(name)
            if name not in other:
                found.append(f"{where}: missing on the target")
            elif name not in one:
                found.append(f"{where}: only on the target")
            else:
                _walk(one[name], other[name], where, found, limit)
    elif isinstance(one, list):
        if len(one) != len(other):
            found.append(f"{path}: {len(one)} elements -> {len(other)}")
        for index, (a, b) in enumerate(zip(one, other)):
            _walk(a, b, f"{path}[{index}]", found, limit)
    elif one != other:
        found.append(f"{path}: {shorten(repr(one), 60)} -> {shorten(repr(other), 60)}")


# ---------------------------------------------------------------- checks


def _collections(db: t.Any) -> dict[str, str]:
    return {c["name"]: c.get("type", "collection") for c in db.list_collections()
            if not c["name"].startswith("system.")}


def _indexes(collection: t.Any) -> dict[str, dict[str, t.Any]]:
    result = {}
    for index in collection.list_indexes():
        spec: dict[str, t.Any] = {"key": [[k, v] for k, v in index["key"].items()]}
        spec.update({option: index[option] for option in _INDEX_OPTIONS if option in index})
        for flag in ("unique", "sparse"):
            spec[flag] = bool(spec.get(flag, False))
        result[index["name"]] = spec
    return result


def run(source: MongoConnection, target: MongoConnection, source_db: str, target_db: str, checks: Checks) -> ContentStats:
    options = checks.options
    total = ContentStats()
    src_client, tgt_client = source.client(), target.client()
    try:
        src, tgt = src_client[source_db], tgt_client[target_db]
        src_colls, tgt_colls = _collections(src), _collections(tgt)
        if options.wanted("presence"):
            exists = target_db in tgt_client.list_database_names()
            checks.add("presence", "database", target_db, exists,
                       "exists on the target" if exists else "database does not exist on the target",
                       [] if exists else [{"kind": "missing", "key": target_db, "what": "database"}])
            for kind in ("collection", "view"):
                names_s = [n for n, k in src_colls.items() if k == kind and options.selected(n)]
                names_t = [n for n, k in tgt_colls.items() if k == kind and options.selected(n)]
                if names_s or names_t:
                    differences = compare_sets(kind, names_s, names_t)
                    checks.add("presence", f"{kind}s", source_db, not differences,
                               f"{len(names_s)} on source, {len(names_t)} on target" + (
                                   "" if not differences else ": " + first_few(
                                       [f"{d['kind']} {d['key']}" for d in differences], 5, ", ")), differences)
        common = sorted(n for n, k in src_colls.items()
                        if k == "collection" and tgt_colls.get(n) == "collection" and options.selected(n))
        if options.wanted("indexes"):
            for name in common:
                compare_definitions(checks, "indexes", "indexes", name, "index", _indexes(src[name]), _indexes(tgt[name]))
        counts: dict[str, tuple[int, int] | None] = {name: None for name in common}
        if options.wanted("counts"):
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                for name in common:
                    pair = both_sides(pool, lambda n=name: src[n].count_documents({}),
                                      lambda n=name: tgt[n].count_documents({}))
                    counts[name] = pair
                    count_check(checks, name, *pair)
        if options.wanted("content") and options.content_mode != "none":
            for name in common:
                if options.content_mode == "sample":
                    total.add(_sample(checks, src[name], tgt[name], name))
                else:
                    size = counts[name]
                    total.add(_content(checks, src[name], tgt[name], name, max(size) if size else None))
        if options.wanted("timing"):
            _timing(checks, src, tgt, common)
    finally:
        src_client.close()
        tgt_client.close()
    return total


def _content(checks: Checks, src: t.Any, tgt: t.Any, name: str, expected: int | None) -> ContentStats:
    options = checks.options
    diff = compare_documents(lambda: src.find_raw_batches({}, batch_size=10000),
                             lambda: tgt.find_raw_batches({}, batch_size=10000),
                             expected, options.bisect_threshold, options.max_differences)
    differences: list[dict[str, t.Any]] = [{"kind": "missing", "key": f"_id={id_text(k)}"} for k in diff.missing]
    differences += [{"kind": "extra", "key": f"_id={id_text(k)}"} for k in diff.extra]
    differences += [{"kind": "changed", "key": f"_id={id_text(k)}", "fields": fields} for k, fields in diff.changed]
    stats = diff.stats
    summary = (f"{stats.rows_compared} documents compared by _id (exact BSON); {len(diff.missing)} missing,"
               f" {len(diff.extra)} extra, {len(diff.changed)} changed; {stats.chunks_hashed} buckets hashed,"
               f" {stats.bisections} differing buckets re-read")
    if differences:
        summary = first_few([f"{d['kind']} {d['key']}" + (f" ({d['fields'][0]})" if d.get("fields") else "")
                             for d in differences], 1, ", ") + "; " + summary
    checks.add("content", "documents", name, not differences, summary, differences, stats=stats.as_dict())
    return stats


def _sample(checks: Checks, src: t.Any, tgt: t.Any, name: str) -> ContentStats:
    """A quick look: the first sample_size source documents looked up on the target by _id ($sample where it exists)."""
    options = checks.options
    pymongo = _pymongo()
    stats = ContentStats()
    try:
        batches = list(src.aggregate_raw_batches([{"$sample": {"size": options.sample_size}}]))
        how = "random"
    except pymongo.errors.OperationFailure:  # FerretDB has no $sample
        batches = list(src.find_raw_batches({}, limit=options.sample_size))
        how = "first"
    sample = {id_key(d): d for b in batches for d in split_documents(b)}
    found: dict[bytes, bytes] = {}
    keys = list(sample)
    for start in range(0, len(keys), 500):
        ids = [id_value(k) for k in keys[start:start + 500]]
        for batch in tgt.find_raw_batches({"_id": {"$in": ids}}):
            found.update({id_key(d): d for d in split_documents(batch)})
    stats.rows_compared = len(sample)
    stats.rows_transferred = {"source": len(sample), "target": len(found)}
    differences: list[dict[str, t.Any]] = []
    for key, document in sample.items():
        if key not in found:
            differences.append({"kind": "missing", "key": f"_id={id_text(key)}"})
        elif found[key] != document:
            differences.append({"kind": "changed", "key": f"_id={id_text(key)}",
                                "fields": field_differences(document, found[key])})
    checks.add("content", "documents (sample)", name, not differences,
               f"{len(sample)} {how} source documents looked up on the target; {len(differences)} differ"
               " (a sample cannot find extra documents)", differences, stats=stats.as_dict())
    return stats


def _timing(checks: Checks, src: t.Any, tgt: t.Any, collections: list[str]) -> None:
    queries = checks.options.timing_queries or [
        {"name": f"first 100 documents of {name}", "collection": name, "filter": {}, "sort": [["_id", 1]], "limit": 100}
        for name in collections]
    for index, query in enumerate(queries):
        if not isinstance(query, dict) or not query.get("collection"):
            raise LifeboatError(f"timing_queries[{index}] needs collection (and optionally filter, sort, limit) for MongoDB")
        label = str(query.get("name") or f"{query['collection']} {query.get('filter', {})}")

        def run(db: t.Any, q: dict[str, t.Any] = query) -> list[t.Any]:
            cursor = db[q["collection"]].find(q.get("filter") or {})
            if q.get("sort"):
                cursor = cursor.sort([tuple(pair) for pair in q["sort"]])
            return list(cursor.limit(int(q.get("limit", 100))))

        try:
            timing_check(checks, "query time", label, lambda: run(src), lambda: run(tgt))
        except _pymongo().errors.PyMongoError as exc:
            checks.error("timing", "query time", label, _one_line(exc))


# ---------------------------------------------------------------- security (target only)


def security(target: MongoConnection, auth_database: str, checks: Checks) -> None:
    options = checks.options
    pymongo = _pymongo()
    where = target.display
    if options.require_authentication:
        anonymous = pymongo.MongoClient(_without_credentials(target.uri), serverSelectionTimeoutMS=target.timeout_seconds * 1000)
        try:
            names = anonymous.list_database_names()
            checks.add("security", "authentication required", where, False,
                       f"the target lists its {len(names)} databases to a client without credentials;"
                       " enable authentication (security.authorization)", [{"kind": "open", "key": where}])
        except pymongo.errors.OperationFailure as exc:
            checks.add("security", "authentication required", where, True,
                       f"a client without credentials is refused ({shorten(_one_line(exc), 100)})")
        except pymongo.errors.PyMongoError as exc:
            checks.error("security", "authentication required", where, _one_line(exc))
        finally:
            anonymous.close()
    if options.require_tls:
        uses_tls = "tls=true" in target.uri.lower() or "ssl=true" in target.uri.lower()
        plain = pymongo.MongoClient(_without_tls(target.uri), serverSelectionTimeoutMS=3000)
        try:
            plain.admin.command("ping")
            accepts_plain = True
        except pymongo.errors.PyMongoError:
            accepts_plain = False
        finally:
            plain.close()
        problems = ["the validator connects without TLS (set tls: true)"] if not uses_tls else []
        if accepts_plain:
            problems.append("the target also accepts connections without TLS (net.tls.mode: requireTLS)")
        checks.add("security", "tls", where, not problems, "; ".join(problems)
                   or "the target is reached with TLS and refuses plain connections")
    if options.expected_users:
        client = target.client()
        try:
            for user in options.expected_users:
                _expected_user(client, checks, user, auth_database)
        finally:
            client.close()


def _without_credentials(uri: str) -> str:
    scheme, _userinfo, hosts, path, query = _split_uri(uri)
    kept = "&".join(p for p in query.split("&") if p and not p.lower().startswith(("authsource=", "authmechanism=")))
    return f"{scheme}://{hosts}{path or '/'}" + (f"?{kept}" if kept else "")


def _without_tls(uri: str) -> str:
    base, _q, query = uri.partition("?")
    kept = [p for p in query.split("&") if p and not p.lower().startswith(("tls", "ssl"))]
    return base + ("?" + "&".join(kept) if kept else "")


def _expected_user(client: t.Any, checks: Checks, user: dict[str, t.Any], auth_database: str) -> None:
    name = str(user["name"])
    database = str(user.get("db") or auth_database)
    try:
        found = client[database].command("usersInfo", {"user": name, "db": database}).get("users", [])
    except _pymongo().errors.OperationFailure as exc:
        checks.error("security", "user", f"{database}.{name}", _one_line(exc))
        return
    if not found:
        checks.add("security", "user", f"{database}.{name}", False, "user does not exist on the target",
                   [{"kind": "missing", "key": f"{database}.{name}"}])
        return
    has = {(r.get("role"), r.get("db")) for r in found[0].get("roles", [])}
    wanted = set()
    for role in user.get("roles") or []:
        wanted.add((role.get("role"), role.get("db", database)) if isinstance(role, dict) else (str(role), database))
    missing = sorted(wanted - has)
    problems = [f"lacks role {r}@{d}" for r, d in missing]
    if not found[0].get("mechanisms", ["?"]):
        problems.append("has no credentials")
    checks.add("security", "user", f"{database}.{name}", not problems,
               "; ".join(problems) if problems else f"exists with roles {sorted(f'{r}@{d}' for r, d in has) or 'none'}",
               [{"kind": "user", "key": f"{database}.{name}", "problem": p} for p in problems])
