#!/usr/bin/env bash
# Makes the Debian trixie minbase image $TRIXIE_BASE_IMAGE (scripts/testbed/images/versions.env) exist in the engine
# and prints its name: debootstrap from the machine's own Debian mirror once (about a minute), its root fs cached as a
# tarball under ~/.cache/lifeboat/images/, imported from there when the engine lacks the image. No registry is used.
# The PostgreSQL 17 image (images.sh) and the execution environment (ee.sh) build on it. ~0.1 s when it is there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/testbed/lib.sh
source "$here/lib.sh"
# shellcheck source=scripts/testbed/images/versions.env
source "$here/images/versions.env"
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
log() { echo "trixie-base.sh: $*" >&2; }

if ! docker image inspect "$TRIXIE_BASE_IMAGE" >/dev/null 2>&1; then
  mkdir -p "$cache/images"
  exec 9>"$cache/images/.trixie-base.lock"
  flock 9
  tarball=$cache/images/debian-minbase-trixie-${TRIXIE_BASE_IMAGE##*-}.tar
  if [ ! -s "$tarball" ]; then
    ensure_apt debootstrap
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d "$cache/images/rootfs.XXXXXX")
    log "debootstrap trixie from $mirror (about a minute, once)"
    debootstrap --variant=minbase trixie "$rootfs" "$mirror" >"$cache/images/debootstrap-trixie.log" 2>&1 ||
      { tail -n 20 "$cache/images/debootstrap-trixie.log" >&2; rm -rf "$rootfs"; exit 1; }
    echo "deb $mirror trixie main" >"$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages
    : >"$rootfs/etc/machine-id"
    tar -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  if ! docker image inspect "$TRIXIE_BASE_IMAGE" >/dev/null 2>&1; then
    log "importing $tarball as $TRIXIE_BASE_IMAGE"
    docker import -c 'CMD ["bash"]' "$tarball" "$TRIXIE_BASE_IMAGE" >/dev/null
  fi
fi
echo "$TRIXIE_BASE_IMAGE"
