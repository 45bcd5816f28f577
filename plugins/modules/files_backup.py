#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: files_backup
short_description: Archive Docker named volumes and host paths into a checksummed archive with a per-file manifest
version_added: 0.2.0
description:
  - Streams GNU C(tar) (POSIX format) of the named volumes and paths through compression (zstd by default) and
    optional age encryption into one archive, with a JSON manifest beside it (C(ARCHIVE.manifest.json)).
  - Ownership (numeric), modes, symlinks, hard links, sparse files and extended attributes are kept. Members keep
    their path on the host relative to C(/) (a volume's under its C(Mountpoint)), so C(tar -x -C /) alone puts
    everything back; the manifest's C(restore_commands) say how to restore one volume or folder elsewhere.
  - The manifest lists, per volume or path, every entry's type, size, sha256, mode, owner and link target, read
    from the stored stream itself; C(lifeboat.ops.backup_verify) checks them at level C(structure) and unpacks
    and compares them at level C(restore).
  - The archive gets its final name only after C(tar), compression and encryption succeeded and the file was
    fsynced; a failure leaves no file behind. An archive that would hold no file at all is a failure.
  - A file that changed while C(tar) read it is named in RV(changed_while_read), in the manifest and in a warning.
  - Containers named in O(stop_containers), and running containers labelled C(lifeboat.stop-during-backup=true) (or
    C(=JOB)) that mount one of the volumes or paths, are stopped while they are read and always started again.
    Archiving the data directory of a running database container is refused; dump the database instead.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._archive
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the volumes and paths and returns them as RV(roots); writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  job:
    description:
      - The job's name, which its archives carry. Required for files archives.
    type: str
    required: true
  volumes:
    description:
      - Docker named volumes to archive (read at their C(Mountpoint) on this host, which needs root or access to it).
    type: list
    elements: str
    default: []
  paths:
    description:
      - Host files and folders to archive (an uploads folder, C(docker-compose.yml), C(.env), a tunnel config).
        Absolute; not C(/) nor a kernel file system; none inside another.
    type: list
    elements: path
    default: []
  include:
    description:
      - Keep only the files whose path relative to their volume or folder, or whose name, matches one of these
        shell patterns (with the folders that lead to them). All files when empty.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Leave out what matches one of these patterns (as C(tar --exclude) does, a pattern without C(/) matches a name at
        any depth).
    type: list
    elements: str
    default: []
  stop_containers:
    description:
      - Containers (names or ids) to stop while the volumes and paths are read, stopped in this order and started
        again afterwards, on success and on any failure.
    type: list
    elements: str
    default: []
notes:
  - Reading a named volume needs the Docker SDK for Python and access to the Docker engine, which is root-equivalent.
seealso:
  - module: lifeboat.ops.files_restore
  - module: lifeboat.ops.docker_app_info
"""

EXAMPLES = r"""
- name: Archive the recipe app's uploads, compose file and env file
  lifeboat.ops.files_backup:
    destination: /var/backups/lifeboat/recipes
    job: recipes-files
    paths: [/srv/recipes/uploads, /srv/recipes/docker-compose.yml, /srv/recipes/.env]
    exclude: ["*.tmp", cache]
    encryption_recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]

- name: Archive the dashboard's app volume, its writer stopped meanwhile
  lifeboat.ops.files_backup:
    destination: /var/backups/lifeboat/dashboard
    job: dashboard-data
    volumes: [dashboard_uploads]
    stop_containers: [dashboard-app-1]
"""

RETURN = r"""
signer:
  description: The public key (OpenSSH C(.pub) line) that signed the manifest, for C(trusted_signers) on other hosts.
  returned: changed
  type: str
signer_file:
  description: Where that public key was written beside the archives (C(lifeboat-signer.pub)); never trusted from there.
  returned: changed
  type: str
signing_key_file:
  description: The private key file that signed (O(signing_key_file), or this host's own key).
  returned: changed
  type: str
signing_key_created:
  description: Whether this run made this host's signing key (its first backup); a warning says so too.
  returned: changed
  type: bool
archive:
  description: Path of the archive written.
  returned: changed
  type: str
manifest:
  description: Path of the manifest beside it.
  returned: changed
  type: str
sha256:
  description: sha256 of the stored archive file.
  returned: changed
  type: str
size:
  description: Size in bytes of the stored archive file.
  returned: changed
  type: int
plain_size:
  description: Size in bytes of the tar stream before compression and encryption.
  returned: changed
  type: int
counts:
  description: Entries that are not folders (files, links, devices) per volume (C(volume:NAME)) or path
    (C(path:PATH)).
  returned: changed
  type: dict
roots:
  description: The volumes and paths, with where they are on this host, their tar member name, and (after a
    backup) their C(files) and C(bytes).
  returned: always
  type: list
  elements: dict
changed_while_read:
  description: Files that changed while tar read them, with what tar said.
  returned: changed
  type: list
  elements: str
stopped_containers:
  description: The containers stopped while their volumes and paths were read (O(stop_containers) and those labelled
    C(lifeboat.stop-during-backup)), in stop order; all run again. In check mode, those a run would stop (in no order).
  returned: when some were stopped; always in check mode
  type: list
  elements: str
downtime_seconds:
  description: The app's downtime for this backup, from the first container stopped to the last started again.
  returned: when some were stopped
  type: float
duration_seconds:
  description: Wall time of the backup.
  returned: changed
  type: float
restore_commands:
  description: Standard commands that restore the archive without this collection.
  returned: changed
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _files_module, _stopped_notes
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_files_module.files_backup_spec(), supports_check_mode=True)
    run_module(module, _stopped_notes.restarting_first(_files_module.files_backup))


if __name__ == "__main__":
    main()
