#!/usr/bin/env bash
# Builds the container test bed's images when the Docker engine lacks them, and prints their names (one a line):
#   lifeboat/postgres:17-trixie-N  PostgreSQL 17 from Debian trixie, started like the official postgres image
#                                  (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; data in /var/lib/postgresql/data)
#   lifeboat/ferretdb:1.24-N       FerretDB with the real mongodump/mongorestore/bsondump inside, started like the
#                                  official mongo image (MONGO_INITDB_ROOT_USERNAME/PASSWORD; data in /data/db)
#   lifeboat/app-writer:N          an app that fills the volume on /data with files, then sleeps
#   lifeboat/deploy-app:N          an HTTP app whose /health checks its PostgreSQL database (the deploy tests)
# and Docker Compose v2 (scripts/testbed/build-compose.sh: ~/.cache/lifeboat/docker-config/cli-plugins).
# Names and versions: scripts/testbed/images/versions.env (bump one to rebuild); build inputs: the folders beside
# it. No registry is reachable, so nothing is pulled: scripts/testbed/docker.sh gives the engine and the bookworm
# base, the trixie base is a debootstrap minbase (scripts/testbed/trixie-base.sh), the Go tools come from
# scripts/testbed/build-go-tools.sh. Each built image is saved under ~/.cache/lifeboat/images/ and loaded from
# there when the engine lost it (seconds instead of minutes). Idempotent; ~0.2 s when all is there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/testbed/lib.sh
source "$here/lib.sh"
# shellcheck source=scripts/testbed/images/versions.env
source "$here/images/versions.env"
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
log() { echo "images.sh: $*" >&2; }

# The engine, and the bookworm image the FerretDB and app images build on.
BOOKWORM_IMAGE=$(bash "$here/docker.sh")
# Docker Compose v2 as the CLI plugin of the test bed's own DOCKER_CONFIG (built once, cached by version): the demo
# and the tests start real compose projects.
bash "$here/build-compose.sh" >/dev/null
images=("$PG17_IMAGE" "$FERRETDB_IMAGE" "$APP_IMAGE" "$DEPLOY_APP_IMAGE")
if docker image inspect "${images[@]}" >/dev/null 2>&1; then
  printf '%s\n' "${images[@]}"
  exit 0
fi

mkdir -p "$cache/images"
exec 9>"$cache/images/.testbed-images.lock"
flock 9  # another run may be building the same images: wait for it, then find them there
work=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

saved() { echo "$cache/images/$(echo "$1" | tr '/:' '--').docker.tar"; }  # where `docker save` keeps an image

build() {  # build IMAGE FOLDER BASE: docker build of scripts/testbed/images/FOLDER (plus what $work/FOLDER holds)
  local image=$1 folder=$2 base=$3 context=$work/$2
  mkdir -p "$context"
  cp -a "$here/images/$folder/." "$context/"
  log "building $image on $base"
  # --pull=false: the base is a local image; a registry would only make the build wait and fail.
  docker build --pull=false --build-arg "BASE=$base" --tag "$image" "$context" >"$work/$folder.log" 2>&1 ||
    { tail -n 30 "$work/$folder.log" >&2; log "docker build of $image failed"; exit 1; }
}

trixie_base() { bash "$here/trixie-base.sh" >/dev/null; }  # debootstrap once, then its cached tarball

build_pg17() { trixie_base && build "$PG17_IMAGE" postgres "$TRIXIE_BASE_IMAGE"; }

build_ferretdb() {
  bash "$here/build-go-tools.sh" >&2
  mkdir -p "$work/ferretdb"
  local tool
  for tool in ferretdb mongodump mongorestore bsondump; do
    cp -L "$cache/bin/$tool" "$work/ferretdb/$tool"  # the binaries, not the cache's symlinks to them
  done
  build "$FERRETDB_IMAGE" ferretdb "$BOOKWORM_IMAGE"
}

build_app() { build "$APP_IMAGE" app-writer "$BOOKWORM_IMAGE"; }

build_deploy_app() { build "$DEPLOY_APP_IMAGE" deploy-app "$BOOKWORM_IMAGE"; }

ensure() {  # ensure IMAGE BUILD_FUNCTION: in the engine already, or loaded from the cache, or built and saved
  local image=$1 how=$2 tarball
  tarball=$(saved "$image")
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  if [ -s "$tarball" ]; then
    log "loading $image from $tarball"
    docker load --input "$tarball" >/dev/null && docker image inspect "$image" >/dev/null 2>&1 && return 0
    log "$tarball did not hold $image: building it"
  fi
  local start=$SECONDS
  "$how"
  docker save --output "$tarball.part" "$image" && mv "$tarball.part" "$tarball"
  log "$image built in $((SECONDS - start)) s, saved as $tarball"
}

ensure "$PG17_IMAGE" build_pg17
ensure "$FERRETDB_IMAGE" build_ferretdb
ensure "$APP_IMAGE" build_app
ensure "$DEPLOY_APP_IMAGE" build_deploy_app
printf '%s\n' "${images[@]}"
