#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: offsite_fetch
short_description: Fetch one archive and its manifest back from an S3-compatible bucket, proven before use
version_added: 0.2.0
description:
  - Downloads an archive (and its extras) into O(directory) under a partial name that the next run resumes,
    checks each file against the remote manifest's sha256, and only then gives it its final name; the manifest
    is written last. The result's RV(archive) is then restored like any local archive.
  - A file that does not match is removed and the task fails, so nothing is restored from it.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lifeboat.ops._offsite
attributes:
  check_mode:
    support: full
    details: Says which archive would be fetched; downloads nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  directory:
    description:
      - Absolute path of the local directory that receives the archive (created with mode C(0700)).
    type: path
    required: true
  job:
    description:
      - Fetch this job's newest archive (see O(select)) when O(archive) is not given.
    type: str
  archive:
    description:
      - File name of the archive to fetch, for example V(journal-20261122T030000Z.pgdump.zst).
    type: str
  select:
    description:
      - With O(job), V(newest_verified) takes the newest archive whose manifest records a passed verification,
        V(newest) the newest complete one.
    type: str
    default: newest_verified
    choices: [newest_verified, newest]
"""

EXAMPLES = r"""
- name: Bring the newest verified journal archive back from the bucket
  lifeboat.ops.offsite_fetch:
    bucket: backups
    prefix: db1/journal
    job: journal
    directory: /var/backups/lifeboat/restore
    credentials_file: /etc/lifeboat/s3.credentials
  register: fetched

- name: Restore it
  lifeboat.ops.postgresql_restore:
    archive: "{{ fetched.archive }}"
    target_database: journal_restore_test
"""

RETURN = r"""
archive:
  description: Local path of the fetched archive (its manifest beside it).
  returned: always
  type: str
url:
  description: Where it came from.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _offsite_tasks
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_offsite_tasks.offsite_fetch_spec(), supports_check_mode=True,
                           **_offsite_tasks.OFFSITE_FETCH_RULES)
    run_module(module, _offsite_tasks.offsite_fetch)


if __name__ == "__main__":
    main()
