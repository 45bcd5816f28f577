#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_verify
short_description: Prove archives made by this collection, up to a real restore into a scratch database
version_added: 0.1.0
description:
  - Verifies one archive, or the archives of a destination (of one job), at the O(level) asked, and records each
    result in the archive's manifest so that M(lifeboat.ops.backup_prune) and M(lifeboat.ops.backup_status)
    know which archives are proven.
  - V(checksum) compares the stored file's size and sha256 with the manifest; it needs no key, so it also works on
    hosts that hold only the recipients' public keys.
  - V(stream) also decrypts and decompresses the archive in the same read; age authenticates every chunk and the
    decompressor tests the content against the format's own checksum (zstd's XXH64, gzip's CRC32), without the
    plain bytes entering Python.
  - V(structure) also compares the plain stream's sha256 with the manifest's and walks the dump's format in that
    same read, with C(pg_restore -f -) for PostgreSQL and the mongodump archive framing for MongoDB, comparing the
    rows or documents of every table or collection with the counts the manifest recorded at dump time. A files
    archive's tar stream is walked instead, every file's type, size, sha256, mode, owner and link target compared
    with the manifest's (its manifest records no plain stream sha256, the per-file ones prove it).
  - V(restore) also restores the archive into a scratch database created under a name that no database has, on
    the server given in O(postgresql) or O(mongodb), compares the counts and an order-free content hash of every
    table or collection with the archive, and drops the scratch database again, also when the test fails.
  - Each archive's result is V(ok) or the first check that failed, named with the archive, in words to act on.
    The module fails when any archive fails.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._scratch_servers
  - lifeboat.ops._archive.SIGNATURES
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: partial
    details: Runs the read-only checks and records nothing; a restore test is not run in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  archive:
    description:
      - Absolute path of one archive (or of its manifest) to verify. Mutually exclusive with O(destination).
    type: path
  destination:
    description:
      - Directory whose archives are verified (those of O(job) when given).
    type: path
  job:
    description:
      - Verify only the archives of this job in O(destination).
    type: str
  select:
    description:
      - Which archives of O(destination) to verify. V(newest) takes the newest archive of each job and database,
        V(unverified) those whose last verification did not pass (or that were never verified).
    type: str
    default: all
    choices: [all, newest, unverified]
  level:
    description:
      - How far to go; each level includes the ones before it. See the description.
      - V(auto) is V(structure) when this host can decrypt every archive selected (none is encrypted, or
        O(age_identity_files) or O(age_passphrase_file) is given), else V(checksum). It is decided from the
        archives' manifests, as C(lifeboat verify) decides it, not from how the job encrypts today.
    type: str
    default: structure
    choices: [auto, checksum, stream, structure, restore]
  age_identity_files:
    description:
      - age identity (private key) files that can decrypt the archives. Needed from O(level=stream) on for encrypted
        archives.
    type: list
    elements: path
    default: []
  age_passphrase_file:
    description:
      - File whose first line is the passphrase of archives encrypted with a passphrase (mode 0600).
    type: path
  record:
    description:
      - Record each result in the archive's manifest (its C(verifications) list, the last 20 kept).
    type: bool
    default: true
  pg_bin_dir:
    description:
      - Directory holding C(pg_restore) for the structure check of PostgreSQL archives. When not set, the client
        matching the archive's C(pg_dump) version is taken from C(/usr/lib/postgresql/N/bin), else from E(PATH).
    type: path
  tools_dir:
    description:
      - Directory holding C(mongorestore) for restore tests of MongoDB archives; E(PATH) when not set.
    type: path
requirements:
  - C(zstd), C(gzip) or C(pigz), and C(age) (for encrypted archives) on the managed host.
  - C(pg_restore) for the structure check of PostgreSQL archives; the Python package pymongo (its C(bson)) for
    MongoDB archives; C(mongorestore), psycopg 3 or pymongo for restore tests.
"""

EXAMPLES = r"""
- name: Prove last night's archives, up to a restore into a scratch database on the same server
  lifeboat.ops.backup_verify:
    destination: /var/backups/lifeboat
    job: journal
    select: newest
    level: restore
    age_identity_files: [/root/.config/lifeboat/backup.key]
    postgresql:
      login_host: 127.0.0.1
      login_user: backup
      login_password_file: /etc/lifeboat/journal.password

- name: Check every stored byte on a host that holds only the public keys
  lifeboat.ops.backup_verify:
    destination: /var/backups/lifeboat
    level: checksum

- name: Verify one archive without recording the result
  lifeboat.ops.backup_verify:
    archive: /var/backups/lifeboat/nightscout-20261122T031500Z.mongo.archive.zst
    record: false
"""

RETURN = r"""
results:
  description: One entry per archive verified, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    archive:
      description: Path of the archive.
      type: str
    job:
      description: Job of the archive.
      type: str
    database:
      description: Database the archive holds (none for a whole MongoDB server).
      type: str
    engine:
      description: Engine of the archive, V(postgresql) or V(mongodb) (none when its manifest is unreadable).
      type: str
    level:
      description: The level the archive was verified at (what V(auto) resolved to).
      type: str
    ok:
      description: Whether every check of the level passed.
      type: bool
    checks:
      description: Each check run, V(ok) or V(failed); V(signature) first.
      type: dict
    signature:
      description: How the manifest's signature passed, V(ok) (a trusted key signed it), or with O(allow_unsigned)
        V(unsigned (allowed)) or V(untrusted (allowed)); absent when the manifest could not be read or the
        signature failed.
      type: str
    failed_check:
      description: The first check that failed.
      type: str
    failure:
      description: What failed, naming the archive and the check.
      type: str
    counts:
      description: Rows or documents per table or collection found in the archive (O(level=structure) and up).
      type: dict
    content:
      description: Order-free content hash per table or collection (O(level=restore)).
      type: dict
    scratch_database:
      description: The scratch database (for a whole MongoDB server, the prefix of the scratch databases) the restore
        test used and dropped again (O(level=restore), when it passed).
      type: str
    duration_seconds:
      description: Time spent on this archive.
      type: float
passed_count:
  description: Number of archives that passed.
  returned: always
  type: int
failed_count:
  description: Number of archives that failed.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _stopped_notes, _verify
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_verify.backup_verify_spec(), supports_check_mode=True,
                           **_verify.BACKUP_VERIFY_RULES)
    run_module(module, _stopped_notes.restarting_first(_verify.backup_verify))


if __name__ == "__main__":
    main()
