#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: files_restore
short_description: Restore volumes and folders from an archive made by files_backup, and prove every file arrived
version_added: 0.2.0
description:
  - Reads the archive through C(age -d) and decompression, checking its sha256 against the manifest, and unpacks
    each volume or path into a private folder beside its target, with owners, modes, links, sparse files and
    extended attributes.
  - Every file's type, size, sha256, mode and (as root) owner are compared with the manifest before anything takes
    the target's place; only then the unpacked folder is renamed over the target. On any failure the target keeps
    what it held.
  - A volume that does not exist is created. A volume or folder that holds anything is only replaced with
    O(overwrite=true), and what it holds is archived first (RV(safety_archive)). A volume or folder that a running
    container mounts is refused; stop the container first.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._archive.RESTORE
  - lifeboat.ops._archive.SIGNATURES
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the archive's manifest and every target, says where each would go; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  volume_map:
    description:
      - Restore a volume of the archive into a volume of another name (V(OLD) to V(NEW)), for a copy beside the original.
    type: dict
    default: {}
  path_map:
    description:
      - Restore a path of the archive to another path (C(/srv/app/uploads) to C(/srv/app-dev/uploads)).
    type: dict
    default: {}
  only:
    description:
      - Restore only these volumes (by name) and paths of the archive. All when empty.
    type: list
    elements: str
    default: []
seealso:
  - module: lifeboat.ops.files_backup
"""

EXAMPLES = r"""
- name: Restore the dashboard's volume into a new volume for a dev copy
  lifeboat.ops.files_restore:
    destination: /var/backups/lifeboat/dashboard
    job: dashboard-data
    volume_map:
      dashboard_uploads: dashboard_dev_uploads

- name: Put the recipe app's uploads back in place, keeping what is there now in a safety archive
  lifeboat.ops.files_restore:
    archive: /var/backups/lifeboat/recipes/recipes-files-20261122T030000Z.files.tar.zst
    only: [/srv/recipes/uploads]
    overwrite: true
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
  description: The archive restored.
  returned: always
  type: str
archive_reason:
  description: Why this archive was restored, when it was chosen from O(destination) by O(select).
  returned: when O(destination) is given
  type: str
targets:
  description: The volumes (C(volume:NAME)) and paths (C(path:PATH)) restored into.
  returned: always
  type: list
  elements: str
restored:
  description: Entries that are not folders restored per target; equal to the manifest's counts.
  returned: changed
  type: dict
safety_archive:
  description: The archive of what the targets held before they were replaced (null when none held anything).
  returned: changed
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _files_module, _stopped_notes
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_files_module.files_restore_spec(), supports_check_mode=True,
                           **_files_module.FILES_RESTORE_RULES)
    run_module(module, _stopped_notes.restarting_first(_files_module.files_restore))


if __name__ == "__main__":
    main()
