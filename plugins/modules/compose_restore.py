#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: compose_restore
short_description: Restore a whole Docker Compose app from the archives of its compose_project backup job
version_added: 0.2.0
description:
  - The backup role backs up a compose project as parts (M(lifeboat.ops.docker_app_info) names them),
    C(PROJECT-SERVICE) for each database dumped in its container and C(PROJECT-files) for the other volumes, bind
    mounts and compose files. This module restores every part (or O(parts)) from one set of archives, one per part,
    the newest verified one (O(select)) started at or before O(as_of).
  - The parts and their containers are the project's as its containers show them now; they must exist (after
    C(docker compose up), or C(docker compose create) to restore before the app starts, which makes the volumes
    with compose's labels). A database part's container that does not run (after C(docker compose create)) is
    started for the restore, waited for until its server answers, and stopped again once the databases are restored,
    before the volumes and paths (RV(started_for_restore)).
  - "Every part is planned before anything is stopped or written: a database that holds tables, or a volume or path
    that holds other data than the archive, is refused unless O(overwrite=true); a volume or path that already
    holds exactly the archive's files is left as it is (RV(parts[].unchanged))."
  - "The order: the app's running containers that mount a restored volume or path are stopped; each database is
    restored into its running container (all or nothing, as M(lifeboat.ops.postgresql_restore) and
    M(lifeboat.ops.mongodb_restore)); database containers that mount a restored path are stopped too; the volumes
    and paths are restored (as M(lifeboat.ops.files_restore)); every container stopped is started again, also when
    a step failed, and waited for until it runs, and is healthy where it has a healthcheck (O(health_timeout))."
  - "Containers stopped are noted in the host's stopped-notes directory (C(/var/lib/lifeboat/stopped) or
    C(LIFEBOAT_STOPPED_DIR)) first: a run killed with SIGKILL leaves them to the next backup or restore on this
    host, which starts them before anything else, and the status checks report them CRITICAL meanwhile."
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._archive.SIGNATURES
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Chooses the set, plans every part (refusals included, but for a database whose container does not run,
      which is not started to be asked) and says what would be stopped and started; writes, starts and stops nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  project:
    description:
      - The compose project name (C(docker compose ls)), as the backup job's O(project) was.
    type: str
    required: true
  root:
    description:
      - The backup root; each part's archives are in C(ROOT/PART) (the backup role's default for a job without a
        destination). Give O(root) or O(destination).
    type: path
  destination:
    description:
      - The one directory that holds every part's archives (a compose job with its own C(destination)).
    type: path
  parts:
    description:
      - Restore only these parts, by name (C(PROJECT-SERVICE), C(PROJECT-files)) or without the project
        (C(db), C(files)). All when empty.
    type: list
    elements: str
    default: []
  as_of:
    description:
      - Take each part's newest archive started at or before this time (ISO 8601, V(2026-11-22T03:00:00Z); UTC when
        no zone is given), for the state of the app at that time.
    type: str
  select:
    description:
      - V(newest_verified) takes each part's newest archive whose last verification passed; V(newest) the newest
        readable one.
    type: str
    default: newest_verified
    choices: [newest_verified, newest]
  overwrite:
    description:
      - Confirms that the restore replaces what the app holds now. Each database is replaced whole (PostgreSQL
        C(recreate), MongoDB C(drop)) and each volume and path by the archive's. Without it a target that holds
        other data is refused, before anything is stopped or written.
    type: bool
    default: false
  safety_dump_dir:
    description:
      - Where what a restore overwrites is dumped first (the databases), encrypted as the archive was; the volumes
        and paths are archived beside their archive (or here).
    type: path
  health_timeout:
    description:
      - Seconds to wait after the start for each container stopped (and each database container) to run, and to
        be healthy where it has a healthcheck; one that does not fails the task, after everything was restored.
    type: int
    default: 120
  age_identity_files:
    description:
      - age identity (private key) files that decrypt the archives.
    type: list
    elements: path
    default: []
  age_passphrase_file:
    description:
      - File whose first line is the passphrase of archives encrypted with a passphrase (mode 0600).
    type: path
seealso:
  - module: lifeboat.ops.docker_app_info
  - module: lifeboat.ops.files_restore
"""

EXAMPLES = r"""
- name: Put the recipe app back as its newest verified backup holds it, into a fresh docker compose up
  lifeboat.ops.compose_restore:
    project: recipes
    root: /var/backups/lifeboat
    age_identity_files: [/root/.config/lifeboat/operators-key.txt]

- name: Only the database, as it was last night, over the live data
  lifeboat.ops.compose_restore:
    project: recipes
    root: /var/backups/lifeboat
    parts: [db]
    as_of: "2026-11-22T03:30:00Z"
    overwrite: true
    safety_dump_dir: /var/backups/lifeboat/before-restore
"""

RETURN = r"""
project:
  description: The project name.
  returned: always
  type: str
parts:
  description: One entry per part restored, in the project's order.
  returned: always
  type: list
  elements: dict
  contains:
    part:
      description: The part's job name (C(PROJECT-SERVICE), C(PROJECT-files)).
      type: str
    engine:
      description: V(postgresql), V(mongodb) or V(files).
      type: str
    archive:
      description: The archive of the set.
      type: str
    archive_reason:
      description: Why this archive.
      type: str
    container:
      description: A database part's container.
      type: str
    counts:
      description: A database part's rows or documents per table or collection after the restore.
      type: dict
    safety_dumps:
      description: A database part's dumps of what it replaced (with O(safety_dump_dir) and a database that held
        data).
      type: list
      elements: str
    targets:
      description: A files part's volumes and paths restored.
      type: list
    unchanged:
      description: A files part's volumes and paths that already held exactly the archive's files, left as they were.
      type: list
    restored:
      description: A files part's entries that are not folders restored per target.
      type: dict
    safety_archive:
      description: A files part's archive of what its volumes and paths held before (null when they held nothing).
      type: str
stopped_containers:
  description: The containers stopped for the restore (and started again).
  returned: always
  type: list
  elements: str
downtime_seconds:
  description: From the first stop to the last start (null when none was stopped).
  returned: changed
  type: float
started_for_restore:
  description: Database containers that did not run, started for the restore and stopped again.
  returned: always
  type: list
  elements: str
containers:
  description: How each container stopped and each database container runs afterwards (V(running), V(healthy), or
    what is wrong).
  returned: changed
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _compose_restore, _stopped_notes
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_compose_restore.compose_restore_spec(), supports_check_mode=True,
                           **_compose_restore.COMPOSE_RESTORE_RULES)
    run_module(module, _stopped_notes.restarting_first(_compose_restore.compose_restore))


if __name__ == "__main__":
    main()
