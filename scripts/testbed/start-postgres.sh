#!/usr/bin/env bash
# Starts (or keeps) a private PostgreSQL cluster for the test bed on $LIFEBOAT_TESTBED_LISTEN:$LIFEBOAT_PG_PORT
# (default 127.0.0.1; another address, e.g. the Docker bridge's 172.17.0.1, also admits that address's subnet).
# Runs as the `postgres` OS user when started by root (initdb refuses root); TCP logins need a
# scram-sha-256 password, the socket (inside the state dir) keeps peer auth for maintenance.
# Passwords never reach a command line: they travel through 0600 files and stdin.
set -euo pipefail
# shellcheck source=scripts/testbed/lib.sh
source "$(dirname "$0")/lib.sh"

STATE=${LIFEBOAT_TESTBED_DIR:-/tmp/lifeboat-testbed}
PORT=${LIFEBOAT_PG_PORT:-25432}
LISTEN=${LIFEBOAT_TESTBED_LISTEN:-127.0.0.1}
ADMIN=${LIFEBOAT_PG_USER:-lifeboat_admin}
BINDIR=${LIFEBOAT_PG_BINDIR:-}
WAIT_SECONDS=${LIFEBOAT_TESTBED_WAIT:-60}

ensure_apt postgresql postgresql-contrib

[ -n "$BINDIR" ] || BINDIR=$(default_pg_bindir)

as_pg() {  # initdb and postgres refuse to run as root
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" -eq 0 ]; then pg_owner=postgres; else pg_owner=$(id -un); fi

data=$STATE/pg
sock=$STATE/pg-socket
log=$STATE/postgres.log
pwfile=$STATE/pg-admin.password
passfile=$STATE/pgpass   # libpq password file format, for psql/pg_dump in tests
mkdir -p "$STATE"
chmod 0755 "$STATE"      # the postgres user must be able to traverse it

# Written on every run: the address and port are this run's, whatever the cluster was first made with.
(umask 077; [ ! -s "$pwfile" ] || printf '%s:%s:*:%s:%s\n' "$LISTEN" "$PORT" "$ADMIN" "$(cat "$pwfile")" >"$passfile")

answers() {  # the server is up and our admin can log in over TCP with its password
  [ -f "$passfile" ] && "$BINDIR/pg_isready" -q -h "$LISTEN" -p "$PORT" &&
    PGPASSFILE=$passfile PGCONNECT_TIMEOUT=5 "$BINDIR/psql" -X -q -h "$LISTEN" -p "$PORT" -U "$ADMIN" \
      -d postgres -Atc 'select 1' >/dev/null 2>&1
}
if answers; then
  echo "postgres already running on $LISTEN:$PORT"
  exit 0
fi

if [ ! -f "$data/PG_VERSION" ] || [ ! -s "$pwfile" ]; then
  rm -rf "$data"
  mkdir -p "$data" "$sock"
  chown "$pg_owner" "$data" "$sock"
  chmod 0700 "$data"
  (umask 077; od -An -tx1 -N18 /dev/urandom | tr -d ' \n' >"$pwfile")
  as_pg "$BINDIR/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
    --auth-local=peer --auth-host=scram-sha-256 >"$STATE/initdb.log" 2>&1 ||
    { tail -n 20 "$STATE/initdb.log" >&2; exit 1; }
  cat >>"$data/postgresql.conf" <<EOF
# lifeboat test bed
listen_addresses = '$LISTEN'
port = $PORT
unix_socket_directories = '$sock'
password_encryption = 'scram-sha-256'
max_connections = 50
EOF
  # A throwaway cluster need not survive a power cut; LIFEBOAT_PG_DURABLE=1 keeps it honest for benchmarks.
  if [ "${LIFEBOAT_PG_DURABLE:-0}" != 1 ]; then
    printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$data/postgresql.conf"
  fi
  # initdb admits loopback only; a bridge address admits its own subnet (the test's containers), with a password.
  if [ "$LISTEN" != 127.0.0.1 ]; then
    printf 'host all all samenet scram-sha-256\n' >>"$data/pg_hba.conf"
  fi
  (umask 077; printf '%s:%s:*:%s:%s\n' "$LISTEN" "$PORT" "$ADMIN" "$(cat "$pwfile")" >"$passfile")
  fresh=1
else
  fresh=0
fi

touch "$log" && chown "$pg_owner" "$log"
if [ -f "$data/postmaster.pid" ]; then
  pid=$(head -n 1 "$data/postmaster.pid")
  # A crashed postmaster can linger as a zombie (when nothing reaps it), which pg_ctl takes for alive.
  if state=$(ps -o stat= -p "$pid" 2>/dev/null) && [[ $state != Z* ]]; then
    echo "postgres in $data is running but not answering: restarting it"
    if ! as_pg "$BINDIR/pg_ctl" -D "$data" -m fast -w -t "$WAIT_SECONDS" stop >/dev/null 2>&1; then
      echo "could not stop postgres (pid $pid); last lines of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
  else
    # Left by a server that died; the socket lock names the same dead pid.
    rm -f "$data/postmaster.pid" "$sock/.s.PGSQL.$PORT.lock"
  fi
fi
claim_port PostgreSQL "$LISTEN" "$PORT" LIFEBOAT_PG_PORT
# The address and port given now win over those the cluster was made with (a changed default, another caller).
if ! as_pg "$BINDIR/pg_ctl" -D "$data" -l "$log" -w -t "$WAIT_SECONDS" -o "-p $PORT -c listen_addresses=$LISTEN" \
    start >/dev/null 2>&1; then
  echo "postgres did not start (waited up to ${WAIT_SECONDS}s); last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
head -n 1 "$data/postmaster.pid" >"$STATE/postgres.pid"

if [ "$fresh" = 1 ]; then
  # SQL goes in on stdin, so the password shows up in neither argv nor the server log.
  { printf "CREATE ROLE %s LOGIN SUPERUSER PASSWORD '" "$ADMIN"; cat "$pwfile"; printf "';\n"; } |
    as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$PORT" -U postgres -d postgres >/dev/null
fi

if ! answers; then
  echo "postgres started but $ADMIN cannot log in on $LISTEN:$PORT; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo "postgres ready on $LISTEN:$PORT (user $ADMIN, data $data)"
