# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a restore archives before it overwrites is stored as the archive it restores was (issue 29)."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils._archive import ArchiveOptions, safety_dump_options
from ansible_collections.lifeboat.ops.plugins.module_utils._codecs import Decryption, Encryption
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

BASE = ArchiveOptions(destination="/srv/safety", job="before-restore")


def manifest(encryption):
    return {"archive": {"file": "journal-20261207T010000Z.pgdump.zst.age", "encryption": encryption}}


def test_plain_archives_give_plain_safety_dumps():
    options = safety_dump_options(BASE, manifest(None), Decryption(), "journal-before-restore")
    assert options.job == "journal-before-restore" and not options.encryption.enabled


def test_a_passphrase_archive_gives_a_safety_dump_under_the_same_passphrase(tmp_path):
    passphrase = str(tmp_path / "passphrase")
    options = safety_dump_options(BASE, manifest({"method": "age-passphrase", "recipients": [],
                                                  "recipients_files": []}),
                                  Decryption(passphrase_file=passphrase), "j-before-restore")
    assert options.encryption == Encryption(passphrase_file=passphrase)


def test_missing_recipients_files_are_replaced_by_the_identities_public_halves(tmp_path):
    identity = tmp_path / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], capture_output=True, check=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], capture_output=True, text=True,
                               check=True).stdout.strip()
    kept = tmp_path / "kept.txt"
    kept.write_text("age1kept\n")
    described = {"method": "age", "recipients": ["age1given"], "recipients_files": [str(kept), "/gone/recipients"]}
    options = safety_dump_options(BASE, manifest(described), Decryption(identity_files=(str(identity),)), "j")
    assert options.encryption == Encryption(recipients=("age1given", recipient), recipients_files=(str(kept),))


def test_an_encrypted_archive_with_no_key_known_here_is_refused_in_one_line():
    described = {"method": "age", "recipients": [], "recipients_files": ["/gone/recipients"]}
    with pytest.raises(LifeboatError, match=r"^journal-20261207T010000Z\.pgdump\.zst\.age is encrypted but no key to "
                                            r"encrypt the safety dump like it is known here: give the age identity "):
        safety_dump_options(BASE, manifest(described), Decryption(), "j")
