# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The archive pipeline with the real zstd, gzip and age programs (no database needed)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _manifest
from ansible_collections.lifeboat.ops.plugins.module_utils._archive import ArchiveOptions, stream_to_archive
from ansible_collections.lifeboat.ops.plugins.module_utils._codecs import Decryption, Encryption
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.ops.plugins.module_utils._files import ArchiveFile, sha256_file
from ansible_collections.lifeboat.ops.plugins.module_utils._pipeline import read_stream

# Text-like data that compresses, but not trivially, plus some random bytes.
PRODUCER = [
    sys.executable,
    "-c",
    "import os,sys\n"
    "for i in range(4000):\n"
    "    sys.stdout.buffer.write(b'row %d {\"k\": %d} ' % (i, i*i) + os.urandom(64).hex().encode() + b'\\n')\n",
]


def plain_bytes() -> bytes:
    return subprocess.run(PRODUCER, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def age_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    identity = str(tmp_path_factory.mktemp("age") / "key.txt")
    subprocess.run(["age-keygen", "-o", identity], capture_output=True, check=True)
    recipient = subprocess.run(["age-keygen", "-y", identity], capture_output=True, check=True, text=True).stdout.strip()
    return identity, recipient


def leftovers(directory: str) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_round_trip_hashes_both_ends(tmp_path, age_key, compression: str, encrypted: bool) -> None:
    options = ArchiveOptions(
        destination=str(tmp_path),
        job="unit",
        compression=compression,
        encryption=Encryption(recipients=(age_key[1],) if encrypted else ()),
    )
    final = str(tmp_path / "unit.archive")
    archive, stream = stream_to_archive(final, PRODUCER, options)
    archive.commit()

    expected = plain_bytes()
    # The producer writes random bytes, so compare the stream with itself through the hashes.
    assert stream.plain_bytes == len(expected)
    assert stream.stored_sha256 == sha256_file(final)
    assert stream.stored_bytes == os.path.getsize(final)
    assert oct(os.stat(final).st_mode & 0o777) == "0o600"
    assert leftovers(str(tmp_path)) == ["unit.archive"]

    back = read_stream(
        final, compression=compression, encrypted=encrypted, decryption=Decryption(identity_files=(age_key[0],))
    )
    assert back.plain_sha256 == stream.plain_sha256
    assert back.stored_sha256 == stream.stored_sha256

    # Standard tools alone give the same plain stream back.
    shell = " | ".join(_manifest.decode_commands(final, compression, options.encryption)).replace(
        "IDENTITY_FILE", age_key[0])
    plain = subprocess.run(["sh", "-c", shell], capture_output=True, check=True).stdout
    assert hashlib.sha256(plain).hexdigest() == stream.plain_sha256
    if compression != "none" or encrypted:
        assert plain != open(final, "rb").read()


def test_encrypted_archive_needs_the_identity(tmp_path, age_key) -> None:
    options = ArchiveOptions(destination=str(tmp_path), job="unit", encryption=Encryption(recipients=(age_key[1],)))
    archive, _stream = stream_to_archive(str(tmp_path / "secret.zst.age"), PRODUCER, options)
    archive.commit()
    with pytest.raises(LifeboatError, match="give the age identity file"):
        read_stream(str(tmp_path / "secret.zst.age"), compression="zstd", encrypted=True)
    other = str(tmp_path / "other.txt")
    subprocess.run(["age-keygen", "-o", other], capture_output=True, check=True)
    with pytest.raises(LifeboatError, match=r"decrypt failed: .*no identity matched"):
        read_stream(str(tmp_path / "secret.zst.age"), compression="zstd", encrypted=True,
                    decryption=Decryption(identity_files=(other,)))


def secret_file(path, content: str) -> str:
    path.write_text(content + "\n")
    path.chmod(0o600)
    return str(path)


def test_passphrase_encryption_through_a_private_terminal(tmp_path) -> None:
    passphrase = secret_file(tmp_path / "passphrase", "correct horse battery staple")
    out = tmp_path / "out"
    out.mkdir()
    options = ArchiveOptions(destination=str(out), job="unit", encryption=Encryption(passphrase_file=passphrase))
    options.validate()
    archive, stream = stream_to_archive(str(out / "unit.zst.age"), PRODUCER, options)
    archive.commit()
    assert open(out / "unit.zst.age", "rb").read(21) == b"age-encryption.org/v1"
    back = read_stream(str(out / "unit.zst.age"), compression="zstd", encrypted=True,
                       decryption=Decryption(passphrase_file=passphrase))
    assert back.plain_sha256 == stream.plain_sha256
    wrong = secret_file(tmp_path / "wrong", "not it")
    with pytest.raises(LifeboatError, match="decrypt failed: age: error: incorrect passphrase"):
        read_stream(str(out / "unit.zst.age"), compression="zstd", encrypted=True,
                    decryption=Decryption(passphrase_file=wrong))
    (tmp_path / "open").write_text("x\n")
    (tmp_path / "open").chmod(0o644)
    with pytest.raises(LifeboatError, match="is readable by others; chmod 600 it"):
        ArchiveOptions(destination=str(out), job="unit", encryption=Encryption(passphrase_file=str(tmp_path / "open"))).validate()


def test_failing_producer_leaves_nothing(tmp_path) -> None:
    producer = [sys.executable, "-c", "import sys; sys.stdout.write('x' * 100000); sys.stderr.write('connection lost\\n'); sys.exit(3)"]
    options = ArchiveOptions(destination=str(tmp_path), job="unit")
    with pytest.raises(LifeboatError) as failure:
        stream_to_archive(str(tmp_path / "unit.archive"), producer, options, producer_name="pg_dump")
    assert str(failure.value) == "pg_dump failed: connection lost"
    assert leftovers(str(tmp_path)) == []


def test_killed_producer_leaves_nothing(tmp_path) -> None:
    producer = [sys.executable, "-c", "import os,signal,sys; sys.stdout.write('x'*50000); sys.stdout.flush(); os.kill(os.getpid(), signal.SIGKILL)"]
    options = ArchiveOptions(destination=str(tmp_path), job="unit")
    with pytest.raises(LifeboatError, match="dump failed: killed by signal 9"):
        stream_to_archive(str(tmp_path / "unit.archive"), producer, options)
    assert leftovers(str(tmp_path)) == []


def test_a_client_killed_in_a_container_is_named_by_the_exec_helpers_last_line(tmp_path) -> None:
    """The exec helper exits with the exec's 128 + N and says last which signal killed the client in the container:
    that line is the error, not the client's last progress line before it."""
    producer = [sys.executable, "-c", "import sys; sys.stderr.write('pg_dump: dumping contents of table \"public.bulk\"\\n"
                "pg_dump in container journal-db was killed (signal 9)\\n'); sys.exit(137)"]
    options = ArchiveOptions(destination=str(tmp_path), job="unit")
    with pytest.raises(LifeboatError) as failure:
        stream_to_archive(str(tmp_path / "unit.archive"), producer, options, producer_name="pg_dump")
    assert str(failure.value) == "pg_dump in container journal-db was killed (signal 9)"
    assert leftovers(str(tmp_path)) == []


def test_failing_compressor_is_named(tmp_path, monkeypatch) -> None:
    # A stand-in zstd that dies after reading a little: the producer then sees a broken pipe, and the
    # error must name the compressor, not the producer.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "zstd"
    fake.write_text("#!/bin/sh\nhead -c 1000 >/dev/null\necho 'zstd: error 70 : Write error' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    out = tmp_path / "out"
    out.mkdir()
    options = ArchiveOptions(destination=str(out), job="unit")
    with pytest.raises(LifeboatError) as failure:
        stream_to_archive(str(out / "unit.archive.zst"), PRODUCER, options)
    assert str(failure.value) == "compress failed: zstd: error 70 : Write error"
    assert leftovers(str(out)) == []


@pytest.fixture
def stored_archive(tmp_path):
    options = ArchiveOptions(destination=str(tmp_path), job="unit")
    # Bigger than any pipe buffer, so a reader that quits early is noticed by the writer.
    producer = [sys.executable, "-c", "import os,sys\nfor i in range(80): sys.stdout.buffer.write(os.urandom(32768).hex().encode())"]
    archive, stream = stream_to_archive(str(tmp_path / "unit.zst"), producer, options)
    archive.commit()
    return str(tmp_path / "unit.zst"), stream


def test_consumer_that_stops_reading_early_is_a_failure(stored_archive) -> None:
    path, _stream = stored_archive
    early_exit = [sys.executable, "-c", "import sys; sys.stdin.buffer.read(10); sys.exit(0)"]
    with pytest.raises(LifeboatError, match=r"^restore stopped reading before the end of the stream$"):
        read_stream(path, compression="zstd", consumer_argv=early_exit)


def test_consumer_failure_is_reported_in_its_own_words(stored_archive) -> None:
    path, _stream = stored_archive
    failing = [sys.executable, "-c",
               "import sys; sys.stdin.buffer.read(1000); "
               "sys.stderr.write('pg_restore: error: could not send data to server: Broken pipe\\n'); sys.exit(1)"]
    with pytest.raises(LifeboatError) as failure:
        read_stream(path, compression="zstd", consumer_argv=failing, consumer_name="pg_restore")
    assert str(failure.value) == "pg_restore failed: pg_restore: error: could not send data to server: Broken pipe"


def test_corrupt_stream_names_the_decompressor(stored_archive, tmp_path) -> None:
    path, _stream = stored_archive
    damaged = tmp_path / "damaged.zst"
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(LifeboatError, match=r"^decompress failed: "):
        read_stream(str(damaged), compression="zstd", consumer_argv=["cat"])


def test_compression_level_is_checked() -> None:
    with pytest.raises(LifeboatError, match="compression_level 99 does not fit zstd; use 1 to 19"):
        ArchiveOptions(destination="/tmp/x", job="unit", compression="zstd", compression_level=99).validate()


def test_full_disk_leaves_nothing(tmp_path) -> None:
    assert os.geteuid() == 0, "mounting a tmpfs needs root: run the suite as CI does (as root)"
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        options = ArchiveOptions(destination=str(mount), job="unit", compression="none")
        with pytest.raises(LifeboatError) as failure:
            stream_to_archive(str(mount / "unit.archive"), PRODUCER, options)
        assert "No space left on device" in str(failure.value)
        assert "\n" not in str(failure.value)
        assert leftovers(str(mount)) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_commit_never_replaces_an_archive(tmp_path) -> None:
    final = tmp_path / "unit.archive"
    final.write_bytes(b"older archive")
    archive = ArchiveFile(str(final))
    with pytest.raises(LifeboatError, match="already exists"):
        archive.commit()
    archive.discard()
    assert final.read_bytes() == b"older archive"
    assert leftovers(str(tmp_path)) == ["unit.archive"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compression": "lz4"}, "unknown compression 'lz4'; use one of: zstd, gzip, none"),
        ({"destination": ""}, "destination is required"),
        ({"destination": "backups/here"}, "destination 'backups/here' must be an absolute path"),
        ({"job": "../escape"}, "job name '../escape' is not usable in a file name"),
        ({"encryption": Encryption(recipients=("AGE-SECRET-KEY-1XYZ",))},
         "an age secret key was given as a recipient; give its public key"),
    ],
)
def test_bad_archive_options(options: dict, message: str) -> None:
    values = {"destination": "/tmp/x", "job": "unit", **options}
    with pytest.raises(LifeboatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ArchiveOptions(**values).validate()


def test_incomplete_manifest_is_refused(tmp_path) -> None:
    archive = tmp_path / "x.pgdump.zst"
    archive.write_bytes(b"")
    manifest = tmp_path / "x.pgdump.zst.manifest.json"
    manifest.write_text('{"format": "lifeboat.ops/archive-manifest", "format_version": 1, "archive": {"file": "x"}}')
    with pytest.raises(LifeboatError, match=r"is incomplete .*archive.sha256.*; it cannot be trusted"):
        _manifest.load(str(archive))
    manifest.write_text("{not json")
    with pytest.raises(LifeboatError, match="is unreadable"):
        _manifest.load(str(archive))


def test_a_plain_sha256_of_none_is_only_trusted_for_a_files_archive(tmp_path) -> None:
    """A files archive proves its plain stream by per-file sha256 and records none; any other engine must."""
    archive = tmp_path / "x.archive"
    archive.write_bytes(b"")
    for engine, loads in (("files", True), ("postgresql", False), ("mongodb", False)):
        body = {"format": "lifeboat.ops/archive-manifest", "format_version": 1, "job": "x", "engine": engine,
                "database": None, "tool": {}, "counts": {}, "options": {}, "restore_commands": [],
                "archive": {"file": "x.archive", "format": "f", "sha256": "0" * 64, "plain_sha256": None, "size": 0,
                            "compression": "none", "encryption": None}}
        (tmp_path / "x.archive.manifest.json").write_text(json.dumps(body))
        if loads:
            assert _manifest.load(str(archive))["archive"]["plain_sha256"] is None
        else:
            with pytest.raises(LifeboatError, match=r"is incomplete \(no archive.plain_sha256\); it cannot be trusted"):
                _manifest.load(str(archive))


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_a_stream_written_without_hash_plain_counts_the_plain_bytes_but_hashes_only_the_stored(
        tmp_path, compression: str) -> None:
    options = ArchiveOptions(destination=str(tmp_path), job="unit", compression=compression)
    seen: list[int] = []
    final = str(tmp_path / "unit.archive")
    archive, stream = stream_to_archive(final, PRODUCER, options, on_plain=lambda chunk: seen.append(len(chunk)),
                                        hash_plain=False)
    archive.commit()
    assert stream.plain_sha256 == ""
    assert stream.plain_bytes == sum(seen) == len(plain_bytes())
    assert stream.stored_sha256 == sha256_file(final)
    back = read_stream(final, compression=compression, hash_plain=False, on_plain=lambda chunk: None)
    assert (back.plain_sha256, back.plain_bytes, back.stored_sha256) == ("", stream.plain_bytes, stream.stored_sha256)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_testing_read_keeps_plain_bytes_out_and_still_finds_damage(tmp_path, age_key, compression, encrypted):
    """hash_plain=False: the decompressor only tests (its own content checksum) and age only authenticates."""
    options = ArchiveOptions(destination=str(tmp_path), job="unit", compression=compression,
                             encryption=Encryption(recipients=(age_key[1],) if encrypted else ()))
    final = str(tmp_path / "unit.archive")
    archive, stream = stream_to_archive(final, PRODUCER, options)
    archive.commit()
    decryption = Decryption(identity_files=(age_key[0],))
    tested = read_stream(final, compression=compression, encrypted=encrypted, decryption=decryption,
                         hash_plain=False)
    assert tested.stored_sha256 == stream.stored_sha256
    assert tested.plain_sha256 == ("" if compression != "none" or encrypted else stream.plain_sha256)
    if compression == "none" and not encrypted:
        return  # nothing but the stored checksum can tell
    data = bytearray(open(final, "rb").read())
    data[len(data) // 2] ^= 0x01  # inside the compressed or encrypted payload
    open(final, "wb").write(bytes(data))
    with pytest.raises(LifeboatError) as failure:
        read_stream(final, compression=compression, encrypted=encrypted, decryption=decryption, hash_plain=False)
    assert ("decrypt failed" if encrypted else "decompress failed") in str(failure.value)


# A stand-in for the exec helper (_docker_exec): writes the plain stream on stdout and reports its sha256 and size on
# the descriptor the pipeline names in LIFEBOAT_PLAIN_DIGEST_FD; 141 on a broken pipe, as the helper returns.
SELF_HASHING = (
    "import hashlib, os, sys\n"
    "data = b''.join(b'row %d ' % i + os.urandom(48).hex().encode() + b'\\n' for i in range(40000))\n"
    "view = memoryview(data)\n"
    "try:\n"
    "    while view:\n"
    "        view = view[os.write(1, view):]\n"
    "except BrokenPipeError:\n"
    "    sys.exit(141)  # silently, as the helper does\n"
    "if REPORT:\n"
    "    os.write(int(os.environ['LIFEBOAT_PLAIN_DIGEST_FD']), b'%s %d\\n' % (hashlib.sha256(data).hexdigest().encode(), len(data)))\n"
)


def self_hashing(report: bool = True) -> list[str]:
    return [sys.executable, "-c", f"REPORT = {report}\n{SELF_HASHING}"]


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_producer_that_hashes_its_own_output_writes_straight_into_the_compressor(tmp_path, age_key, encrypted):
    options = ArchiveOptions(destination=str(tmp_path), job="unit",
                             encryption=Encryption(recipients=(age_key[1],)) if encrypted else Encryption())
    archive, stream = stream_to_archive(str(tmp_path / "unit.zst"), self_hashing(), options, producer_hashes=True)
    archive.commit()
    back = read_stream(str(tmp_path / "unit.zst"), compression="zstd", encrypted=encrypted,
                       decryption=Decryption(identity_files=(age_key[0],)))
    assert (stream.plain_sha256, stream.plain_bytes) == (back.plain_sha256, back.plain_bytes)
    assert stream.plain_bytes > 3_000_000
    assert (stream.stored_sha256, stream.stored_bytes) == (sha256_file(str(tmp_path / "unit.zst")),
                                                           os.path.getsize(tmp_path / "unit.zst"))


def test_a_producer_that_reports_no_checksum_leaves_nothing(tmp_path) -> None:
    options = ArchiveOptions(destination=str(tmp_path), job="unit")
    with pytest.raises(LifeboatError, match=r"^pg_dump ended without reporting the checksum of its output"):
        stream_to_archive(str(tmp_path / "unit.zst"), self_hashing(report=False), options, producer_name="pg_dump",
                          producer_hashes=True)
    assert leftovers(str(tmp_path)) == []


def test_a_failing_compressor_behind_a_self_hashing_producer_is_named(tmp_path, monkeypatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "zstd"
    fake.write_text("#!/bin/sh\nhead -c 1000 >/dev/null\necho 'zstd: error 70 : Write error' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    out = tmp_path / "out"
    out.mkdir()
    options = ArchiveOptions(destination=str(out), job="unit")
    with pytest.raises(LifeboatError) as failure:
        stream_to_archive(str(out / "unit.archive.zst"), self_hashing(), options, producer_hashes=True)
    assert str(failure.value) == "compress failed: zstd: error 70 : Write error"
    assert leftovers(str(out)) == []


# Deterministic bytes in odd-sized writes with pauses, more than several pipes hold: what the plain side hashes and
# hands on must be the stream itself, whether tee(2) feeds the compressor or this process copies.
PACED = [sys.executable, "-c",
         "import hashlib,sys,time\nout = sys.stdout.buffer\nfor i in range(700):\n"
         "    out.write(hashlib.sha512(b'%d' % i).digest() * (97 + i % 13))\n"
         "    if i % 100 == 0: out.flush(); time.sleep(0.05)\n"]


def paced_bytes() -> bytes:
    return subprocess.run(PACED, capture_output=True, check=True).stdout


@pytest.mark.parametrize("tee", [True, False])
def test_the_compressor_fed_by_tee_or_by_copy_gets_the_plain_stream_this_process_hashes(tmp_path, monkeypatch, tee):
    from ansible_collections.lifeboat.ops.plugins.module_utils import _pipes  # pylint: disable=import-outside-toplevel

    assert _pipes._TEE is not None, "tee(2) through libc must be found on Linux"  # pylint: disable=protected-access
    if not tee:
        monkeypatch.setattr(_pipes, "_TEE", None)
    seen: list[bytes] = []
    options = ArchiveOptions(destination=str(tmp_path), job="unit")
    final = str(tmp_path / "unit.zst")
    archive, stream = stream_to_archive(final, PACED, options, on_plain=seen.append)
    archive.commit()
    expected = paced_bytes()
    assert len(expected) > 4 * 1024 * 1024
    assert b"".join(seen) == expected
    assert (stream.plain_sha256, stream.plain_bytes) == (hashlib.sha256(expected).hexdigest(), len(expected))
    assert subprocess.run(["zstd", "-d", "-c", final], capture_output=True, check=True).stdout == expected
    assert (stream.stored_sha256, stream.stored_bytes) == (sha256_file(final), os.path.getsize(final))


def test_a_full_disk_under_the_compressor_that_writes_the_file_leaves_nothing(tmp_path) -> None:
    assert os.geteuid() == 0, "mounting a tmpfs needs root: run the suite as CI does (as root)"
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        options = ArchiveOptions(destination=str(mount), job="unit")  # zstd: random bytes do not shrink
        with pytest.raises(LifeboatError) as failure:
            stream_to_archive(str(mount / "unit.zst"), [
                *PACED[:2], "import os,sys\nfor i in range(64): sys.stdout.buffer.write(os.urandom(65536))"], options)
        assert "No space left on device" in str(failure.value)
        assert "\n" not in str(failure.value)
        assert leftovers(str(mount)) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)
