# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this doc fragment may change in any release.
# Only this collection's own modules extend it.

from __future__ import annotations


class ModuleDocFragment:
    # How dump modules store their archive.
    DOCUMENTATION = r"""
options:
  destination:
    description:
      - Absolute path of the directory on the managed host that receives the archive and its manifest.
      - Created with mode C(0700) when missing. The archive is written under a hidden temporary name, fsynced,
        and given its final name only when the whole stream succeeded; a failure leaves nothing behind.
    type: path
    required: true
  job:
    description:
      - Name that groups the archives of one backup job; the archive is named C(JOB-YYYYmmddTHHMMSSZ.KIND[.zst][.age]).
      - The database name (or V(all)) when not set.
    type: str
  compression:
    description:
      - V(zstd) (fast, on all cores), V(gzip) (C(pigz) when installed), or V(none).
    type: str
    default: zstd
    choices: [zstd, gzip, none]
  compression_level:
    description:
      - Compression level, 1 to 19 for zstd (default 3), 1 to 9 for gzip (default 6).
    type: int
  encryption_recipients:
    description:
      - age public keys (V(age1...)) or SSH public keys to encrypt the archive to.
      - Only the holders of the matching private keys can read the archive; the host that makes it cannot.
    type: list
    elements: str
    default: []
  encryption_recipients_files:
    description:
      - Files on the managed host that list age recipients, one per line (C(age -R)).
    type: list
    elements: path
    default: []
  encryption_passphrase_file:
    description:
      - Encrypt with the passphrase in this file (its first line; mode 0600) instead of to recipients.
      - age reads passphrases only from a terminal; the module gives it a private pseudo-terminal, so the
        passphrase never appears on a command line or in an environment.
      - Anyone who can read the file can read the archives; prefer O(encryption_recipients).
    type: path
  signing_key_file:
    description:
      - OpenSSH private key file on the managed host (ed25519, no passphrase, mode 0600) that signs the manifest,
        so that verification and restores can prove the archive was made here (their C(trusted_signers)).
      - The signature is C(ssh-keygen -Y sign -n lifeboat-manifest), written beside the manifest as
        C(ARCHIVE.manifest.json.sig); it covers the manifest and so every stored byte. Its by-hand check opens the
        manifest's C(restore_commands).
      - The key is read by C(ssh-keygen) alone, named by its path; it must stay on this host, outside the destination.
      - When not given, this host's own key signs, C(/etc/lifeboat/signing_key) (environment variable
        C(LIFEBOAT_SIGNING_KEY_FILE) moves it), made by the first run that writes an archive (ed25519, 0600, in a
        0700 directory; a warning says so). Its public half is written beside the archives as
        C(lifeboat-signer.pub), for other hosts' C(trusted_signers); nothing ever trusts that file from there.
    type: path
requirements:
  - C(zstd), C(gzip) or C(pigz), and C(age) (for encryption) on the managed host.
  - C(ssh-keygen) (OpenSSH).
"""

    # Whose signatures verification and restores accept.
    SIGNATURES = r"""
options:
  trusted_signers:
    description:
      - OpenSSH public keys (the line of a C(.pub) file, V(ssh-ed25519 AAAA... comment)) of the backup hosts whose
        signed manifests are trusted.
      - Every archive's manifest must carry a valid signature of one of them or of this host's own key (see
        O(signing_key_file)) (C(ssh-keygen -Y verify), namespace C(lifeboat-manifest)), checked before anything else
        is read or written; an archive and manifest rewritten by someone who holds only the age recipient are
        refused, and so is an unsigned archive, or one signed by another key, unless O(allow_unsigned) is set.
      - Only verification records a trusted key signed (namespace C(lifeboat-verification)) make an archive
        verified (C(select=newest_verified), C(unverified)); others are ignored, with a warning.
      - Never taken from the backup directory (C(lifeboat-signer.pub) there is for people to copy, over a channel
        they trust), since whoever can write there could put their own key.
    type: list
    elements: str
    default: []
  signing_key_file:
    description:
      - The OpenSSH private key file this host signs its manifests with (a job's C(signing_key_file)). Its public
        half (C(ssh-keygen -y)) is always a trusted signer, so a job proves its own archives and refuses unsigned
        ones; the key itself is only read by C(ssh-keygen). A verify signs its records with it.
      - Not given, this host's own key C(/etc/lifeboat/signing_key) (or C(LIFEBOAT_SIGNING_KEY_FILE)) when it exists.
      - On another host than the one that signs, give O(trusted_signers) (the key's C(.pub) line) instead.
    type: path
  allow_unsigned:
    description:
      - Also accept archives that no trusted key signed, with no signature at all (made before signing was the default),
        or a sound signature by another key; the operator's explicit word, for this run. Results say so (V(unsigned
        (allowed)), V(untrusted (allowed))) and restores warn. A signature that does not verify is refused all the
        same.
    type: bool
    default: false
requirements:
  - C(ssh-keygen) (OpenSSH).
"""

    # How restore modules read an archive.
    RESTORE = r"""
options:
  archive:
    description:
      - Absolute path of an archive made by this collection; its manifest must lie beside it.
      - It is read whole and checked against the manifest (stored and plain sha256, decryption) before anything
        is restored; the restore then reads it a second time, and checks it again.
      - Give O(archive), or O(destination) and O(job) to have the module choose the archive by O(select).
    type: path
  destination:
    description:
      - Directory of the archives of O(job), to choose the archive from (by O(select)) instead of giving O(archive).
      - The module returns the archive it chose and why (RV(archive), RV(archive_reason)).
    type: path
  job:
    description:
      - Job whose archive in O(destination) is restored. Needed with O(destination).
    type: str
  select:
    description:
      - Which archive of O(job) in O(destination) is restored.
      - V(newest_verified) takes the newest archive whose last verification passed (M(lifeboat.ops.backup_verify));
        newer archives that were not verified, or failed, are passed over, and the module fails when none passed.
      - V(newest) takes the newest archive that has a readable manifest, verified or not.
    type: str
    default: newest_verified
    choices: [newest_verified, newest]
  age_identity_files:
    description:
      - age identity (private key) files that can decrypt an archive encrypted to recipients.
    type: list
    elements: path
    default: []
  age_passphrase_file:
    description:
      - File whose first line is the passphrase of an archive encrypted with a passphrase (mode 0600).
    type: path
  overwrite:
    description:
      - Confirms that the restore may write into a target that already holds data.
      - Without it, a restore over existing data fails and changes nothing.
    type: bool
    default: false
  safety_dump_dir:
    description:
      - When set and the target holds data, dump the target into this directory before the restore overwrites it.
      - The safety dump is protected as the restored archive was - encrypted to the same age recipients (the
        public halves of O(age_identity_files)) or with the same passphrase - so the data it holds is never left in
        the clear beside encrypted backups.
    type: path
requirements:
  - C(zstd), C(gzip) or C(pigz), and C(age) (for encrypted archives) on the managed host.
"""
