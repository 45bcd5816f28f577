#!/usr/bin/env bash
# Makes a Docker engine answer and a local systemd base image exist, for the molecule scenarios.
#   1. installs Debian's docker.io and debootstrap when missing (root only);
#   2. starts dockerd (setsid, outlives this script) when `docker info` does not answer;
#   3. builds the image $LIFEBOAT_SYSTEMD_IMAGE (default lifeboat/debian-systemd:bookworm-<version>) from
#      Debian packages with debootstrap when the engine lacks it. No registry is reachable here: nothing is
#      pulled. The root file system tarball is cached under ~/.cache/lifeboat/images/, so an engine whose
#      images are gone re-imports it in seconds instead of running debootstrap again (about a minute).
# Prints the image name on stdout (everything else goes to stderr). Idempotent; ~0.1 s when all is there.
set -euo pipefail
# shellcheck source=scripts/testbed/lib.sh
source "$(dirname "$0")/lib.sh"

# Bump to rebuild the image (the packages inside it change with it).
IMAGE_VERSION=1
SUITE=${LIFEBOAT_SYSTEMD_SUITE:-bookworm}
IMAGE=${LIFEBOAT_SYSTEMD_IMAGE:-lifeboat/debian-systemd:$SUITE-$IMAGE_VERSION}
# python3-apt: `apt` in check mode; ca-certificates: https package sources; procps, iproute2: debugging.
PACKAGES=python3,python3-apt,python3-yaml,systemd,systemd-sysv,dbus,ca-certificates,procps,iproute2
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/images
WAIT_SECONDS=${LIFEBOAT_TESTBED_WAIT:-60}
log() { echo "docker.sh: $*" >&2; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! engine_answers; then
  ensure_apt docker.io
  if ! engine_answers; then
    [ "$(id -u)" -eq 0 ] || { log "the Docker engine does not answer and only root can start it"; exit 1; }
    log "starting dockerd (log: /var/log/lifeboat-dockerd.log)"
    # setsid+nohup: the engine outlives this script and CI's process group, like a system service would.
    setsid nohup dockerd >/var/log/lifeboat-dockerd.log 2>&1 </dev/null &
    deadline=$((SECONDS + WAIT_SECONDS))
    until engine_answers; do
      if [ $SECONDS -ge $deadline ]; then
        log "dockerd did not answer within ${WAIT_SECONDS}s; last lines of /var/log/lifeboat-dockerd.log:"
        tail -n 20 /var/log/lifeboat-dockerd.log >&2
        exit 1
      fi
      sleep 0.5
    done
  fi
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  mkdir -p "$cache"
  tarball=$cache/debian-systemd-$SUITE-$IMAGE_VERSION.tar
  exec 9>"$cache/.image.lock"
  flock 9
  if [ ! -s "$tarball" ]; then
    ensure_apt debootstrap
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    log "debootstrap $SUITE from $mirror (about a minute, once)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      { tail -n 20 "$cache/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
    # The container's apt uses the same mirror; a container needs no getty and no machine id of ours.
    echo "deb $mirror $SUITE main" >"$rootfs/etc/apt/sources.list"
    rm -f "$rootfs/etc/machine-id" "$rootfs/var/lib/dbus/machine-id"
    touch "$rootfs/etc/machine-id"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages
    systemctl --root="$rootfs" mask getty@tty1.service console-getty.service systemd-logind.service \
      systemd-remount-fs.service >/dev/null 2>&1 || true
    tar -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  log "importing $tarball as $IMAGE"
  docker import -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' "$tarball" "$IMAGE" >/dev/null
fi
echo "$IMAGE"
