#!/usr/bin/env bash
# Builds the Go test-bed tools (FerretDB, mongodump/mongorestore/bsondump) from the Go module proxy.
# Binaries are cached under ~/.cache/lifeboat/bin/<version>/ so a second run on the same machine is instant.
set -euo pipefail

FERRETDB_VERSION=${FERRETDB_VERSION:-v1.24.2}
# mongo-tools tags (100.x) are not Go semver, so a commit pseudo-version is pinned (July 2025, r100.12 line).
MONGO_TOOLS_VERSION=${MONGO_TOOLS_VERSION:-v0.0.0-20250715155915-887641268977}

cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
export GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local
# The checksum database answers 404 for mongo-tools pseudo-versions here; its dependencies are still verified.
export GONOSUMDB=github.com/mongodb/mongo-tools
bin=$cache/bin
mkdir -p "$bin"

ferret_bin=$bin/ferretdb-$FERRETDB_VERSION
# `go install pkg@version` asks the proxy for the module's version list (for deprecations), which the
# proxy here refuses; a throwaway module that requires the pinned version builds the same binary.
build_in_module() {  # build_in_module MODULE@VERSION OUTDIR PKG...
  local mod=$1 out=$2; shift 2
  local work; work=$(mktemp -d)
  (
    cd "$work"
    go mod init lifeboat.invalid/testbed >/dev/null 2>&1
    go get "$mod" >/dev/null 2>&1 || go get "$mod"
    for pkg in "$@"; do
      go build -trimpath -o "$out/$(basename "${pkg%/main}")" "$pkg"
    done
  )
  rm -rf "$work"
}
# FerretDB embeds build/version/version.txt, which its release process generates and the module zip
# lacks: a binary built straight from the module panics at start ("Invalid build/version/version.txt").
# So it is built from a writable copy of the module source with that file written.
if [ ! -x "$ferret_bin" ] || ! "$ferret_bin" --version >/dev/null 2>&1; then
  echo "building FerretDB $FERRETDB_VERSION (first run takes a few minutes)"
  work=$(mktemp -d)
  (
    cd "$work"
    go mod init lifeboat.invalid/testbed >/dev/null 2>&1
    go mod download "github.com/FerretDB/FerretDB@$FERRETDB_VERSION"
    src=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    cp -r "$src" "$work/src" && chmod -R u+w "$work/src"
    echo "$FERRETDB_VERSION" >"$work/src/build/version/version.txt"
    cd "$work/src" && go build -trimpath -o "$work/ferretdb" ./cmd/ferretdb
  )
  mv "$work/ferretdb" "$ferret_bin" && rm -rf "$work"
fi
ln -sfn "$ferret_bin" "$bin/ferretdb"

tools_dir=$bin/mongo-tools-$MONGO_TOOLS_VERSION
if [ ! -x "$tools_dir/mongorestore" ]; then
  echo "building mongo-tools $MONGO_TOOLS_VERSION (first run takes a few minutes)"
  rm -rf "$tools_dir.tmp" && mkdir -p "$tools_dir.tmp"
  build_in_module "github.com/mongodb/mongo-tools@$MONGO_TOOLS_VERSION" "$tools_dir.tmp" \
    github.com/mongodb/mongo-tools/mongodump/main \
    github.com/mongodb/mongo-tools/mongorestore/main \
    github.com/mongodb/mongo-tools/bsondump/main
  rm -rf "$tools_dir" && mv "$tools_dir.tmp" "$tools_dir"
fi
for tool in mongodump mongorestore bsondump; do ln -sfn "$tools_dir/$tool" "$bin/$tool"; done
echo "Go tools ready in $bin"
