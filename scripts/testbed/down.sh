#!/usr/bin/env bash
# Stops the test bed's servers (only the processes it started, by their pid files), removes the demo's containers
# and volumes that this test bed's demo made (by name and label, see lib.sh), and removes its state dir.
set -euo pipefail
# shellcheck source=scripts/testbed/lib.sh
source "$(dirname "$0")/lib.sh"

STATE=${LIFEBOAT_TESTBED_DIR:-/tmp/lifeboat-testbed}
case "$STATE" in /|"") echo "refusing to remove '$STATE'" >&2; exit 1 ;; esac
remove_demo_app "$STATE"  # the demo's containers and volumes, even when the state dir is gone already
[ -d "$STATE" ] || { echo "nothing to stop: $STATE does not exist"; exit 0; }

running() {  # running PID: exists and is not a zombie (here nothing may reap our orphans)
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

for name in auth noauth; do
  pidfile=$STATE/ferretdb-$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  # Only a live process that is still our ferretdb: a pid file can outlive its process and the pid be reused.
  if running "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "ferretdb.*$STATE/ferret-$name/"; then
    kill "$pid"
    for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then kill -9 "$pid"; fi
  fi
  echo "ferretdb ($name) stopped"
done

pid=$(head -n 1 "$STATE/pg/postmaster.pid" 2>/dev/null || true)
# Skip pg_ctl for a server that died (gone, or a zombie nobody reaped): it would wait for it in vain.
if [ -n "$pid" ] && running "$pid"; then
  bindir=${LIFEBOAT_PG_BINDIR:-/usr/lib/postgresql/15/bin}
  [ -x "$bindir/pg_ctl" ] || bindir=$(newest_pg_bindir)
  if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); else as_pg=(); fi
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$STATE/pg" -m fast -w -t 30 stop >/dev/null 2>&1 ||
    echo "warning: pg_ctl stop failed (see $STATE/postgres.log)" >&2
  echo "postgres stopped"
fi

rm -rf "$STATE"
echo "removed $STATE"
