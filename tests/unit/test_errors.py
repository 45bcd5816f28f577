# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failures are types, not sentences: which check failed travels with the error, so rewording a message cannot
reclassify it; and every first line of an error comes from one_line, which redacts before it cuts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.parse
from types import SimpleNamespace

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import (
    _compose_restore,
    _docker_apps,
    _probes,
    _sources,
    _verify,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._archive import PlainChecksumMismatch, StoredChecksumMismatch
from ansible_collections.lifeboat.ops.plugins.module_utils._codecs import Decryption
from ansible_collections.lifeboat.ops.plugins.module_utils._common import (
    REDACTED,
    CannotConnect,
    LifeboatError,
    TargetHoldsData,
    find_cause,
    one_line,
    register_secret,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._mongo_restore import _restore_failure
from ansible_collections.lifeboat.ops.plugins.module_utils._mongo_staging import Staging
from ansible_collections.lifeboat.ops.plugins.module_utils._pipeline import StageFailed, read_stream

# A password a person may well choose: every character that URLs, YAML and JSON treat specially.
HOSTILE = "p@ss:w/rd#?&=%+ 'q\"{x}[y]*!\\z~"


# --- one_line ---------------------------------------------------------------------------------------------------

def test_one_line_is_the_first_line_that_says_something():
    assert one_line(LifeboatError("one line")) == "one line"
    assert one_line(RuntimeError("\n\n  first   reason \nsecond\n")) == "first reason"
    assert one_line(RuntimeError()) == "RuntimeError"
    assert one_line("") == ""


def test_one_line_prefers_the_docker_engines_own_words():
    error = RuntimeError("500 Server Error for http+docker://localhost/v1.43/containers/create")
    error.explanation = "Conflict. The container name \"/web\" is already in use"
    assert one_line(error) == "Conflict. The container name \"/web\" is already in use"


@pytest.mark.parametrize("spelling", [
    HOSTILE,
    urllib.parse.quote(HOSTILE, safe=""),
    urllib.parse.quote_plus(HOSTILE),
    json.dumps(HOSTILE)[1:-1],
], ids=["plain", "percent-encoded", "plus-encoded", "json-or-yaml-escaped"])
def test_one_line_redacts_a_hostile_password_given_to_it(spelling):
    text = f"connection to postgresql://app:{spelling}@db:5432/app failed\nFATAL: password authentication failed"
    line = one_line(RuntimeError(text), secrets=[HOSTILE])
    assert line == f"connection to postgresql://app:{REDACTED}@db:5432/app failed"
    assert "rd#" not in line and "w%2Frd" not in line


def test_one_line_redacts_a_registered_password_in_any_spelling():
    password = HOSTILE + "-registered"
    register_secret(password)
    for spelling in (password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password),
                     json.dumps(password)[1:-1]):
        assert one_line(f"mongodb://app:{spelling}@db/admin refused") == f"mongodb://app:{REDACTED}@db/admin refused"


def test_one_line_redacts_before_it_cuts():
    """A secret that spans lines must not leave its first line behind when the message is cut to one line."""
    secret = "first-half\nsecond-half"
    assert one_line(f"login {secret} refused", secrets=[secret]) == f"login {REDACTED} refused"


# --- types that travel under wrapping messages ---------------------------------------------------------------------

def wrapped(cause: BaseException, message: str) -> LifeboatError:
    """``cause`` as a restore passes it on: inside a message of its own (``raise ... from``)."""
    try:
        raise cause
    except BaseException as exc:  # noqa: BLE001
        try:
            raise LifeboatError(message) from exc
        except LifeboatError as outer:
            return outer


def test_find_cause_follows_the_chain_but_not_a_suppressed_context():
    inner = StageFailed("decompress", "zstd: corrupted block")
    assert find_cause(wrapped(inner, "the restore failed"), StageFailed) is inner
    try:
        try:
            raise inner
        except StageFailed:
            raise LifeboatError("unrelated") from None
    except LifeboatError as exc:
        assert find_cause(exc, StageFailed) is None


def gzip_file(path, data: bytes) -> str:
    with open(path, "wb") as out:
        subprocess.run(["gzip", "-c"], input=data, stdout=out, check=True)
    return str(path)


def test_a_failed_stage_is_named_by_the_stream_not_by_its_message(tmp_path):
    archive = gzip_file(tmp_path / "a.gz", b"x" * 100_000)
    with pytest.raises(StageFailed) as failed:
        read_stream(archive, compression="gzip", consumer_name="walker",
                    consumer_argv=[sys.executable, "-c", "import sys; sys.stderr.write('gave up\\n'); sys.exit(3)"])
    assert failed.value.stage == "walker" and failed.value.signal is None
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 100)
    with pytest.raises(StageFailed) as failed:
        read_stream(str(garbage), compression="gzip", consumer_name="walker", consumer_argv=["cat"])
    assert failed.value.stage == "decompress"


def test_a_stage_killed_by_a_signal_carries_its_number(tmp_path):
    archive = gzip_file(tmp_path / "a.gz", b"x" * 100_000)
    with pytest.raises(StageFailed) as failed:
        read_stream(archive, compression="gzip", consumer_name="mongorestore",
                    consumer_argv=[sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert (failed.value.stage, failed.value.signal) == ("mongorestore", signal.SIGKILL)


def test_a_killed_mongorestore_is_named_by_its_signal_whatever_the_message_says():
    staging = Staging(targets={"shop.orders": True}, run_id="0123abcd")
    killed = StageFailed("mongorestore", "mongorestore went away", signal=9)
    assert _restore_failure(wrapped(killed, "reading the archive stopped"), staging) == (
        "mongorestore was killed by signal 9 (SIGKILL) before the restore was complete")


def test_a_probe_drops_the_server_name_of_a_refused_connection_by_type():
    assert _probes._reason(CannotConnect("PostgreSQL at db:5432/app", "FATAL: no pg_hba.conf entry")) == (
        "FATAL: no pg_hba.conf entry")
    assert _probes._reason(LifeboatError("cannot connect to the moon: too far")) == "cannot connect to the moon: too far"


# --- verify: the failed check comes from the error's type ------------------------------------------------------------

class FakeReader:
    def __init__(self) -> None:
        self.tally = SimpleNamespace(counts={"public.t": 1}, hashes={})

    def feed(self, chunk: bytes) -> None:
        pass

    def finish(self) -> None:
        pass


class FakeSource:
    """A source whose restore into the scratch database fails with ``error``."""

    name = label = "fake"

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def is_internal(self, name: str) -> bool:
        return False

    def connection(self, _settings: dict) -> object:
        return object()

    def database_names(self, _connection: object) -> set[str]:
        return set()

    def drop_scratch(self, _connection: object, _name: str) -> None:
        pass

    def restore_scratch(self, *_args: object, **_kwargs: object) -> None:
        if self.error is not None:
            raise self.error


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "unit.archive"
    path.write_bytes(b"the stored bytes")
    manifest = {"counts": {"public.t": 1}, "job": "unit",
                "archive": {"format": "pg_dump-custom", "compression": "zstd", "encryption": None}}
    return SimpleNamespace(path=str(path), name=path.name, job="unit", engine="fake", manifest=manifest)


REQUEST = SimpleNamespace(decryption=Decryption(), connections={}, bin_dir=lambda _source: None)
# The restore test's tap carries pg_restore -f - as the stream's second consumer, named by verify.
WALK_BY_TOOL = {"consumer_argv": ["pg_restore", "--file=-"], "consumer_name": "pg_restore"}


def failed_check(call) -> tuple[str, str]:
    with pytest.raises(_verify.CheckFailed) as failed:
        call()
    return failed.value.check, str(failed.value)


@pytest.mark.parametrize("error, check", [
    # Reworded so that no message holds the words the old classifier looked for ("pg_restore").
    (StageFailed("pg_restore", "the reader of the plain stream gave up: input is not a dump"), "structure"),
    (StageFailed("decompress", "decompress failed: frame cut short before pg_restore could read it"), "stream"),
    (StageFailed("decrypt", "age: no identity matched"), "stream"),
], ids=["walk-tool", "decompressor-naming-the-tool", "age"])
def test_a_failed_read_is_classified_by_the_stage_that_failed(monkeypatch, archive, error, check):
    monkeypatch.setattr(_verify, "_structure_reader", lambda *_a: (FakeReader(), dict(WALK_BY_TOOL), None, []))

    def read_stored(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(_verify, "read_stored", read_stored)
    stored = _verify.StoredFile(archive.path, None, "0" * 64, "1" * 64)
    assert failed_check(lambda: _verify._read_and_hash(archive, stored, REQUEST, structure=True)) == (check, str(error))


@pytest.mark.parametrize("cause, check", [
    (StoredChecksumMismatch("f" * 64, "the bytes on disk changed under the restore"), "checksum"),
    (PlainChecksumMismatch("opened, the archive is some other dump"), "stream"),
    (StageFailed("decompress", "zstd: corrupted block detected"), "stream"),
    (StageFailed("decrypt", "age: header MAC mismatch"), "stream"),
    (StageFailed("pg_restore (structure walk)", "input file appears to be a text format dump"), "structure"),
    (StageFailed("pg_restore", "ERROR: relation t already exists"), "restore"),
    (LifeboatError("the server went away"), "restore"),
], ids=["stored-sha256", "plain-sha256", "decompressor", "age", "walk-tee", "restore-tool", "server"])
def test_a_failed_restore_test_is_classified_by_the_type_under_its_message(monkeypatch, archive, cause, check):
    """The restore wraps the read's error in a message of its own, as _postgres_restore._undo and _mongo_restore._undo do."""
    monkeypatch.setattr(_verify, "_structure_reader", lambda *_a: (FakeReader(), dict(WALK_BY_TOOL), None, []))
    failure = wrapped(cause, "the scratch restore ended; nothing was kept")
    monkeypatch.setattr(_verify, "_source_of", lambda _archive: FakeSource(failure))
    stored = _verify.StoredFile(archive.path, None, "0" * 64, "1" * 64)
    result: dict = {"checks": {}}
    got, _message = failed_check(lambda: _verify._restore_in_one_read(archive, stored, REQUEST, result))
    assert got == check


# --- refusals reworded by the caller from their fields --------------------------------------------------------------

def test_a_compose_restore_rewords_a_full_target_from_its_fields(monkeypatch):
    holding = TargetHoldsData("database journal already holds 2 tables", "restore into it",
                              "with recreate=true to replace it with the archive's content")
    assert str(holding) == ("database journal already holds 2 tables; set overwrite=true to restore into it (with "
                            "recreate=true to replace it with the archive's content)")

    class Refusing:
        def plan_into_container(self, *_args: object) -> None:
            raise holding

    monkeypatch.setattr(_sources, "get", lambda _engine: Refusing())
    request = SimpleNamespace(engine_params={}, safety_dump_dir=None, overwrite=False)
    part = SimpleNamespace(engine="postgresql", container="app-db-1", archive="/a", job="app-db")
    with pytest.raises(LifeboatError) as refused:
        _compose_restore._database_plan(request, part)
    assert str(refused.value) == (
        "part app-db (container app-db-1): database journal already holds 2 tables; set overwrite: true in the restore "
        "item (it replaces the database with the archive's) to restore into it")


def test_a_compose_restore_words_a_missing_project_by_the_type_of_the_refusal(monkeypatch):
    def describe(project: str) -> None:
        raise _docker_apps.NoSuchProject(f"nothing labelled {project} here")

    monkeypatch.setattr(_docker_apps, "describe", describe)
    with pytest.raises(LifeboatError, match=r"^no container of compose project shop exists on this host: bring it up"):
        _compose_restore._describe("shop")
