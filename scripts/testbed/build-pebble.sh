#!/usr/bin/env bash
# Builds Pebble, Let's Encrypt's ACME test server, for the reverse proxy's tests, and prints its path.
# A static binary (it also runs inside the molecule containers), cached under ~/.cache/lifeboat/bin keyed by
# version, with the module's own test certificates for its HTTPS API beside it (pebble-certs-<version>/:
# localhost/cert.pem, localhost/key.pem and their CA pebble.minica.pem).
set -euo pipefail
PEBBLE_VERSION=${PEBBLE_VERSION:-v2.10.3}
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
export GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
bin=$cache/bin
mkdir -p "$bin"
pebble_bin=$bin/pebble-$PEBBLE_VERSION-static
certs=$bin/pebble-certs-$PEBBLE_VERSION
if [ ! -x "$pebble_bin" ] || [ ! -f "$certs/pebble.minica.pem" ]; then
  echo "building Pebble $PEBBLE_VERSION" >&2
  work=$(mktemp -d)
  GOBIN=$work go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION" >&2
  src=$GOMODCACHE/github.com/letsencrypt/pebble/v2@$PEBBLE_VERSION/test/certs
  rm -rf "$certs.tmp" && mkdir -p "$certs.tmp/localhost"
  cp "$src/pebble.minica.pem" "$certs.tmp/" && cp "$src/localhost/cert.pem" "$src/localhost/key.pem" "$certs.tmp/localhost/"
  rm -rf "$certs" && mv "$certs.tmp" "$certs"
  mv "$work/pebble" "$pebble_bin" && rm -rf "$work"
fi
ln -sfn "$pebble_bin" "$bin/pebble"
ln -sfn "$certs" "$bin/pebble-certs"
echo "$bin/pebble"
