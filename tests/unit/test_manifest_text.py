# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manifest is written as it is encoded (no whole text in memory), byte for byte the standard indented JSON."""

from __future__ import annotations

import json

from ansible_collections.lifeboat.ops.plugins.module_utils import _manifest


def test_the_written_manifest_is_exactly_the_standard_indented_json(tmp_path, monkeypatch):
    monkeypatch.setattr(_manifest, "_PIECE", 4096)  # many pieces: the joins between them must not matter
    entries = [{"path": f"uploads/{index:05d}\udcff é\"\\", "sha256": "ab" * 32, "mode": 0o644, "uid": 0, "gid": 0,
                "size": index, "xattrs": {"user.tag": "x"}} for index in range(3000)]
    manifest = {"archive": {"sha256": "cd" * 32, "bytes": 12}, "empty": {}, "none": [], "null": None, "flag": True,
                "restore_commands": ["zstd -d -c A | tar -x", "# a 'quoted' \"line\""], "nested": [[1, 2.5], {"k": []}],
                "files": {"roots": [{"label": "volume:data", "files": 3000}], "entries": {"volume:data": entries}}}
    path = tmp_path / "a.manifest.json"
    _manifest.write(str(path), manifest)
    text = path.read_text()
    # Byte for byte what the signature's by-hand check re-creates with json.dumps (docs/archives.md).
    assert text == json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    assert _manifest.encode(manifest) == text.encode("utf-8")
    assert (path.stat().st_mode & 0o777) == 0o600


def test_flat_entries_through_the_fast_encoder_are_exactly_the_standard_indented_json(tmp_path, monkeypatch):
    # Files' entries without xattrs are flat: json's C encoder writes them (each at its depth); mixed with nested ones,
    # empty containers, non-ASCII and non-UTF-8 names, numbers of every kind and a manifest that is only flat.
    monkeypatch.setattr(_manifest, "_PIECE", 1000)
    entries = [{"path": f"d/{index}\udcfe ü\t\"", "type": "file", "mode": 0o600, "uid": 1000, "gid": 2 ** 40,
                "size": index * 7, "sha256": "ef" * 32, "sparse": index % 3 == 0, "link": None, "ratio": index / 7,
                **({"xattrs": {"user.a": "é"}} if index % 5 == 0 else {}), "empty": [] if index % 2 else {}}
               for index in range(500)]
    for manifest in ({"files": {"entries": {"volume:a": entries, "path:/b": []}}, "list": [1, "2", None, 3.5]},
                     {"only": "flat", "n": 1}, {"a": [entries[1]], "b": [[]], "c": [{}]}):
        assert _manifest.encode(manifest) == (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
