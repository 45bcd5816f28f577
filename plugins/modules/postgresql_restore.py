#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_restore
short_description: Restore a PostgreSQL archive made by postgresql_dump, and prove every row arrived
version_added: 0.1.0
description:
  - Reads the archive once. Its stored sha256, C(age -d), decompression, its plain sha256 and the restore run in
    one stream into C(pg_restore --exit-on-error), into the same or another database name. An archive that does
    not match its manifest (one byte is enough) fails that stream, and the side database below is dropped; nothing
    from it reaches the target. Check mode, which restores nothing, reads the whole archive to check it.
  - A restore is all or nothing for the target. It always writes into a side database named
    C(lifeboat_restore_<target>_<8 hex digits>), checks the stream's sha256 sums and the row count of every
    table there against the manifest, and only then gives it the target's name. On any failure (counts, a
    killed C(pg_restore), SIGTERM, a server restart, a full disk) the side database is dropped and the target
    keeps exactly the data it had. Check mode returns the mechanism a run would use (RV(mechanism)).
  - A target that does not exist is restored under the side name and renamed when complete, so no half
    database ever carries its name. The side database is created from C(template0).
  - A target that already holds tables is only written with O(overwrite=true). With O(recreate=true) the side
    database starts empty and replaces the target, so the result is exactly the archive. Without it, the side
    database starts as a copy of the target (C(CREATE DATABASE ... TEMPLATE target)) and the archive is
    restored into the copy. O(safety_dump_dir) first dumps the target it is about to overwrite.
  - A replaced target's owner, connection limit, grants, settings (C(ALTER DATABASE ... SET)) and comment are
    given to the database that replaces it.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._postgresql
  - lifeboat.ops._archive.RESTORE
  - lifeboat.ops._archive.SIGNATURES
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the archive, the target and the disk space, says whether the restore would be refused and
      which mechanism it would use; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  target_database:
    description:
      - Database to restore into. The archive's own database name when not set.
    type: str
    aliases: [database, db]
  maintenance_database:
    description:
      - Database to connect to for creating the target.
    type: str
    default: postgres
  recreate:
    description:
      - Replace the target database with one that holds exactly the archive, instead of restoring into a copy
        of what it holds. Needs O(overwrite=true). The target is replaced only once the restore is complete and
        counted.
      - Preferred over C(pg_restore --clean), which cannot drop some objects in dependency order
        (constraints inherited by partitions, for one) and then stops the restore halfway.
    type: bool
    default: false
  jobs:
    description:
      - Parallel C(pg_restore) workers. With more than one, the archive is first unpacked into a private
        directory beside it, since C(pg_restore) cannot restore in parallel from a pipe.
    type: int
    default: 1
  no_owner:
    description:
      - Do not restore object ownership (C(pg_restore --no-owner)); objects belong to the restoring user.
    type: bool
    default: false
  no_privileges:
    description:
      - Do not restore access privileges (C(pg_restore --no-privileges)).
    type: bool
    default: false
notes:
  - What a concurrent reader sees. Without O(recreate), an existing target refuses new connections from the start
    of the copy to the end of the restore (its sessions are ended when the copy starts), so no write to it can be lost
    at the swap. With O(recreate), the target stays usable during the restore; at the swap its sessions are
    ended (C(pg_terminate_backend)) and for a moment connections to it are refused. A session that connects
    after the swap sees the restored data; none ever sees a half restore under the target's name.
  - Disk space. The side database exists next to the target until the swap, so the server needs free space
    for about 1.5 times the archive's plain size (C(plain_size) in the manifest, for the data and its rebuilt
    indexes), plus the target's current size without O(recreate) (the copy). When this host can read the server's data
    directory (a local server, a login allowed to read C(data_directory) and C(pg_control_system())), the
    free space is checked first and the restore refused if it will not fit; otherwise RV(disk_space) says
    C(not checked). O(jobs) greater than 1 also needs the archive's plain size beside the archive.
  - Failures. If the server goes away mid-restore, the side database is dropped once it is back (tried for
    60 seconds). A side database left by a run killed with SIGKILL (or by a server that went down on a full disk)
    is recognised by its name and dropped by the next restore into the same target before it checks the disk
    space, which counts the space it frees (C(leftover_bytes) in RV(disk_space)); a refusal for lack of space
    names the leftovers it counted or dropped. One restore into a target runs at a time (an advisory lock on the
    server).
  - A killed merge. Without O(recreate), an existing target refuses connections while it is copied, so a run killed
    then leaves it so (its data intact, its app locked out). The restore writes a record beside the archive
    (C(.lifeboat-restore-*.json), no secret in it) before it turns connections off and removes it once they are on
    again; while the record's process is gone, M(lifeboat.ops.backup_status) and C(lifeboat status) report the
    target CRITICAL with the statement that lets connections in again, and the next restore into the target from
    that directory lets them in again itself (a warning says so), with or without a side database left. A target
    that refuses connections with no such record or leftover is refused in one line that names that statement.
  - Privileges. Creating, copying and renaming databases needs C(CREATEDB) and ownership of the target (or a
    superuser); ending other sessions needs C(pg_signal_backend) or a superuser.
seealso:
  - module: lifeboat.ops.postgresql_dump
"""

EXAMPLES = r"""
- name: Restore last night's journal backup into a new database for a test
  lifeboat.ops.postgresql_restore:
    login_host: 127.0.0.1
    login_user: postgres
    login_password_file: /etc/lifeboat/pg.password
    archive: /var/backups/lifeboat/journal/journal-20261122T030000Z.pgdump.zst.age
    age_identity_files: [/root/.config/lifeboat/backup-key.txt]
    target_database: journal_restore_test

- name: Restore the newest verified archive of the journal job, and say which one and why
  lifeboat.ops.postgresql_restore:
    login_host: 127.0.0.1
    login_user: postgres
    login_password_file: /etc/lifeboat/pg.password
    destination: /var/backups/lifeboat/journal
    job: journal
    select: newest_verified
    age_identity_files: [/root/.config/lifeboat/backup-key.txt]
    target_database: journal_restore_test
  register: restored

- name: Replace production with the archive, keeping a dump of what was there
  lifeboat.ops.postgresql_restore:
    login_unix_socket: /var/run/postgresql
    login_user: postgres
    archive: "{{ chosen_archive }}"
    overwrite: true
    recreate: true
    safety_dump_dir: /var/backups/lifeboat/before-restore
"""

RETURN = r"""
signature:
  description: How the archive's manifest signature passed, V(ok) (a trusted key signed it), or with
    O(allow_unsigned) V(unsigned (allowed)) or V(untrusted (allowed)) (a warning says so too).
  returned: always
  type: str
allow_unsigned:
  description: Whether O(allow_unsigned) was given for this run.
  returned: always
  type: bool
archive:
  description: The archive restored (the one its manifest describes when the manifest's path was given).
  returned: always
  type: str
archive_reason:
  description: Why this archive was restored, when it was chosen from O(destination) by O(select).
  returned: when O(destination) is given
  type: str
  sample: journal-20261122T030000Z.pgdump.zst is the newest verified archive of job 'journal' (level structure at 2026-11-22T03:01:12Z; select=newest_verified)
database:
  description: The database restored into.
  returned: always
  type: str
mechanism:
  description:
    - How the restore keeps the target whole. V(side-database-rename) for a new target,
      V(side-database-swap) with O(recreate=true), V(target-copy-swap) into an existing target without it.
    - RV(mechanism_description) says it in a sentence.
  returned: always
  type: str
  sample: side-database-swap
mechanism_description:
  description: The mechanism in words.
  returned: always
  type: str
disk_space:
  description:
    - The disk space check. C(checked) is false, and C(note) starts with C(not checked), when this host cannot
      see the server's disk. C(needed_bytes), C(free_bytes) and C(path) (the server's directory).
    - C(leftover_bytes), when side databases of killed restores are there, is what dropping them frees; the
      check counts it as free (the restore drops them first).
  returned: always
  type: dict
leftovers_dropped:
  description: Side databases of earlier restores into this target, killed before they could drop them.
  returned: changed
  type: list
  elements: str
created:
  description: Whether the target database was created.
  returned: changed
  type: bool
counts:
  description: Rows per table after the restore; equal to the manifest's.
  returned: changed
  type: dict
existing_tables:
  description: Number of tables the target held before (null when it refused connections after a killed restore).
  returned: always
  type: int
safety_dump:
  description: Path of the dump taken of the target before it was overwritten.
  returned: when a safety dump was taken
  type: str
expected_counts:
  description: Rows per table recorded in the archive's manifest.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _postgres_module, _stopped_notes
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_postgres_module.postgresql_restore_spec(), supports_check_mode=True,
                           **_postgres_module.POSTGRESQL_RESTORE_RULES)
    run_module(module, _stopped_notes.restarting_first(_postgres_module.postgresql_restore))


if __name__ == "__main__":
    main()
