# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention: restic's keep rules, and the safety rules that protect the last good archive.

The archives here are catalog entries built in memory (no files): the rules only read names, times,
manifests and verification records. tests/integration/test_prune.py runs the same on real archives.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ansible_collections.lifeboat.ops.plugins.module_utils import _catalog
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.ops.plugins.module_utils._retention import (
    BUCKET_RULES,
    GroupPlan,
    Policy,
    Span,
    apply_prune,
    plan_prune,
)

UTC = _dt.UTC
NOW = _dt.datetime(2027, 1, 1, tzinfo=UTC)
FAR_FUTURE = _dt.datetime(2200, 1, 1, tzinfo=UTC)
BUCKETS = {name[len("keep_"):]: bucket for name, bucket in BUCKET_RULES}


def make_archive(index: int, started: _dt.datetime, *, database: str = "journal", verified: bool | None = None,
                 problem: str | None = None, plain_size: int = 1000, counts: dict | None = None) -> _catalog.Archive:
    """verified: True (passed), False (failed), None (never verified)."""
    name = f"/backups/app-{started:%Y%m%dT%H%M%SZ}-{index:03d}.pgdump.zst"
    records = [] if verified is None else [{"at": "x", "ok": verified, "level": "stream",
                                            "failure": None if verified else "zstd: data corrupted"}]
    manifest = None if problem == "no manifest" else {
        "database": database, "archive": {"size": plain_size // 3, "plain_size": plain_size},
        "counts": counts or {}, "verifications": records}
    return _catalog.Archive(path=name, job="app", started_at=started, manifest=manifest, problem=problem)


def destination(archives: list[_catalog.Archive]) -> _catalog.Destination:
    return _catalog.Destination("/backups", sorted(archives, key=lambda a: (a.started_at, a.name)))


def policy(**options) -> Policy:
    return Policy.from_options(options)


# ---- restic's own test series (internal/restic/snapshot_policy_test.go, TestApplyPolicy) ------------------------
EVERY_FEW_DAYS = (1, 2, 5, 6, 8, 9, 10, 11, 20, 22)
TWICE_ON_13TH = (8, 10, 12, 13, 13, 15, 18, 20, 21, 22)  # restic's second one is at 10:20:30.1


def _restic_month(year: int, month: int, days: tuple[int, ...]) -> list[_dt.datetime]:
    moments = [_dt.datetime(year, month, day, 10, 20, 30, tzinfo=UTC) for day in days]
    return [m + _dt.timedelta(microseconds=100000 * (i > 0 and m == moments[i - 1])) for i, m in enumerate(moments)]


RESTIC_SERIES = [
    *_restic_month(2014, 9, EVERY_FEW_DAYS), *_restic_month(2014, 8, TWICE_ON_13TH),
    *_restic_month(2014, 10, EVERY_FEW_DAYS), *_restic_month(2014, 11, TWICE_ON_13TH),
    *_restic_month(2015, 9, EVERY_FEW_DAYS), *_restic_month(2015, 8, TWICE_ON_13TH),
    *_restic_month(2015, 10, (*EVERY_FEW_DAYS, 22, 22, 22, 22)), *_restic_month(2015, 11, TWICE_ON_13TH),
    *(_dt.datetime.fromisoformat(f"2016-01-{stamp}+00:00") for stamp in (
        "01T01:02:03", "01T01:03:03", "01T07:08:03", "03T07:02:03", "04T10:23:03", "04T11:23:03", "04T12:23:03",
        "04T12:24:03", "04T12:28:03", "04T12:30:03", "04T16:23:03", "05T09:02:03", "06T08:02:03", "07T10:02:03",
        "08T20:02:03", "09T21:02:03", "12T21:02:03", "12T21:08:03", "18T12:02:03")),
]


def kept_times(chosen: Policy) -> list[str]:
    archives = [make_archive(i, moment, verified=True) for i, moment in enumerate(RESTIC_SERIES)]
    plan = plan_prune(destination(archives), chosen, now=NOW)
    return sorted((archive.started_at.strftime("%Y-%m-%d %H:%M") for archive, _why in plan.groups[0].keep),
                  reverse=True)


@pytest.mark.parametrize("options, expected", [
    # restic testdata/policy_keep_snapshots_6 (Daily: 3) on this series: the three newest days.
    ({"keep_daily": 3}, ["2016-01-18 12:02", "2016-01-12 21:08", "2016-01-09 21:02"]),
    # Weekly: 2: ISO weeks 2016-W03 and 2016-W02, the newest archive of each.
    ({"keep_weekly": 2}, ["2016-01-18 12:02", "2016-01-12 21:08"]),
    # testdata/policy_keep_snapshots_16 (Yearly: 10) lists the first three; restic 0.17 added "keep the oldest
    # while a count is left" (the ApplyPolicy we follow), so the oldest, 2014-08-08, is kept too.
    ({"keep_yearly": 10}, ["2016-01-18 12:02", "2015-11-22 10:20", "2014-11-22 10:20", "2014-08-08 10:20"]),
    ({"keep_last": 2, "keep_hourly": 1}, ["2016-01-18 12:02", "2016-01-12 21:08"]),
    # Within 2d of the newest (not of now): only the newest itself.
    ({"keep_within": "2d"}, ["2016-01-18 12:02"]),
])
def test_restic_series(options, expected):
    assert kept_times(policy(**options)) == expected


def test_within_one_month_counts_from_the_newest_archive():
    expected = sorted((m.strftime("%Y-%m-%d %H:%M") for m in RESTIC_SERIES if m.year == 2016), reverse=True)
    assert kept_times(policy(keep_within="1m")) == expected


def test_within_ignores_archives_from_the_future_as_restic_does():
    archives = series(True, True, True, start=NOW - _dt.timedelta(days=1, hours=1))  # the last one is tomorrow
    plan = plan_prune(destination(archives), policy(keep_within="1h"), now=NOW)
    assert [a for a, _why in plan.groups[0].remove] == archives[:1]


def test_span_subtracts_like_go_add_date():
    assert Span.parse("1m").before(_dt.datetime(2026, 3, 31, tzinfo=UTC)) == _dt.datetime(2026, 3, 3, tzinfo=UTC)
    assert Span.parse("1y2m3d4h").before(_dt.datetime(2026, 5, 10, 12, tzinfo=UTC)) == \
        _dt.datetime(2025, 3, 7, 8, tzinfo=UTC)
    assert str(Span.parse("1y6m")) == "1y6m"


@pytest.mark.parametrize("options, message", [
    ({}, "keeps nothing"),
    ({"keep_daily": 0, "keep_within": "0d"}, "keeps nothing"),
    ({"keep_daily": -2}, "keep_daily is -2; use a count of 0 or more, or -1 for no limit"),
    ({"keep_within": "30x"}, "keep_within '30x' is not a span"),
    ({"keep_within": "-3d"}, "is not a span"),
    ({"keep_dayly": 3}, "unknown retention option keep_dayly"),
    ({"keep_last": "3"}, "keep_last must be a whole number"),
])
def test_bad_policy_is_one_line_error(options, message):
    with pytest.raises(LifeboatError, match=message) as caught:
        Policy.from_options(options)
    assert "\n" not in str(caught.value)


def test_unlimited_daily_keeps_one_per_day():
    days = [_dt.datetime(2026, 11, day, hour, tzinfo=UTC) for day in (1, 2, 3) for hour in (1, 13)]
    archives = [make_archive(i, moment, verified=True) for i, moment in enumerate(days)]
    plan = plan_prune(destination(archives), policy(keep_daily=-1), now=NOW)
    assert [a.started_at.hour for a, _why in plan.groups[0].keep] == [1, 13, 13, 13]  # and the oldest, count left
    assert "daily 2026-11-03 (1 of unlimited)" in plan.groups[0].keep[-1][1]


# ---- the safety rules ---------------------------------------------------------------------------------------------
def series(*states, start=_dt.datetime(2026, 11, 1, 3, tzinfo=UTC)) -> list[_catalog.Archive]:
    return [make_archive(i, start + _dt.timedelta(days=i), verified=state) for i, state in enumerate(states)]


def test_failed_backups_hold_the_group():
    archives = series(True, False, None, False)
    plan = plan_prune(destination(archives), policy(keep_last=1), now=NOW)
    group = plan.groups[0]
    assert not group.remove
    assert "failed its last verification (zstd: data corrupted)" in group.held
    assert "newest verified archive" in group.keep[0][1]


def test_without_require_verified_the_newest_verified_still_stays():
    archives = series(True, False, None, False)
    plan = plan_prune(destination(archives), policy(keep_last=1, require_verified=False), now=NOW)
    assert [a for a, _why in plan.groups[0].keep] == archives  # the verified one, and every newer one
    assert plan.groups[0].held is None


def test_anomaly_holds_unless_accepted():
    archives = series(True, True, True)
    for archive in archives[:2]:
        archive.manifest.update(counts={"public.entry": 500}, archive={"size": 3000, "plain_size": 9000})
    archives[2].manifest.update(counts={"public.entry": 0})
    plan = plan_prune(destination(archives), policy(keep_last=1), now=NOW)
    assert not plan.groups[0].remove
    assert "public.entry went from 500 to none" in plan.groups[0].held
    accepted = plan_prune(destination(archives), policy(keep_last=1, accept_anomalies=True), now=NOW)
    assert [a for a, _why in accepted.groups[0].remove] == archives[:2]


def test_unreadable_archives_stay_and_are_reported():
    archives = series(True, True)
    broken = make_archive(9, archives[0].started_at - _dt.timedelta(days=3), problem="no manifest")
    plan = plan_prune(destination([*archives, broken]), policy(keep_last=1), now=NOW)
    result = plan.as_dict()
    assert [entry["name"] for entry in result["removed"]] == [archives[0].name]
    assert result["unreadable"] == [{"name": broken.name, "job": "app", "problem": "no manifest"}]
    kept = {entry["name"]: entry["reasons"] for entry in result["kept"]}
    assert kept[broken.name] == ["kept: no manifest; check and remove it by hand"]


def test_groups_are_job_and_database():
    others = [make_archive(5 + i, a.started_at, database="other", verified=True)
              for i, a in enumerate(series(True, True))]
    archives = series(True, True) + others
    plan = plan_prune(destination(archives), policy(keep_last=1), now=NOW)
    assert [(g.database, len(g.keep), len(g.remove)) for g in plan.groups] == [("journal", 1, 1), ("other", 1, 1)]


def test_apply_prune_removes_extras_archive_then_manifest_and_nothing_outside(tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("keep me")
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = make_archive(0, _dt.datetime(2026, 1, 1, tzinfo=UTC))
    archive.path = str(dest / os.path.basename(archive.path))
    archive.manifest["extras"] = [{"file": "globals.sql"}]
    os.symlink(outside, dest / "globals.sql")  # a link out of the destination: the link goes, its target stays
    for path in archive.files()[1:]:
        open(path, "w", encoding="utf-8").close()
    plan = plan_prune(_catalog.Destination(str(dest), [archive]), policy(keep_last=1), now=NOW)
    plan.groups[0].keep, plan.groups[0].remove = [], [(archive, ["test"])]
    assert apply_prune(plan) == archive.files()
    assert not os.listdir(dest) and outside.read_text() == "keep me"


def test_apply_prune_refuses_a_manifest_that_points_outside_and_removes_nothing(tmp_path):
    archive = make_archive(0, _dt.datetime(2026, 1, 1, tzinfo=UTC))
    archive.path = str(tmp_path / os.path.basename(archive.path))
    archive.manifest["extras"] = [{"file": "../victim.txt"}]
    (tmp_path.parent / "victim.txt").write_text("mine")
    for path in archive.files()[1:]:
        open(path, "w", encoding="utf-8").close()
    plan = plan_prune(_catalog.Destination(str(tmp_path), []), policy(keep_last=1), now=NOW)
    plan.groups = [GroupPlan("app", "journal", remove=[(archive, ["test"])])]
    with pytest.raises(LifeboatError, match="is not directly in the destination"):
        apply_prune(plan)
    assert all(os.path.exists(path) for path in archive.files())


def test_partials_of_gone_writers_are_removed_when_asked_and_never_while_a_writer_holds_them(tmp_path):
    alive = tmp_path / f".app-20261101T030000Z.pgdump.zst.partial-{os.getpid()}"
    gone = tmp_path / ".app-20261102T030000Z.pgdump.zst.partial-999999999"
    # A writer in another PID namespace (a container): its PID means nothing here, but it holds the file's lock.
    container = tmp_path / ".app-20261103T030000Z.pgdump.zst.partial-999999998"
    impossible = tmp_path / ".app-20261104T030000Z.pgdump.zst.partial-99999999999999999999"  # no PID is that big
    other_job = tmp_path / ".other-20261104T030000Z.pgdump.zst.partial-999999997"
    for path in (alive, gone, container, impossible, other_job):
        path.write_bytes(b"x" * 10)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); "
                               "fcntl.flock(f, fcntl.LOCK_SH); print('locked', flush=True); time.sleep(60)",
                               str(container)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        dest = _catalog.scan(str(tmp_path))
        assert apply_prune(plan_prune(dest, policy(keep_last=1), now=NOW)) == []
        plan = plan_prune(dest, policy(keep_last=1), now=NOW, remove_partials=True, job="app")
        assert plan.freed_bytes == 20
        assert [p["writer_alive"] for p in plan.as_dict()["partials"]] == [True, False, True, False]
        assert apply_prune(plan) == [str(gone), str(impossible)]
        assert sorted(os.listdir(tmp_path)) == sorted([alive.name, container.name, other_job.name])
    finally:
        holder.kill()
        holder.wait()
    # The container's writer died: its lock went with it, and the file goes at the next prune.
    plan = plan_prune(_catalog.scan(str(tmp_path)), policy(keep_last=1), now=NOW, remove_partials=True)
    assert apply_prune(plan) == [str(container), str(other_job)]


# ---- properties over random series --------------------------------------------------------------------------------
GAPS = st.sampled_from([0, 1, 7, 59, 60, 61, 24 * 60, 3 * 24 * 60, 9 * 24 * 60, 40 * 24 * 60, 400 * 24 * 60])
# Mostly verified, so that groups are often not held and the keep rules decide.
ARCHIVE = st.tuples(GAPS, st.sampled_from([True, True, True, True, False, None]), st.booleans(),
                    st.sampled_from(["a", "b"]))
COUNT = st.one_of(st.none(), st.none(), st.just(-1), st.integers(min_value=0, max_value=4))


@st.composite
def policies(draw):
    options = {name: draw(COUNT) for name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                                              "keep_monthly", "keep_yearly")}
    options["keep_within"] = draw(st.sampled_from([None, "1h", "2d", "30d"]))
    options["require_verified"] = draw(st.booleans())
    options["accept_anomalies"] = True  # anomalies are covered above; sizes here are all equal anyway
    if not any(options[name] for name in options if name.startswith("keep_")):
        options["keep_last"] = 1
    return Policy.from_options(options)


@st.composite
def destinations(draw):
    moment = _dt.datetime(2024, 2, 28, 23, 30, tzinfo=UTC)
    archives = []
    for index, (gap, state, unreadable, database) in enumerate(draw(st.lists(ARCHIVE, min_size=1, max_size=25))):
        moment += _dt.timedelta(minutes=gap)
        archives.append(make_archive(index, moment, database=database, verified=state,
                                     problem="no manifest" if unreadable and index % 3 == 0 else None))
    return destination(archives)


def kept_by(reasons: list[str], rule: str) -> bool:
    return any(reason.startswith((f"{rule} ", f"{rule}:")) for reason in reasons)


@settings(max_examples=400, deadline=None)
@given(destinations(), policies())
def test_properties(dest, chosen):
    plan = plan_prune(dest, chosen, now=FAR_FUTURE)  # restic ignores future archives for keep_within; see below
    for group in plan.groups:
        archives = dest.groups()[(group.job, group.database)]
        kept = {id(a): why for a, why in group.keep}
        removed = {id(a) for a, _why in group.remove}
        assert kept.keys().isdisjoint(removed) and len(kept) + len(removed) == len(archives)
        assert all(why for why in kept.values())

        readable = [a for a in archives if a.readable]
        verified = [a for a in readable if a.verified]
        if verified:  # the newest verified archive, and all newer ones, are never removed
            assert all(id(a) in kept for a in readable[readable.index(verified[-1]):])
        assert all(id(a) in kept for a in archives if not a.readable)
        if readable and chosen.require_verified and not readable[-1].verified:
            assert group.held and not removed
        event("held" if group.held else "removes some" if removed else "removes none")
        if group.held:
            assert not removed
            continue

        newest_first = readable[::-1]
        should_keep = {id(a) for a in archives if not a.readable}
        if verified:
            should_keep |= {id(a) for a in readable[readable.index(verified[-1]):]}
        if chosen.keep_last:
            n = len(newest_first) if chosen.keep_last == -1 else chosen.keep_last
            expected = {id(a) for a in newest_first[:n]}
            assert {id(a) for a in newest_first if kept_by(kept.get(id(a), []), "last")} == expected
            should_keep |= expected
        for rule, bucket in BUCKETS.items():
            count = getattr(chosen, f"keep_{rule}")
            if not count:
                continue
            # Stated directly: the newest archive of each of the n newest buckets, plus the oldest archive
            # when the n buckets were not all used by the others.
            firsts = [a for i, a in enumerate(newest_first) if i == 0 or bucket(a.started_at) !=
                      bucket(newest_first[i - 1].started_at)]
            n = len(firsts) if count == -1 else count
            expected = {id(a) for a in firsts[:n]}
            buckets_before_oldest = len({bucket(a.started_at) for a in newest_first[:-1]})
            if newest_first and (count == -1 or buckets_before_oldest < count):
                expected.add(id(newest_first[-1]))
            assert {id(a) for a in newest_first if kept_by(kept.get(id(a), []), rule)} == expected
            should_keep |= expected
        if chosen.keep_within and newest_first:
            start = chosen.keep_within.before(newest_first[0].started_at)
            expected = {id(a) for a in newest_first if a.started_at > start}
            assert {id(a) for a in newest_first if kept_by(kept.get(id(a), []), "within")} == expected
            should_keep |= expected
        # Exactly these stay; everything else goes.
        assert set(kept) == should_keep
