#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: offsite_verify
short_description: Verify the off-site copies in an S3-compatible bucket against their manifests
version_added: 0.2.0
description:
  - Reads every remote manifest of the prefix and checks each archive object against it - the SHA-256 the store
    recorded (a single-part object), or the bytes read back (a multipart object, or every object with
    O(download)).
  - Fails when an archive has no manifest remotely (an incomplete upload), lacks a file, or does not match.
  - Lists incomplete multipart uploads and objects in the prefix that are not lifeboat archives.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lifeboat.ops._offsite
attributes:
  check_mode:
    support: full
    details: Reads only; the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  job:
    description:
      - Verify only the archives of this job.
    type: str
  download:
    description:
      - Read every object back and hash it, not only the multipart ones.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Verify the journal job's off-site copies
  lifeboat.ops.offsite_verify:
    bucket: backups
    prefix: db1/journal
    credentials_file: /etc/lifeboat/s3.credentials
"""

RETURN = r"""
results:
  description: One entry per remote archive.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "journal-20261122T030000Z.pgdump.zst", "ok": true, "problem": null}]
open_uploads:
  description: Keys of incomplete multipart uploads in the prefix.
  returned: always
  type: list
  elements: str
foreign:
  description: Objects in the prefix that are not lifeboat archives or manifests.
  returned: always
  type: list
  elements: str
url:
  description: The bucket and prefix.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _offsite_tasks
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_offsite_tasks.offsite_verify_spec(), supports_check_mode=True)
    run_module(module, _offsite_tasks.offsite_verify)


if __name__ == "__main__":
    main()
