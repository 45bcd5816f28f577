#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it. The molecule scenarios (Docker containers, servers of their
# own on the bridge, their own state dir and ports) mostly wait on containers, so they run beside the checks and
# the integration tests instead of after them; their output is printed when they end. Every suite always runs.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
logs=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-ci.XXXXXX")
trap 'rm -rf "$logs"' EXIT

start=$SECONDS
# What both sides would otherwise install or build at the same time (apt's lock, one Go build): once, first.
# images.sh: the container test bed's images for the integration suite and Docker Compose v2 (build-compose.sh: one
# Go build of ~5 min on a fresh machine, cached under ~/.cache/lifeboat by version; ~0.2 s when they are there).
# ee.sh: the execution environment image (ansible-builder; cached under a key of its inputs, ~1 s when there,
# ~90 s when the key changed); navigator.sh: ansible-navigator for docs/awx.md's commands (a venv, ~20 s once).
# fleet-image.sh: the SSH fleet's host image (systemd + sshd; test_fleet.py, bench_fleet.py; ~0.1 s when there).
echo "== setup"
if ! { bash scripts/testbed/packages.sh && bash scripts/testbed/build-go-tools.sh && bash scripts/testbed/build-versitygw.sh &&
  bash scripts/testbed/build-pebble.sh >/dev/null && bash scripts/testbed/get-promtool.sh &&
  bash scripts/testbed/venv.sh >/dev/null && bash scripts/testbed/docker.sh >/dev/null &&
  bash scripts/testbed/images.sh >/dev/null && bash scripts/testbed/collections.sh >/dev/null &&
  bash scripts/testbed/redis.sh && bash scripts/testbed/ee.sh >/dev/null && bash scripts/testbed/navigator.sh >/dev/null &&
  bash scripts/testbed/fleet-image.sh >/dev/null; }; then
  echo "setup failed"
  exit 1
fi
echo "== setup: done in $((SECONDS - start)) s"
make --no-print-directory molecule >"$logs/molecule.log" 2>&1 &
molecule_pid=$!

declare -A results
for suite in sanity lint unit integration; do
  echo "== $suite"
  suite_start=$SECONDS
  if make --no-print-directory "$suite"; then results[$suite]=passed; else results[$suite]=failed; fi
  echo "== $suite: ${results[$suite]} in $((SECONDS - suite_start)) s"
done

if wait "$molecule_pid"; then results[molecule]=passed; else results[molecule]=failed; fi
echo "== molecule (ran beside the others)"
cat "$logs/molecule.log"
echo "== molecule: ${results[molecule]}"

passed=0 failed=0
for suite in sanity lint unit integration molecule; do
  if [ "${results[$suite]}" = passed ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $suite"; fi
done
echo "make test took $((SECONDS - start)) s"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
