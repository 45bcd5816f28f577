#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: offsite_prune
short_description: Mirror local retention in an S3-compatible bucket, never ahead of the local side
version_added: 0.2.0
description:
  - Applies the same retention policy as M(lifeboat.ops.backup_prune) to the off-site copies, per job and
    database, with the same guards - the newest verified remote archive and every newer one stay - and more.
  - Nothing is removed remotely while the local side holds (its newest archive unverified or anomalous) or has
    no archive of that job and database at all; an archive still kept locally is kept remotely.
  - O(remote_keep) is a second policy whose archives are kept too, so the remote can keep more than the local side.
  - Objects under object lock (retention not yet over, or a legal hold) are reported in RV(locked), never deleted.
  - Incomplete multipart uploads older than a day are aborted; younger ones are reported in RV(uploads_open).
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lifeboat.ops._offsite
attributes:
  check_mode:
    support: full
    details: Lists what would be removed; removes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  destination:
    description:
      - The local destination whose retention the remote mirrors.
    type: path
    required: true
  job:
    description:
      - Prune only this job's archives.
    type: str
  keep_last:
    description: As in M(lifeboat.ops.backup_prune).
    type: int
  keep_hourly:
    description: As in M(lifeboat.ops.backup_prune).
    type: int
  keep_daily:
    description: As in M(lifeboat.ops.backup_prune).
    type: int
  keep_weekly:
    description: As in M(lifeboat.ops.backup_prune).
    type: int
  keep_monthly:
    description: As in M(lifeboat.ops.backup_prune).
    type: int
  keep_yearly:
    description: As in M(lifeboat.ops.backup_prune).
    type: int
  keep_within:
    description: As in M(lifeboat.ops.backup_prune).
    type: str
  require_verified:
    description: As in M(lifeboat.ops.backup_prune), for the local and the remote side.
    type: bool
    default: true
  accept_anomalies:
    description: As in M(lifeboat.ops.backup_prune).
    type: bool
    default: false
  remote_keep:
    description:
      - A policy (C(keep_last), C(keep_daily), ... C(keep_within)) whose archives the remote keeps as well.
    type: dict
"""

EXAMPLES = r"""
- name: Keep in the bucket what the host keeps, plus 12 monthly archives
  lifeboat.ops.offsite_prune:
    destination: /var/backups/lifeboat/journal
    job: journal
    keep_daily: 7
    remote_keep: {keep_monthly: 12}
    bucket: backups
    prefix: db1/journal
    credentials_file: /etc/lifeboat/s3.credentials
"""

RETURN = r"""
removed:
  description: Remote archives removed (in check mode, that would be), with the reasons.
  returned: always
  type: list
  elements: dict
kept:
  description: Remote archives kept, with the reasons.
  returned: always
  type: list
  elements: dict
locked:
  description: Archives the policy would remove but that are under object lock, with the date it ends.
  returned: always
  type: list
  elements: dict
held:
  description: Jobs and databases where nothing was removed, and why.
  returned: always
  type: list
  elements: dict
uploads_aborted:
  description: Incomplete multipart uploads aborted (older than a day).
  returned: always
  type: list
  elements: str
uploads_open:
  description: Incomplete multipart uploads left alone (perhaps still running).
  returned: always
  type: list
  elements: str
removed_objects:
  description: Object names deleted.
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
    module = AnsibleModule(argument_spec=_offsite_tasks.offsite_prune_spec(), supports_check_mode=True)
    run_module(module, _offsite_tasks.offsite_prune)


if __name__ == "__main__":
    main()
