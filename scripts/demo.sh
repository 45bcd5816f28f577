#!/usr/bin/env bash
# The main job on a local default: back up the test bed's sample databases with the backup playbook,
# restore them under new names with the restore playbook, and say what was made and where.
# `make demo` runs the test bed and the seed first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${LIFEBOAT_TESTBED_DIR:-/tmp/lifeboat-testbed}
# shellcheck source=/dev/null
source "$state/env.sh"
venv=$("$root/scripts/testbed/venv.sh")
demo=${LIFEBOAT_DEMO_DIR:-$state/demo}
mkdir -p "$demo/collections/ansible_collections/lifeboat"
ln -sfn "$root" "$demo/collections/ansible_collections/lifeboat/ops"
export ANSIBLE_COLLECTIONS_PATH=$demo/collections ANSIBLE_NOCOLOR=1

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
YAML
# Restores go to new names; on a second demo run they already exist, so the demo confirms replacing them.
cat >"$demo/restore-request.yml" <<YAML
restore_items:
  - {job: journal, target_database: journal_restored, overwrite: true, recreate: true, age_identity_files: [$demo/operators-key.txt]}
  - {job: recipes, target_database: recipes_restored, overwrite: true, recreate: true, age_identity_files: [$demo/operators-key.txt]}
  - {job: nightscout, target_database: nightscout_restored, overwrite: true, drop: true, age_identity_files: [$demo/operators-key.txt]}
  - {job: research, target_database: research_restored, overwrite: true, drop: true, age_identity_files: [$demo/operators-key.txt]}
YAML

echo "== backup: ansible-playbook lifeboat.ops.backup -i $demo/inventory.yml"
"$venv/bin/ansible-playbook" lifeboat.ops.backup -i "$demo/inventory.yml"
echo "== restore: ansible-playbook lifeboat.ops.restore -i $demo/inventory.yml -e @$demo/restore-request.yml"
"$venv/bin/ansible-playbook" lifeboat.ops.restore -i "$demo/inventory.yml" -e "@$demo/restore-request.yml"

echo "== verify: ansible-playbook lifeboat.ops.verify -e backup_verify_level=restore (scratch databases, operators' key)"
"$venv/bin/ansible-playbook" lifeboat.ops.verify -i "$demo/inventory.yml" -e backup_verify_level=restore \
  -e backup_verify_select=newest -e "{\"backup_age_identity_files\": [\"$demo/operators-key.txt\"]}"

echo "== what was made"
for job in journal recipes nightscout research; do
  newest=$(find "$demo/backups/$job" -name "$job-*.manifest.json" | sort | tail -n 1)
  "$venv/bin/python" - "$newest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
a = m["archive"]
v = (m["verifications"] or [{}])[-1]
print(f"{m['job']:<11} {a['file']}  {a['size']:>9} bytes (plain {a['plain_size']}), sha256 {a['sha256'][:16]}..., "
      f"{len(m['counts'])} {'tables' if m['engine'] == 'postgresql' else 'collections'}, {m['total_count']} rows/documents, "
      f"verified: {v.get('level', 'no') if v.get('ok') else 'FAILED' if v else 'no'}")
PY
done
echo "Archives and manifests: $demo/backups/<job>/   age identity that decrypts them: $demo/operators-key.txt"
echo "Restored copies: PostgreSQL journal_restored, recipes_restored; MongoDB nightscout_restored, research_restored"
echo "Restore one by hand: see restore_commands in any *.manifest.json"
