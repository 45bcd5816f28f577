#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: database_expect
short_description: Check what a live PostgreSQL or MongoDB database holds, and create its missing indexes
version_added: 0.2.0
description:
  - Fails, with one line per unmet expectation, unless the tables or collections of O(present) exist, the indexes
    of O(indexes) exist, and the exact row or document counts are at least O(min_counts) and at most
    O(max_drop_percent) below those of an archive's manifest (O(baseline_manifest)).
  - With O(create_missing_indexes), a missing index is created instead of failing the check. PostgreSQL builds it
    with C(CREATE INDEX CONCURRENTLY), so the table stays writable while it builds; an index left invalid by a
    failed build is dropped again, and the failure reported.
  - The same check is the data gate of the deploy role and the V(database_expect) probe of the healthcheck role.
  - A database in a container (O(container)) is read from this host over the container's network address, as the
    container dumps take their counts.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.ops._mongodb
  - lifeboat.ops._postgresql
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads as usual and creates nothing; RV(created_indexes) lists the indexes a run would create.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  engine:
    description:
      - The database engine. Options of the other engine are refused.
    type: str
    required: true
    choices: [postgresql, mongodb]
  login_uri:
    description:
      - A libpq connection URI (PostgreSQL) or a V(mongodb://) connection string (MongoDB). Mutually exclusive with
        O(login_host) and O(login_user).
  login_port:
    description:
      - Port of the server. V(5432) (PostgreSQL) or V(27017) (MongoDB) when not set.
  login_user:
    description:
      - User to connect as. PostgreSQL's default is the operating system user; MongoDB's, no authentication.
  login_database:
    description:
      - Database that holds the user's credentials (C(authSource), MongoDB only).
  connect_timeout:
    description:
      - Seconds to wait for the server.
  container:
    description:
      - Name or id of the database server's Docker container. The host is its network address, the user and
        password those of its environment (C(POSTGRES_USER), C(POSTGRES_PASSWORD); C(MONGO_INITDB_ROOT_USERNAME),
        C(MONGO_INITDB_ROOT_PASSWORD)), each overridable by its option. Needs the C(docker) Python SDK.
  pg_bin_dir:
    description:
      - Not used by this module (it runs no client program); accepted so that a dump job's options can be passed on.
  tools_dir:
    description:
      - Not used by this module (it runs no client program); accepted so that a dump job's options can be passed on.
  database:
    description:
      - The database to look at.
    type: str
    required: true
  present:
    description:
      - Tables (PostgreSQL, V(schema.table), or V(table) for V(public.table); views count too) or collections
        (MongoDB) that must exist in O(database).
    type: list
    elements: str
    default: []
  indexes:
    description:
      - Indexes that must exist. An index matches when it has the same keys in the same order (and is unique, when
        O(indexes[].unique) is asked); a partial or invalid index does not.
    type: list
    elements: dict
    default: []
    suboptions:
      'on':
        description:
          - The table or collection, named as in O(present).
          - Quote it (V('on')) or use an alias in YAML, which reads a bare C(on) as V(true).
        type: str
        required: true
        aliases: [table, collection]
      keys:
        description: Columns or fields, in index order (MongoDB keys are created ascending).
        type: list
        elements: str
        required: true
      unique:
        description: The index must be unique.
        type: bool
        default: false
      name:
        description:
          - Name of the index to create. By default C(table_column_idx) (PostgreSQL) or C(field_1) (MongoDB).
          - It plays no part in matching an existing index.
        type: str
  min_counts:
    description:
      - "Exact rows or documents each named table or collection must at least hold, e.g. C({public.notes: 1})."
    type: dict
    default: {}
  baseline_manifest:
    description:
      - An archive of this collection, or its manifest, of the same engine and database. Its counts are the
        baseline. Every table or collection it counted must exist and hold at least the baseline less
        O(max_drop_percent).
    type: path
  max_drop_percent:
    description:
      - How far below the baseline a count may fall, in percent (V(0) to V(100)); V(0) allows no fewer.
    type: float
    default: 0.0
  create_missing_indexes:
    description:
      - Create the indexes of O(indexes) that are missing, instead of failing (they are listed in RV(created_indexes)).
    type: bool
    default: false
requirements:
  - psycopg 3 (PostgreSQL) or pymongo (MongoDB) on the managed host. No client programs are needed.
"""

EXAMPLES = r"""
- name: The notes app's data is there and its search index exists (created when missing)
  lifeboat.ops.database_expect:
    engine: postgresql
    login_host: db.internal
    login_user: notes
    login_password_file: /etc/notes/db-password
    database: notes
    present: [notes, public.users]
    indexes:
      - {table: notes, keys: [user_id, created_at]}
      - {table: users, keys: [email], unique: true}
    create_missing_indexes: true
    min_counts:
      users: 1

- name: No collection lost more than 5 % of its documents since the last backup
  lifeboat.ops.database_expect:
    engine: mongodb
    container: recipes-mongo
    database: recipes
    baseline_manifest: "{{ backup.manifest }}"
    max_drop_percent: 5
"""

RETURN = r"""
ok:
  description: Every expectation holds (in check mode, counting the indexes that would be created).
  returned: success or failure
  type: bool
failures:
  description: What is wrong, one line each.
  returned: success or failure
  type: list
  elements: str
  sample: ["table public.notes missing in database notes", "index on public.users (email) missing"]
created_indexes:
  description: The indexes created (in check mode, that would be created), with their names.
  returned: success or failure
  type: list
  elements: str
  sample: ["unique index on public.users (email) as users_email_idx"]
counts:
  description: The exact counts read, by table (V(schema.table)) or collection.
  returned: success or failure
  type: dict
  sample: {"public.notes": 1200}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _expectations
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_expectations.database_expect_spec(), supports_check_mode=True,
                           **_expectations.DATABASE_EXPECT_RULES)
    run_module(module, _expectations.database_expect)


if __name__ == "__main__":
    main()
