# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Which archives of a destination to remove: restic's ``forget`` policy, under rules that protect the last good one.

The policy part follows restic's ``ApplyPolicy`` (internal/restic/snapshot_policy.go): archives newest first;
``keep_last`` keeps the n newest; each of ``keep_hourly`` ... ``keep_yearly`` keeps an archive when its bucket
(hour, day, ISO week, month, year of its start time) differs from the bucket of the last archive that rule kept,
while the rule's count lasts (-1: unlimited); a rule whose count is not used up also keeps the oldest archive,
so that the history kept is as long as possible; ``keep_within`` keeps every archive that started after the
newest archive's start minus the span (measured from the newest archive, not from now, like restic).
Buckets are taken in UTC, the time zone of archive names, so a host's time zone never changes what is kept.

On top of the policy, per job and database (never per host name: containers get new ones):

- the newest verified archive is always kept, and so is every readable archive newer than it;
- an archive nobody can read (no manifest, unreadable manifest, missing file) is never removed;
- nothing at all is removed while the newest archive is unverified (``require_verified``) or looks wrong next to
  the last verified one (much smaller, tables emptied; lifted by ``accept_anomalies``), until a newer one is proven.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import stat
import typing as t
from dataclasses import dataclass, field

from . import _catalog, _manifest
from ._common import (
    PRIVATE_DIR_NAME,
    LifeboatError,
    leftover_removable,
    stale_private_dirs,
    writer_alive,
)
from ._files import fsync_directory
from ._module_frame import Outcome, Run

# (option, how an archive's start time falls into the rule's bucket); restic's order.
BUCKET_RULES: tuple[tuple[str, t.Callable[[_dt.datetime], str]], ...] = (
    ("keep_hourly", lambda moment: moment.strftime("%Y-%m-%dT%H")),
    ("keep_daily", lambda moment: moment.strftime("%Y-%m-%d")),
    ("keep_weekly", lambda moment: "{}-W{:02d}".format(*moment.isocalendar())),
    ("keep_monthly", lambda moment: moment.strftime("%Y-%m")),
    ("keep_yearly", lambda moment: moment.strftime("%Y")),
)
COUNT_OPTIONS = ("keep_last", *(name for name, _bucket in BUCKET_RULES))
UNLIMITED = -1
_SPAN_PART = re.compile(r"(\d+)([ymdh])")


def policy_options() -> dict[str, t.Any]:
    """The policy's options as an argument spec: the prune module's and the config's ``retention`` section."""
    return {**{name: {"type": "int"} for name in COUNT_OPTIONS}, "keep_within": {"type": "str"},
            "require_verified": {"type": "bool", "default": True},
            "accept_anomalies": {"type": "bool", "default": False}}


@dataclass(frozen=True)
class Span:
    """restic's Duration: years, months, days and hours, taken back from a moment the way Go's AddDate does."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, text: str) -> Span:
        cleaned = text.strip().lower()
        parts = _SPAN_PART.findall(cleaned)
        if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
            raise LifeboatError(
                f"keep_within '{text}' is not a span; write it like restic: a number and a unit, y (years), "
                "m (months), d (days), h (hours), e.g. 30d or 1y6m"
            )
        values = {"y": 0, "m": 0, "d": 0, "h": 0}
        for number, unit in parts:
            values[unit] = int(number)  # restic: a repeated unit replaces the earlier one
        return cls(values["y"], values["m"], values["d"], values["h"])

    @property
    def zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def before(self, moment: _dt.datetime) -> _dt.datetime:
        """``moment`` minus this span; a day past the month's end rolls over (Mar 31 - 1m = Mar 3), as in Go."""
        month_index = moment.year * 12 + moment.month - 1 - self.years * 12 - self.months
        first = moment.replace(year=month_index // 12, month=month_index % 12 + 1, day=1)
        return first + _dt.timedelta(days=moment.day - 1 - self.days, hours=-self.hours)

    def __str__(self) -> str:
        return "".join(f"{value}{unit}" for value, unit in
                       ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h")) if value) or "0h"


@dataclass(frozen=True)
class Policy:
    """What to keep per group; None or 0 turns a rule off, -1 keeps one archive per bucket without limit."""

    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: Span | None = None
    require_verified: bool = True
    accept_anomalies: bool = False

    @classmethod
    def from_options(cls, options: t.Mapping[str, t.Any]) -> Policy:
        """Validate options (module parameters or a config section); other keys than ``keep_*`` and the flags
        are ignored, so module params can be passed whole, but an unknown ``keep_*`` is a typo and refused."""
        known = {*COUNT_OPTIONS, "keep_within"}
        unknown = sorted(key for key in options if key.startswith("keep_") and key not in known)
        if unknown:
            raise LifeboatError(f"unknown retention option {', '.join(unknown)}; use {', '.join(sorted(known))}")
        counts: dict[str, int | None] = {}
        for name in COUNT_OPTIONS:
            value = options.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise LifeboatError(f"{name} must be a whole number (or -1 for no limit), not {value!r}")
            if value is not None and value < UNLIMITED:
                raise LifeboatError(f"{name} is {value}; use a count of 0 or more, or -1 for no limit")
            counts[name] = value
        within = options.get("keep_within")
        span = Span.parse(str(within)) if within not in (None, "") else None
        policy = cls(**counts, keep_within=span if span and not span.zero else None,
                     require_verified=bool(options.get("require_verified", True)),
                     accept_anomalies=bool(options.get("accept_anomalies", False)))
        if not policy.rules():
            raise LifeboatError(
                "the retention policy keeps nothing (like restic, an empty policy is refused rather than removing "
                f"every archive); set at least one of {', '.join(COUNT_OPTIONS)} or keep_within"
            )
        return policy

    def rules(self) -> list[str]:
        """The rules in force, as a person would write them: ``keep_daily=7``, ``keep_within=30d``."""
        active = [f"{name}={_limit(value)}" for name in COUNT_OPTIONS if (value := getattr(self, name))]
        return active + ([f"keep_within={self.keep_within}"] if self.keep_within else [])


@dataclass
class GroupPlan:
    """The decision for one job and database: each archive kept or removed, with its reasons."""

    job: str
    database: str | None
    keep: list[tuple[_catalog.Archive, list[str]]] = field(default_factory=list)
    remove: list[tuple[_catalog.Archive, list[str]]] = field(default_factory=list)
    held: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Partial:
    """What a writer leaves until it is done: a ``.NAME.partial-PID`` file, or a private ``.lifeboat-PID-*``
    directory (an unpacked dump); removable only when the writer is gone (PID dead, lock released)."""

    path: str
    pid: int | None
    writer_alive: bool
    removable: bool
    directory: bool = False


@dataclass
class PrunePlan:
    destination: str
    policy: Policy
    groups: list[GroupPlan] = field(default_factory=list)
    partials: list[Partial] = field(default_factory=list)
    remove_partials: bool = False
    freed_bytes: int = 0

    @property
    def removals(self) -> list[_catalog.Archive]:
        return [archive for group in self.groups for archive, _reasons in group.remove]

    @property
    def partials_to_remove(self) -> list[Partial]:
        return [partial for partial in self.partials if self.remove_partials and partial.removable]

    def measure(self) -> None:
        """Sizes are read when the plan is made: after apply_prune, the files are gone."""
        self.freed_bytes = sum(_size_on_disk(path) for archive in self.removals for path in archive.files()) + sum(
            (_tree_size if partial.directory else _size_on_disk)(partial.path) for partial in self.partials_to_remove)

    def as_dict(self) -> dict[str, t.Any]:
        """Plain data for module results and the ``lifeboat`` command: names, reasons, bytes."""

        def listed(entries: list[tuple[_catalog.Archive, list[str]]]) -> list[dict[str, t.Any]]:
            return [{"name": archive.name, "job": archive.job, "database": archive.database,
                     "started_at": _manifest.iso(archive.started_at), "verified": archive.verified,
                     "reasons": reasons} for archive, reasons in entries]

        return {
            "policy": self.policy.rules(),
            "removed": listed([entry for group in self.groups for entry in group.remove]),
            "kept": listed([entry for group in self.groups for entry in group.keep]),
            "held": [{"job": group.job, "database": group.database, "reason": group.held}
                     for group in self.groups if group.held],
            "unreadable": [{"name": archive.name, "job": archive.job, "problem": archive.problem}
                           for group in self.groups for archive, _reasons in group.keep if not archive.readable],
            "warnings": [warning for group in self.groups for warning in group.warnings],
            "partials": [{"path": partial.path, "pid": partial.pid, "writer_alive": partial.writer_alive,
                          "removed": partial in self.partials_to_remove} for partial in self.partials],
            "freed_bytes": self.freed_bytes,
        }

    def names(self, after: bool) -> list[str]:
        """Archive names before the prune, or after it (for diff mode)."""
        gone = {id(archive) for archive in self.removals} if after else set()
        return sorted(archive.name for group in self.groups for archive, _reasons in [*group.keep, *group.remove]
                      if id(archive) not in gone)


def check_destination(destination: str) -> None:
    """Prune works on a directory that exists: a missing one is a wrong path, not an empty destination."""
    _manifest.validate_destination(destination)
    if not os.path.isdir(destination):
        problem = "is not a directory" if os.path.lexists(destination) else "does not exist"
        raise LifeboatError(f"destination {destination} {problem}: nothing to prune; check the path "
                            "(a backup creates it)")


def plan_prune(destination: _catalog.Destination, policy: Policy, now: _dt.datetime | None = None,
               remove_partials: bool = False, job: str | None = None) -> PrunePlan:
    """Decide, group by group, what ``policy`` removes from ``destination``; nothing is touched here.

    With ``remove_partials``, the leftovers of writers that are gone go too: partial files (of ``job`` only, when
    given) and private directories; never those of a writer that is still running.
    """
    now = now or _manifest.utc_now()
    plan = PrunePlan(destination.path, policy, remove_partials=remove_partials)
    groups = destination.groups()
    for group_job, database in sorted(groups, key=lambda key: (key[0], key[1] or "")):
        plan.groups.append(_plan_group(group_job, database, groups[(group_job, database)], policy, now))
    plan.partials = leftovers(destination, job)
    plan.measure()
    return plan


def leftovers(destination: _catalog.Destination, job: str | None = None) -> list[Partial]:
    """The partial files in ``destination`` (of ``job`` only, when given), then the private directories whose
    writer is gone (their names carry no job)."""
    files = [describe_partial(path) for path in destination.partials if job is None or partial_job(path) == job]
    return files + [Partial(path, _private_dir_pid(path), writer_alive=False, removable=True, directory=True)
                    for path in stale_private_dirs(destination.path)]


def partial_job(path: str) -> str | None:
    """The job a partial file belongs to: an archive's or manifest's (JOB-STAMP...) or a run record's."""
    name = os.path.basename(path)
    archive = _catalog.ARCHIVE_NAME.match(name.lstrip("."))
    if archive:
        return archive["job"]
    record = _catalog.RUN_RECORD_PARTIAL.match(name)
    return record["job"] if record else None


def sweep_leftovers(destination: str, job: str) -> list[str]:
    """Before a run of ``job`` writes: remove what dead runs left in ``destination`` (the job's partial files,
    private directories); what a running writer holds stays. Returns the paths removed."""
    if not os.path.isdir(destination):
        return []
    # A plan without groups: no archive is touched, whatever its policy says.
    plan = PrunePlan(destination, Policy(keep_last=1), partials=leftovers(_catalog.scan(destination), job),
                     remove_partials=True)
    return apply_prune(plan)


def _plan_group(job: str, database: str | None, archives: list[_catalog.Archive], policy: Policy,
                now: _dt.datetime) -> GroupPlan:
    group = GroupPlan(job, database)
    readable = [archive for archive in archives if archive.readable]  # oldest first, as the catalog lists them
    reasons: dict[int, list[str]] = {id(archive): [] for archive in archives}
    for archive in archives:
        if not archive.readable:
            reasons[id(archive)].append(f"kept: {archive.problem}; check and remove it by hand")
            group.warnings.append(f"{archive.name} cannot be read ({archive.problem}); it is kept, check it by hand")
    for archive, why in apply_policy(readable, policy, now):
        reasons[id(archive)].extend(why)

    verified = [archive for archive in readable if archive.verified]
    newest_verified = verified[-1] if verified else None
    if newest_verified is not None:
        reasons[id(newest_verified)].append("newest verified archive")
        for archive in readable[readable.index(newest_verified) + 1:]:
            reasons[id(archive)].append(f"newer than the newest verified archive {newest_verified.name}")
    group.held = _hold(readable, policy)
    if group.held:
        for archive in archives:
            reasons[id(archive)].append(f"held: {group.held}")

    for archive in archives:
        why = reasons[id(archive)]
        if why:
            group.keep.append((archive, why))
        else:
            group.remove.append((archive, [f"kept by none of {', '.join(policy.rules())}"]))
    return group


def _hold(readable: list[_catalog.Archive], policy: Policy) -> str | None:
    """Why nothing of the group may go now: its newest archive is not proven, or looks wrong."""
    if not readable:
        return None
    newest = readable[-1]
    if policy.require_verified and not newest.verified:
        record = newest.last_verification
        state = (f"failed its last verification ({record.get('failure') or 'no reason recorded'})"
                 if newest.verification_failed and record else "is not verified")
        return (f"the newest archive {newest.name} {state}; nothing is removed until a newer archive is verified "
                "(or set require_verified=false)")
    findings = _catalog.compare_to_reference(newest, _catalog.previous_verified(readable, newest))
    if findings and not policy.accept_anomalies:
        return (f"the newest archive looks wrong: {'; '.join(finding.message for finding in findings)}; nothing "
                "is removed until a newer archive is verified and looks normal (or set accept_anomalies=true)")
    return None


@dataclass
class _BucketCounter:
    """One of restic's bucket rules while it walks the archives newest first."""

    rule: str  # "daily"
    left: int  # -1: no limit
    limit: str
    bucket: t.Callable[[_dt.datetime], str]
    previous: str | None = None
    used: int = 0

    def keeps(self, moment: _dt.datetime, oldest: bool) -> str | None:
        """The reason this rule keeps an archive started at ``moment``, or None; counts it when it does."""
        if not self.left:
            return None
        value = self.bucket(moment)
        if value == self.previous and not oldest:
            return None
        self.used += 1
        if self.left > 0:
            self.left -= 1
        if value == self.previous:
            return f"{self.rule}: oldest archive, kept while the count lasts ({self.used} of {self.limit})"
        self.previous = value
        return f"{self.rule} {value} ({self.used} of {self.limit})"


def apply_policy(archives: t.Sequence[_catalog.Archive], policy: Policy,
                 now: _dt.datetime) -> list[tuple[_catalog.Archive, list[str]]]:
    """restic's ApplyPolicy over readable archives: the ones the policy keeps, newest first, with every reason."""
    ordered = sorted(archives, key=lambda archive: (archive.started_at, archive.name), reverse=True)
    if not ordered:
        return []
    counters = [_BucketCounter(name[len("keep_"):], count, _limit(count), bucket)
                for name, bucket in BUCKET_RULES if (count := getattr(policy, name))]
    last_left = policy.keep_last or 0
    # restic measures keep_within from the newest archive that is not in the future (when all are, from the
    # zero time: keep_within then keeps them all).
    past = [archive.started_at for archive in ordered if archive.started_at < now]
    within_from = None
    if policy.keep_within:
        within_from = policy.keep_within.before(past[0]) if past else _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    kept = []
    for position, archive in enumerate(ordered):
        moment = archive.started_at.astimezone(_dt.timezone.utc)
        why = []
        if within_from is not None and archive.started_at > within_from:
            why.append(f"within {policy.keep_within} of the newest archive")
        if last_left:
            if last_left > 0:
                last_left -= 1
            why.append(f"last {position + 1} of {_limit(policy.keep_last)}")
        for counter in counters:
            reason = counter.keeps(moment, oldest=position == len(ordered) - 1)
            if reason:
                why.append(reason)
        if why:
            kept.append((archive, why))
    return kept


def _limit(count: int | None) -> str:
    return "unlimited" if count == UNLIMITED else str(count)


def apply_prune(plan: PrunePlan) -> list[str]:
    """Remove the files of every archive the plan removes, and stale partials if asked; return the paths removed.

    Files go extras first, the archive next, the manifest last: an interrupted removal leaves a manifest that
    the catalog reports as "archive file missing", never an archive nobody can identify.
    """
    root = os.path.realpath(plan.destination)
    paths = [path for archive in plan.removals for path in archive.files()]
    paths += [partial.path for partial in plan.partials_to_remove if not partial.directory]
    for path in paths:  # every path is checked before the first one is removed
        _check_inside(root, path)
    removed: list[str] = []
    try:
        for path in paths:
            if _unlink(path):
                removed.append(path)
        for partial in plan.partials_to_remove:
            path = partial.path
            if partial.directory and os.path.realpath(os.path.dirname(path)) == root and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
                if not os.path.lexists(path):
                    removed.append(path)
    finally:
        if removed:
            fsync_directory(plan.destination)
    return removed


def _check_inside(root: str, path: str) -> None:
    """Only regular files and symlinks directly in the destination may go; a link is removed, never followed."""
    if os.path.realpath(os.path.dirname(path)) != root:
        raise LifeboatError(f"refusing to remove {path}: it is not directly in the destination {root}; "
                            "check the manifest that lists it")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LifeboatError(f"cannot remove {path}: {exc.strerror}") from exc
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise LifeboatError(f"refusing to remove {path}: it is not a file; remove it by hand if it should go")


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)  # a symlink is removed itself; its target, wherever it is, stays
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LifeboatError(f"cannot remove {path}: {exc.strerror}") from exc
    return True


def describe_partial(path: str) -> Partial:
    match = _catalog.PARTIAL_NAME.match(os.path.basename(path))
    pid = int(match["pid"]) if match else None
    alive = writer_alive(path, pid)
    return Partial(path, pid, writer_alive=bool(alive), removable=leftover_removable(path, alive))


def _private_dir_pid(path: str) -> int | None:
    match = PRIVATE_DIR_NAME.match(os.path.basename(path))
    return int(match["pid"]) if match and match["pid"] else None


def _tree_size(path: str) -> int:
    total = 0
    for directory, _dirs, files in os.walk(path):
        total += sum(_size_on_disk(os.path.join(directory, name)) for name in files)
    return total


def _size_on_disk(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def backup_prune_spec() -> dict[str, t.Any]:
    return {
        "destination": {"type": "path", "required": True},
        "job": {"type": "str"},
        **policy_options(),
        "remove_partials": {"type": "bool", "default": True},
    }


def backup_prune(run: Run) -> Outcome:
    params = run.params
    policy = Policy.from_options(params)
    check_destination(params["destination"])
    destination = _catalog.scan(params["destination"], params["job"])
    plan = plan_prune(destination, policy, remove_partials=params["remove_partials"], job=params["job"])
    removed_files = [] if run.check_mode else apply_prune(plan)
    result = plan.as_dict()
    result["warnings_found"] = result.pop("warnings")
    for warning in result["warnings_found"] + [f"{item['job']}: {item['reason']}" for item in result["held"]]:
        run.warn(warning)
    diff = None
    if run.diff:
        diff = {"before": "\n".join(plan.names(after=False)) + "\n",
                "after": "\n".join(plan.names(after=True)) + "\n",
                "before_header": params["destination"], "after_header": params["destination"]}
    if not run.check_mode:
        result["removed_files"] = removed_files
    return Outcome(changed=bool(plan.removals or plan.partials_to_remove), result=result, diff=diff)
