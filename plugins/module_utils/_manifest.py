# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The JSON manifest written beside each archive: what it holds, how it was made, how to restore it by hand."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
import socket
import typing as t

from ._codecs import SUFFIXES, Encryption, StreamResult
from ._common import LifeboatError
from ._files import write_file_atomic

FORMAT = "lifeboat.ops/archive-manifest"
FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
_REQUIRED = ("job", "engine", "database", "archive", "tool", "counts", "options", "restore_commands")
_REQUIRED_ARCHIVE = ("file", "format", "sha256", "plain_sha256", "size", "compression", "encryption")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def iso(moment: _dt.datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def validate_job_name(job: str) -> None:
    if not _JOB_NAME.match(job):
        raise LifeboatError(
            f"job name '{job}' is not usable in a file name; use letters, digits, '.', '_' and '-' (100 at most)"
        )


def default_job(database: str | None) -> str:
    """A job name from a database name that may hold spaces or other characters files should not."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", database or "").strip("-.")
    return cleaned[:100] or "all"


def validate_destination(destination: str | None) -> None:
    if not destination:
        raise LifeboatError("destination is required: the directory the archive is written to")
    if not os.path.isabs(destination):
        raise LifeboatError(f"destination '{destination}' must be an absolute path")


def archive_stem(job: str, started: _dt.datetime) -> str:
    """``journal-20261122T101500Z``: what every file of one run of a job is named by (to the second)."""
    return f"{job}-{started.strftime('%Y%m%dT%H%M%SZ')}"


def archive_name(job: str, started: _dt.datetime, kind: str, compression: str, encryption: Encryption) -> str:
    """``journal-20261122T101500Z.pgdump.zst.age``: sortable by time, typed by its suffixes."""
    name = f"{archive_stem(job, started)}.{kind}{SUFFIXES[compression]}"
    return name + (".age" if encryption.enabled else "")


def manifest_path(archive_path: str) -> str:
    return archive_path + MANIFEST_SUFFIX


def build(
    *,
    job: str,
    engine: str,
    database: str | None,
    archive_path: str,
    archive_format: str,
    stream: StreamResult,
    compression: str,
    compression_level: int | None,
    encryption: Encryption,
    tool: dict[str, str],
    server: dict[str, t.Any],
    counts: dict[str, int],
    started: _dt.datetime,
    finished: _dt.datetime,
    restore_commands: list[str],
    restore_environment: dict[str, str] | None = None,
    restore_placeholders: dict[str, str] | None = None,
    options: dict[str, t.Any] | None = None,
    extras: list[dict[str, t.Any]] | None = None,
) -> dict[str, t.Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "job": job,
        "engine": engine,
        "database": database,
        "source_host": socket.gethostname(),
        "started_at": iso(started),
        "finished_at": iso(finished),
        "duration_seconds": round((finished - started).total_seconds(), 3),
        "archive": {
            "file": os.path.basename(archive_path),
            "format": archive_format,
            "size": stream.stored_bytes,
            "sha256": stream.stored_sha256,
            "plain_size": stream.plain_bytes,
            # None for a files archive: its per-file sha256 prove the contents (bench/README.md, bench_volume).
            "plain_sha256": stream.plain_sha256 or None,
            "compression": compression,
            "compression_level": compression_level,
            # Only public keys: the manifest must never help to decrypt.
            "encryption": (
                {
                    "method": encryption.method,
                    "recipients": list(encryption.recipients),
                    "recipients_files": list(encryption.recipients_files),
                }
                if encryption.enabled
                else None
            ),
        },
        "tool": tool,
        "server": server,
        "counts": counts,
        "total_count": sum(counts.values()),
        "options": options or {},
        "extras": extras or [],
        "restore_commands": explained_restore_commands(
            os.path.basename(archive_path), stream.stored_sha256, extras or [], restore_commands,
            restore_environment or {}, restore_placeholders or {}),
        # What the commands leave to the person running them, said once more as data (for tools and tests).
        "restore_placeholders": placeholders_in(restore_commands, restore_placeholders or {}),
        "restore_environment": dict(restore_environment or {}),
        "verifications": [],
    }


# What each placeholder of the restore commands stands for, said in the commands themselves (as comments) and in the
# manifest's restore_placeholders. An engine may say more of one for its archive (CONTAINER names the dump's own).
PLACEHOLDERS = {
    "TARGET_DB": "the database to restore into (a new name, or the old one once it is out of the way)",
    "RESTORE_DIR": "an empty directory with room for the unpacked dump",
    "IDENTITY_FILE": "the age identity (private key) file of one of the archive's recipients",
    "CONNECTION": ("where mongorestore connects: --config=FILE, with FILE (chmod 600) holding the line "
                   "uri: \"mongodb://USER:PASSWORD@HOST:27017/?authSource=admin\" (a password given with --uri "
                   "would show in ps)"),
    "CONTAINER": "the database server's container: its clients have the server's version",
}


def placeholders_in(commands: t.Sequence[str], meanings: dict[str, str]) -> dict[str, str]:
    """The placeholders the commands use, each with what it stands for (``meanings`` first, then PLACEHOLDERS)."""
    text = " ".join(commands)
    known = {**PLACEHOLDERS, **meanings}
    return {name: known[name] for name in known if re.search(rf"\b{name}\b", text)}


def explained_restore_commands(archive_file: str, sha256: str, extras: list[dict[str, t.Any]],
                               commands: list[str], environment: dict[str, str] | None = None,
                               meanings: dict[str, str] | None = None) -> list[str]:
    """The engine's restore commands, preceded by what their placeholders mean, the variables they read from the
    environment, and the sha256 check of every stored file (run in the archive's directory: a file that fails it
    must not be restored)."""
    legend = [f"# {name} is {meaning}" for name, meaning in placeholders_in(commands, meanings or {}).items()]
    legend += [f"# {name} (in the environment): {meaning}" for name, meaning in (environment or {}).items()]
    files = [(extra["file"], extra["sha256"]) for extra in extras
             if isinstance(extra, dict) and extra.get("file") and extra.get("sha256")] + [(archive_file, sha256)]
    checks = [f"echo {shell_quote(f'{digest}  {name}')} | sha256sum --check --strict" for name, digest in files]
    return [*legend, *checks, *commands]


def encode(manifest: dict[str, t.Any]) -> bytes:
    """The manifest's bytes on disk, exactly ``json.dumps(indent=2, sort_keys=True)``: a signature covers them (see
    _signing.signed_bytes) and the by-hand check re-creates them with that one call, so keep them stable."""
    return b"".join(_encoded(manifest))


def write(path: str, manifest: dict[str, t.Any]) -> None:
    write_file_atomic(path, _encoded(manifest), 0o600)


_PIECE = 1 << 20


def _encoded(manifest: dict[str, t.Any]) -> t.Iterator[bytes]:
    """The manifest as :func:`encode` gives it, in pieces of ~1 MiB: ``json.dumps(indent=2)`` kept every piece of the
    text until the end, +33 MiB for 20,000 files (bench/README.md)."""
    pieces: list[str] = []
    size = 0
    for piece in _json_text(manifest, 0):
        pieces.append(piece)
        size += len(piece)
        if size >= _PIECE:
            yield "".join(pieces).encode("utf-8")
            pieces, size = [], 0
    pieces.append("\n")
    yield "".join(pieces).encode("utf-8")


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _flat(value: t.Any) -> bool:
    """A non-empty dict or list that holds no non-empty dict or list (a file's entry, most often)."""
    if not isinstance(value, (dict, list, tuple)) or not value:
        return False
    items = value.values() if isinstance(value, dict) else value
    if _SCALARS.issuperset(map(type, items)):  # the common case, without a Python call per item
        return True
    return not any(isinstance(item, (dict, list, tuple)) and item for item in items)


@functools.cache
def _flat_encoder(depth: int) -> t.Callable[[t.Any], str]:
    """json's C encoder for a flat value at ``depth`` (the indented form is pure Python and ~10x slower: 2 s for
    20,000 files' entries): with nothing nested, the item separator carries the line break and the indent."""
    separators = ("," + "\n" + "  " * (depth + 1), ": ")
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the same text, slower
        return functools.partial(json.dumps, sort_keys=True, separators=separators)
    # The arguments json.JSONEncoder.iterencode gives it: no circular check, json's own default and string encoder,
    # no indent, the separators, sort_keys, no skipkeys, allow_nan.
    encoder = make(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, separators[1],
                   separators[0], True, False, True)
    return lambda value: "".join(encoder(value, 0))


def _flat_text(value: t.Any, depth: int) -> str:
    text = _flat_encoder(depth)(value)
    return f"{text[0]}\n{'  ' * (depth + 1)}{text[1:-1]}\n{'  ' * depth}{text[-1]}"


_BATCH = 1000  # flat dicts encoded in one call (a file's entry is ~250 bytes of text)


def _flat_dicts(items: t.Sequence[t.Any], start: int) -> int:
    """How many of items[start:] in a row (up to _BATCH) are flat dicts."""
    count = 0
    for item in items[start:start + _BATCH]:
        if not (isinstance(item, dict) and _flat(item)):
            break
        count += 1
    return count


def _flat_dicts_text(items: t.Sequence[dict[str, t.Any]], depth: int) -> str:
    """Flat dicts at ``depth``, as :func:`_flat_text` writes each, joined as the items of a list: one call of the C
    encoder for all of them (per dict, the calls cost more than the encoding). Its output separates the dicts by
    the same separator as their items; between two dicts it follows a closing brace and precedes an opening one,
    which no item separator does (a key follows it) and no string holds (the separator holds a line break)."""
    separator = "," + "\n" + "  " * (depth + 1)
    text = _flat_encoder(depth)(items)  # [{...}<separator>{...}]
    closing, opening = "\n" + "  " * depth + "}", "{" + "\n" + "  " * (depth + 1)
    between = closing + "," + "\n" + "  " * depth + opening
    return opening + text[2:-2].replace("}" + separator + "{", between) + closing


def _json_text(value: t.Any, depth: int) -> t.Iterator[str]:
    """The pieces of ``json.dumps(value, indent=2, sort_keys=True)`` at ``depth``, in order."""
    inner, outer = "\n" + "  " * (depth + 1), "\n" + "  " * depth
    if _flat(value):
        yield _flat_text(value, depth)
    elif isinstance(value, dict) and value:
        for position, key in enumerate(sorted(value)):
            head = f"{',' if position else '{'}{inner}{json.dumps(key if isinstance(key, str) else str(key))}: "
            if _flat(value[key]):
                yield head + _flat_text(value[key], depth + 1)
            else:
                yield head
                yield from _json_text(value[key], depth + 1)
        yield outer + "}"
    elif isinstance(value, (list, tuple)) and value:
        position = 0
        while position < len(value):
            head = f"{',' if position else '['}{inner}"
            flat_dicts = _flat_dicts(value, position)
            if flat_dicts:  # a root's entries: a batch of them in one call of the C encoder
                yield head + _flat_dicts_text(value[position:position + flat_dicts], depth + 1)
                position += flat_dicts
                continue
            if _flat(value[position]):
                yield head + _flat_text(value[position], depth + 1)
            else:
                yield head
                yield from _json_text(value[position], depth + 1)
            position += 1
        yield outer + "]"
    else:
        yield json.dumps(value)  # a scalar, {} or []


def load(archive_or_manifest: str) -> dict[str, t.Any]:
    path = (
        archive_or_manifest
        if archive_or_manifest.endswith(MANIFEST_SUFFIX)
        else manifest_path(archive_or_manifest)
    )
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError as exc:
        raise LifeboatError(f"no manifest at {path}; give an archive made by lifeboat.ops") from exc
    except (OSError, ValueError) as exc:
        raise LifeboatError(f"manifest {path} is unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise LifeboatError(f"{path} is not a lifeboat.ops archive manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise LifeboatError(
            f"manifest {path} has format version {manifest.get('format_version')}; this collection reads {FORMAT_VERSION}"
        )
    archive = manifest.get("archive")
    missing = [key for key in _REQUIRED if key not in manifest]
    missing += [f"archive.{key}" for key in _REQUIRED_ARCHIVE if not isinstance(archive, dict) or key not in archive]
    if not missing and t.cast("dict[str, t.Any]", archive)["plain_sha256"] is None and manifest["engine"] != "files":
        missing = ["archive.plain_sha256"]  # only a files archive proves its plain stream by per-file sha256
    if missing or not isinstance(manifest.get("counts"), dict):
        raise LifeboatError(f"manifest {path} is incomplete (no {', '.join(missing) or 'counts'}); it cannot be trusted")
    return manifest


def shell_quote(value: str) -> str:
    """Quote for the restore commands shown to people (POSIX sh)."""
    if value and re.fullmatch(r"[A-Za-z0-9_./:=@%+,-]+", value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


def decode_commands(file_name: str, compression: str, encryption: Encryption) -> list[str]:
    """The shell pipeline head that turns the stored file into the plain dump stream."""
    parts = []
    if encryption.passphrase_file:
        parts.append(f"age -d {shell_quote(file_name)}")  # age asks for the passphrase on the terminal
    elif encryption.enabled:
        parts.append(f"age -d -i IDENTITY_FILE {shell_quote(file_name)}")
    if compression == "zstd":
        parts.append("zstd -dc" if parts else f"zstd -dc {shell_quote(file_name)}")
    elif compression == "gzip":
        parts.append("gzip -dc" if parts else f"gzip -dc {shell_quote(file_name)}")
    if not parts:
        parts.append(f"cat {shell_quote(file_name)}")
    return parts
