#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_dump
short_description: Dump a PostgreSQL database into a compressed, optionally encrypted, checksummed archive
version_added: 0.1.0
description:
  - Runs C(pg_dump) and streams its output through compression (zstd by default) and optional age encryption
    into an archive, with a JSON manifest beside it (C(ARCHIVE.manifest.json)).
  - The manifest records row counts per table taken in the very snapshot C(pg_dump) reads, the sha256 of the
    stored file and of the plain dump stream, tool and server versions, and the standard commands that
    restore the archive without this collection.
  - The archive gets its final name only after every stage succeeded and the file was fsynced; a failure
    (wrong password, unreachable server, a killed C(pg_dump), a full disk) leaves no file behind.
  - A dump that holds no table data while the database has rows is a failure.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._postgresql
  - lifeboat.ops._archive
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Connects, picks the client and lists the tables that would be dumped; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  database:
    description:
      - Name of the database to dump. Taken from O(login_uri) when it names one.
    type: str
    aliases: [db]
  format:
    description:
      - V(custom) streams C(pg_dump -Fc) (restorable with C(pg_restore) from a pipe).
      - V(directory) runs C(pg_dump -Fd) with O(jobs) parallel workers into a private directory beside the
        archive, then stores it as a tar stream.
    type: str
    default: custom
    choices: [custom, directory]
  jobs:
    description:
      - Parallel C(pg_dump) workers; needs O(format=directory).
    type: int
    default: 1
  schemas:
    description:
      - Dump only schemas matching these C(pg_dump --schema) patterns.
    type: list
    elements: str
    default: []
  exclude_schemas:
    description:
      - Leave out schemas matching these C(pg_dump --exclude-schema) patterns.
    type: list
    elements: str
    default: []
  tables:
    description:
      - Dump only tables matching these C(pg_dump --table) patterns.
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Leave out tables matching these C(pg_dump --exclude-table) patterns.
    type: list
    elements: str
    default: []
  exclude_table_data:
    description:
      - Keep the definition but not the rows of tables matching these patterns (C(pg_dump --exclude-table-data)).
    type: list
    elements: str
    default: []
  globals:
    description:
      - Also store roles (V(roles)) or roles and tablespaces (V(all)) with C(pg_dumpall) in a second archive
        named C(JOB-STAMP.globals.sql...) next to the first, recorded in the same manifest. Needs a superuser.
    type: str
    default: none
    choices: [none, roles, all]
notes:
  - The password reaches C(pg_dump) through its environment (E(PGPASSWORD)), never its command line.
seealso:
  - module: lifeboat.ops.postgresql_restore
  - name: pg_dump
    description: The PostgreSQL documentation of pg_dump.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
"""

EXAMPLES = r"""
- name: Dump the journal database, encrypted to the backup operator's key
  lifeboat.ops.postgresql_dump:
    login_host: 127.0.0.1
    login_user: backup
    login_password_file: /etc/lifeboat/journal.password
    database: journal
    destination: /var/backups/lifeboat/journal
    encryption_recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p

- name: Parallel directory-format dump of a large database, with roles
  lifeboat.ops.postgresql_dump:
    login_uri: postgresql://postgres@db.internal/warehouse?sslmode=verify-full
    login_password: "{{ vault_pg_password }}"
    ssl_ca_cert: /etc/ssl/certs/internal-ca.pem
    format: directory
    jobs: 4
    globals: roles
    destination: /srv/backups/warehouse
    job: warehouse-nightly
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
  sample: /var/backups/lifeboat/journal/journal-20261122T030000Z.pgdump.zst.age
manifest:
  description: Path of the manifest beside the archive.
  returned: changed
  type: str
  sample: /var/backups/lifeboat/journal/journal-20261122T030000Z.pgdump.zst.age.manifest.json
sha256:
  description: sha256 of the stored archive file.
  returned: changed
  type: str
size:
  description: Size of the stored archive in bytes.
  returned: changed
  type: int
plain_size:
  description: Size of the uncompressed dump stream in bytes.
  returned: changed
  type: int
counts:
  description: Rows per dumped table (C(schema.table)), counted in the dump's snapshot.
  returned: changed
  type: dict
  sample: {"public.auth_user": 12, "public.journal_entry": 5230}
duration_seconds:
  description: Wall time of the dump.
  returned: changed
  type: float
restore_commands:
  description: The standard commands that restore the archive without this collection.
  returned: changed
  type: list
  elements: str
tables:
  description: In check mode, the tables of the database with the planner's row estimates.
  returned: check mode
  type: dict
server_version:
  description: Version of the PostgreSQL server.
  returned: always
  type: str
pg_dump_version:
  description: Version of the C(pg_dump) that was (or would be) used.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _postgres_module, _stopped_notes
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_postgres_module.postgresql_dump_spec(), supports_check_mode=True,
                           **_postgres_module.POSTGRESQL_DUMP_RULES)
    run_module(module, _stopped_notes.restarting_first(_postgres_module.postgresql_dump))


if __name__ == "__main__":
    main()
