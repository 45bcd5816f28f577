# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_signing with the real ssh-keygen: what is signed, what each refusal says (one line), the key's checks."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _manifest, _signing
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError


def keypair(directory, name, passphrase=""):
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)], check=True)
    return str(key), (directory / f"{name}.pub").read_text().strip()


@pytest.fixture
def signed(tmp_path):
    key, public = keypair(tmp_path, "backup")
    manifest = {"archive": {"sha256": "ab" * 32}, "counts": {"public.t": 3}, "verifications": []}
    path = tmp_path / "j-20261130T000000Z.pgdump.manifest.json"
    data = _manifest.encode(manifest)
    path.write_bytes(data)
    _signing.write_signature(str(path), _signing.sign(data, key))
    return {"key": key, "public": public, "manifest": manifest, "path": str(path)}


def refusal(manifest_path, manifest, trust):
    with pytest.raises(LifeboatError) as caught:
        _signing.check(manifest_path, manifest, trust)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_signed_manifest_passes_and_verifications_stay_outside_the_signature(signed):
    trust = _signing.Trust((signed["public"],))
    assert _signing.check(signed["path"], signed["manifest"], trust) == _signing.SIGNED
    verified = {**signed["manifest"], "verifications": [{"ok": True, "level": "restore"}]}
    assert _signing.check(signed["path"], verified, trust) == _signing.SIGNED
    # No trusted key known: refused, saying in one line how to fix it; allow_unsigned says the signer is untrusted.
    message = refusal(signed["path"], signed["manifest"], _signing.Trust())
    assert "no trusted signer is known here" in message and "trusted_signers" in message and "allow_unsigned" in message
    allowed = _signing.Trust(allow_unsigned=True)
    assert _signing.check(signed["path"], signed["manifest"], allowed) == _signing.UNTRUSTED_ALLOWED


def test_every_other_change_is_refused(signed):
    trust = _signing.Trust((signed["public"],), allow_unsigned=True)
    changed = {**signed["manifest"], "counts": {"public.t": 4}}
    assert "changed after it was signed" in refusal(signed["path"], changed, trust)
    added = {**signed["manifest"], "note": "x"}
    assert "changed after it was signed" in refusal(signed["path"], added, trust)


def test_another_key_is_named_by_its_fingerprint(signed, tmp_path):
    _other_key, other_public = keypair(tmp_path, "other")
    message = refusal(signed["path"], signed["manifest"], _signing.Trust((other_public,)))
    assert "is signed by SHA256:" in message and "not one of trusted_signers" in message


def test_unsigned_is_refused_unless_allowed(signed):
    os.unlink(_signing.signature_path(signed["path"]))
    trust = _signing.Trust((signed["public"],))
    assert "is not signed" in refusal(signed["path"], signed["manifest"], trust)
    allowed = _signing.Trust((signed["public"],), allow_unsigned=True)
    assert _signing.check(signed["path"], signed["manifest"], allowed) == _signing.UNSIGNED_ALLOWED


@pytest.mark.parametrize("key", ["", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                                 "ssh-ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----"])
def test_trusted_signers_must_be_public_keys(key):
    with pytest.raises(LifeboatError, match="trusted_signers item 1 is not an OpenSSH public key"):
        _signing.Trust((key,)).validate()


def test_signing_key_checks(tmp_path):
    key, public = keypair(tmp_path, "good")
    assert _signing.check_signing_key(key) == public
    protected = keypair(tmp_path, "protected", passphrase="p@ss:w/rd?#&%'\"{{x}}")[0]
    for path, says in ((protected, "cannot sign"), (str(tmp_path / "none"), "does not exist"),
                       ("relative/key", "must be an absolute path"), (key + ".pub", "cannot sign")):
        with pytest.raises(LifeboatError, match=says) as caught:
            _signing.check_signing_key(path)
        assert "\n" not in str(caught.value)
    (tmp_path / "good").chmod(0o644)
    with pytest.raises(LifeboatError, match="bad permissions"):
        _signing.check_signing_key(key)


def test_by_hand_command_checks_a_verified_manifest(signed, tmp_path):
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(_signing.allowed_signers([signed["public"]]))
    verified = {**signed["manifest"], "verifications": [{"ok": True}]}
    with open(signed["path"], "wb") as handle:
        handle.write(_manifest.encode(verified))
    comment, command = _signing.by_hand_commands(signed["path"].rsplit("/", 1)[1])
    assert comment.startswith("# ")
    done = subprocess.run(command.replace("ALLOWED_SIGNERS", str(allowed)), shell=True, cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Good" in done.stdout, done


def test_no_signer_known_refuses_unsigned_too(signed):
    os.unlink(_signing.signature_path(signed["path"]))
    assert "no trusted signer is known here" in refusal(signed["path"], signed["manifest"], _signing.Trust())
    allowed = _signing.Trust(allow_unsigned=True)
    assert _signing.check(signed["path"], signed["manifest"], allowed) == _signing.UNSIGNED_ALLOWED


def test_default_key_made_once_private_and_trusted_with_the_signers_given(tmp_path, monkeypatch):
    key_file = tmp_path / "etc" / "lifeboat" / "signing_key"
    monkeypatch.setenv(_signing.KEY_FILE_ENV, str(key_file))
    assert _signing.default_key_file() == str(key_file)
    assert _signing.resolve_trust(()).signers == ()  # no key yet: nothing trusted
    public = _signing.ensure_signing_key(str(key_file))
    assert public.startswith("ssh-ed25519 ") and public.endswith(" lifeboat")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600" and oct(key_file.parent.stat().st_mode & 0o777) == "0o700"
    assert _signing.ensure_signing_key(str(key_file)) == public  # made once
    _other, other_public = keypair(tmp_path, "other")
    assert _signing.resolve_trust([other_public]).signers == (other_public, public)
    with pytest.raises(LifeboatError, match="is inside the destination"):
        _signing.check_key_outside(str(key_file), str(tmp_path / "etc"))
    _signing.check_key_outside(str(key_file), str(tmp_path / "etc-other"))
    written = _signing.publish_public_key(str(tmp_path), public)
    assert open(written, encoding="utf-8").read() == public + "\n"


def test_verification_records_bound_to_their_archive_and_signer(tmp_path):
    key, public = keypair(tmp_path, "verifier")
    _attacker, attacker_public = keypair(tmp_path, "attacker")
    record = {"at": "2026-11-30T01:00:00Z", "ok": True, "level": "restore", "host": "h"}
    signed = {**record, _signing.RECORD_SIGNATURE_FIELD: _signing.sign_record("a.pgdump", "ab" * 32, record, key)}
    trust = _signing.Trust((public,))
    assert _signing.record_trusted("a.pgdump", "ab" * 32, signed, trust)
    assert not _signing.record_trusted("b.pgdump", "ab" * 32, signed, trust)  # copied to another archive
    assert not _signing.record_trusted("a.pgdump", "cd" * 32, signed, trust)  # the archive replaced
    assert not _signing.record_trusted("a.pgdump", "ab" * 32, {**signed, "ok": False}, trust)  # changed
    assert not _signing.record_trusted("a.pgdump", "ab" * 32, record, trust)  # unsigned
    assert not _signing.record_trusted("a.pgdump", "ab" * 32, signed, _signing.Trust((attacker_public,)))
    # A manifest signature is not a record signature (namespaces), nor the other way round.
    as_manifest = _signing.sign(_signing.record_bytes("a.pgdump", "ab" * 32, record), key).decode()
    assert not _signing.record_trusted("a.pgdump", "ab" * 32, {**record, "record_signature": as_manifest}, trust)
