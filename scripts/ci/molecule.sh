#!/usr/bin/env bash
# Runs the roles' molecule scenarios (extensions/molecule/) in systemd containers, against the built and
# installed collection. Sets up everything itself (CI=true, no stdin):
#   - the Docker engine and the local systemd image (scripts/testbed/docker.sh; no registry is used),
#   - community.docker and ansible.posix for the docker driver (scripts/testbed/collections.sh),
#   - for backup_schedule: a PostgreSQL and a FerretDB of this run's own, listening on the Docker bridge's
#     gateway address (the containers' way to the host) with their own state dir, seeded, and stopped after.
#
# Usage: scripts/ci/molecule.sh [SCENARIO...]   (default: every scenario; MOLECULE_COMMAND=converge etc. to debug)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$("$root/scripts/testbed/venv.sh")
export PATH=$venv/bin:$PATH
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(backup_schedule healthcheck cloudflare_tunnel reverse_proxy)
command=${MOLECULE_COMMAND:-test}

LIFEBOAT_SYSTEMD_IMAGE=$("$root/scripts/testbed/docker.sh")
export LIFEBOAT_SYSTEMD_IMAGE
community=$("$root/scripts/testbed/collections.sh")

work=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-molecule.XXXXXX")
export LIFEBOAT_TESTBED_DIR=${LIFEBOAT_MOLECULE_TESTBED_DIR:-/tmp/lifeboat-molecule}
cleanup() {
  if [ "${LIFEBOAT_MOLECULE_KEEP_SERVERS:-0}" != 1 ]; then
    bash "$root/scripts/testbed/down.sh" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The collection as a user gets it: built, then installed (the scenarios use it by FQCN).
export ANSIBLE_COLLECTIONS_PATH=$work/collections:$community
ansible-galaxy collection build --force --output-path "$work/build" "$root" >/dev/null
ansible-galaxy collection install --offline --no-deps -p "$work/collections" "$work"/build/lifeboat-ops-*.tar.gz >/dev/null
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ANSIBLE_NOCOLOR=1 NO_COLOR=1 ANSIBLE_FORCE_COLOR=0
# The secret part of the scenarios' webhook URLs, new for every run.
LIFEBOAT_WEBHOOK_TOKEN=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
export LIFEBOAT_WEBHOOK_TOKEN

for scenario in "${scenarios[@]}"; do
  if [ "$scenario" = backup_schedule ] && [ -z "${LIFEBOAT_PG_HOST:-}" ]; then
    # Reachable from the containers, not from anywhere else: the bridge's gateway address, ports of our own.
    # (the engine's IPAM config may leave Gateway empty: docker0's own address is the gateway then).
    LIFEBOAT_TESTBED_LISTEN=$(docker network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
    [ -n "$LIFEBOAT_TESTBED_LISTEN" ] ||
      LIFEBOAT_TESTBED_LISTEN=$(ip -4 -o addr show dev docker0 | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -n 1)
    [ -n "$LIFEBOAT_TESTBED_LISTEN" ] || { echo "molecule.sh: cannot find the Docker bridge's address" >&2; exit 1; }
    export LIFEBOAT_TESTBED_LISTEN LIFEBOAT_PG_PORT=${LIFEBOAT_MOLECULE_PG_PORT:-25632}
    export LIFEBOAT_MONGO_PORT=${LIFEBOAT_MOLECULE_MONGO_PORT:-27717}
    export LIFEBOAT_MONGO_NOAUTH_PORT=$((LIFEBOAT_MONGO_PORT + 1))
    bash "$root/scripts/testbed/up.sh" >/dev/null
    # shellcheck source=/dev/null
    source "$LIFEBOAT_TESTBED_DIR/env.sh"
    "$venv/bin/python" "$root/scripts/testbed/seed.py" --pg-rows 200 --mongo-docs 300 >/dev/null 2>&1 ||
      "$venv/bin/python" "$root/scripts/testbed/seed.py" --pg-rows 200 --mongo-docs 300
  fi
  if [ "$scenario" = reverse_proxy ]; then  # Pebble runs inside the scenario's container
    LIFEBOAT_PEBBLE_BIN=$(bash "$root/scripts/testbed/build-pebble.sh")
    export LIFEBOAT_PEBBLE_BIN
  fi
  echo "== molecule $command -s $scenario"
  start=$SECONDS
  (cd "$root" && molecule "$command" -s "$scenario") 2>&1 | tee "$work/$scenario.log"
  # Diffs are on (ansible.cfg [diff] always): no password or webhook token may show in anything Ansible printed.
  secrets=$work/secrets
  : >"$secrets"
  for file in "${LIFEBOAT_PG_PASSWORD_FILE:-}" "${LIFEBOAT_MONGO_PASSWORD_FILE:-}"; do
    if [ -n "$file" ] && [ -s "$file" ]; then { cat "$file"; echo; } >>"$secrets"; fi
  done
  echo "$LIFEBOAT_WEBHOOK_TOKEN" >>"$secrets"
  sed -i '/^$/d' "$secrets"  # an empty pattern would match every line
  found=$(grep --count --fixed-strings --file="$secrets" "$work/$scenario.log" || true)
  if [ "$found" != 0 ]; then
    echo "molecule.sh: a password or the webhook token shows on $found line(s) of the $scenario output" >&2
    exit 1
  fi
  echo "== molecule $command -s $scenario: ok in $((SECONDS - start)) s, $(wc -l <"$work/$scenario.log") lines of output, no secret in them"
done
