#!/usr/bin/env bash
# Starts FerretDB like the official mongo image starts mongod: data in /data/db (a volume), listening on
# 0.0.0.0:27017, and with MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD set, authentication on and that
# user created in `admin` on the first start (FerretDB's experimental auth: --test-enable-new-auth with its
# --setup-* options). Every option goes through FerretDB's FERRETDB_* environment variables, the password
# included: it is in no argv and no file. A FERRETDB_* variable given to the container wins.
set -Eeuo pipefail

if [ "${1:0:1}" = - ]; then set -- ferretdb "$@"; fi

if [ "$1" = ferretdb ] && [ "$(id -u)" = 0 ]; then
  mkdir -p /data/db /var/lib/ferretdb
  chown mongodb:mongodb /data/db /var/lib/ferretdb
  exec setpriv --reuid=mongodb --regid=mongodb --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = ferretdb ]; then
  export FERRETDB_HANDLER=${FERRETDB_HANDLER:-sqlite} FERRETDB_SQLITE_URL=${FERRETDB_SQLITE_URL:-file:/data/db/}
  export FERRETDB_LISTEN_ADDR=${FERRETDB_LISTEN_ADDR:-0.0.0.0:27017}
  export FERRETDB_STATE_DIR=${FERRETDB_STATE_DIR:-/var/lib/ferretdb} FERRETDB_TELEMETRY=${FERRETDB_TELEMETRY:-disable}
  export FERRETDB_DEBUG_ADDR=${FERRETDB_DEBUG_ADDR:--}
  if [ -n "${MONGO_INITDB_ROOT_USERNAME:-}" ] || [ -n "${MONGO_INITDB_ROOT_PASSWORD:-}" ]; then
    if [ -z "${MONGO_INITDB_ROOT_USERNAME:-}" ] || [ -z "${MONGO_INITDB_ROOT_PASSWORD:-}" ]; then
      echo "docker-entrypoint.sh: set both MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD, or neither" >&2
      exit 1
    fi
    export FERRETDB_TEST_ENABLE_NEW_AUTH=true FERRETDB_SETUP_DATABASE=admin
    export FERRETDB_SETUP_USERNAME=$MONGO_INITDB_ROOT_USERNAME FERRETDB_SETUP_PASSWORD=$MONGO_INITDB_ROOT_PASSWORD
  fi
fi
exec "$@"
