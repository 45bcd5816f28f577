# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Prometheus text writer (``lifeboat status`` and the probe runner): the format promtool accepts, written
whole and world-readable for node_exporter, never seen half-written under a .prom name."""

from __future__ import annotations

import os

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _files, _prometheus
from prometheus_checks import assert_replaced_whole_and_world_readable, promtool_check  # pylint: disable=import-error


def test_text_of_families_with_escaped_labels_and_help():
    text = _prometheus.text([
        ("lifeboat_x_up", 'Up: 1 "yes" \\ or 0\nsecond line.', [
            ({"probe": 'we"ird\\name\nx', "type": "http"}, 1),
            ({"probe": "b", "type": "tcp"}, False),
        ]),
        ("lifeboat_x_empty", "A family without samples is left out.", []),
        ("lifeboat_x_seconds", "Floats keep their precision.", [({"probe": "b"}, 0.25), ({}, 1764499200.123456)]),
        ("lifeboat_x_bytes", "Integers stay integers.", [({"destination": "/srv/backups"}, 10 ** 15), ({}, True)]),
    ])
    assert text == (
        '# HELP lifeboat_x_up Up: 1 "yes" \\\\ or 0\\nsecond line.\n'
        "# TYPE lifeboat_x_up gauge\n"
        'lifeboat_x_up{probe="we\\"ird\\\\name\\nx",type="http"} 1\n'
        'lifeboat_x_up{probe="b",type="tcp"} 0\n'
        "# HELP lifeboat_x_seconds Floats keep their precision.\n"
        "# TYPE lifeboat_x_seconds gauge\n"
        'lifeboat_x_seconds{probe="b"} 0.25\n'
        "lifeboat_x_seconds 1764499200.123456\n"
        "# HELP lifeboat_x_bytes Integers stay integers.\n"
        "# TYPE lifeboat_x_bytes gauge\n"
        'lifeboat_x_bytes{destination="/srv/backups"} 1000000000000000\n'
        "lifeboat_x_bytes 1\n"
    )
    promtool_check(text)


def test_write_textfile_replaces_the_file_whole_world_readable(tmp_path):
    assert_replaced_whole_and_world_readable(_prometheus.write_textfile, tmp_path / "lifeboat.prom")


def test_a_half_written_file_never_ends_in_prom(tmp_path, monkeypatch):
    """node_exporter reads *.prom: while the new text is written, only the old file has that name."""
    path = tmp_path / "lifeboat.prom"
    path.write_text("a 1\n")
    seen: list[list[str]] = []

    def write_and_fail(fd: int, data: bytes) -> None:
        seen.append(sorted(os.listdir(tmp_path)))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files, "write_all", write_and_fail)
    with pytest.raises(OSError, match="No space left"):
        _prometheus.write_textfile(str(path), "a 2\n")
    assert seen == [["lifeboat.prom", f"lifeboat.prom.partial-{os.getpid()}"]]
    assert path.read_text() == "a 1\n" and os.listdir(tmp_path) == ["lifeboat.prom"]
