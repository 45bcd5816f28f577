# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Signed manifests: who made an archive, not only what it holds.

The manifest holds the sha256 of every stored byte, so a signed manifest proves the whole archive. Anyone with
the age recipient (a public key, written in the manifest) could otherwise replace an archive and its manifest.

The signature is OpenSSH's SSHSIG (``ssh-keygen -Y sign``, namespace ``lifeboat-manifest``), stored beside the
manifest as ``MANIFEST.sig``, so that anyone can check it without this collection::

    ssh-keygen -Y verify -f allowed_signers -I lifeboat -n lifeboat-manifest -s ARCHIVE.manifest.json.sig \\
        < ARCHIVE.manifest.json

What is signed is the manifest as the backup wrote it. Verification later appends its results to the manifest's
``verifications`` list; that list is outside the manifest's signature, and the signed bytes are the manifest
with that list emptied, in the collection's JSON form (:func:`_manifest.encode`). Each record in it carries its own
signature (namespace ``lifeboat-verification``) by the key of the host that verified, over the archive's name, its
sha256 and the record (:func:`record_bytes`): a writer to the backup directory cannot mark an archive verified.
The private key is only ever named by its path to ``ssh-keygen``; its content never passes through this process.

Signed by default: a backup with no ``signing_key_file`` signs with :func:`default_key_file`, made on first use
(:func:`ensure_signing_key`); a verify or restore trusts ``trusted_signers`` and the public half of this host's key,
never a public key found in the backup directory (whoever writes there could put theirs).
"""

from __future__ import annotations

import os
import re
import subprocess
import typing as t
from dataclasses import dataclass

from . import _manifest
from ._common import LifeboatError, PrivateDir, child_env, find_binary, last_line
from ._files import write_file_atomic

NAMESPACE = "lifeboat-manifest"
RECORD_NAMESPACE = "lifeboat-verification"  # a verification record's signature (never valid as a manifest's)
RECORD_SIGNATURE_FIELD = "record_signature"
# The key a host signs with when none is given, made on first use; LIFEBOAT_SIGNING_KEY_FILE moves it (hosts with
# another layout, and the test suite, which must not write /etc).
DEFAULT_KEY_FILE = "/etc/lifeboat/signing_key"
KEY_FILE_ENV = "LIFEBOAT_SIGNING_KEY_FILE"
# The public half, written into each destination for the operator to copy to other hosts' trusted_signers. Nothing
# here ever trusts it: whoever writes to the destination could replace it.
PUBLIC_KEY_NAME = "lifeboat-signer.pub"
IDENTITY = "lifeboat"  # the principal the allowed-signers lines name (ssh-keygen -I)
SIGNATURE_SUFFIX = ".sig"
UNSIGNED_FIELD = "verifications"  # appended after the backup, by verify: outside the signature
# Added after the backup by an off-site copy (where the copy is, how to fetch it): outside the signature too.
ADDED_FIELDS = ("offsite",)
_PUBLIC_KEY = re.compile(r"^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|"
                         r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}(?: .*)?$")
_TIMEOUT = 60

SIGNED = "ok"
UNSIGNED_ALLOWED = "unsigned (allowed)"
UNTRUSTED_ALLOWED = "untrusted (allowed)"


def default_key_file() -> str:
    return os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE


def signature_path(manifest_path: str) -> str:
    return manifest_path + SIGNATURE_SUFFIX


@dataclass(frozen=True)
class Trust:
    """Whose signatures a verify or restore accepts, and whether an archive without one may pass."""

    signers: tuple[str, ...] = ()  # OpenSSH public keys ("ssh-ed25519 AAAA... comment")
    allow_unsigned: bool = False

    def validate(self) -> None:
        for number, key in enumerate(self.signers, 1):
            if not _PUBLIC_KEY.match(key.strip()):
                raise LifeboatError(
                    f"trusted_signers item {number} is not an OpenSSH public key: give the one line of the signing "
                    "key's .pub file (ssh-ed25519 AAAA...)")


# For the restores a verify runs into a scratch database: the verify checked the signature first (_verify).
CHECKED_BY_CALLER = Trust(allow_unsigned=True)


def signed_bytes(manifest: dict[str, t.Any]) -> bytes:
    """The bytes a manifest's signature covers: the manifest as the backup wrote it, its verifications emptied."""
    signed = {key: value for key, value in manifest.items() if key not in ADDED_FIELDS}
    return _manifest.encode({**signed, UNSIGNED_FIELD: []})


def _ssh_keygen(argv: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run([find_binary("ssh-keygen"), *argv], input=data if data is not None else b"",
                              capture_output=True, timeout=_TIMEOUT, env=child_env(), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LifeboatError(f"ssh-keygen failed: {exc}") from None


def _reason(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = [line for line in done.stderr.decode("utf-8", "replace").splitlines()
             if line.strip() and not line.startswith(("@", "Signing data", "It is required", "This private key"))]
    return last_line("\n".join(lines)) if lines else f"exit status {done.returncode}"


def check_signing_key(key_file: str) -> str:
    """Before a backup starts: the key file opens without a passphrase. Returns its public key."""
    if not os.path.isabs(key_file):
        raise LifeboatError(f"signing_key_file '{key_file}' must be an absolute path")
    if not os.path.isfile(key_file):
        raise LifeboatError(f"signing_key_file {key_file} does not exist; make one with "
                            f"ssh-keygen -t ed25519 -N '' -C lifeboat -f {key_file}")
    # -P '': an empty passphrase, so a protected key fails here instead of waiting for a terminal.
    done = _ssh_keygen(["-y", "-P", "", "-f", key_file])
    if done.returncode != 0:
        raise LifeboatError(f"signing_key_file {key_file} cannot sign: {_reason(done)} (it must be an OpenSSH "
                            "private key without a passphrase, mode 0600, readable by this user)")
    return done.stdout.decode("utf-8", "replace").strip()


def own_public_key(signing_key_file: str | None) -> str | None:
    """The public half of the key this host signs with: ``signing_key_file`` (which must exist), or else the default
    key file when it exists (:func:`default_key_file`); None when this host has no key."""
    if signing_key_file:
        if not os.path.isfile(signing_key_file):
            raise LifeboatError(f"signing_key_file {signing_key_file} does not exist (archives are checked against its "
                                f"public half): make it on the backup host with ssh-keygen -t ed25519 -N '' -C lifeboat "
                                f"-f {signing_key_file}, or on another host give trusted_signers (its .pub line) instead")
        return check_signing_key(signing_key_file)
    default = default_key_file()
    try:  # the public half made beside it: readable by a user who may not read the key (a verify as non-root)
        with open(default + ".pub", encoding="utf-8") as handle:
            public = handle.readline().strip()
        if _PUBLIC_KEY.match(public):
            return public
    except OSError:
        pass
    return check_signing_key(default) if os.path.isfile(default) else None


def resolve_trust(signers: t.Iterable[str], allow_unsigned: bool = False, signing_key_file: str | None = None) -> Trust:
    """Whose signatures a verify or restore accepts: the ``trusted_signers`` given and the public half of the key this
    host signs with (:func:`own_public_key`: a host proves its own archives). An archive none of them signed is
    refused unless ``allow_unsigned``, the operator's explicit word, per run, for archives made before signing."""
    keys = [key.strip() for key in signers if key and key.strip()]
    own = own_public_key(signing_key_file)
    if own and own not in keys:
        keys.append(own)
    trust = Trust(signers=tuple(keys), allow_unsigned=allow_unsigned)
    trust.validate()
    return trust


def host_trust() -> Trust:
    """What a verify or restore trusts when its caller names no signer: this host's own key (its default key file),
    and nothing else. The library's default, so that every entry point (modules, `lifeboat`, the timers' runs and
    in-process callers) decides alike."""
    return resolve_trust(())


def ensure_signing_key(key_file: str) -> str:
    """The key a backup signs with, made now when it does not exist yet (ed25519, no passphrase, 0600 in a 0700
    directory). Returns its public key."""
    if not os.path.isabs(key_file):
        raise LifeboatError(f"signing_key_file '{key_file}' must be an absolute path")
    if not os.path.lexists(key_file):
        directory = os.path.dirname(key_file)
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700)
        except OSError as exc:
            raise LifeboatError(f"cannot create the signing key's directory {directory}: {exc.strerror}; "
                                "give signing_key_file (a path this user can write, outside the destination)") from None
        old_umask = os.umask(0o077)
        try:
            done = _ssh_keygen(["-q", "-t", "ed25519", "-N", "", "-C", IDENTITY, "-f", key_file])
        finally:
            os.umask(old_umask)
        if done.returncode != 0:
            raise LifeboatError(f"cannot create the signing key {key_file}: {_reason(done)}; "
                                "give signing_key_file (a path this user can write, outside the destination)")
        os.chmod(key_file, 0o600)
    return check_signing_key(key_file)


def key_created_note(key_file: str, destination: str) -> str:
    """What a first backup says once it made this host's signing key."""
    return (f"made this host's signing key {key_file} (its public half: {key_file}.pub, and "
            f"{os.path.join(destination, PUBLIC_KEY_NAME)}); archives are signed with it and verified against it "
            "here: give that .pub line to trusted_signers where these archives are restored on another host, and "
            "keep a copy of the key with your secrets (without it, new archives cannot be signed as this host's)")


def check_key_outside(key_file: str, destination: str) -> None:
    """The signing key never lies in the destination: whoever can write there must not be able to read it."""
    key = os.path.realpath(key_file)
    where = os.path.realpath(destination)
    if key == where or key.startswith(where.rstrip(os.sep) + os.sep):
        raise LifeboatError(f"signing_key_file {key_file} is inside the destination {destination}: keep it where "
                            "only this host's backup user can read it (the default is " + DEFAULT_KEY_FILE + ")")


def publish_public_key(destination: str, public_key: str) -> str:
    """Write the public half beside the archives (for the operator to copy to other hosts; never trusted from
    there). Returns its path."""
    path = os.path.join(destination, PUBLIC_KEY_NAME)
    content = public_key.strip() + "\n"
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == content:
                return path
    except OSError:
        pass
    write_file_atomic(path, content.encode(), 0o644)
    return path


def sign(data: bytes, key_file: str, namespace: str = NAMESPACE) -> bytes:
    """The SSHSIG armoured signature of ``data`` by the private key in ``key_file``."""
    done = _ssh_keygen(["-Y", "sign", "-n", namespace, "-f", key_file], data)
    if done.returncode != 0 or b"BEGIN SSH SIGNATURE" not in done.stdout:
        what = "the manifest" if namespace == NAMESPACE else "the verification record"
        raise LifeboatError(f"signing {what} with {key_file} failed: {_reason(done)}")
    return done.stdout


def write_signature(manifest_path: str, signature: bytes) -> str:
    path = signature_path(manifest_path)
    write_file_atomic(path, signature, 0o644)  # public: it proves, it does not open anything
    return path


def allowed_signers(signers: t.Iterable[str], namespace: str = NAMESPACE) -> str:
    """The allowed_signers file (ssh-keygen(1) ALLOWED SIGNERS) that trusts ``signers`` for one namespace only."""
    return "".join(f'{IDENTITY} namespaces="{namespace}" {key.strip()}\n' for key in signers)


def check(manifest_path: str, manifest: dict[str, t.Any], trust: Trust) -> str:
    """Is this manifest (as loaded, so what is checked is what is used) signed by a trusted key?

    Returns how it passed (:data:`SIGNED`, or with ``allow_unsigned`` :data:`UNSIGNED_ALLOWED` or
    :data:`UNTRUSTED_ALLOWED`); raises a one-line LifeboatError when it must not be used.
    """
    try:
        with open(signature_path(manifest_path), "rb") as handle:
            signature: bytes | None = handle.read()
    except FileNotFoundError:
        signature = None
    except OSError as exc:
        raise LifeboatError(f"cannot read the signature of {os.path.basename(manifest_path)}: {exc.strerror}") from None
    return check_signature(os.path.basename(manifest_path), manifest, signature, trust)


def check_signature(name: str, manifest: dict[str, t.Any], signature: bytes | None, trust: Trust) -> str:
    """:func:`check` for a manifest and signature held in memory (fetched from a bucket, say); ``name`` is the
    manifest's file name, for the messages."""
    trust.validate()
    if signature is None:
        if trust.allow_unsigned:
            return UNSIGNED_ALLOWED
        if not trust.signers:
            raise no_trusted_signer(name)
        raise LifeboatError(f"{name} is not signed (no {name}{SIGNATURE_SUFFIX}): nothing proves this backup host "
                            "wrote it; restore it only if you know where it comes from, with allow_unsigned")
    data = signed_bytes(manifest)
    with PrivateDir() as work:
        signature_file = work.write_secret("manifest.sig", signature.decode("ascii", "replace"))
        if trust.signers:
            signers_file = work.write_secret("allowed_signers", allowed_signers(trust.signers))
            done = _ssh_keygen(["-Y", "verify", "-f", signers_file, "-I", IDENTITY, "-n", NAMESPACE,
                                "-s", signature_file], data)
            if done.returncode == 0:
                return SIGNED
        # Why: a sound signature by another key (made elsewhere), or one that no longer fits (changed since).
        other = _ssh_keygen(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", signature_file], data)
    if other.returncode == 0:
        if trust.allow_unsigned:
            return UNTRUSTED_ALLOWED
        if not trust.signers:
            raise no_trusted_signer(name)
        key = other.stdout.decode("utf-8", "replace").strip().rpartition(" key ")[2] or "another key"
        why = f"it is signed by {key}, which is not one of trusted_signers"
    else:
        why = f"{_reason(other)}: it was changed after it was signed, or the signature is not one of lifeboat's"
    raise LifeboatError(f"{name} does not carry a valid signature of a trusted signer ({why}); do not restore it")


def no_trusted_signer(name: str) -> LifeboatError:
    return LifeboatError(
        f"no trusted signer is known here to check {name}: give trusted_signers the .pub line of the signing key of "
        f"the host that made it (its {default_key_file()}.pub, or {PUBLIC_KEY_NAME} beside its archives, copied over "
        "a channel you trust), or allow_unsigned: true for this run if you know where the archive comes from")


def record_bytes(archive_name: str, archive_sha256: str, record: dict[str, t.Any]) -> bytes:
    """What a verification record's signature covers: the record (without its signature) bound to the archive's
    file name and sha256, so that it proves nothing of another archive, or of this one renamed or replaced."""
    body = {key: value for key, value in record.items() if key != RECORD_SIGNATURE_FIELD}
    return _manifest.encode({"archive": archive_name, "sha256": archive_sha256, "record": body})


def sign_record(archive_name: str, archive_sha256: str, record: dict[str, t.Any], key_file: str) -> str:
    return sign(record_bytes(archive_name, archive_sha256, record), key_file, RECORD_NAMESPACE).decode("ascii")


def record_trusted(archive_name: str, archive_sha256: str, record: dict[str, t.Any], trust: Trust) -> bool:
    """Whether a trusted key signed this verification record of this archive."""
    signature = record.get(RECORD_SIGNATURE_FIELD)
    if not trust.signers or not isinstance(signature, str) or "BEGIN SSH SIGNATURE" not in signature:
        return False
    with PrivateDir() as work:
        signers_file = work.write_secret("allowed_signers", allowed_signers(trust.signers, RECORD_NAMESPACE))
        signature_file = work.write_secret("record.sig", signature)
        done = _ssh_keygen(["-Y", "verify", "-f", signers_file, "-I", IDENTITY, "-n", RECORD_NAMESPACE,
                            "-s", signature_file], record_bytes(archive_name, archive_sha256, record))
    return done.returncode == 0


# The signed bytes from a manifest that verify has since appended to (the same JSON form as _manifest.encode).
_SIGNED_BYTES_PY = ('import json,sys; m=json.load(open(sys.argv[1])); m["verifications"]=[]; m.pop("offsite",None); '
                    'sys.stdout.write(json.dumps(m, indent=2, sort_keys=True) + "\\n")')


ALLOWED_SIGNERS_MEANING = ("a file with one line: lifeboat namespaces=\"lifeboat-manifest\" followed by the backup "
                           "host's signing public key (ssh-ed25519 AAAA...); a manifest that fails this check must "
                           "not be restored")


def by_hand_commands(manifest_file: str) -> list[str]:
    """How a person checks the signature without this collection (the first of the manifest's restore_commands)."""
    quoted = _manifest.shell_quote(manifest_file)
    return [
        f"# ALLOWED_SIGNERS is {ALLOWED_SIGNERS_MEANING}",
        f"python3 -c {_manifest.shell_quote(_SIGNED_BYTES_PY)} {quoted} | ssh-keygen -Y verify -f ALLOWED_SIGNERS "
        f"-I {IDENTITY} -n {NAMESPACE} -s {quoted}{SIGNATURE_SUFFIX}",
    ]
