#!/usr/bin/env bash
# Brings the whole test bed up (idempotent: servers already running and answering are kept) and writes
# $LIFEBOAT_TESTBED_DIR/env.sh, which tests, the demo and benchmarks source.
set -euo pipefail
# shellcheck source=scripts/testbed/lib.sh
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
export LIFEBOAT_TESTBED_DIR=${LIFEBOAT_TESTBED_DIR:-/tmp/lifeboat-testbed}
export LIFEBOAT_PG_PORT=${LIFEBOAT_PG_PORT:-25432}
export LIFEBOAT_PG_USER=${LIFEBOAT_PG_USER:-lifeboat_admin}
export LIFEBOAT_MONGO_PORT=${LIFEBOAT_MONGO_PORT:-27517}
export LIFEBOAT_MONGO_NOAUTH_PORT=${LIFEBOAT_MONGO_NOAUTH_PORT:-27518}
export LIFEBOAT_MONGO_USER=${LIFEBOAT_MONGO_USER:-lifeboat_admin}
# The servers' address: loopback unless a test needs them reachable from its containers (e.g. 172.17.0.1).
export LIFEBOAT_TESTBED_LISTEN=${LIFEBOAT_TESTBED_LISTEN:-127.0.0.1}
STATE=$LIFEBOAT_TESTBED_DIR
tools_bin=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/bin

bash "$here/packages.sh"
LIFEBOAT_PG_BINDIR=${LIFEBOAT_PG_BINDIR:-$(default_pg_bindir)}
export LIFEBOAT_PG_BINDIR

bash "$here/build-go-tools.sh"
bash "$here/get-promtool.sh"
bash "$here/start-postgres.sh"
bash "$here/start-ferretdb.sh"

# Written last and atomically: a present env.sh means both servers answered.
{
  echo "# lifeboat test bed, written by scripts/testbed/up.sh; source it."
  for var in LIFEBOAT_TESTBED_DIR LIFEBOAT_TESTBED_LISTEN LIFEBOAT_PG_PORT LIFEBOAT_PG_USER LIFEBOAT_PG_BINDIR \
    LIFEBOAT_MONGO_PORT LIFEBOAT_MONGO_NOAUTH_PORT LIFEBOAT_MONGO_USER; do
    printf 'export %s=%q\n' "$var" "${!var}"
  done
  printf 'export LIFEBOAT_PG_HOST=%q\n' "$LIFEBOAT_TESTBED_LISTEN"
  printf 'export LIFEBOAT_PG_PASSWORD_FILE=%q\n' "$STATE/pg-admin.password"
  printf 'export LIFEBOAT_PG_PASSFILE=%q\n' "$STATE/pgpass"
  printf 'export LIFEBOAT_PG_SOCKET_DIR=%q\n' "$STATE/pg-socket"
  printf 'export LIFEBOAT_MONGO_HOST=%q\n' "$LIFEBOAT_TESTBED_LISTEN"
  printf 'export LIFEBOAT_MONGO_AUTH_DB=admin\n'
  printf 'export LIFEBOAT_MONGO_PASSWORD_FILE=%q\n' "$STATE/mongo-admin.password"
  printf 'export LIFEBOAT_TOOLS_BIN=%q\n' "$tools_bin"
  # shellcheck disable=SC2016  # written for env.sh to expand when sourced
  printf 'case ":$PATH:" in *":$LIFEBOAT_TOOLS_BIN:"*) ;; *) export PATH="$LIFEBOAT_TOOLS_BIN:$PATH" ;; esac\n'
} >"$STATE/env.sh.tmp"
mv "$STATE/env.sh.tmp" "$STATE/env.sh"
echo "test bed up: source $STATE/env.sh"
