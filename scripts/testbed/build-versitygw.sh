#!/usr/bin/env bash
# Builds versitygw (an S3-compatible gateway with a POSIX backend: multipart, flexible checksums, object lock,
# versioning) from the Go module proxy for the off-site copy tests. Cached under ~/.cache/lifeboat/bin keyed by
# version, so a second run on the same machine is instant. Prints nothing but progress; the binary path is
# ~/.cache/lifeboat/bin/versitygw (a symlink to the versioned build).
set -euo pipefail

VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
export GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local
bin=$cache/bin
mkdir -p "$bin"
target=$bin/versitygw-$VERSITYGW_VERSION

if [ ! -x "$target" ]; then
  echo "building versitygw $VERSITYGW_VERSION (first run takes a few minutes)"
  # A throwaway module that requires the pinned version (as build-go-tools.sh does): `go install pkg@version`
  # asks the proxy for version lists, which it sometimes refuses here.
  work=$(mktemp -d)
  (
    cd "$work"
    go mod init lifeboat.invalid/testbed >/dev/null 2>&1
    go get "github.com/versity/versitygw@$VERSITYGW_VERSION" >/dev/null 2>&1 || go get "github.com/versity/versitygw@$VERSITYGW_VERSION"
    go build -trimpath -o "$work/versitygw" github.com/versity/versitygw/cmd/versitygw
  )
  mv "$work/versitygw" "$target.tmp" && mv "$target.tmp" "$target" && rm -rf "$work"
fi
ln -sfn "$target" "$bin/versitygw"
echo "versitygw ready: $bin/versitygw"
