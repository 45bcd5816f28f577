# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manifest is written as it is encoded (no whole text in memory) and reads back as the same JSON."""

from __future__ import annotations

import json

from ansible_collections.lifeboat.ops.plugins.module_utils import _manifest


def test_the_written_manifest_reads_back_equal_with_one_entry_a_line(tmp_path, monkeypatch):
    monkeypatch.setattr(_manifest, "_PIECE", 4096)  # many pieces: the joins between them must not matter
    entries = [{"path": f"uploads/{index:05d}\udcff é\"\\", "sha256": "ab" * 32, "mode": 0o644, "uid": 0, "gid": 0,
                "size": index, "xattrs": {"user.tag": "x"}} for index in range(3000)]
    manifest = {"archive": {"sha256": "cd" * 32, "bytes": 12}, "empty": {}, "none": [], "null": None, "flag": True,
                "restore_commands": ["zstd -d -c A | tar -x", "# a 'quoted' \"line\""], "nested": [[1, 2.5], {"k": []}],
                "files": {"roots": [{"label": "volume:data", "files": 3000}], "entries": {"volume:data": entries}}}
    path = tmp_path / "a.manifest.json"
    _manifest.write(str(path), manifest)
    text = path.read_text()
    assert json.loads(text) == json.loads(json.dumps(manifest))
    assert text.endswith("}\n") and text.startswith("{\n  \"archive\": {\n")
    lines = text.splitlines()
    assert sum(line.lstrip().startswith('{"gid": 0') for line in lines) == 3000  # one entry a line, keys sorted
    assert (path.stat().st_mode & 0o777) == 0o600
