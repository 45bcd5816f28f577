# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Compression and encryption of an archive stream: the standard programs (zstd or gzip/pigz, age) as the pipeline's
filters, and the checks of their options. An archive restores with these programs alone.
"""

from __future__ import annotations

import os
import shutil
import typing as t
from dataclasses import dataclass

from ._common import LifeboatError, find_binary, read_secret_file

COMPRESSIONS = ("zstd", "gzip", "none")
SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6}


@dataclass
class StreamResult:
    """What a pipeline run measured (here, below the pipeline: a manifest records it without the pipeline's code)."""

    plain_sha256: str = ""
    plain_bytes: int = 0
    stored_sha256: str = ""
    stored_bytes: int = 0


@dataclass(frozen=True)
class Encryption:
    """age encryption to public recipients (the host that writes backups cannot read them), or a passphrase."""

    recipients: tuple[str, ...] = ()
    recipients_files: tuple[str, ...] = ()
    passphrase_file: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.recipients or self.recipients_files or self.passphrase_file)

    @property
    def method(self) -> str:
        return "age-passphrase" if self.passphrase_file else "age"


@dataclass(frozen=True)
class Decryption:
    """What opens an encrypted archive: age identity files, or the passphrase file it was made with."""

    identity_files: tuple[str, ...] = ()
    passphrase_file: str | None = None


# The stages that turn stored bytes back into the plain stream (read_stream's filters, by these names).
DECRYPT = "decrypt"
DECOMPRESS = "decompress"
DECODING_STAGES = (DECRYPT, DECOMPRESS)


class Filter(t.NamedTuple):
    """One stage between the producer and the file (or the file and the consumer): its name, argv, and what it is
    typed at a terminal of its own (age reads a passphrase only from one)."""

    name: str
    argv: list[str]
    tty_input: bytes | None = None


def validate_compression(compression: str, level: int | None) -> None:
    if compression not in COMPRESSIONS:
        raise LifeboatError(f"unknown compression '{compression}'; use one of: {', '.join(COMPRESSIONS)}")
    if level is not None:
        low, high = (1, 19) if compression == "zstd" else (1, 9)
        if compression == "none" or not low <= level <= high:
            raise LifeboatError(f"compression_level {level} does not fit {compression}; use {low} to {high}")


def validate_encryption(encryption: Encryption) -> None:
    if encryption.passphrase_file:
        if encryption.recipients or encryption.recipients_files:
            raise LifeboatError("give either encryption recipients or a passphrase file, not both (age takes one)")
        read_secret_file(encryption.passphrase_file, "passphrase")
    for recipient in encryption.recipients:
        if recipient.upper().startswith("AGE-SECRET-KEY"):  # checked first: never show a part of a secret key
            raise LifeboatError("an age secret key was given as a recipient; give its public key (age-keygen -y)")
        if not recipient.startswith(("age1", "ssh-ed25519 ", "ssh-rsa ")):
            raise LifeboatError(
                f"'{recipient[:12]}...' is not an age recipient; give public keys (age1... or ssh-ed25519 ...)"
            )
    for path in encryption.recipients_files:
        if not os.path.isfile(path):
            raise LifeboatError(f"age recipients file {path} does not exist")


def compressor_argv(compression: str, level: int | None = None) -> list[str] | None:
    if compression == "none":
        return None
    level = level or DEFAULT_LEVELS[compression]
    if compression == "zstd":
        return [find_binary("zstd"), "-q", "-c", "-T0", f"-{level}"]
    return [_gzip_binary(), "-c", f"-{level}"]


def decompressor_argv(compression: str) -> list[str] | None:
    if compression == "none":
        return None
    if compression == "zstd":
        return [find_binary("zstd"), "-q", "-d", "-c"]
    return [_gzip_binary(), "-d", "-c"]


def tester_argv(compression: str) -> list[str] | None:
    """Decompress from stdin and check the format's own content checksum (zstd XXH64, gzip CRC32), writing nothing."""
    if compression == "none":
        return None
    if compression == "zstd":
        return [find_binary("zstd"), "-q", "-t"]
    return [_gzip_binary(), "-t"]


def _gzip_binary() -> str:
    # pigz writes the same gzip format on every core; plain gzip is the fallback everywhere.
    return shutil.which("pigz") or find_binary("gzip")


def _passphrase_input(path: str, times: int) -> bytes:
    # age reads a passphrase only from a terminal: it gets one of its own (a pty) with the answer typed in.
    return (read_secret_file(path, "passphrase") + "\n").encode() * times


def encryptor(encryption: Encryption) -> Filter | None:
    if not encryption.enabled:
        return None
    if encryption.passphrase_file:
        return Filter("encrypt", [find_binary("age"), "-e", "-p"], _passphrase_input(encryption.passphrase_file, 2))
    argv = [find_binary("age"), "-e"]
    for recipient in encryption.recipients:
        argv += ["-r", recipient]
    for path in encryption.recipients_files:
        argv += ["-R", path]
    return Filter("encrypt", argv)


def decryptor(decryption: Decryption) -> Filter:
    if decryption.passphrase_file:
        return Filter(DECRYPT, [find_binary("age"), "-d"], _passphrase_input(decryption.passphrase_file, 1))
    if not decryption.identity_files:
        raise LifeboatError("the archive is encrypted; give the age identity file that can decrypt it")
    for path in decryption.identity_files:
        if not os.path.isfile(path):
            raise LifeboatError(f"age identity file {path} does not exist")
    argv = [find_binary("age"), "-d"]
    for path in decryption.identity_files:
        argv += ["-i", path]
    return Filter(DECRYPT, argv)
