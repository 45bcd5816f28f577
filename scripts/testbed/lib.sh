# Shared by the test bed scripts (sourced, not run).
# shellcheck shell=bash

newest_pg_bindir() {  # the bin directory of the newest PostgreSQL installed from Debian's packages
  printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1
}
