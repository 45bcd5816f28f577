#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_status
short_description: Report the health of the backups at a destination, optionally as node_exporter metrics
version_added: 0.1.0
description:
  - Reads the archives and manifests of a backup destination (never a database) and reports, for each job and
    database, V(OK), V(WARNING) or V(CRITICAL) with the reasons, and an overall state and one-line summary in
    the style of a Nagios plugin.
  - CRITICAL when the newest archive is older than O(max_age_hours), when its last verification failed, when
    an archive newer than the last readable one cannot be trusted (missing file or manifest), when a table
    or collection that held at least O(collapse_min_count) rows in the previous verified archive holds none,
    when the free space at the destination is smaller than the newest archive (the next one will not fit)
    or than the newest archives of all its jobs together, when a job of O(jobs) has no archive at all, or when the destination does not exist.
  - WARNING when the newest archive is not verified (with O(require_verified)), when it is smaller than the
    previous verified one by more than O(shrink_ratio), when fewer than O(free_space_factor) archives of its
    size (or runs of all jobs) fit in the free space, or when an interrupted run left a temporary file behind.
  - With O(metrics_file), writes the report as node_exporter textfile metrics (gauges named
    C(lifeboat_backup_*), labelled C(destination), C(job) and C(database)) by an atomic rename, mode 0644.
  - Changes nothing else. The metrics file is rewritten on every run so that
    C(lifeboat_backup_status_timestamp_seconds) shows when the check last ran; the task reports a change
    only when a line other than that one and the free space (C(lifeboat_backup_destination_free_bytes))
    changed, so a second run over the same archives is not a change.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Evaluates the destination as usual and reports whether the metrics file would change; writes nothing.
  diff_mode:
    support: full
    details: Shows the old and new content of O(metrics_file).
  platform:
    platforms: posix
options:
  destination:
    description:
      - Absolute path of the directory the archives are written to.
      - Or a backup root, a directory that holds no archive itself but one directory per job (as the
        C(lifeboat.ops.backup) role writes them under C(backup_root)); every job directory is then checked and
        each job reported, with its own C(destination) in RV(jobs).
    type: path
    required: true
  jobs:
    description:
      - Jobs that must have archives there; a job without any is CRITICAL.
      - Empty means every job found at the destination (and an empty destination is CRITICAL).
    type: list
    elements: str
    default: []
  max_age_hours:
    description:
      - The newest archive of a job older than this (by when it finished) is CRITICAL.
    type: float
    default: 26.0
  shrink_ratio:
    description:
      - WARNING when the newest archive is smaller (before compression) than the previous verified one by more
        than this share, between 0 and 1.
    type: float
    default: 0.5
  collapse_min_count:
    description:
      - A table or collection that held at least this many rows or documents in the previous verified archive
        and holds none in the newest one is CRITICAL.
    type: int
    default: 100
  free_space_factor:
    description:
      - WARNING when the free space at the destination is less than this many times the newest archive of a job
        (its expected next size, extras included); CRITICAL below one time. At least 1.
    type: float
    default: 2.0
  require_verified:
    description:
      - Whether a newest archive that was not verified yet is a WARNING. A failed verification is CRITICAL
        either way.
    type: bool
    default: true
  metrics_file:
    description:
      - Write the report as Prometheus text format to this C(.prom) file for node_exporter's textfile collector.
      - Its directory must exist.
    type: path
  fail_on:
    description:
      - V(none) only reports. V(warning) fails the task when the state is WARNING or worse, V(critical) when
        it is CRITICAL or UNKNOWN. The metrics file is written first either way.
    type: str
    default: none
    choices: [none, warning, critical]
  offsite:
    description:
      - The bucket of the off-site copies (keys as the options of M(lifeboat.ops.offsite_copy) - C(bucket),
        C(prefix), C(endpoint_url), C(region), C(path_style), C(credentials_file), and C(job) to read one job's copies
        and its last copy's record, as the C(lifeboat.ops.backup) role copies them); the report then gains
        RV(offsite) and the metrics file the C(lifeboat_offsite_*) gauges.
      - CRITICAL when the newest local verified archive has not reached the bucket within
        O(offsite_max_delay_hours), or the bucket cannot be read; WARNING for incomplete uploads or a failed last copy.
    type: dict
  offsite_max_delay_hours:
    description:
      - Hours after its end within which the newest verified archive must be in the bucket.
    type: float
    default: 26
notes:
  - Verifications are read from the manifests, where the verification of an archive records them.
  - C(promtool check metrics) accepts the metrics file; the collection's tests run it.
seealso:
  - module: lifeboat.ops.postgresql_dump
  - module: lifeboat.ops.mongodb_dump
  - name: node_exporter textfile collector
    description: How node_exporter reads C(*.prom) files.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Check the nightly backups of this host
  lifeboat.ops.backup_status:
    destination: /var/backups/lifeboat
    jobs: [journal, nightscout]
  register: backups

- name: Check every job directory under the backup root
  lifeboat.ops.backup_status:
    destination: /var/backups/lifeboat
    fail_on: critical

- name: Publish backup health to node_exporter, failing the play when a backup is CRITICAL
  lifeboat.ops.backup_status:
    destination: /var/backups/lifeboat
    max_age_hours: 30
    metrics_file: /var/lib/prometheus/node-exporter/lifeboat.prom
    fail_on: critical
"""

RETURN = r"""
state:
  description: The worst state found.
  returned: always
  type: str
  sample: WARNING
exit_code:
  description: The Nagios plugin exit code of RV(state) (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
  returned: always
  type: int
  sample: 1
summary:
  description: One line, the state then every reason, worst first.
  returned: always
  type: str
  sample: "CRITICAL: journal newest archive is 27.0 h old (max 26 h), finished 2026-11-21T03:00:04Z"
destination:
  description: The destination that was checked.
  returned: always
  type: str
checked_at:
  description: When the check ran (UTC, ISO 8601).
  returned: always
  type: str
free_bytes:
  description: Free space at the destination for unprivileged writers; null when the destination is missing.
  returned: always
  type: int
reasons:
  description: Problems of the destination itself (missing, unreadable, leftovers of interrupted runs).
  returned: always
  type: list
  elements: dict
  contains:
    severity:
      description: WARNING, CRITICAL or UNKNOWN.
      type: str
    message:
      description: What is wrong and where.
      type: str
jobs:
  description: One entry per job and database.
  returned: always
  type: list
  elements: dict
  contains:
    job:
      description: Job name.
      type: str
    database:
      description: Database the archives hold; null for archives of a whole server or unreadable ones.
      type: str
    engine:
      description: C(postgresql) or C(mongodb).
      type: str
    state:
      description: OK, WARNING or CRITICAL.
      type: str
    reasons:
      description: Each problem with its C(severity) and C(message).
      type: list
      elements: dict
    archives:
      description: Number of archives of this job and database, unreadable ones included.
      type: int
    unreadable:
      description: Names of the archives that cannot be trusted.
      type: list
      elements: str
    newest:
      description:
        - The newest readable archive, null when there is none; C(name), C(started_at), C(finished_at), C(age_hours),
          C(size), C(plain_size), C(duration_seconds), C(verified), C(verification_level), C(verified_at),
          C(verification_failure), C(counts_total).
      type: dict
    previous_verified:
      description: Name of the verified archive the newest one was compared with.
      type: str
    next_size:
      description: Bytes the next run is expected to need (the newest archive's files); null without one.
      type: int
    running:
      description: The backup run of this job that is going on now (C(pid), C(started_at), C(host)), or null.
      type: dict
    destination:
      description: The job directory, when O(destination) is a backup root.
      type: str
destinations:
  description: When O(destination) is a backup root, the report of each job directory (the keys above).
  returned: when O(destination) is a backup root
  type: list
  elements: dict
metrics:
  description: The metrics text written (or, in check mode, that would be written).
  returned: when O(metrics_file) is set
  type: str
metrics_file:
  description: Path of the metrics file.
  returned: when O(metrics_file) is set
  type: str
offsite:
  description: The remote side, with O(offsite) - C(state), C(reasons), C(summary) (one line, as
    C(lifeboat status) prints it), C(url), C(last_copy) (the outcome of the newest copy) and C(remote)
    (C(archives), C(verified), C(newest_verified), C(newest_verified_started_at),
    C(stored_bytes), C(noncurrent_version_bytes), C(incomplete), C(open_uploads)).
  returned: when offsite is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _status
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_status.backup_status_spec(), supports_check_mode=True)
    run_module(module, _status.backup_status)


if __name__ == "__main__":
    main()
