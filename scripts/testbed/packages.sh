#!/usr/bin/env bash
# Installs the Debian packages that the unit tests, the test bed and the demo call as real tools
# (a fresh machine has none of them; a warm run costs one dpkg-query per package).
set -euo pipefail
# shellcheck source=scripts/testbed/lib.sh
source "$(dirname "$0")/lib.sh"
ensure_apt postgresql postgresql-contrib zstd age pigz nginx haproxy wrk
