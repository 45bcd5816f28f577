#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_restore
short_description: Restore a MongoDB archive made by mongodb_dump, and prove every document arrived
version_added: 0.1.0
description:
  - Reads the archive once. Its stored sha256, C(age -d), decompression, its plain sha256 and the restore run in
    one stream into C(mongorestore --archive --stopOnError), optionally under other names (C(--nsFrom)/C(--nsTo)).
    An archive that does not match its manifest fails that stream and its staging collections are dropped. Check
    mode, and an archive with an oplog (replayed straight into its targets), read the whole archive first.
  - A target collection that already holds documents is only written with O(overwrite=true);
    O(drop=true) replaces it. O(safety_dump_dir) first dumps the databases about to be overwritten.
  - A restore is all or nothing for the target. mongorestore never writes into the target collections; it writes
    staging collections named C(lifeboat_restore_<8 hex>_new_<collection>) in each target database (for a merge,
    O(overwrite=true) without O(drop), each starts as an exact copy of its target, documents and indexes). Only when
    the stream's checksums and the document count of every staging collection match the manifest are they
    renamed over their targets. Any failure before that (a count that does not match, mongorestore killed, the
    module stopped by SIGTERM, the server restarted) drops the staging collections and leaves the target exactly
    as it was.
  - Before the swap, the documents of every staging collection are counted and compared with the manifest. A
    collection that mongorestore alone wrote (into a new or dropped target) is counted by the inserts the server
    acknowledged, which mongorestore reports per collection (FerretDB would read and decode every document to
    count it again); a merge, and a collection mongorestore does not report, are counted on the server.
    "0 documents restored" from an archive that holds documents is a failure.
notes:
  - "The swap: every existing target collection is renamed aside (C(lifeboat_restore_<8 hex>_old_<collection>)),
    every staging collection is renamed onto its target, the run is marked committed, and the old collections are
    dropped. Renames within a database are metadata changes (on MongoDB and FerretDB alike), so the swap takes
    milliseconds whatever the size; SIGTERM and SIGHUP wait until it is over. A concurrent reader sees each
    collection either whole before or whole after; for the instant between the two renames of a collection it
    finds that collection missing (an empty result), and collections are swapped one after the other, not all at
    one instant. During the restore C(listCollections) shows the staging collections
    and a marker collection C(lifeboat_restore_<8 hex>); backups leave them out."
  - "Writes made to the targets while the restore runs (RV(concurrent_writes)): with O(drop=true) they are replaced
    by the archive's collections, as asked. A merge (O(overwrite=true) without O(drop)) never loses an acknowledged
    write: it starts from a copy of each target and, just before the swap, proves each target still holds exactly
    what was copied (count and a digest of every document's BSON); if not, it stops with the target as it is, in
    one line (C(N writes arrived in DB.COLL during the restore; stop the writers and run it again, or set drop:
    true ...)). Inserts that land in the instant a name is free during the swap are carried into the restored
    collection; any other write in that instant keeps the collection as it was beside it
    (C(lifeboat_kept_<collection>)) and the restore fails saying so. Nightscout and similar apps write every few
    minutes: a merge usually completes; stop them for a restore that must not be retried."
  - "A restore killed outright (SIGKILL, a lost host) leaves its staging collections behind; the next restore into
    the same database recognises them by name and, when their owner (host, process) is gone, puts back what a
    cut-short swap had moved aside and drops them. Staging collections of a restore started on another host are
    left alone with a warning."
  - "Disk space: the staging collections need about the archive's plain size (RV(disk_space)), plus for a merge a
    copy of each existing target collection, on top of the data already there; the old collections are dropped
    only after the swap. Free space is read from the server (MongoDB's C(dbStats) reports its filesystem) or, for a
    server on this host that does not report it (FerretDB), from its data directory; a restore that will not fit is
    refused before it writes anything. When the server's disk is not visible from here, RV(disk_space) says
    C(not checked)."
  - "An archive that holds an oplog (a whole replica set dumped with C(oplog)) cannot be staged: C(mongorestore
    --oplogReplay) accepts no renames. It is restored straight into its targets (RV(mechanism) C(direct)), only
    where they hold no documents; a failure drops the collections it created."
  - "FerretDB 1.24 cannot rename a collection whose name holds a dot: such a target is refused before anything is
    written; restore it under another name with O(ns_from)/O(ns_to)."
  - "Archives of a whole server: users and roles (C(admin.system.*)) and other system collections are not restored
    by this module; use the manifest's restore_commands for them."
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._mongodb
  - lifeboat.ops._archive.RESTORE
  - lifeboat.ops._archive.SIGNATURES
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the archive, the target collections and the disk space, says whether the restore would be refused
      and which mechanism it would use (RV(mechanism)); writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  target_database:
    description:
      - Restore the archive's database under this name (for example production into a development name).
      - Needs an archive of one database. Mutually exclusive with O(ns_from).
    type: str
  ns_from:
    description:
      - Source namespace patterns for renaming (C(mongorestore --nsFrom)), paired with O(ns_to) in order.
    type: list
    elements: str
    default: []
  ns_to:
    description:
      - Target namespace patterns for renaming (C(mongorestore --nsTo)).
    type: list
    elements: str
    default: []
  ns_include:
    description:
      - Restore only namespaces matching these patterns (C(mongorestore --nsInclude)), named as in the archive.
    type: list
    elements: str
    default: []
  ns_exclude:
    description:
      - Leave out namespaces matching these patterns (C(mongorestore --nsExclude)), named as in the archive.
    type: list
    elements: str
    default: []
  drop:
    description:
      - Replace each target collection with the archive's instead of merging the archive's documents into it
        (its staging collection starts empty, like C(mongorestore --drop)). Needs O(overwrite=true).
    type: bool
    default: false
  parallel_collections:
    description:
      - Collections C(mongorestore) restores at the same time (C(--numParallelCollections)).
      - The default suits a small host (2 cores, the server on the same machine); more pays off only when the
        server has cores to spare and the archive holds several large collections (C(mongorestore) reads one
        archive stream, so collections wait for each other's turn in it).
    type: int
    default: 2
  insertion_workers_per_collection:
    description:
      - Insert workers per collection (C(--numInsertionWorkersPerCollection)). More than 1 pays off for one large
        collection on a server with idle cores; on a 2-core host it only adds contention.
    type: int
    default: 1
seealso:
  - module: lifeboat.ops.mongodb_dump
"""

EXAMPLES = r"""
- name: Restore production Nightscout data into a development database
  lifeboat.ops.mongodb_restore:
    login_host: 127.0.0.1
    login_user: admin
    login_password_file: /etc/lifeboat/mongo.password
    archive: /var/backups/lifeboat/nightscout/nightscout-20261122T030000Z.mongo.archive.zst
    target_database: nightscout_dev

- name: Put an archive back over the live database, replacing its collections
  lifeboat.ops.mongodb_restore:
    login_uri: mongodb://admin@127.0.0.1:27017/
    login_password: "{{ vault_mongo_password }}"
    archive: "{{ chosen_archive }}"
    age_identity_files: [/root/.config/lifeboat/backup-key.txt]
    overwrite: true
    drop: true
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
counts:
  description: Documents per target collection after the restore.
  returned: changed
  type: dict
expected_counts:
  description: Documents per target collection the archive holds (after renaming).
  returned: always
  type: dict
existing:
  description: Target collections that held documents before, with their estimated counts.
  returned: always
  type: dict
restored_documents:
  description: Documents mongorestore reported restoring.
  returned: changed
  type: int
safety_dumps:
  description: Paths of the dumps taken of the target databases before they were overwritten.
  returned: changed
  type: list
  elements: str
mechanism:
  description:
    - How the restore keeps the target whole, C(staged-rename) (staging collections renamed over the targets once
      complete and counted) or C(direct) (an oplog archive into targets that hold nothing).
  returned: always
  type: str
  sample: staged-rename
concurrent_writes:
  description:
    - What the restore guarantees for writes made to its targets while it runs - C(checked) (a merge - proved
      absent before the swap, or the restore stopped; late inserts carried over), C(replaced) (O(drop=true) - the
      archive's collections replace them) or C(not checked) (an oplog archive, into targets that held nothing).
  returned: always
  type: str
  sample: checked
disk_space:
  description: What the disk space check compared, or C(not checked) and why.
  returned: always
  type: str
  sample: about 2.1 GiB needed, 40.3 GiB free
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _mongo_module, _stopped_notes
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_mongo_module.mongodb_restore_spec(), supports_check_mode=True,
                           **_mongo_module.MONGODB_RESTORE_RULES)
    run_module(module, _stopped_notes.restarting_first(_mongo_module.mongodb_restore))


if __name__ == "__main__":
    main()
