#!/usr/bin/env bash
# Starts (or keeps) two FerretDB v1 instances with the SQLite backend for the test bed, on
# $LIFEBOAT_TESTBED_LISTEN (default 127.0.0.1):
#   $LIFEBOAT_MONGO_PORT         with (experimental) SCRAM authentication and an admin user
#   $LIFEBOAT_MONGO_NOAUTH_PORT  without authentication
# The setup password reaches FerretDB through FERRETDB_SETUP_PASSWORD (its flags all have FERRETDB_*
# environment equivalents), never through argv.
set -euo pipefail
# shellcheck source=scripts/testbed/lib.sh
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
STATE=${LIFEBOAT_TESTBED_DIR:-/tmp/lifeboat-testbed}
PORT=${LIFEBOAT_MONGO_PORT:-27517}
NOAUTH_PORT=${LIFEBOAT_MONGO_NOAUTH_PORT:-27518}
LISTEN=${LIFEBOAT_TESTBED_LISTEN:-127.0.0.1}
ADMIN=${LIFEBOAT_MONGO_USER:-lifeboat_admin}
WAIT_SECONDS=${LIFEBOAT_TESTBED_WAIT:-60}
bin=${LIFEBOAT_FERRETDB_BIN:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/bin/ferretdb}

[ -x "$bin" ] || bash "$here/build-go-tools.sh"
if ! "$bin" --version >/dev/null 2>&1; then
  echo "$bin does not run; its first lines of output:" >&2
  "$bin" --version 2>&1 | head -n 5 >&2 || true
  exit 1
fi
mkdir -p "$STATE"
pwfile=$STATE/mongo-admin.password

# Authenticated ping through FerretDB's own `ping` command (it reads the same FERRETDB_* variables).
ping_auth() {
  FERRETDB_LISTEN_ADDR=$LISTEN:$PORT FERRETDB_SETUP_DATABASE=admin FERRETDB_SETUP_USERNAME=$ADMIN \
    FERRETDB_SETUP_PASSWORD=$(cat "$pwfile") FERRETDB_TEST_ENABLE_NEW_AUTH=true \
    FERRETDB_SETUP_TIMEOUT=3s FERRETDB_LOG_LEVEL=ERROR "$bin" ping >/dev/null 2>&1
}
# Without authentication there is no login to try. Our own process must have logged that it listens
# (so a stranger on the port does not count), and the port must accept a TCP connection.
ping_noauth() {
  grep -q "Listening on TCP $LISTEN:$NOAUTH_PORT" "$STATE/ferretdb-noauth.log" 2>/dev/null &&
    (exec 3<>"/dev/tcp/$LISTEN/$NOAUTH_PORT") 2>/dev/null
}

alive() {  # alive PIDFILE: the process exists and is not a zombie (nothing may reap it here)
  local state
  [ -f "$1" ] && state=$(ps -o stat= -p "$(cat "$1")" 2>/dev/null) && [[ $state != Z* ]]
}

stop_instance() {  # stop_instance NAME: only a live process that is still our ferretdb (pids get reused)
  local pidfile=$STATE/ferretdb-$1.pid pid
  alive "$pidfile" || return 0
  pid=$(cat "$pidfile")
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "ferretdb.*$STATE/ferret-$1/" || return 0
  kill "$pid"
  for _ in $(seq 50); do alive "$pidfile" || return 0; sleep 0.1; done
  kill -9 "$pid"
}

start_instance() {  # start_instance NAME PORT PING_FUNCTION SETUP_PASSWORD_FILE|"" [extra flags...]
  local name=$1 port=$2 ping=$3 secret=$4; shift 4
  local pidfile=$STATE/ferretdb-$name.pid log=$STATE/ferretdb-$name.log
  if alive "$pidfile" && $ping; then
    echo "ferretdb ($name) already running on $LISTEN:$port"
    return 0
  fi
  stop_instance "$name"  # running but not answering: start over
  claim_port "FerretDB ($name)" "$LISTEN" "$port" "$([ "$name" = auth ] && echo LIFEBOAT_MONGO_PORT || echo LIFEBOAT_MONGO_NOAUTH_PORT)"
  mkdir -p "$STATE/ferret-$name/data" "$STATE/ferret-$name/state"
  chmod 0700 "$STATE/ferret-$name" "$STATE/ferret-$name/data" "$STATE/ferret-$name/state"
  # setsid+nohup: the server outlives this script and the CI step's process group.
  FERRETDB_SETUP_PASSWORD=$([ -z "$secret" ] || cat "$secret") setsid nohup "$bin" --handler=sqlite \
    --sqlite-url="file:$STATE/ferret-$name/data/" --state-dir="$STATE/ferret-$name/state" \
    --listen-addr="$LISTEN:$port" --debug-addr=- --telemetry=disable "$@" \
    >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until $ping; do
    if ! alive "$pidfile" || [ $SECONDS -ge $deadline ]; then
      alive "$pidfile" && why="did not answer on $LISTEN:$port within ${WAIT_SECONDS}s" || why="exited"
      echo "ferretdb ($name) $why; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "ferretdb ($name) ready on $LISTEN:$port"
}

# A new password only goes with a new database: the setup user is created once, when `admin` is missing.
if [ ! -s "$pwfile" ]; then
  stop_instance auth
  rm -rf "$STATE/ferret-auth"
  (umask 077; od -An -tx1 -N18 /dev/urandom | tr -d ' \n' >"$pwfile")
fi

start_instance auth "$PORT" ping_auth "$pwfile" \
  --test-enable-new-auth --setup-database=admin --setup-username="$ADMIN"
start_instance noauth "$NOAUTH_PORT" ping_noauth ""
