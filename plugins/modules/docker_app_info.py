#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: docker_app_info
short_description: Find an app's database servers, volumes and bind mounts from its Docker Compose project
version_added: 0.2.0
description:
  - Lists the containers that carry the label C(com.docker.compose.project=PROJECT), running or not, by service.
  - A service is a database server when its image is one of C(postgres), C(postgis), C(timescaledb) (PostgreSQL) or
    C(mongo), C(ferretdb) (MongoDB), or, for a running container of another image, when C(pg_dump) or C(mongodump)
    answers inside it.
  - Returns one backup job per database service in RV(jobs), in the shape the C(lifeboat.ops.backup) and
    C(lifeboat.ops.backup_schedule) roles take as it is. The dump runs inside the container with the container's
    own login (the O(lifeboat.ops.postgresql_dump#module:container) option).
  - Lists the named and anonymous volumes and the bind mounts, each with whether it holds a database's data
    directory (which the dumps cover, so a files backup should leave it out).
  - Reads only; needs the C(docker) Python SDK and access to the Docker engine on the managed host.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  project:
    description:
      - The compose project name, as in C(docker compose ls) and the C(com.docker.compose.project) label.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Find the parts of the recipes app
  lifeboat.ops.docker_app_info:
    project: recipes
  register: recipes

- name: Back up every database of the app from inside its container
  ansible.builtin.include_role:
    name: lifeboat.ops.backup
  vars:
    backup_jobs: "{{ recipes.jobs }}"
"""

RETURN = r"""
project:
  description: The project name.
  returned: success
  type: str
services:
  description: One entry per container of the project, sorted by service.
  returned: success
  type: list
  elements: dict
  contains:
    service:
      description: The compose service name.
      type: str
    container:
      description: The container's name.
      type: str
    id:
      description: The container's id.
      type: str
    image:
      description: The image the container runs.
      type: str
    running:
      description: Whether the container runs.
      type: bool
    engine:
      description: V(postgresql), V(mongodb), or null for a service that is no database server.
      type: str
    engine_evidence:
      description: How the engine was found (the image, or a client answering inside).
      type: str
    data_dir:
      description: The database's data directory inside the container (null for other services).
      type: str
jobs:
  description: A backup job per database service (name C(PROJECT-SERVICE), engine, container, and the database
    the container names for PostgreSQL).
  returned: success
  type: list
  elements: dict
  sample: [{name: recipes-db, engine: postgresql, container: recipes-db-1, database: recipes}]
volumes:
  description: The volumes mounted by the project's containers.
  returned: success
  type: list
  elements: dict
  contains:
    volume:
      description: The volume's name.
      type: str
    anonymous:
      description: Whether it is an anonymous volume (a 64-hex name).
      type: bool
    service:
      description: The service whose container mounts it.
      type: str
    container:
      description: The container that mounts it.
      type: str
    destination:
      description: Where it is mounted inside the container.
      type: str
    read_only:
      description: Whether it is mounted read-only.
      type: bool
    database_data:
      description: Whether it holds the data directory of the container's database (covered by its dump).
      type: bool
bind_mounts:
  description: The host directories and files bind-mounted into the project's containers; as RV(volumes), with
    C(source), the path on the host, instead of C(volume) and C(anonymous).
  returned: success
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _docker_apps
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_docker_apps.docker_app_info_spec(), supports_check_mode=True)
    run_module(module, _docker_apps.docker_app_info)


if __name__ == "__main__":
    main()
