# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archive names are to the second: two runs of one job within a second each get a name of their own, instead
of the second run doing all its work and then refusing to overwrite the first one's archive."""

from __future__ import annotations

import datetime as dt
import os

from ansible_collections.lifeboat.ops.plugins.module_utils import _archive, _files_source, _manifest


def test_two_runs_of_a_job_within_one_second_keep_both_archives(tmp_path, monkeypatch):
    """The real tar and zstd, a small folder twice; both runs start in the same second (the clock says so for each
    run's first reading, whatever the machine's speed), and the second one still keeps an archive of its own."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "photo.jpg").write_bytes(os.urandom(4096))
    options = _archive.ArchiveOptions(destination=str(tmp_path / "archives"), job="uploads")
    real_now, same_second = _manifest.utc_now, _manifest.utc_now()
    readings: list[dt.datetime] = []
    monkeypatch.setattr(_manifest, "utc_now", lambda: readings.pop() if readings else real_now())
    archives = []
    for _run in range(2):
        readings.append(same_second)
        archives.append(_files_source.dump(_files_source.DumpRequest(archive=options, paths=[str(uploads)])))
    first, second = archives
    assert os.path.basename(first["archive"]).startswith(_manifest.archive_stem("uploads", same_second))
    assert first["archive"] != second["archive"]
    assert os.path.isfile(first["archive"]) and os.path.isfile(second["archive"])
    assert second["manifest_data"]["counts"] == first["manifest_data"]["counts"]


def test_a_name_taken_by_an_archive_or_a_run_still_writing_moves_to_the_next_free_second(tmp_path, monkeypatch):
    clock = iter(dt.datetime(2026, 12, 1, 10, 0, second, 400_000, tzinfo=dt.UTC) for second in range(10))
    monkeypatch.setattr(_manifest, "utc_now", lambda: next(clock))
    slept = []
    monkeypatch.setattr(_archive.time, "sleep", slept.append)
    (tmp_path / "journal-20261201T100000Z.pgdump.zst").write_bytes(b"")
    (tmp_path / ".journal-20261201T100001Z.pgdump.zst.partial-99").write_bytes(b"")
    (tmp_path / "journal2-20261201T100002Z.pgdump.zst").write_bytes(b"")  # another job: no matter
    started = _archive.ArchiveOptions(destination=str(tmp_path), job="journal").start_time()
    assert started.second == 2
    assert slept == [0.6, 0.6]


def test_without_a_destination_yet_now_is_free(tmp_path):
    before = _manifest.utc_now().replace(microsecond=0)
    started = _archive.ArchiveOptions(destination=str(tmp_path / "not-yet"), job="journal").start_time()
    assert started >= before
