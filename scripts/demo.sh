#!/usr/bin/env bash
# The main job on a local default: back up the test bed's sample databases and a Docker app with the backup
# playbook, restore them under new names with the restore playbook, and say what was made and where.
# The Docker app is compose project lifeboat-demo, started with real Docker Compose v2: a PostgreSQL 17 container
# (newer than the host's pg_dump 15: the dump runs inside it) with its data in a named volume, and an app container
# that writes files into a named volume and is labelled to be stopped while that volume is read. One job
# {name: lifeboat-demo, compose_project: lifeboat-demo} backs up both; the restore makes database diary_restored in
# the container and volume lifeboat-demo-app-data-restored.
# `make demo` runs the test bed, the seed and scripts/testbed/images.sh first.
#   scripts/demo.sh          run the demo (again: containers that run are reused, restores replace their copies)
#   scripts/demo.sh --down   remove the demo's containers and volumes and its directory; the test bed stays
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/testbed/lib.sh
source "$root/scripts/testbed/lib.sh"
state=${LIFEBOAT_TESTBED_DIR:-/tmp/lifeboat-testbed}
demo=${LIFEBOAT_DEMO_DIR:-$state/demo}
if [ "${1:-}" = --down ]; then
  remove_demo_app "$state"
  rm -rf "$demo"
  echo "removed $demo"
  exit 0
fi
# shellcheck source=/dev/null
source "$state/env.sh"
# shellcheck source=scripts/testbed/images/versions.env
source "$root/scripts/testbed/images/versions.env"
venv=$("$root/scripts/testbed/venv.sh")
mkdir -p "$demo/collections/ansible_collections/lifeboat"
ln -sfn "$root" "$demo/collections/ansible_collections/lifeboat/ops"
export ANSIBLE_COLLECTIONS_PATH=$demo/collections ANSIBLE_NOCOLOR=1

# --- The Docker app: a real compose project (Docker Compose v2, the test bed's CLI plugin), reused while it runs ----
# The test bed's own DOCKER_CONFIG holds the compose plugin (scripts/testbed/build-compose.sh builds it once).
DOCKER_CONFIG=$("$root/scripts/testbed/build-compose.sh" | tail -n 1)
export DOCKER_CONFIG
compose() { docker compose --project-name "$DEMO_PROJECT" --file "$demo/app/docker-compose.yml" "$@"; }
wait_for() {  # wait_for WHAT COMMAND...: until the command succeeds (60 s at most)
  local what=$1 deadline=$((SECONDS + 60))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "$what did not get ready within 60 s" >&2; exit 1; }
    sleep 0.5
  done
}

echo "== the Docker app: compose project $DEMO_PROJECT ($(docker compose version --short))"
"$root/scripts/testbed/images.sh" >/dev/null  # `make demo` built them already; ~0.2 s then
for name in "${DEMO_CONTAINERS[@]}"; do  # made by `docker run` (an older demo): compose makes its own, same volumes
  made=$(docker container inspect --format \
    "{{index .Config.Labels \"$DEMO_STATE_LABEL\"}} {{index .Config.Labels \"com.docker.compose.config-hash\"}}" \
    "$name" 2>/dev/null || true)
  [ "$made" != "$state " ] || docker rm --force "$name" >/dev/null
done
mkdir -p "$demo/app"
# Fixed names (container_name, volume name:) so that the jobs, the restore items and `--down` name them plainly. The
# state label lets `--down` (and make testbed-down) remove only what this test bed made.
cat >"$demo/app/docker-compose.yml" <<YAML
name: $DEMO_PROJECT
services:
  db:
    image: $PG17_IMAGE
    container_name: lifeboat-demo-db
    # The superuser's password is only for TCP logins, which the demo does not make (the dumps run inside, on the
    # socket): a random one from compose's environment, never in an argv or this file.
    environment: [POSTGRES_USER=diary, POSTGRES_DB=diary, POSTGRES_PASSWORD]
    volumes: [db-data:/var/lib/postgresql/data]
    labels: {$DEMO_STATE_LABEL: "$state"}
  app:
    image: $APP_IMAGE
    container_name: lifeboat-demo-app
    depends_on: [db]
    volumes: [app-data:/data]
    labels: {lifeboat.stop-during-backup: "true", $DEMO_STATE_LABEL: "$state"}
volumes:
  db-data: {name: lifeboat-demo-db-data, labels: {$DEMO_STATE_LABEL: "$state"}}
  app-data: {name: lifeboat-demo-app-data, labels: {$DEMO_STATE_LABEL: "$state"}}
YAML
# The password is made once and kept (0600): compose recreates a container whose environment changed, and a new
# password would not open the data directory's old one.
if [ ! -s "$demo/app/postgres.password" ]; then
  (umask 077 && head -c 18 /dev/urandom | base64 >"$demo/app/postgres.password")
fi
POSTGRES_PASSWORD=$(cat "$demo/app/postgres.password") compose up --detach --quiet-pull 2>&1 |
  grep -v -e "^ *Container .* Running$" -e "^ *Volume .* Created$" || true
# The restore's target, made empty here (compose makes only the volumes a service mounts) with the labels `--down`
# looks for.
docker volume inspect lifeboat-demo-app-data-restored >/dev/null 2>&1 ||
  docker volume create --label "com.docker.compose.project=$DEMO_PROJECT" --label "$DEMO_STATE_LABEL=$state" \
    lifeboat-demo-app-data-restored >/dev/null
# The real server over TCP (the first start's initdb runs one on the socket only), and the app's files written.
wait_for lifeboat-demo-db docker exec lifeboat-demo-db pg_isready --quiet --host=127.0.0.1 --dbname=diary
wait_for lifeboat-demo-app sh -c 'docker logs lifeboat-demo-app 2>&1 | grep -q "app-writer: ready"'
# Sample data, once: 365 diary entries and a tag for each.
docker exec -i lifeboat-demo-db psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --username=diary --dbname=diary <<'SQL'
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS entries (id serial PRIMARY KEY, written_on date NOT NULL, mood smallint, body text NOT NULL);
CREATE TABLE IF NOT EXISTS tags (entry_id int NOT NULL REFERENCES entries (id), tag text NOT NULL);
INSERT INTO entries (written_on, mood, body)
  SELECT date '2026-01-01' + i - 1, i % 5 + 1, 'day ' || i || ': ' || repeat('ran, read, wrote. ', i % 40 + 1)
  FROM generate_series(1, 365) AS i WHERE NOT EXISTS (SELECT FROM entries);
INSERT INTO tags SELECT id, (ARRAY['work', 'family', 'run', 'garden'])[id % 4 + 1] FROM entries
  WHERE NOT EXISTS (SELECT FROM tags);
SQL
echo "lifeboat-demo-db: PostgreSQL $(docker exec lifeboat-demo-db postgres --version | awk '{print $3}') in the container, \
host client: $(pg_dump --version 2>/dev/null | awk '{print $3}' || echo none)"

# Operators keep the age identity; the host only knows the public key.
[ -f "$demo/operators-key.txt" ] || age-keygen -o "$demo/operators-key.txt" 2>/dev/null
recipient=$(age-keygen -y "$demo/operators-key.txt")

pg_login="login_host: $LIFEBOAT_PG_HOST, login_port: $LIFEBOAT_PG_PORT, login_user: $LIFEBOAT_PG_USER, login_password_file: $LIFEBOAT_PG_PASSWORD_FILE"
mongo_login="login_host: $LIFEBOAT_MONGO_HOST, login_port: $LIFEBOAT_MONGO_PORT, login_user: $LIFEBOAT_MONGO_USER, login_password_file: $LIFEBOAT_MONGO_PASSWORD_FILE"
cat >"$demo/inventory.yml" <<YAML
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: $venv/bin/python
      backup_root: $demo/backups
      backup_encryption_recipients: [$recipient]
      backup_jobs:
        - {name: journal, engine: postgresql, database: journal, $pg_login}
        - {name: recipes, engine: postgresql, database: recipes, $pg_login}
        - {name: nightscout, engine: mongodb, database: nightscout, $mongo_login}
        - {name: research, engine: mongodb, database: research, $mongo_login}
        # The whole Docker app: docker_app_info finds a dump job per database container and a files job for the
        # other volumes (lifeboat-demo-db and lifeboat-demo-files, each in backup_root/NAME).
        - {name: $DEMO_PROJECT, compose_project: $DEMO_PROJECT}
YAML
# Restores go to new names; on a second demo run they already exist, so the demo confirms replacing them.
cat >"$demo/restore-request.yml" <<YAML
restore_items:
  - {job: journal, target_database: journal_restored, overwrite: true, recreate: true, age_identity_files: [$demo/operators-key.txt]}
  - {job: recipes, target_database: recipes_restored, overwrite: true, recreate: true, age_identity_files: [$demo/operators-key.txt]}
  - {job: nightscout, target_database: nightscout_restored, overwrite: true, drop: true, age_identity_files: [$demo/operators-key.txt]}
  - {job: research, target_database: research_restored, overwrite: true, drop: true, age_identity_files: [$demo/operators-key.txt]}
  # The compose project's parts are no jobs of the inventory: the items say their engine (and container).
  - {job: $DEMO_PROJECT-db, engine: postgresql, container: lifeboat-demo-db, target_database: diary_restored,
     overwrite: true, recreate: true, age_identity_files: [$demo/operators-key.txt]}
  - {job: $DEMO_PROJECT-files, engine: files, volume_map: {lifeboat-demo-app-data: lifeboat-demo-app-data-restored},
     overwrite: true, safety_dump_dir: $demo/before-restore, age_identity_files: [$demo/operators-key.txt]}
YAML

app_started_before=$(docker container inspect --format '{{.State.StartedAt}}' lifeboat-demo-app)
echo "== backup: ansible-playbook lifeboat.ops.backup -i $demo/inventory.yml"
"$venv/bin/ansible-playbook" lifeboat.ops.backup -i "$demo/inventory.yml"
echo "== restore: ansible-playbook lifeboat.ops.restore -i $demo/inventory.yml -e @$demo/restore-request.yml"
"$venv/bin/ansible-playbook" lifeboat.ops.restore -i "$demo/inventory.yml" -e "@$demo/restore-request.yml"

echo "== verify: ansible-playbook lifeboat.ops.verify -e backup_verify_level=restore (scratch databases, operators' key)"
"$venv/bin/ansible-playbook" lifeboat.ops.verify -i "$demo/inventory.yml" -e backup_verify_level=restore \
  -e backup_verify_select=newest -e "{\"backup_age_identity_files\": [\"$demo/operators-key.txt\"]}"

echo "== what was made"
for job in journal recipes nightscout research "$DEMO_PROJECT-db" "$DEMO_PROJECT-files"; do
  newest=$(find "$demo/backups/$job" -name "$job-*.manifest.json" | sort | tail -n 1)
  "$venv/bin/python" - "$newest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
a = m["archive"]
v = (m["verifications"] or [{}])[-1]
parts, items = {"postgresql": ("tables", "rows"), "mongodb": ("collections", "documents"),
                "files": ("volumes/paths", "files")}[m["engine"]]
print(f"{m['job']:<19} {a['file']}  {a['size']:>9} bytes (plain {a['plain_size']}), sha256 {a['sha256'][:16]}..., "
      f"{len(m['counts'])} {parts}, {m['total_count']} {items}, "
      f"verified: {v.get('level', 'no') if v.get('ok') else 'FAILED' if v else 'no'}")
container = m["server"].get("container")
if container:
    print(f"{'':<19} dumped inside container {container['name']} ({container['image']}) by {m['tool']['version']}")
if m["server"].get("stopped_containers"):
    print(f"{'':<19} {', '.join(m['counts'])}; stopped while read: {', '.join(m['server']['stopped_containers'])}")
PY
done

echo "== the Docker app after backup and restore"
app_started_after=$(docker container inspect --format '{{.State.StartedAt}}' lifeboat-demo-app)
if [ "$(docker container inspect --format '{{.State.Running}}' lifeboat-demo-app)" != true ] ||
  [ "$app_started_after" = "$app_started_before" ]; then
  echo "lifeboat-demo-app was not stopped and started again by the backup (started at $app_started_before," \
    "now $app_started_after)" >&2
  exit 1
fi
# The app's downtime for this backup, as the files archive's manifest records it (first stop to last start).
downtime=$("$venv/bin/python" -c 'import glob, json, sys
newest = sorted(glob.glob(sys.argv[1] + "/*.manifest.json"))[-1]
print(json.load(open(newest))["server"].get("downtime_seconds"))' "$demo/backups/$DEMO_PROJECT-files")
echo "lifeboat-demo-app: stopped while its volume was read for $downtime s, running again (started" \
  "${app_started_before%.*}Z, again ${app_started_after%.*}Z)"
count_rows() {  # count_rows DATABASE: "entries N, tags N" inside the container
  docker exec lifeboat-demo-db psql --no-psqlrc --tuples-only --no-align --username=diary --dbname="$1" \
    --command="SELECT 'entries ' || (SELECT count(*) FROM entries) || ', tags ' || (SELECT count(*) FROM tags)"
}
echo "lifeboat-demo-db: database diary ($(count_rows diary)), restored as diary_restored ($(count_rows diary_restored))"
# The restored volume beside the original, read by a throwaway container: every entry that is no folder (files,
# links) with its type, mode, owner, size and link target, and every regular file's sha256, equal.
# shellcheck disable=SC2016  # expanded by the bash inside the container
compare='entries() { (cd "$1" && find . ! -type d -printf "%p %y %m %U:%G %s %l\n" | sort &&
                      find . -type f -print0 | sort -z | xargs -0 sha256sum); }
original=$(entries /original) restored=$(entries /restored)
[ "$original" = "$restored" ] || { diff <(echo "$original") <(echo "$restored") >&2; exit 1; }
find /restored ! -type d | wc -l'
compared=$(docker run --rm --network none --entrypoint bash \
  --mount type=volume,source=lifeboat-demo-app-data,target=/original,readonly \
  --mount type=volume,source=lifeboat-demo-app-data-restored,target=/restored,readonly \
  "$APP_IMAGE" -c "$compare")
echo "volume lifeboat-demo-app-data-restored: $compared files and links, each equal to lifeboat-demo-app-data's" \
  "(type, mode, owner, size, link target, sha256)"

echo "Archives and manifests: $demo/backups/<job>/   age identity that decrypts them: $demo/operators-key.txt"
echo "Restored copies: PostgreSQL journal_restored, recipes_restored; MongoDB nightscout_restored, research_restored;"
echo "  in the Docker app: database diary_restored in container lifeboat-demo-db, volume lifeboat-demo-app-data-restored"
echo "Restore one by hand: see restore_commands in any *.manifest.json"
echo "Remove the Docker app: scripts/demo.sh --down (or make testbed-down, which stops the test bed too)"
