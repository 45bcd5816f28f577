# Shared by the test bed scripts (sourced, not run).
# shellcheck shell=bash

newest_pg_bindir() {  # the bin directory of the newest PostgreSQL installed from Debian's packages
  printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1
}

default_pg_bindir() {  # PostgreSQL 15 (the version the tests are written for) when installed, else the newest
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then echo /usr/lib/postgresql/15/bin; else newest_pg_bindir; fi
}

ensure_apt() {  # ensure_apt PKG...: installs the missing ones (a warm run costs one dpkg-query); output on stderr
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || { echo "missing packages ${missing[*]}: install them as root" >&2; exit 1; }
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Stale or missing package lists make the first try fail: refresh them then, not on every install.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
}

# The test bed's fixed ports lie below the kernel's ephemeral range (32768-60999 on Linux): a port inside it can be
# held first by any client connection of the machine (seen: FerretDB's 57218 taken under load on a fresh machine).
claim_port() {  # claim_port WHAT HOST PORT VARIABLE: fails, naming the port and how to choose another, unless free
  local what=$1 host=$2 port=$3 variable=$4 low high
  read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { low=32768; high=60999; }
  if [ "$port" -ge "$low" ] && [ "$port" -le "$high" ]; then
    echo "note: $variable=$port ($what) lies in the ephemeral port range $low-$high: a client connection may hold it" >&2
  fi
  if ! python3 - "$host" "$port" <<'PY'
import socket, sys
probe = socket.socket()
probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT leftovers do not count
try:
    probe.bind((sys.argv[1], int(sys.argv[2])))
except OSError as exc:
    sys.exit(1)
PY
  then
    echo "cannot listen on $host:$port for $what: the port is taken (see: ss -tanp 'sport = :$port'); set" \
      "$variable to a free port below $low" >&2
    exit 1
  fi
}

debian_mirror() {  # the machine's own Debian mirror (the one apt uses), so that no other host is contacted
  local mirror
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(http[^ ]*\/debian\)\/* .*/\1/p' /etc/apt/sources.list 2>/dev/null |
    head -n 1)
  echo "${mirror:-http://deb.debian.org/debian}"
}

# The demo's Docker app (scripts/demo.sh): containers and volumes with fixed names, each labelled with the test bed
# state dir that made it, so that only that test bed's `down` removes them.
# shellcheck disable=SC2034  # read by demo.sh, which sources this file
DEMO_PROJECT=lifeboat-demo
DEMO_STATE_LABEL=lifeboat.demo.state
DEMO_CONTAINERS=(lifeboat-demo-app lifeboat-demo-db)  # the app first: it writes into its volume
DEMO_VOLUMES=(lifeboat-demo-db-data lifeboat-demo-app-data lifeboat-demo-app-data-restored)

remove_demo_app() {  # remove_demo_app STATE: the demo's containers and volumes that STATE's demo made, by name
  local state=$1 name
  if ! command -v docker >/dev/null || ! timeout 10 docker info >/dev/null 2>&1; then return 0; fi
  for name in "${DEMO_CONTAINERS[@]}"; do
    [ "$(docker container inspect --format "{{index .Config.Labels \"$DEMO_STATE_LABEL\"}}" "$name" 2>/dev/null)" = \
      "$state" ] || continue
    docker rm --force --volumes "$name" >/dev/null && echo "demo container $name removed"
  done
  for name in "${DEMO_VOLUMES[@]}"; do
    [ "$(docker volume inspect --format "{{index .Labels \"$DEMO_STATE_LABEL\"}}" "$name" 2>/dev/null)" = \
      "$state" ] || continue
    docker volume rm "$name" >/dev/null && echo "demo volume $name removed"
  done
}
