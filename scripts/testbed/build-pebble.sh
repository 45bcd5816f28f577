#!/usr/bin/env bash
# Builds Pebble, Let's Encrypt's ACME test server, for the reverse proxy's issuance tests, and prints its path.
# Cached under ~/.cache/lifeboat/bin/pebble-<version> (GOMODCACHE/GOCACHE beside it), so a warm run is instant.
set -euo pipefail
PEBBLE_VERSION=${PEBBLE_VERSION:-v2.10.3}
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
export GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local
bin=$cache/bin
mkdir -p "$bin"
pebble_bin=$bin/pebble-$PEBBLE_VERSION
if [ ! -x "$pebble_bin" ]; then
  echo "building Pebble $PEBBLE_VERSION" >&2
  work=$(mktemp -d)
  GOBIN=$work go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION" >&2
  mv "$work/pebble" "$pebble_bin" && rm -rf "$work"
fi
ln -sfn "$pebble_bin" "$bin/pebble"
echo "$bin/pebble"
