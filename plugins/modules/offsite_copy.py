#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: offsite_copy
short_description: Copy verified archives and their manifests to an S3-compatible bucket, checksummed end to end
version_added: 0.2.0
description:
  - Uploads every verified archive of a destination (its extras, the archive, then its manifest, last) that is
    not complete in the bucket yet. An archive without its manifest remotely is an incomplete upload.
  - Each file is first checked against its manifest's sha256, then sent with SHA-256 checksums the store
    verifies on receipt (per part for files larger than O(part_size_mib)); afterwards the checksum the store
    recorded is compared with the manifest's, and a mismatch fails the task.
  - An interrupted multipart upload is resumed by the next run (parts whose checksum matches are kept).
  - With O(lock_mode) and O(lock_days), every object gets an object-lock retention (the bucket needs object lock).
  - The manifest's C(restore_commands) gain the C(aws s3 cp) lines that fetch the copy without this collection.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lifeboat.ops._offsite
attributes:
  check_mode:
    support: full
    details: Lists what would be copied; uploads nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  destination:
    description:
      - Absolute path of the local directory that holds the archives and their manifests.
    type: path
    required: true
  job:
    description:
      - Copy only the archives of this job. All jobs of the destination when not set.
    type: str
  only_verified:
    description:
      - Copy only archives whose last verification passed. With V(false), unverified readable archives go too.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Copy the journal job's verified archives off site
  lifeboat.ops.offsite_copy:
    destination: /var/backups/lifeboat/journal
    job: journal
    bucket: backups
    prefix: db1/journal
    endpoint_url: https://s3.eu-central-003.backblazeb2.com
    credentials_file: /etc/lifeboat/s3.credentials
    lock_mode: GOVERNANCE
    lock_days: 30
"""

RETURN = r"""
copied:
  description: Archives uploaded by this run (in check mode, that would be).
  returned: always
  type: list
  elements: str
present:
  description: Archives already complete in the bucket.
  returned: always
  type: list
  elements: str
skipped:
  description: Archives not copied, with the reason (not verified, unreadable).
  returned: always
  type: list
  elements: dict
resumed_parts:
  description: Parts of interrupted uploads that were kept rather than sent again.
  returned: always
  type: int
bytes_sent:
  description: Bytes of the files uploaded.
  returned: always
  type: int
url:
  description: The bucket and prefix, as C(s3://BUCKET/PREFIX/).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _offsite_tasks
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_offsite_tasks.offsite_copy_spec(), supports_check_mode=True)
    run_module(module, _offsite_tasks.offsite_copy)


if __name__ == "__main__":
    main()
