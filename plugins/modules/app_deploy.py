#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_deploy
short_description: Blue-green deploy of a Docker app with a verified backup, a health and data gate, an atomic switch and
  a rollback
version_added: 0.2.0
description:
- 'Runs one whole deploy of one app in one process that holds the app''s lock (C(STATE_DIR/APP/deploy.lock)): finds the live
  color from the state file and the running containers, dumps and verifies the app''s databases, starts the other color, runs
  the migration command, passes the gate (health and data expectations), switches the site''s upstream (C(nginx -t), graceful
  reload), watches the front door, then stops the old color and keeps it for an instant rollback.'
- 'A failed gate or watch rolls back: traffic returns if it moved, the new color is stopped and kept (named in the result),
  and with O(restore_data_on_rollback) the pre-deploy archives are restored after a migration. The task then fails with one
  line: the reason, where traffic is, what was kept (RV(history.outcome=rolled_back)).'
- 'A run refused before it changed anything (bad input, another run''s lock, a missing site, a state that does not match the
  engine, a failed pre-deploy backup, nothing to roll back) fails with one line and RV(history.outcome=refused); a run that
  stopped after it started changing things (a rollback that failed) fails with RV(history.outcome=failed).'
- 'Every run starts by putting traffic where the state file says it is (a run killed at any step may have left it
  elsewhere, or an upstream written and never loaded) and by stopping what a killed run left running; the switch is
  proven through the front door before the old color is drained and stopped, and the new release is recorded as live
  before the old color stops.'
- 'When the controller dies during a run (ansible-playbook killed), the run goes on to its end with all its gates and
  its rollback, and leaves its outcome in C(STATE_DIR/APP/unreported.json); the next run returns it in
  RV(history.unreported) with a warning.'
- Deploying the release that is already live changes nothing. A second deploy of the same app while one runs is refused; a
  lock left by a crashed run is reported in RV(history.stale_lock).
- Every run that did something leaves a history entry in C(STATE_DIR/APP/history/) and returns it.
author:
- Lifeboat Developers (@lifeboat)
requirements:
- docker (the Python SDK) on the host
- nginx with a site of M(lifeboat.ops.reverse_proxy_sites)
extends_documentation_fragment:
- ansible.builtin.action_common_attributes
- lifeboat.ops._reverse_proxy
attributes:
  check_mode:
    support: full
    details: Checks the input, the lock, the state and the image, and returns the plan of what would happen; starts and writes
      nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  app:
    description: Name of the app; it names the containers (C(APP-COLOR-SEQ)), the state directory and the lock.
    type: str
    required: true
  deploy_action:
    description: V(deploy) the release in O(image); V(rollback) goes back to the previous release, which is still on the host
      (stopped). A rollback goes back one release, once; with no previous release kept it fails (refused) and changes
      nothing.
    type: str
    default: deploy
    choices:
    - deploy
    - rollback
  image:
    description: Image of the release (present on the host, or pulled). Required with O(deploy_action=deploy).
    type: str
  release:
    description: Name of the release in the state and history; default the O(image) reference.
    type: str
  state_dir:
    description: 'Directory of the deploy state: C(APP/state.json), C(APP/deploy.lock), C(APP/history/), C(APP/backups/).'
    type: path
    default: /var/lib/lifeboat/deploy
  container_port:
    description: Port the app listens on inside its container.
    type: int
    default: 8080
  blue_port:
    description: Host port the blue color is published on (on O(bind_address)).
    type: int
    default: 8081
  green_port:
    description: Host port the green color is published on (on O(bind_address)).
    type: int
    default: 8082
  bind_address:
    description: Host address both colors are published on; the site's upstream points there.
    type: str
    default: 127.0.0.1
  environment:
    description:
    - The app's environment that is not secret (shown in results as given). Passed to the Docker engine in the API request,
      never on a command line.
    - A mapping of variable names to strings; numbers are accepted and passed as written (V(5432) becomes C("5432")). A
      string (such as a survey field C(K=V K=V), which is never split), a list, a nested mapping, a boolean or a null
      value is refused in one line that names the key, never the value.
    type: raw
    default: {}
  secret_environment:
    description:
    - The app's secret environment (passwords, tokens, from vault variables). Passed like O(environment), masked in results
      and logs; the state keeps only a keyed hash of it.
    - Checked like O(environment) (a mapping of strings or numbers); an error names the key, never the value.
    type: raw
    default: {}
  command:
    description: Command of the app's container; empty for the image's own.
    type: list
    elements: str
    default: []
  volumes:
    description: Volumes of the app's container, as the docker SDK takes them (C(NAME:/path[:ro])).
    type: list
    elements: str
    default: []
  networks:
    description: Docker networks the app's container joins (the first at creation).
    type: list
    elements: str
    default: []
  migration_command:
    description: Command (argv) run in the new container before the gate, e.g. the app's schema migration. A rollback after
      it restores the data when O(restore_data_on_rollback) is set.
    type: list
    elements: str
    default: []
  databases:
    description: 'The app''s databases: dumped and verified (level structure) before anything starts, checked against their
      data expectations at the gate, restored on a rollback when asked.'
    type: list
    elements: dict
    default: []
    suboptions:
      engine:
        description: The database engine.
        type: str
        required: true
        choices:
        - postgresql
        - mongodb
      database:
        description: Database the app uses (dumped, checked, restored).
        type: str
        required: true
      login_uri:
        description: As the dump modules' C(login_uri) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: str
      login_host:
        description: As the dump modules' C(login_host) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: str
        aliases:
        - host
      login_port:
        description: As the dump modules' C(login_port) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: int
        aliases:
        - port
      login_user:
        description: As the dump modules' C(login_user) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: str
        aliases:
        - user
      login_password:
        description: As the dump modules' C(login_password) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: str
      login_password_file:
        description: As the dump modules' C(login_password_file) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      connect_timeout:
        description: As the dump modules' C(connect_timeout) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: int
        default: 10
      login_database:
        description: As the dump modules' C(login_database) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: str
        default: admin
      auth_mechanism:
        description: As the dump modules' C(auth_mechanism) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: str
        choices:
        - SCRAM-SHA-1
        - SCRAM-SHA-256
        - MONGODB-X509
        - PLAIN
      tls:
        description: As the dump modules' C(tls) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: bool
        default: false
      tls_ca_file:
        description: As the dump modules' C(tls_ca_file) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      tls_certificate_key_file:
        description: As the dump modules' C(tls_certificate_key_file) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      tls_allow_invalid_certificates:
        description: As the dump modules' C(tls_allow_invalid_certificates) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: bool
        default: false
      tools_dir:
        description: As the dump modules' C(tools_dir) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      container:
        description: As the dump modules' C(container) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: str
      login_unix_socket:
        description: As the dump modules' C(login_unix_socket) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      ssl_mode:
        description: As the dump modules' C(ssl_mode) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: str
        choices:
        - disable
        - allow
        - prefer
        - require
        - verify-ca
        - verify-full
      ssl_ca_cert:
        description: As the dump modules' C(ssl_ca_cert) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      ssl_cert:
        description: As the dump modules' C(ssl_cert) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      ssl_key:
        description: As the dump modules' C(ssl_key) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      pg_bin_dir:
        description: As the dump modules' C(pg_bin_dir) (M(lifeboat.ops.postgresql_dump), M(lifeboat.ops.mongodb_dump)).
        type: path
      expectations:
        description: Data expectations checked at the gate (see M(lifeboat.ops.database_expect)); its baseline defaults to
          the pre-deploy archive's manifest.
        type: dict
        suboptions:
          database:
            description: The database to look at; default the entry's O(databases[].database).
            type: str
          present:
            description:
            - Tables (PostgreSQL, V(schema.table), or V(table) for V(public.table); views count too) or collections (MongoDB)
              that must exist in C(database).
            type: list
            elements: str
            default: []
          indexes:
            description:
            - Indexes that must exist. An index matches when it has the same keys in the same order (and is unique, when C(indexes[].unique)
              is asked); a partial or invalid index does not.
            type: list
            elements: dict
            default: []
            suboptions:
              'on':
                description:
                - The table or collection, named as in C(present).
                - Quote it (V('on')) or use an alias in YAML, which reads a bare C(on) as V(true).
                type: str
                required: true
                aliases:
                - table
                - collection
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
            - 'Exact rows or documents each named table or collection must at least hold, e.g. C({public.notes: 1}).'
            type: dict
            default: {}
          baseline_manifest:
            description:
            - An archive of this collection, or its manifest, of the same engine and database. Its counts are the baseline.
              Every table or collection it counted must exist and hold at least the baseline less C(max_drop_percent).
            type: path
          max_drop_percent:
            description:
            - How far below the baseline a count may fall, in percent (V(0) to V(100)); V(0) allows no fewer.
            type: float
            default: 0.0
          create_missing_indexes:
            description:
            - Create the indexes of C(indexes) that are missing, instead of failing (they are listed in C(created_indexes)).
            type: bool
            default: false
  backup_destination:
    description: Where the pre-deploy archives (and safety dumps before a restore) go; default C(STATE_DIR/APP/backups).
    type: path
  health_path:
    description: Path of the health check on the new color (a path, starting with C(/)).
    type: str
    default: /health
  health_status:
    description: HTTP statuses that pass the health check (each 100-599; at least one).
    type: list
    elements: int
    default:
    - 200
  health_body:
    description: Regular expression the health answer's body must match; empty for any.
    type: str
    default: ''
  health_max_latency_ms:
    description: A health answer slower than this does not pass.
    type: int
    default: 2000
  health_passes:
    description: Consecutive passing health answers the gate needs.
    type: int
    default: 3
  health_interval:
    description: Seconds between health probes.
    type: float
    default: 0.5
  health_timeout:
    description: Seconds the new color has to pass the gate.
    type: int
    default: 60
  site:
    description: The reverse_proxy site (M(lifeboat.ops.reverse_proxy_sites)) whose upstream the switch changes. It must exist.
    type: str
    required: true
  tunnel_config:
    description:
      - The config file of a Cloudflare tunnel (M(lifeboat.ops.cloudflared_ingress)) in front of O(site). Its ingress
        must send the site's hostname to the site's nginx (V(http://127.0.0.1:HTTP_PORT), or V(https://...) for a TLS
        site); otherwise the deploy is refused before anything starts.
      - The switch stays in nginx and the tunnel's config is never changed, because cloudflared reads a locally managed config
        only when it starts, and a restart drops the requests it carries.
    type: path
  keepalive:
    description: Idle keepalive connections to the upstream per nginx worker.
    type: int
    default: 16
  watch_probes:
    description: Requests through the front door after the switch (0 for no watch).
    type: int
    default: 20
  watch_interval:
    description: Seconds between watch probes.
    type: float
    default: 0.25
  watch_max_error_percent:
    description: Share of failed watch probes (status, body, latency) tolerated before the deploy rolls back.
    type: float
    default: 0.0
  watch_max_latency_ms:
    description: A watch probe slower than this counts as failed.
    type: int
    default: 2000
  keep_releases:
    description:
    - Releases kept on the host, the live one included (stopped containers and their images). Older ones are removed after
      a deploy, whether it succeeded or was rolled back; the previous release (the rollback target) is kept first, then
      the newest.
    - Failed releases (stopped and kept after a rollback) count like any other, so they never pile up; the one that just
      failed is spared for inspection until the next deploy, even when that makes one release more than O(keep_releases).
    type: int
    default: 2
  restore_data_on_rollback:
    description: When a rollback follows a migration, restore the pre-deploy archives (after a safety dump of the current
      data).
    type: bool
    default: false
  stop_timeout:
    description: Seconds a container has to stop before it is killed.
    type: int
    default: 10
  switch_method:
    description:
    - How traffic moves from one color to the other.
    - V(haproxy) (the default) puts one HAProxy per app between the site's nginx and the two colors and switches it
      through HAProxy's runtime API, without any reload, so that no keep-alive client connection and no open WebSocket
      is closed by a switch. The site's upstream names the switch's socket (one nginx reload, the first time); the old
      color is drained for up to O(drain_timeout) seconds before it stops. Needs the C(haproxy) package on the host.
    - V(nginx_reload) rewrites the site's upstream to the new color's port and reloads nginx, which closes idle
      keep-alive client connections (clients that send at that moment see an error).
    type: str
    choices: [haproxy, nginx_reload]
    default: haproxy
  switch_socket_dir:
    description: Directory of the switches' unix sockets (C(APP.sock), which the site's nginx connects to, and
      C(APP.admin.sock), HAProxy's runtime API, root only). With O(switch_method=haproxy).
    type: path
    default: /run/lifeboat-switch
  haproxy_binary:
    description: The HAProxy program. With O(switch_method=haproxy).
    type: path
    default: /usr/sbin/haproxy
  drain_timeout:
    description: Seconds the old color keeps the connections it carries (requests in flight, open WebSockets) after
      the switch, before it is stopped; the app closes what is still open when it stops (WebSockets with 1001).
      With O(switch_method=haproxy).
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Deploy release 2.4.1 of the journal app behind the journal site
  lifeboat.ops.app_deploy:
    app: journal
    image: registry.example.org/journal:2.4.1
    environment:
      DATABASE_URL: "{{ vault_journal_database_url }}"
    blue_port: 8081
    green_port: 8082
    migration_command: [journal, migrate]
    databases:
      - engine: postgresql
        database: journal
        container: journal-db
    site: journal
    restore_data_on_rollback: true

- name: Go back to the previous release by hand
  lifeboat.ops.app_deploy:
    app: journal
    deploy_action: rollback
    site: journal
"""

RETURN = r"""
history:
  description: The run's history entry (also written to C(STATE_DIR/APP/history/)).
  returned: always
  type: dict
  contains:
    outcome:
      description:
      - V(deployed), V(unchanged), V(would_deploy) or V(would_roll_back); V(repaired) when the wanted release was already
        live and what a killed run left was put right; V(rolled_back) for a deploy whose migration, gate
        or watch failed (traffic is back, the task fails) and for a rollback by hand that succeeded; V(refused) when the run
        was refused before it changed anything (the task fails); V(failed) when a rollback failed or the run stopped after
        it started changing things (the task fails).
      type: str
    reason:
      description: Why the run did not deploy (one line), for the outcomes V(refused), V(rolled_back) and V(failed).
      type: str
    pruned:
      description: Releases removed after a failed deploy because they were beyond O(keep_releases).
      type: list
      elements: str
    release:
      description: The release of the run.
      type: str
    image_id:
      description: The image's id (its digest in the engine).
      type: str
    container:
      description: The new color's container (kept, stopped, after a rollback).
      type: str
    steps:
      description: Each step with its start, C(seconds) and C(ok).
      type: list
      elements: dict
    backups:
      description: The pre-deploy archives (archive, manifest, counts, verified level).
      type: list
      elements: dict
    gate:
      description: The gate's health and data results.
      type: dict
    switch:
      description: The switch (C(method), C(color), C(upstream), C(changed)), its C(proof) through the front door, and
        C(seconds_from_gate), the time from the gate passing to all traffic switched.
      type: dict
    reconcile:
      description: What the run put right before it started (traffic back on the live color, a switch started,
        nginx reloaded, containers a killed run left stopped or removed).
      type: dict
    finish:
      description: The old color's drain (C(seconds), C(open_after_drain)) and the releases removed beyond
        O(keep_releases).
      type: dict
    unreported:
      description: The outcome of an earlier run whose ansible-playbook died before it ended (app, action, outcome,
        reason, history file), reported once by the next run.
      type: dict
    orphaned:
      description: True when this run's ansible-playbook was gone by its end (its outcome is then also left in
        C(STATE_DIR/APP/unreported.json)).
      type: bool
    watch:
      description: Probes, errors and the slowest answer of the watch.
      type: dict
    rollback:
      description: What the rollback did (traffic returned, kept container, restored archives).
      type: dict
    stale_lock:
      description: The record of a crashed earlier run that left its lock (PID, step), when there was one.
      type: dict
  sample: {"outcome": "deployed", "release": "journal:2.4.1", "container": "journal-green-7"}
plan:
  description: What the run would do (check mode), or why it did nothing.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _deploy
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_deploy.app_deploy_spec(), supports_check_mode=True,
                           **_deploy.APP_DEPLOY_RULES)
    run_module(module, _deploy.app_deploy)


if __name__ == "__main__":
    main()
