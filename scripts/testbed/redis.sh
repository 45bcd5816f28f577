#!/usr/bin/env bash
# Installs redis-server from Debian for the healthcheck's Redis probe test (tests/integration/test_db_probes.py),
# which starts its own server on a free loopback port and stops it by PID. No service is started here.
set -euo pipefail
# shellcheck source=scripts/testbed/lib.sh
source "$(dirname "$0")/lib.sh"
ensure_apt redis-server
