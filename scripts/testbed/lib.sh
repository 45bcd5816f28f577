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

debian_mirror() {  # the machine's own Debian mirror (the one apt uses), so that no other host is contacted
  local mirror
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(http[^ ]*\/debian\)\/* .*/\1/p' /etc/apt/sources.list 2>/dev/null |
    head -n 1)
  echo "${mirror:-http://deb.debian.org/debian}"
}
