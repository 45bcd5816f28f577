#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_restore
short_description: Restore a PostgreSQL archive made by postgresql_dump, and prove every row arrived
version_added: 0.1.0
description:
  - First reads the whole archive through C(age -d) and decompression and checks both sha256 sums of its
    manifest, so nothing is written for an archive that is damaged or that the identity cannot open; then
    streams it through C(age -d) and decompression
    into C(pg_restore --exit-on-error), into the same or another database name.
  - Creates the target database (from C(template0)) when it does not exist.
  - A target that already holds tables is only written with O(overwrite=true); O(recreate=true) replaces it
    with an empty database first. O(safety_dump_dir) first dumps the target it is about to overwrite.
  - After the restore, the row count of every table is compared with the manifest; any difference fails.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops.postgresql
  - lifeboat.ops.archive.RESTORE
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the archive and the target, says whether the restore would be refused; writes nothing.
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
      - Drop the target database (closing its connections) and create it empty before the restore, so the
        result is exactly the archive. Needs O(overwrite=true).
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
database:
  description: The database restored into.
  returned: always
  type: str
created:
  description: Whether the target database was created.
  returned: changed
  type: bool
counts:
  description: Rows per table after the restore; equal to the manifest's.
  returned: changed
  type: dict
existing_tables:
  description: Number of tables the target held before.
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

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _params, _postgres
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError, registered_secrets
from ansible_collections.lifeboat.ops.plugins.module_utils._pipeline import stop_cleanly_on_termination


def main() -> None:
    argument_spec = {
        **_params.postgres_connection_spec(),
        **_params.restore_archive_spec(),
        "target_database": {"type": "str", "aliases": ["database", "db"]},
        "maintenance_database": {"type": "str", "default": "postgres"},
        "recreate": {"type": "bool", "default": False},
        "jobs": {"type": "int", "default": 1},
        "no_owner": {"type": "bool", "default": False},
        "no_privileges": {"type": "bool", "default": False},
    }
    module = AnsibleModule(
        argument_spec=argument_spec, mutually_exclusive=_params.CONNECTION_EXCLUSIVE, supports_check_mode=True
    )
    params = module.params
    stop_cleanly_on_termination()
    try:
        connection = _params.pg_connection(params, None)
        module.no_log_values.update(registered_secrets())
        request = _postgres.RestoreRequest(
            connection=connection,
            archive_path=params["archive"],
            target_database=params["target_database"],
            decryption=_params.decryption(params),
            overwrite=params["overwrite"],
            recreate=params["recreate"],
            jobs=params["jobs"],
            no_owner=params["no_owner"],
            no_privileges=params["no_privileges"],
            maintenance_database=params["maintenance_database"],
            safety_dump=_params.safety_dump_options(params),
            pg_bin_dir=params["pg_bin_dir"],
        )
        plan = _postgres.plan_restore(request)
        common = {
            "database": plan["database"],
            "existing_tables": plan["existing_tables"],
            "expected_counts": plan["manifest"]["counts"],
        }
        if module.check_mode:
            module.exit_json(changed=True, **common)
        result = _postgres.restore(request, plan)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line here, the traceback with -vvv
        module.fail_json(msg=f"unexpected error: {exc}".splitlines()[0], exception=traceback.format_exc())
    module.exit_json(
        changed=True,
        created=result["created"],
        counts=result["counts"],
        safety_dump=result["safety_dump"],
        **common,
    )


if __name__ == "__main__":
    main()
