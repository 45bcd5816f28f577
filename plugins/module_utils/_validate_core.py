# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Migration validation, the parts every engine shares: checks, the bisecting content diff, reports.

Plain Python (no Ansible): the module, the benchmark and the tests import it directly.

The content diff follows data-diff: the key space is cut into ranges, each range is hashed on both
sides (by the servers where they can), equal ranges cost one hash each, a differing range is split
and compared again until it is small enough to fetch its keys and row hashes from both sides.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
import fnmatch
import http.client
import json
import os
import ssl
import statistics
import time
import typing as t
import urllib.parse
from dataclasses import dataclass, field

from ._common import LifeboatError, first_few, redact
from ._files import write_file_atomic

CATEGORIES = ("presence", "counts", "indexes", "schema", "content", "timing", "security", "application")
# The categories that read both sides' data; security and application look at the target alone.
DATA_CATEGORIES = CATEGORIES[:6]
# Timing depends on the machines, not on whether the data arrived: reported, not required, unless asked.
DEFAULT_REQUIRED = ("presence", "counts", "indexes", "schema", "content", "security", "application")
CONTENT_MODES = ("full", "sample", "none")
_VALUE_CHARS = 120


def shorten(value: t.Any, limit: int = _VALUE_CHARS) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Check:
    """One check's outcome. ``status`` is passed, failed or error (could not run: never a pass)."""

    name: str
    category: str
    object: str
    status: str
    required: bool = True
    details: str = ""
    differences: list[dict[str, t.Any]] = field(default_factory=list)
    difference_count: int = 0
    stats: dict[str, t.Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict[str, t.Any]:
        result = dataclasses.asdict(self)
        result["passed"] = self.passed
        return result


@dataclass
class Options:
    """What to check and how; engine-independent."""

    checks: tuple[str, ...] = CATEGORIES
    required: tuple[str, ...] = DEFAULT_REQUIRED
    objects: tuple[str, ...] = ()
    exclude_objects: tuple[str, ...] = ()
    count_tolerance_percent: float = 0.0
    content_mode: str = "full"
    sample_size: int = 1000
    chunk_rows: int = 100_000
    bisect_threshold: int = 1000
    bisect_fanout: int = 16
    max_differences: int = 20
    timing_queries: list[dict[str, t.Any]] = field(default_factory=list)
    timing_runs: int = 5
    timing_max_ratio: float | None = None
    require_authentication: bool = True
    require_tls: bool = False
    expected_users: list[dict[str, t.Any]] = field(default_factory=list)
    health_checks: list[dict[str, t.Any]] = field(default_factory=list)

    def validate(self) -> None:
        unknown = sorted(set(self.checks) - set(CATEGORIES)) + sorted(set(self.required) - set(CATEGORIES))
        if unknown:
            raise LifeboatError(f"unknown check category {unknown[0]!r}; use some of: {', '.join(CATEGORIES)}")
        if self.content_mode not in CONTENT_MODES:
            raise LifeboatError(f"unknown content_mode {self.content_mode!r}; use one of: {', '.join(CONTENT_MODES)}")
        for name in ("sample_size", "chunk_rows", "bisect_threshold", "max_differences", "timing_runs"):
            if getattr(self, name) < 1:
                raise LifeboatError(f"{name} must be 1 or more")
        if self.bisect_fanout < 2:
            raise LifeboatError("bisect_fanout must be 2 or more")
        if not 0 <= self.count_tolerance_percent <= 100:
            raise LifeboatError("count_tolerance_percent must be between 0 and 100")
        if self.timing_max_ratio is not None and self.timing_max_ratio <= 0:
            raise LifeboatError("timing_max_ratio must be more than 0")
        for index, user in enumerate(self.expected_users):
            if not isinstance(user, dict) or not user.get("name"):
                raise LifeboatError(f"expected_users[{index}] needs a name (and optionally roles: [..])")
        for index, check in enumerate(self.health_checks):
            url = check.get("url") if isinstance(check, dict) else None
            if not url or not str(url).startswith(("http://", "https://")):
                raise LifeboatError(f"health_checks[{index}] needs a url starting with http:// or https://")

    def wanted(self, category: str) -> bool:
        return category in self.checks

    def is_required(self, category: str) -> bool:
        return category in self.required

    def selected(self, name: str) -> bool:
        """Whether a table or collection (schema.table, or collection) takes part."""
        if self.objects and not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.objects):
            return False
        return not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude_objects)


class Checks:
    """Collects checks; knows which categories are required."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.items: list[Check] = []

    def add(self, category: str, name: str, obj: str, ok: bool, details: str = "",
            differences: list[dict[str, t.Any]] | None = None, count: int | None = None,
            stats: dict[str, t.Any] | None = None, status: str | None = None) -> Check:
        differences = differences or []
        cap = self.options.max_differences
        check = Check(
            name=name, category=category, object=obj, status=status or ("passed" if ok else "failed"),
            required=self.options.is_required(category), details=details, differences=differences[:cap],
            difference_count=len(differences) if count is None else count, stats=stats or {},
        )
        self.items.append(check)
        return check

    def error(self, category: str, name: str, obj: str, reason: str) -> Check:
        return self.add(category, name, obj, False, f"could not be checked: {reason}", status="error")


def compare_sets(kind: str, source: t.Iterable[str], target: t.Iterable[str]) -> list[dict[str, t.Any]]:
    source_set, target_set = set(source), set(target)
    return ([{"kind": "missing", "key": name, "what": kind} for name in sorted(source_set - target_set)]
            + [{"kind": "extra", "key": name, "what": kind} for name in sorted(target_set - source_set)])


def count_check(checks: Checks, obj: str, source: int, target: int) -> None:
    tolerance = checks.options.count_tolerance_percent
    allowed = int(source * tolerance / 100)
    ok = abs(source - target) <= allowed
    details = f"source {source}, target {target}"
    if source != target:
        details += f" ({target - source:+d}" + (f", tolerance {allowed})" if tolerance else ")")
    checks.add("counts", "count", obj, ok, details,
               [] if source == target else [{"kind": "count", "key": obj, "source": source, "target": target}])


def compare_definitions(checks: Checks, category: str, name: str, obj: str, what: str,
                        source: dict[str, t.Any], target: dict[str, t.Any]) -> None:
    """Named definitions (indexes, constraints, columns) on both sides: missing, extra, changed."""
    differences = compare_sets(what, source, target)
    for key in sorted(set(source) & set(target)):
        if source[key] != target[key]:
            differences.append({"kind": "changed", "key": key, "what": what,
                                "source": source[key], "target": target[key]})
    details = first_few([f"{d['kind']} {d['key']}" for d in differences], 3, ", ") if differences else \
        f"{len(source)} {what}{'es' if what.endswith('x') else 's'} equal"
    checks.add(category, name, obj, not differences, details, differences)


# ---------------------------------------------------------------- content: hashed ranges and bisection


@dataclass
class ContentStats:
    rows_compared: int = 0
    rows_transferred: dict[str, int] = field(default_factory=lambda: {"source": 0, "target": 0})
    chunks_hashed: int = 0
    bisections: int = 0
    seconds: float = 0.0

    def add(self, other: ContentStats) -> None:
        self.rows_compared += other.rows_compared
        for side in ("source", "target"):
            self.rows_transferred[side] += other.rows_transferred[side]
        self.chunks_hashed += other.chunks_hashed
        self.bisections += other.bisections
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, t.Any]:
        return {"rows_compared": self.rows_compared, "rows_transferred": dict(self.rows_transferred),
                "chunks_hashed": self.chunks_hashed, "bisections": self.bisections,
                "seconds": round(self.seconds, 3)}


class RangeSide(t.Protocol):
    """One side of one table or collection, as the bisection sees it.

    Bounds are opaque key values (None: open end); a range is [low, high).
    """

    def hash_ranges(self, bounds: list[t.Any]) -> list[tuple[int, int]]:
        """(rows, checksum) of each range between consecutive bounds."""

    def split(self, low: t.Any, high: t.Any, parts: int, rows: int) -> list[t.Any]:
        """Bounds that cut [low, high) into about ``parts`` ranges of rows (low and high included)."""

    def rows(self, low: t.Any, high: t.Any) -> dict[t.Any, t.Any]:
        """key -> row hash of every row in [low, high) (for multisets: row hash -> number of rows)."""


@dataclass
class RangeDiff:
    """The outcome of comparing one key space: differing keys by kind, capped, and the work it took."""

    missing: list[t.Any] = field(default_factory=list)
    extra: list[t.Any] = field(default_factory=list)
    changed: list[t.Any] = field(default_factory=list)
    stats: ContentStats = field(default_factory=ContentStats)

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.changed)


def both_sides(pool: concurrent.futures.ThreadPoolExecutor, left: t.Callable[..., t.Any],
               right: t.Callable[..., t.Any]) -> tuple[t.Any, t.Any]:
    """Run the same question on both sides at once (two servers, two connections)."""
    future = pool.submit(right)
    first = left()
    return first, future.result()


def bisect_compare(source: RangeSide, target: RangeSide, bounds: list[t.Any], options: Options,
                   multiset: bool = False) -> RangeDiff:
    """Compare [bounds[0], bounds[-1]) of two sides: hash ranges, bisect the unequal ones, diff small ones."""
    result = RangeDiff()
    stats = result.stats
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = [bounds]
        while pending:
            current = pending.pop()
            hashes_source, hashes_target = both_sides(pool, lambda c=current: source.hash_ranges(c),
                                                      lambda c=current: target.hash_ranges(c))
            stats.chunks_hashed += len(current) - 1
            for index, (one, other) in enumerate(zip(hashes_source, hashes_target)):
                low, high = current[index], current[index + 1]
                if current is bounds:
                    stats.rows_compared += max(one[0], other[0])
                if one == other:
                    continue
                rows = max(one[0], other[0])
                parts: list[t.Any] = []
                if rows > options.bisect_threshold:
                    side = source if one[0] >= other[0] else target
                    parts = side.split(low, high, options.bisect_fanout, rows)
                if len(parts) > 2:
                    stats.bisections += 1
                    pending.append(parts)
                    continue
                left, right = both_sides(pool, lambda lo=low, hi=high: source.rows(lo, hi),
                                         lambda lo=low, hi=high: target.rows(lo, hi))
                stats.rows_transferred["source"] += sum(left.values()) if multiset else len(left)
                stats.rows_transferred["target"] += sum(right.values()) if multiset else len(right)
                _diff_rows(left, right, result, multiset)
    stats.seconds = time.perf_counter() - started
    return result


def _diff_rows(left: dict[t.Any, t.Any], right: dict[t.Any, t.Any], result: RangeDiff, multiset: bool) -> None:
    if multiset:
        # key: row hash, value: how many times the row is there. Changed rows show as missing plus extra.
        for key in sorted(set(left) | set(right), key=repr):
            surplus = left.get(key, 0) - right.get(key, 0)
            (result.missing if surplus > 0 else result.extra).extend([key] * abs(surplus))
        return
    for key in sorted(set(left) | set(right), key=_sort_key):
        if key not in right:
            result.missing.append(key)
        elif key not in left:
            result.extra.append(key)
        elif left[key] != right[key]:
            result.changed.append(key)


def _sort_key(key: t.Any) -> tuple[str, str]:
    return (type(key).__name__, repr(key))


def timing_summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered) + 0.5) - 1))]
    return {"median_ms": round(statistics.median(ordered) * 1000, 3), "p95_ms": round(p95 * 1000, 3),
            "runs": len(ordered)}


def timing_check(checks: Checks, name: str, obj: str, run_source: t.Callable[..., t.Any],
                 run_target: t.Callable[..., t.Any]) -> None:
    """Run a query alternately on both sides; median and p95 side by side."""
    options = checks.options
    times: dict[str, list[float]] = {"source": [], "target": []}
    for _run in range(options.timing_runs):
        for side, run in (("source", run_source), ("target", run_target)):
            started = time.perf_counter()
            run()
            times[side].append(time.perf_counter() - started)
    source, target = timing_summary(times["source"]), timing_summary(times["target"])
    ratio = target["median_ms"] / source["median_ms"] if source["median_ms"] else 0.0
    ok = options.timing_max_ratio is None or ratio <= options.timing_max_ratio
    limit = f" (limit {options.timing_max_ratio}x)" if options.timing_max_ratio is not None else ""
    checks.add("timing", name, obj, ok,
               f"median {source['median_ms']} ms -> {target['median_ms']} ms, p95 {source['p95_ms']} ms -> "
               f"{target['p95_ms']} ms, target/source {ratio:.2f}x{limit}",
               stats={"source": source, "target": target, "ratio": round(ratio, 3)})


# ---------------------------------------------------------------- application health


def _http_get(url: str, method: str, timeout: float, validate_certs: bool) -> tuple[int, bytes]:
    """One request with the standard library (http.client): status and the first MiB of the body."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        if not validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, headers={"User-Agent": "lifeboat.ops migration_validate"})
        response = connection.getresponse()
        return response.status, response.read(1 << 20)
    finally:
        connection.close()


def health_checks(checks: Checks) -> None:
    for spec in checks.options.health_checks:
        url = str(spec["url"])
        expected = int(spec.get("status", 200))
        contains = spec.get("contains")
        try:
            status, body = _http_get(url, str(spec.get("method", "GET")), float(spec.get("timeout", 10)),
                                     bool(spec.get("validate_certs", True)))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            checks.add("application", "health", url, False, f"no answer: {exc}")
            continue
        text = body.decode("utf-8", "replace")
        problems = []
        if status != expected:
            problems.append(f"status {status}, expected {expected}")
        if contains and str(contains) not in text:
            problems.append(f"body does not contain {shorten(str(contains), 60)!r}")
        details = "; ".join(problems) if problems else f"status {status}" + (" and expected text" if contains else "")
        checks.add("application", "health", url, not problems, details,
                   [] if not problems else [{"kind": "health", "key": url, "status": status,
                                             "body": shorten(text, 200)}])


# ---------------------------------------------------------------- result and report


def build_result(checks: Checks, source: str, target: str, engine: str, content: ContentStats,
                 started: float) -> dict[str, t.Any]:
    items = checks.items
    failed = [c for c in items if not c.passed]
    failed_required = [c for c in failed if c.required]
    passed = not failed_required
    by_category: dict[str, dict[str, int]] = {}
    for check in items:
        entry = by_category.setdefault(check.category, {"passed": 0, "failed": 0})
        entry["passed" if check.passed else "failed"] += 1
    verdict = "PASSED" if passed else "FAILED"
    summary = f"{verdict}: {engine} migration {source} -> {target}. {len(items) - len(failed)} of {len(items)} checks passed"
    if failed_required:
        summary += f"; {len(failed_required)} required check(s) failed: " + first_few(
            [f"{c.category} {c.name} of {c.object}: {c.details}" for c in failed_required], 5)
    optional_failed = [c for c in failed if not c.required]
    if optional_failed:
        summary += f"; {len(optional_failed)} failed check(s) not required: " + first_few(
            [f"{c.category} {c.object}" for c in optional_failed], 3, ", ")
    summary += (f". Content: {content.rows_compared} rows compared in {content.chunks_hashed} hashed chunks,"
                f" {content.bisections} bisections, rows transferred source {content.rows_transferred['source']},"
                f" target {content.rows_transferred['target']}.")
    return {
        "passed": passed,
        "engine": engine,
        "source": source,
        "target": target,
        "summary": redact(summary),
        "failed_checks": [f"{c.category}:{c.name}:{c.object}" for c in failed_required],
        "categories": by_category,
        "content": content.as_dict(),
        "checks": [c.as_dict() for c in items],
        "finished": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_seconds": round(time.perf_counter() - started, 3),
    }


def _md_cell(text: t.Any) -> str:
    return shorten(str(text), 200).replace("|", "\\|").replace("\n", " ")


def markdown(result: dict[str, t.Any]) -> str:
    lines = [f"# Migration validation: {'PASSED' if result['passed'] else 'FAILED'}", "",
             result["summary"], "",
             f"- engine: {result['engine']}", f"- source: {result['source']}", f"- target: {result['target']}",
             f"- finished: {result['finished']} ({result['duration_seconds']} s)", "",
             "| | category | check | object | details |", "|---|---|---|---|---|"]
    for check in sorted(result["checks"], key=lambda c: (c["passed"], not c["required"])):
        mark = "ok" if check["passed"] else ("FAIL" if check["required"] else "warn")
        lines.append(f"| {mark} | {check['category']} | {check['name']} | {_md_cell(check['object'])} "
                     f"| {_md_cell(check['details'])} |")
    failing = [c for c in result["checks"] if not c["passed"] and c["differences"]]
    if failing:
        lines += ["", "## Differences", ""]
        for check in failing:
            lines.append(f"### {check['category']} {check['name']}: {check['object']}")
            lines.append("")
            for difference in check["differences"]:
                lines.append("- " + _md_cell(json.dumps(difference, default=str, ensure_ascii=False)))
            if check["difference_count"] > len(check["differences"]):
                lines.append(f"- ... {check['difference_count'] - len(check['differences'])} more")
            lines.append("")
    return redact("\n".join(lines).rstrip() + "\n")


def report_paths(report_path: str) -> tuple[str, str]:
    base = report_path[:-5] if report_path.endswith(".json") else report_path[:-3] if report_path.endswith(".md") \
        else report_path
    return base + ".json", base + ".md"


def write_report(result: dict[str, t.Any], report_path: str) -> tuple[str, str]:
    """Write REPORT.json and REPORT.md (0600, atomically); no secret survives redact()."""
    json_path, md_path = report_paths(report_path)
    directory = os.path.dirname(os.path.abspath(json_path))
    if not os.path.isdir(directory):
        raise LifeboatError(f"report directory {directory} does not exist; create it or choose another report_path")
    write_file_atomic(json_path, (redact(json.dumps(result, indent=2, default=str, ensure_ascii=False)) + "\n")
                      .encode("utf-8"), 0o600)
    write_file_atomic(md_path, markdown(result).encode("utf-8"), 0o600)
    return json_path, md_path
