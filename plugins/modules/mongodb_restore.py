#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_restore
short_description: Restore a MongoDB archive made by mongodb_dump, and prove every document arrived
version_added: 0.1.0
description:
  - First reads the whole archive through C(age -d) and decompression and checks both sha256 sums of its
    manifest, so nothing is written for an archive that is damaged or that the identity cannot open; then
    streams it through C(age -d) and decompression
    into C(mongorestore --archive --stopOnError), optionally under other names (C(--nsFrom)/C(--nsTo)).
  - A target collection that already holds documents is only written with O(overwrite=true);
    O(drop=true) replaces it. O(safety_dump_dir) first dumps the databases about to be overwritten.
  - After the restore, the documents of every collection are counted and compared with the manifest;
    "0 documents restored" from an archive that holds documents is a failure.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops.mongodb
  - lifeboat.ops.archive.RESTORE
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the archive and the target collections, says whether the restore would be refused; writes nothing.
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
      - Drop each target collection before restoring it (C(mongorestore --drop)). Needs O(overwrite=true).
    type: bool
    default: false
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
archive:
  description: The archive restored (the one its manifest describes when the manifest's path was given).
  returned: always
  type: str
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
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _archive, _mongo, _params
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError, registered_secrets
from ansible_collections.lifeboat.ops.plugins.module_utils._pipeline import stop_cleanly_on_termination


def main() -> None:
    argument_spec = {
        **_params.mongodb_connection_spec(),
        **_params.restore_archive_spec(),
        "target_database": {"type": "str"},
        "ns_from": {"type": "list", "elements": "str", "default": []},
        "ns_to": {"type": "list", "elements": "str", "default": []},
        "ns_include": {"type": "list", "elements": "str", "default": []},
        "ns_exclude": {"type": "list", "elements": "str", "default": []},
        "drop": {"type": "bool", "default": False},
    }
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[*_params.CONNECTION_EXCLUSIVE, ["target_database", "ns_from"]],
        supports_check_mode=True,
    )
    params = module.params
    stop_cleanly_on_termination()
    try:
        connection = _params.mongo_connection(params)
        module.no_log_values.update(registered_secrets())
        archive, note = _archive.resolve_archive(params["archive"])
        if note:
            module.warn(note)
        request = _mongo.RestoreRequest(
            connection=connection,
            archive_path=archive,
            decryption=_params.decryption(params),
            target_database=params["target_database"],
            ns_from=params["ns_from"],
            ns_to=params["ns_to"],
            ns_include=params["ns_include"],
            ns_exclude=params["ns_exclude"],
            drop=params["drop"],
            overwrite=params["overwrite"],
            safety_dump=_params.safety_dump_options(params),
            tools_dir=params["tools_dir"],
        )
        plan = _mongo.plan_restore(request)
        common = {"archive": archive, "expected_counts": plan["expected"], "existing": plan["existing"]}
        if module.check_mode:
            module.exit_json(changed=True, **common)
        result = _mongo.restore(request, plan)
    except LifeboatError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line here, the traceback with -vvv
        module.fail_json(msg=f"unexpected error: {exc}".splitlines()[0], exception=traceback.format_exc())
    for warning in result["warnings"]:
        module.warn(warning)
    module.exit_json(
        changed=True,
        counts=result["counts"],
        restored_documents=result["restored_documents"],
        safety_dumps=result["safety_dumps"],
        **common,
    )


if __name__ == "__main__":
    main()
