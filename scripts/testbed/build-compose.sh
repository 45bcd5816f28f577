#!/usr/bin/env bash
# Builds Docker Compose v2 from the Go module proxy and installs it as the docker CLI plugin of the test bed's own
# DOCKER_CONFIG (never the user's ~/.docker). The binary is cached under ~/.cache/lifeboat/bin keyed by version, so
# a second run on the same machine is instant; a cold build takes about 4-5 minutes on 2 cores.
#   bash scripts/testbed/build-compose.sh [DOCKER_CONFIG]   (default $LIFEBOAT_DOCKER_CONFIG or ~/.cache/lifeboat/docker-config)
# Prints the DOCKER_CONFIG directory on its last line: `DOCKER_CONFIG=$(... | tail -1) docker compose version`.
set -euo pipefail

COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
export GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local
bin=$cache/bin
config=${1:-${LIFEBOAT_DOCKER_CONFIG:-$cache/docker-config}}
mkdir -p "$bin"
target=$bin/docker-compose-$COMPOSE_VERSION
exec 9>"$bin/.docker-compose.lock"
flock 9  # another run (a test worker, images.sh) may be building it: wait for it, then find it there

if [ ! -x "$target" ] || ! "$target" version >/dev/null 2>&1; then
  echo "building Docker Compose $COMPOSE_VERSION (first run takes about 5 minutes)" >&2
  started=$(date +%s)
  work=$(mktemp -d)
  (
    cd "$work"
    go mod init lifeboat.invalid/compose >/dev/null 2>&1
    # `go install github.com/docker/compose/v2/cmd@VERSION` is refused: compose's go.mod has exclude lines, which
    # only a main module may carry. Ours repeats them (the go-spew and go-difflib pseudo-versions compose avoids).
    cat >>go.mod <<'EOF'

exclude (
	github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc
	github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2
)
EOF
    go get "github.com/docker/compose/v2@$COMPOSE_VERSION" >/dev/null 2>&1 || go get "github.com/docker/compose/v2@$COMPOSE_VERSION"
    go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
      -o "$work/docker-compose" github.com/docker/compose/v2/cmd
  ) >&2
  mv "$work/docker-compose" "$target.tmp" && mv "$target.tmp" "$target" && rm -rf "$work"
  echo "built Docker Compose $COMPOSE_VERSION in $(( $(date +%s) - started )) s" >&2
fi
ln -sfn "$target" "$bin/docker-compose"
# The docker CLI finds plugins in $DOCKER_CONFIG/cli-plugins: the test bed's own config directory.
mkdir -p "$config/cli-plugins"
ln -sfn "$target" "$config/cli-plugins/docker-compose"
[ -f "$config/config.json" ] || echo '{}' >"$config/config.json"
[ -z "${started:-}" ] || echo "Docker Compose $COMPOSE_VERSION ready: DOCKER_CONFIG=$config docker compose" >&2
echo "$config"
