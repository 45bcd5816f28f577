#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_prune
short_description: Remove old archives of a destination by a restic-style retention policy, never the last good one
version_added: 0.1.0
description:
  - Applies a retention policy to the archives of a destination, per job and database (never per host name,
    which changes with every new container), with the semantics of C(restic forget).
  - O(keep_last) keeps the newest archives; O(keep_hourly), O(keep_daily), O(keep_weekly), O(keep_monthly) and
    O(keep_yearly) keep the newest archive of each of that many hours, days, ISO weeks, months or years that have
    archives, and, while such a count is not used up, the oldest archive as well. Buckets are taken in UTC, the
    time zone of the archive names. V(-1) means no limit. O(keep_within) keeps every archive that started within
    that span of the newest archive (not of now, as in restic).
  - Whatever the policy says, the newest verified archive and every archive newer than it are kept, and an archive
    that cannot be read (no manifest, unreadable manifest, missing file) is kept and reported.
  - Nothing at all is removed from a job and database while its newest archive is unverified (see
    O(require_verified)) or looks wrong next to the last verified one (much smaller, or tables and collections
    that held rows now empty; see O(accept_anomalies)), until a newer archive is proven.
  - Files of an archive go in this order, extras, archive, manifest, so that an interrupted removal shows as an
    archive whose file is missing rather than as an unnamed file.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be removed and why each archive would stay; removes nothing.
  diff_mode:
    support: full
    details: The archive names before and after.
  platform:
    platforms: posix
options:
  destination:
    description:
      - Absolute path of the directory that holds the archives and their manifests.
    type: path
    required: true
  job:
    description:
      - Prune only the archives of this job. All jobs of the destination when not set.
    type: str
  keep_last:
    description:
      - Keep the newest N archives. V(-1) keeps all.
    type: int
  keep_hourly:
    description:
      - Keep the newest archive of each of the last N hours that have one. V(-1) for no limit.
    type: int
  keep_daily:
    description:
      - Keep the newest archive of each of the last N days that have one. V(-1) for no limit.
    type: int
  keep_weekly:
    description:
      - Keep the newest archive of each of the last N ISO weeks that have one. V(-1) for no limit.
    type: int
  keep_monthly:
    description:
      - Keep the newest archive of each of the last N months that have one. V(-1) for no limit.
    type: int
  keep_yearly:
    description:
      - Keep the newest archive of each of the last N years that have one. V(-1) for no limit.
    type: int
  keep_within:
    description:
      - Keep every archive that started within this span of the newest archive, written as in restic,
        for example V(30d), V(1y6m), V(2d12h) (units y, m, d, h).
    type: str
  require_verified:
    description:
      - Remove nothing from a job and database while its newest archive is not verified (never checked, or its
        last verification failed).
      - With V(false), archives that were never verified count like the others, but the newest verified archive
        and every newer one are still kept.
    type: bool
    default: true
  accept_anomalies:
    description:
      - Prune even when the newest archive is much smaller than the last verified one or tables and collections
        that held rows are now empty. Set it once the change is known to be real.
    type: bool
    default: false
  remove_partials:
    description:
      - Also remove what interrupted (for example SIGKILLed) runs left, of O(job) when it is given, of every job
        otherwise - C(.NAME.partial-PID) files and private C(.lifeboat-PID-*) directories - once their writer is
        gone - no process of that PID runs on this host and no process holds the file's lock (writers lock
        what they write, so one in a container that shares the directory still counts as alive).
      - A file whose lock cannot be tested (another user's) goes only after an hour without a change.
      - Such leftovers are always listed in RV(partials).
    type: bool
    default: true
notes:
  - At least one O(keep_last) ... O(keep_yearly) or O(keep_within) must be set; like C(restic forget), an empty
    policy is refused rather than taken to remove everything.
seealso:
  - name: restic forget
    description: The retention policy this module follows.
    link: https://restic.readthedocs.io/en/stable/060_forget.html
"""

EXAMPLES = r"""
- name: Keep 7 daily, 4 weekly and 12 monthly archives of the journal job
  lifeboat.ops.backup_prune:
    destination: /var/backups/lifeboat/journal
    job: journal
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 12

- name: See what a policy would remove, and why the rest stays
  lifeboat.ops.backup_prune:
    destination: /var/backups/lifeboat
    keep_last: 3
    keep_within: 30d
  check_mode: true
  diff: true
  register: prune

- name: Prune after a real, expected shrink of the data
  lifeboat.ops.backup_prune:
    destination: /var/backups/lifeboat/journal
    keep_daily: 7
    accept_anomalies: true
"""

RETURN = r"""
removed:
  description: The archives removed (in check mode, that would be removed), with the reason.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File name of the archive.
      type: str
    job:
      description: Job of the archive.
      type: str
    database:
      description: Database of the archive.
      type: str
    started_at:
      description: Start time of the dump (UTC).
      type: str
    verified:
      description: Whether the last verification of the archive passed.
      type: bool
    reasons:
      description: Why it goes.
      type: list
      elements: str
  sample: [{"name": "journal-20261101T030000Z.pgdump.zst", "job": "journal", "database": "journal",
            "started_at": "2026-11-01T03:00:00Z", "verified": true,
            "reasons": ["kept by none of keep_daily=7"]}]
kept:
  description: The archives that stay, each with every reason that keeps it (same keys as RV(removed)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "journal-20261122T030000Z.pgdump.zst", "job": "journal", "database": "journal",
            "started_at": "2026-11-22T03:00:00Z", "verified": true,
            "reasons": ["daily 2026-11-22 (1 of 7)", "newest verified archive"]}]
held:
  description: The jobs and databases where nothing was removed, and why.
  returned: always
  type: list
  elements: dict
  sample: [{"job": "journal", "database": "journal", "reason": "the newest archive
            journal-20261122T030000Z.pgdump.zst is not verified; nothing is removed until a newer archive is
            verified (or set require_verified=false)"}]
unreadable:
  description: Archives that cannot be read, kept until someone looks at them.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "journal-20261120T030000Z.pgdump.zst", "job": "journal",
            "problem": "it has no manifest, so nothing says what it holds or proves it whole"}]
partials:
  description: Partial files and private directories of interrupted or running dumps; C(removed) tells whether
    this run removed it (C(writer_alive) whether its writer still runs).
  returned: always
  type: list
  elements: dict
warnings_found:
  description: What needs a person's look (also emitted as warnings).
  returned: always
  type: list
  elements: str
freed_bytes:
  description: Bytes freed (in check mode, that would be freed).
  returned: always
  type: int
policy:
  description: The rules applied.
  returned: always
  type: list
  elements: str
  sample: ["keep_daily=7", "keep_within=30d"]
removed_files:
  description: Paths of the files removed.
  returned: changed
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _retention
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_retention.backup_prune_spec(), supports_check_mode=True)
    run_module(module, _retention.backup_prune)


if __name__ == "__main__":
    main()
