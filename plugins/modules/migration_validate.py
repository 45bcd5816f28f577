#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_validate
short_description: Prove that a MongoDB or PostgreSQL migration arrived whole, and write a report
version_added: 0.1.0
description:
  - Compares a O(source) and a O(target) database of one O(engine) and fails when a required check fails.
  - "B(presence): tables, partitioned tables, views, sequences (PostgreSQL), the database, collections and views (MongoDB)."
  - "B(counts): rows or documents per table or collection, within O(count_tolerance_percent)."
  - "B(indexes): index definitions and constraints (primary, foreign, unique, check) per table (PostgreSQL); key,
    order, unique, sparse, partial filter and TTL per index (MongoDB)."
  - "B(schema) (PostgreSQL): column names, types, nullability and collations; view definitions; sequences not behind
    the source."
  - "B(content): PostgreSQL rows are compared by primary key in ranges hashed by each server (the sum over the range
    of a 64-bit hash, C(hashtextextended), of each row's text; on PostgreSQL 14 and later on both sides, of
    C(hash_record_extended) over the columns, where integers, booleans, dates, timestamps, uuid, bytea, text and
    varchar of the same type on both sides are hashed by value, byte for byte, and every other column by its text);
    a differing range is split and compared again until it holds at
    most O(bisect_threshold) rows, whose keys and row hashes are then fetched, so equal tables transfer no rows at all.
    Tables without a primary key are compared as multisets of full-row hashes. MongoDB documents are compared as their
    exact BSON bytes (a Decimal128 that became a double differs), bucketed by C(_id); the fields that changed are named."
  - "B(timing): O(timing_queries) (or a default query per table or collection) run on both sides, median and p95."
  - "B(security): the target refuses a connection without a password, uses TLS when O(require_tls), and has the
    O(expected_users). Passwords are never part of the result or the report."
  - "B(application): O(health_checks) URLs answer with the expected status and text."
  - Every database session is read-only; PostgreSQL counts and content are read in one REPEATABLE READ snapshot per side.
  - The source can be an archive made by this collection (O(source.archive)); it is restored into a scratch database on
    the target's server with the collection's own restore, compared, and dropped.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Validation only reads; in check mode it runs all the same and only the report files are not written.
      - A source archive is not restored in check mode, so nothing is compared and RV(passed) is false.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  engine:
    description:
      - The database engine of both sides.
    type: str
    required: true
    choices: [postgresql, mongodb]
  source:
    description:
      - Where the data came from. The connection options of the engine (as in M(lifeboat.ops.postgresql_dump) or
        M(lifeboat.ops.mongodb_dump)) plus O(source.database), or O(source.archive).
    type: dict
    required: true
    suboptions: &endpoint
      database:
        description:
          - Database name. Required, except for a source given as O(source.archive).
        type: str
        aliases: [db]
      archive:
        description:
          - An archive made by this collection (its manifest beside it), restored into a scratch database on the target's
            server for the comparison. Only for the source.
        type: path
      age_identity_files:
        description:
          - age identity files that open an encrypted O(source.archive).
        type: list
        elements: path
        default: []
      age_passphrase_file:
        description:
          - Passphrase file of an O(source.archive) encrypted with a passphrase.
        type: path
      trusted_signers:
        description:
          - OpenSSH public keys (V(ssh-ed25519 AAAA...)) whose signature O(source.archive)'s manifest must carry, checked
            before anything is restored, as the restore modules do; an unsigned or wrongly signed archive is refused
            unless O(source.allow_unsigned) (unsigned only). Only for a source archive.
          - The public half of O(source.signing_key_file) (or of this host's own key, C(/etc/lifeboat/signing_key),
            when it exists) is trusted as well; with no trusted key at all, the archive is refused unless
            O(source.allow_unsigned).
        type: list
        elements: str
        default: []
      signing_key_file:
        description:
          - The OpenSSH private key file this host signs its manifests with; its public half is trusted when
            O(source.trusted_signers) is empty. Only for a source archive.
        type: path
      allow_unsigned:
        description:
          - With O(source.trusted_signers) or O(source.signing_key_file), also accept a source archive that carries no
            signature (made before signing was turned on).
        type: bool
        default: false
      login_uri:
        description:
          - A PostgreSQL URI or a V(mongodb://) / V(mongodb+srv://) connection string. Mutually exclusive with
            O(source.login_host) and O(source.login_user).
        type: str
      login_host:
        description:
          - Host name or IP address of the server.
        type: str
        aliases: [host]
      login_port:
        description:
          - Port of the server.
        type: int
        aliases: [port]
      login_user:
        description:
          - User to connect as.
        type: str
        aliases: [user]
      login_password:
        description:
          - Password of the user. Prefer O(source.login_password_file).
        type: str
      login_password_file:
        description:
          - File whose first line is the password; not readable by group or others.
        type: path
      connect_timeout:
        description:
          - Seconds to wait for the server.
        type: int
        default: 10
      login_unix_socket:
        description:
          - PostgreSQL only. Directory of the server's Unix socket.
        type: path
      container:
        description:
          - Name or id of the server's Docker container. Its own C(pg_restore) or C(mongorestore) restores an
            archive source, and the connection defaults come from the container.
        type: str
      ssl_mode:
        description:
          - PostgreSQL only. libpq C(sslmode).
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      ssl_ca_cert:
        description:
          - PostgreSQL only. CA certificate file (C(sslrootcert)).
        type: path
      ssl_cert:
        description:
          - PostgreSQL only. Client certificate file.
        type: path
      ssl_key:
        description:
          - PostgreSQL only. Client private key file.
        type: path
      pg_bin_dir:
        description:
          - PostgreSQL only. Directory of the client programs used to restore a source archive.
        type: path
      login_database:
        description:
          - MongoDB only. Database that holds the user's credentials; V(admin) when not set.
        type: str
      auth_mechanism:
        description:
          - MongoDB only. Authentication mechanism.
        type: str
        choices: [SCRAM-SHA-1, SCRAM-SHA-256, MONGODB-X509, PLAIN]
      tls:
        description:
          - MongoDB only. Connect with TLS.
        type: bool
        default: false
      tls_ca_file:
        description:
          - MongoDB only. CA certificate file.
        type: path
      tls_certificate_key_file:
        description:
          - MongoDB only. Client certificate and key in one PEM file.
        type: path
      tls_allow_invalid_certificates:
        description:
          - MongoDB only. Accept any server certificate (tests only).
        type: bool
        default: false
      tools_dir:
        description:
          - MongoDB only. Directory of C(mongorestore), to restore a source archive.
        type: path
  target:
    description:
      - The database the migration wrote. The same suboptions as O(source), without O(source.archive).
    type: dict
    required: true
    suboptions: *endpoint
  checks:
    description:
      - The categories of checks to run.
    type: list
    elements: str
    choices: [presence, counts, indexes, schema, content, timing, security, application]
    default: [presence, counts, indexes, schema, content, timing, security, application]
  required_checks:
    description:
      - The categories whose failure fails the module. Other failures are reported only.
    type: list
    elements: str
    choices: [presence, counts, indexes, schema, content, timing, security, application]
    default: [presence, counts, indexes, schema, content, security, application]
  objects:
    description:
      - Compare only tables (V(schema.table)) or collections matching these shell patterns.
    type: list
    elements: str
    default: []
  exclude_objects:
    description:
      - Leave out tables or collections matching these shell patterns.
    type: list
    elements: str
    default: []
  count_tolerance_percent:
    description:
      - Accept row counts that differ by this percentage of the source's count, for a source still being written.
    type: float
    default: 0
  content_mode:
    description:
      - V(full) compares every row or document; V(sample) looks up O(sample_size) source rows per table on the target
        (a quick look that cannot find extra rows); V(none) skips content.
    type: str
    choices: [full, sample, none]
    default: full
  sample_size:
    description:
      - Rows or documents per table or collection in O(content_mode=sample).
    type: int
    default: 1000
  chunk_rows:
    description:
      - Rows per hashed range in the first pass over a PostgreSQL table.
    type: int
    default: 100000
  bisect_threshold:
    description:
      - A differing range of at most this many rows is fetched (keys and row hashes) instead of split again; for MongoDB,
        the number of documents per C(_id) bucket.
    type: int
    default: 1000
  max_differences:
    description:
      - Differences listed per check (the count is always complete).
    type: int
    default: 20
  timing_queries:
    description:
      - "Queries to time on both sides. PostgreSQL: C({name, sql}). MongoDB: C({name, collection, filter, sort, limit}).
        By default, the first 100 rows or documents of each table or collection in key order."
    type: list
    elements: dict
    default: []
  timing_runs:
    description:
      - Runs of each timing query per side.
    type: int
    default: 5
  timing_max_ratio:
    description:
      - Fail the timing check of a query whose median on the target exceeds this multiple of the source's.
    type: float
  require_authentication:
    description:
      - The target must refuse a connection without a password (PostgreSQL) or without credentials (MongoDB).
    type: bool
    default: true
  require_tls:
    description:
      - The connection to the target must be encrypted (and, for MongoDB, the target must refuse plain connections).
    type: bool
    default: false
  expected_users:
    description:
      - "Users the target must have: C({name, roles: [...]}) (PostgreSQL role memberships; MongoDB roles as names or
        C({role, db})), with C(login: false) for a PostgreSQL role that needs no login and password."
    type: list
    elements: dict
    default: []
  health_checks:
    description:
      - "Application URLs that must answer after the switch: C({url, status: 200, contains: TEXT, method: GET,
        timeout: 10})."
    type: list
    elements: dict
    default: []
  report_path:
    description:
      - Write the report to this path with C(.json) and C(.md) appended (mode 0600, atomically). No report when not set.
    type: path
  scratch_database:
    description:
      - Name of the scratch database a O(source.archive) is restored into. A random C(lifeboat_validate_*) name when not set.
      - It must not exist yet on the target's server, since it is dropped after the comparison.
    type: str
seealso:
  - module: lifeboat.ops.postgresql_restore
  - module: lifeboat.ops.mongodb_restore
"""

EXAMPLES = r"""
- name: Validate a PostgreSQL migration and keep the report
  lifeboat.ops.migration_validate:
    engine: postgresql
    source:
      login_host: old-db.internal
      login_user: validator
      login_password_file: /etc/lifeboat/old-db.password
      database: journal
    target:
      login_host: 127.0.0.1
      login_user: validator
      login_password_file: /etc/lifeboat/new-db.password
      database: journal
    expected_users:
      - name: journal_app
    health_checks:
      - url: http://127.0.0.1:8000/health
        contains: ok
    report_path: /var/lib/lifeboat/reports/journal-migration

- name: Compare MongoDB Atlas with the self-hosted copy, counts may drift by 0.1 % while the app still writes
  lifeboat.ops.migration_validate:
    engine: mongodb
    source:
      login_uri: "mongodb+srv://reader@cluster0.example.mongodb.net/"
      login_password_file: /etc/lifeboat/atlas.password
      database: nightscout
    target:
      login_host: 127.0.0.1
      login_user: lifeboat_admin
      login_password_file: /etc/lifeboat/mongo.password
      database: nightscout
    count_tolerance_percent: 0.1
    required_checks: [presence, counts, indexes, security]
    report_path: /var/lib/lifeboat/reports/nightscout

- name: Check a live target against last night's archive
  lifeboat.ops.migration_validate:
    engine: postgresql
    source:
      archive: /var/backups/lifeboat/journal/journal-20261122T030000Z.pgdump.zst.age
      age_identity_files: [/root/.config/lifeboat/backup-key.txt]
    target:
      login_unix_socket: /var/run/postgresql
      login_user: postgres
      database: journal
"""

RETURN = r"""
passed:
  description: Whether every required check passed.
  returned: always
  type: bool
summary:
  description: One paragraph a person reads in ten seconds; names the failed checks and the first differing keys.
  returned: always
  type: str
failed_checks:
  description: The failed required checks as C(category:name:object).
  returned: always
  type: list
  elements: str
checks:
  description:
    - Every check with C(name), C(category), C(object), C(status) (passed, failed or error), C(passed), C(required),
      C(details), C(differences) (at most O(max_differences), each with C(kind) and C(key)), C(difference_count)
      and C(stats).
  returned: always
  type: list
  elements: dict
categories:
  description: Passed and failed checks per category.
  returned: always
  type: dict
content:
  description:
    - Work done by the content comparison, C(rows_compared), C(rows_transferred) (C(source), C(target)),
      C(chunks_hashed), C(bisections), C(seconds).
  returned: always
  type: dict
report_json:
  description: Path of the JSON report.
  returned: when O(report_path) is set and not in check mode
  type: str
report_markdown:
  description: Path of the Markdown report.
  returned: when O(report_path) is set and not in check mode
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _validate
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_validate.migration_validate_spec(), supports_check_mode=True)
    run_module(module, _validate.migration_validate)


if __name__ == "__main__":
    main()
