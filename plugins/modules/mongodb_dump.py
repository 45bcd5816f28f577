#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_dump
short_description: Dump MongoDB into a compressed, optionally encrypted, checksummed archive
version_added: 0.1.0
description:
  - Runs C(mongodump --archive) and streams it through compression (zstd by default) and optional age
    encryption into an archive, with a JSON manifest beside it (C(ARCHIVE.manifest.json)).
  - The manifest records the documents mongodump wrote per collection, the indexes of each collection,
    the sha256 of the stored file and of the plain archive stream, versions, and the standard commands that
    restore it without this collection.
  - The archive gets its final name only after every stage succeeded and the file was fsynced; a failure
    leaves no file behind. A dump that wrote no documents while the source holds some is a failure.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._mongodb
  - lifeboat.ops._archive
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Connects and lists the collections that would be dumped, with estimated counts; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  database:
    description:
      - Dump only this database. The whole server (without C(admin), C(config) and C(local)) when not set.
    type: str
    aliases: [db]
  collections:
    description:
      - Dump only these collections of O(database).
    type: list
    elements: str
    default: []
  exclude_collections:
    description:
      - Leave out these collections of O(database).
    type: list
    elements: str
    default: []
  exclude_collections_with_prefix:
    description:
      - Leave out the collections of O(database) whose names start with one of these prefixes.
    type: list
    elements: str
    default: []
  oplog:
    description:
      - Take a point-in-time consistent dump with C(--oplog). V(auto) does so when the server is a replica set
        member and the whole server is dumped (mongodump allows no filter with C(--oplog)).
    type: str
    default: auto
    choices: [auto, "yes", "no"]
  parallel_collections:
    description:
      - Collections mongodump reads at once.
    type: int
    default: 4
notes:
  - With O(compression=gzip), compression happens inside the archive (C(mongodump --gzip)), so plain
    C(mongorestore --gzip --archive=FILE) reads it.
seealso:
  - module: lifeboat.ops.mongodb_restore
"""

EXAMPLES = r"""
- name: Dump the Nightscout database
  lifeboat.ops.mongodb_dump:
    login_host: 127.0.0.1
    login_user: backup
    login_password_file: /etc/lifeboat/nightscout.password
    database: nightscout
    destination: /var/backups/lifeboat/nightscout
    encryption_recipients_files: [/etc/lifeboat/recipients.txt]

- name: Dump a database from MongoDB Atlas before leaving it
  lifeboat.ops.mongodb_dump:
    login_uri: mongodb+srv://exporter@cluster0.example.mongodb.net/
    login_password: "{{ vault_atlas_password }}"
    database: research
    exclude_collections: [sessions]
    destination: /srv/migration
    job: atlas-research
"""

RETURN = r"""
signer:
  description: The public key (OpenSSH C(.pub) line) that signed the manifest, for C(trusted_signers) on other hosts.
  returned: changed
  type: str
signer_file:
  description: Where that public key was written beside the archives (C(lifeboat-signer.pub)); never trusted from there.
  returned: changed
  type: str
signing_key_file:
  description: The private key file that signed (O(signing_key_file), or this host's own key).
  returned: changed
  type: str
signing_key_created:
  description: Whether this run made this host's signing key (its first backup); a warning says so too.
  returned: changed
  type: bool
archive:
  description: Path of the archive.
  returned: changed
  type: str
  sample: /var/backups/lifeboat/nightscout/nightscout-20261122T030000Z.mongo.archive.zst
manifest:
  description: Path of the manifest beside the archive.
  returned: changed
  type: str
sha256:
  description: sha256 of the stored archive file.
  returned: changed
  type: str
size:
  description: Size of the stored archive in bytes.
  returned: changed
  type: int
plain_size:
  description: Size of the plain mongodump archive stream in bytes.
  returned: changed
  type: int
counts:
  description: Documents per collection (C(db.collection)) as mongodump reported writing them.
  returned: changed
  type: dict
  sample: {"nightscout.entries": 28800, "nightscout.treatments": 1200}
duration_seconds:
  description: Wall time of the dump.
  returned: changed
  type: float
restore_commands:
  description: The standard commands that restore the archive without this collection.
  returned: changed
  type: list
  elements: str
collections:
  description: In check mode, the collections that would be dumped, with estimated document counts.
  returned: check mode
  type: dict
server:
  description: Server product and version.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _mongo_module, _stopped_notes
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_mongo_module.mongodb_dump_spec(), supports_check_mode=True,
                           **_mongo_module.MONGODB_DUMP_RULES)
    run_module(module, _stopped_notes.restarting_first(_mongo_module.mongodb_dump))


if __name__ == "__main__":
    main()
