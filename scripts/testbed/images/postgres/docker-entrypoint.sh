#!/usr/bin/env bash
# The official postgres image's start, for what the test bed needs. On the first start (an empty $PGDATA, which a
# named volume may hold): initdb as POSTGRES_USER (default postgres), its password from POSTGRES_PASSWORD
# (required unless POSTGRES_HOST_AUTH_METHOD=trust), listen_addresses='*', pg_hba: local (socket) trust, host
# (TCP, 127.0.0.1 inside included) scram-sha-256 for all; then POSTGRES_DB (default: the user) and
# /docker-entrypoint-initdb.d/*.sql|*.sh. Then postgres runs in the foreground as the postgres user.
# The password is read from the environment by psql itself (\getenv): it is in no argv, no file, no output.
set -Eeuo pipefail

if [ "${1:0:1}" = - ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

fail() { echo "docker-entrypoint.sh: $*" >&2; exit 1; }

initialize() {
  export POSTGRES_USER=${POSTGRES_USER:-postgres}
  export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
  local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    fail "POSTGRES_PASSWORD is not set: give the superuser a password, or set POSTGRES_HOST_AUTH_METHOD=trust"
  fi
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS holds several arguments, as in the official image
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth" \
    --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >/dev/null
  printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

  # A server on the socket only while the roles and databases are made: nobody reaches it over TCP yet.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses='' -p 5432" --wait --silent start >/dev/null
  local psql=(psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres)
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    "${psql[@]}" >/dev/null <<'SQL'
\getenv password POSTGRES_PASSWORD
ALTER ROLE CURRENT_USER PASSWORD :'password';
SQL
  fi
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" >/dev/null <<'SQL'
\getenv database POSTGRES_DB
CREATE DATABASE :"database";
SQL
  fi
  local script
  for script in /docker-entrypoint-initdb.d/*; do
    case $script in
      *.sql) "${psql[@]}" --dbname="$POSTGRES_DB" --file="$script" >/dev/null ;;
      *.sh) # shellcheck source=/dev/null
        source "$script" ;;
      *) [ ! -e "$script" ] || echo "docker-entrypoint.sh: ignoring $script" >&2 ;;
    esac
  done
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop >/dev/null
  echo "docker-entrypoint.sh: database cluster initialized in $PGDATA" >&2
}

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  initialize
fi
exec "$@"
