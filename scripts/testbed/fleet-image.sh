#!/usr/bin/env bash
# Builds the SSH fleet's host image when the engine lacks it and prints its name: the test bed's systemd image
# (scripts/testbed/docker.sh) with sshd, pg_dump 15, psycopg, zstd and age from Debian's packages
# (scripts/testbed/images/fleet-host). Saved under ~/.cache/lifeboat/images/ and loaded from there when the engine
# lost it. Used by tests/integration/test_fleet.py and bench/bench_fleet.py. Idempotent; ~0.1 s when it is there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/testbed/images/versions.env
source "$here/images/versions.env"
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/images
base=$(bash "$here/docker.sh")
image=$FLEET_HOST_IMAGE
if ! docker image inspect "$image" >/dev/null 2>&1; then
  mkdir -p "$cache"
  exec 9>"$cache/.fleet-image.lock"
  flock 9
  saved=$cache/$(echo "$image" | tr '/:' '--').docker.tar
  if [ -s "$saved" ]; then
    docker load -i "$saved" >/dev/null
  elif ! docker image inspect "$image" >/dev/null 2>&1; then
    echo "fleet-image.sh: building $image on $base" >&2
    docker build --pull=false --build-arg "BASE=$base" --tag "$image" "$here/images/fleet-host" >"$cache/fleet-host.log" 2>&1 ||
      { tail -n 30 "$cache/fleet-host.log" >&2; exit 1; }
    docker save -o "$saved.part" "$image" && mv "$saved.part" "$saved"
  fi
fi
echo "$image"
