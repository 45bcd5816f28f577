#!/usr/bin/env bash
# Installs the Debian packages that the unit tests, the test bed and the demo call as real tools
# (a fresh machine has none of them; a warm run costs one dpkg-query per package).
# wrk: the deploy tests' and bench_deploy.py's keep-alive load (tests/integration/wrk_load.py); haproxy: the deploy
# switch without a reload (the tests start their own haproxy on a private config and loopback ports).
set -euo pipefail
# shellcheck source=scripts/testbed/lib.sh
source "$(dirname "$0")/lib.sh"
ensure_apt postgresql postgresql-contrib zstd age pigz nginx wrk haproxy

# Debian's haproxy package enables a system service. Its shipped /etc/haproxy/haproxy.cfg has a global and a
# defaults section and no frontend, listen or bind line, so that service (where systemd runs it at all; in a
# container policy-rc.d keeps it stopped) listens on no port, only on its admin socket /run/haproxy/admin.sock.
# Say so when a machine's config was changed to listen somewhere: the tests never use that haproxy.
if grep -Eq '^[[:space:]]*(frontend|listen|bind)([[:space:]]|$)' /etc/haproxy/haproxy.cfg 2>/dev/null; then
  echo "packages.sh: note: /etc/haproxy/haproxy.cfg has a frontend, listen or bind line: the system haproxy" \
    "may listen on a port (the test bed does not use it)" >&2
fi
