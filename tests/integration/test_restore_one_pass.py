# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A restore reads its archive once: the checksums are checked in the stream that restores.

Every case restores over a target that holds data of its own (replace mode), through the library against the real
servers, counting the reads of the archive. A flipped byte (at the start, the middle, the end) or a manifest count
off by one is found in that one read, after the side copy (side database, staging collections, side directory) was
written: the side copy is discarded and the target keeps exactly what it had.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import (
    _catalog,
    _files_source,
    _mongo_restore,
    _pipeline,
    _postgres_restore,
    _sources,
    _verify,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from testbed import resign  # pylint: disable=import-error

ENGINES = ["postgresql", "mongodb", "files"]
DISCARDED = {
    "postgresql": "is unchanged: the side database lifeboat_restore_",
    "mongodb": "the target is unchanged: the staging collections this restore created were dropped",
    "files": None,  # the side directory goes with the failure; the tree on disk is what proves it
}


@pytest.fixture
def reads(monkeypatch):
    """The files the pipeline opened for reading, in order (every read of an archive opens it so)."""
    opened: list[str] = []
    real = os.open

    def counted(path, flags, *args, **kwargs):
        if flags == os.O_RDONLY:
            opened.append(str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(_pipeline.os, "open", counted)
    return opened


class Case:
    """One engine: an archive of known content, a target holding other data, and how to restore over it."""

    def __init__(self, engine, pg, mongo, name, tmp_path, run_module):
        self.engine, self.pg, self.mongo, self.name, self.tmp_path = engine, pg, mongo, name, tmp_path
        destination = tmp_path / "archives"
        if engine == "files":
            self.source_dir = tmp_path / "source"
            (self.source_dir / "sub").mkdir(parents=True)
            (self.source_dir / "sub" / "data.bin").write_bytes(os.urandom(300_000))
            (self.source_dir / "notes.txt").write_text("what the archive holds\n")
            self.target = tmp_path / "target"
            self.target.mkdir()
            (self.target / "kept.txt").write_text("what the target held before\n")
            made = _sources.get("files").dump(_sources.get("files").dump_request(
                {"destination": str(destination), "job": "onepass", "paths": [str(self.source_dir)]}))
        else:
            server = pg if engine == "postgresql" else mongo
            dumped = run_module(f"{engine}_dump", server.login(database=server.sample, destination=str(destination)))
            assert dumped.rc == 0, dumped.result
            made = dumped.result
            self._seed_target()
        self.archive, self.manifest = made["archive"], made["manifest"]

    def _seed_target(self):
        if self.engine == "postgresql":
            with self.pg.connect() as conn:
                conn.execute(f"CREATE DATABASE {self.name}")
            with self.pg.connect(self.name) as conn:
                conn.execute("CREATE TABLE known (id int PRIMARY KEY, word text)")
                conn.execute("INSERT INTO known SELECT g, md5(g::text) FROM generate_series(1, 300) g")
        else:
            self.mongo.client[self.name].known.insert_many([{"_id": n, "word": str(n)} for n in range(300)])

    def state(self):
        if self.engine == "postgresql":
            return self.pg.fingerprint(self.name)
        if self.engine == "mongodb":
            return self.mongo.fingerprint(self.name)
        return sorted((os.path.relpath(os.path.join(d, f), self.target), open(os.path.join(d, f), "rb").read())
                      for d, _dirs, files in os.walk(self.target) for f in files)

    def restore(self, archive):
        if self.engine == "postgresql":
            return _postgres_restore.restore(_postgres_restore.RestoreRequest(
                connection=_sources.get("postgresql").connection(self.pg.login()), archive_path=archive,
                target_database=self.name, overwrite=True, recreate=True))
        if self.engine == "mongodb":
            return _mongo_restore.restore(_mongo_restore.RestoreRequest(
                connection=_sources.get("mongodb").connection(self.mongo.login()), archive_path=archive,
                target_database=self.name, overwrite=True, drop=True, tools_dir=os.environ["LIFEBOAT_TOOLS_BIN"]))
        return _files_source.restore(_files_source.RestoreRequest(
            archive_path=archive, path_map={str(self.source_dir): str(self.target)}, overwrite=True,
            safety_dump_dir=str(self.tmp_path / "safety")))

    def damaged_copy(self, change):
        """A copy of the archive and its manifest in a folder of their own, changed by ``change(data, manifest)``."""
        folder = self.tmp_path / "damaged"
        folder.mkdir(exist_ok=True)
        archive = folder / os.path.basename(self.archive)
        data = bytearray(open(self.archive, "rb").read())
        manifest = json.loads(open(self.manifest, encoding="utf-8").read())
        change(data, manifest)
        archive.write_bytes(bytes(data))
        (folder / os.path.basename(self.manifest)).write_text(json.dumps(manifest))
        resign(str(folder / os.path.basename(self.manifest)))  # the backup's own word: what differs is the archive
        return str(archive)

    def cleanup(self):
        if self.engine == "postgresql":
            self.pg.drop(self.name)
        elif self.engine == "mongodb":
            self.mongo.drop(self.name)


@pytest.fixture(params=ENGINES)
def case(request, pg, mongo, unique_name, tmp_path, run_module):
    made = Case(request.param, pg, mongo, unique_name, tmp_path, run_module)
    yield made
    made.cleanup()


def test_a_restore_reads_its_archive_once(case, reads):
    case.restore(case.archive)
    assert reads.count(case.archive) == 1, reads


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_flipped_byte_is_found_in_the_one_read_and_the_target_keeps_its_data(case, reads, where):
    def flip(data, _manifest):
        offset = {"start": 0, "middle": len(data) // 2, "end": len(data) - 1}[where]
        data[offset] ^= 0x01

    damaged = case.damaged_copy(flip)
    before = case.state()
    with pytest.raises(LifeboatError) as failure:
        case.restore(damaged)
    message = str(failure.value)
    assert "\n" not in message and "does not match its manifest" in message, message
    if DISCARDED[case.engine]:
        assert DISCARDED[case.engine] in message, message  # found after the side copy was written: one read
    assert reads.count(damaged) == 1, reads
    assert case.state() == before


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_a_manifest_count_off_by_one_is_found_before_the_swap(engine, pg, mongo, unique_name, tmp_path, run_module,
                                                              reads):
    case = Case(engine, pg, mongo, unique_name, tmp_path, run_module)
    try:
        def one_more(_data, manifest):
            name = sorted(manifest["counts"])[0]
            manifest["counts"][name] += 1
            manifest["total_count"] += 1

        damaged = case.damaged_copy(one_more)
        before = case.state()
        with pytest.raises(LifeboatError) as failure:
            case.restore(damaged)
        message = str(failure.value)
        assert "is incomplete" in message and DISCARDED[engine] in message, message
        assert reads.count(damaged) == 1, reads
        assert case.state() == before
    finally:
        case.cleanup()


@pytest.mark.parametrize("damaged", [False, True], ids=["intact", "flipped byte"])
def test_a_restore_level_verify_reads_the_archive_once(case, reads, damaged):
    """Level restore: the structure walk rides on the scratch restore's own read, which checks both sha256 sums."""
    archive = case.archive
    if damaged:
        archive = case.damaged_copy(lambda data, _manifest: data.__setitem__(len(data) // 2, data[len(data) // 2] ^ 1))
    (found,) = [a for a in _catalog.scan(os.path.dirname(archive)).archives if a.path == archive]
    server = {"postgresql": case.pg, "mongodb": case.mongo}.get(case.engine)
    connections = {case.engine: _sources.get(case.engine).connection(server.login())} if server else {}
    (result,) = _verify.verify(_verify.VerifyRequest(archives=[found], level="restore", record=False,
                                                     connections=connections))
    if damaged:
        assert not result["ok"] and result["failed_check"] == "checksum", result
    else:
        assert result["ok"], result
        assert result["checks"] == {"signature": "ok", "checksum": "ok", "stream": "ok", "structure": "ok",
                                    "restore": "ok"}
        assert sum(result["counts"].values()) > 0
    assert reads.count(archive) == 1, reads


def test_check_mode_still_reads_the_archive_whole(pg, run_module, tmp_path, unique_name):
    """Check mode writes nothing, so reading the archive is all it can prove: a damaged one fails it."""
    case = Case("postgresql", pg, None, unique_name, tmp_path, run_module)
    try:
        damaged = case.damaged_copy(lambda data, _manifest: data.__setitem__(len(data) // 2, data[len(data) // 2] ^ 1))
        run = run_module("postgresql_restore", pg.login(archive=damaged, target_database=unique_name, overwrite=True,
                                                        recreate=True), check_mode=True)
        assert run.rc != 0 and "does not match its manifest" in run.result["msg"], run.result
        shutil.rmtree(os.path.dirname(damaged))
    finally:
        case.cleanup()
