#!/usr/bin/env bash
# Puts Prometheus' `promtool` (which checks node_exporter textfile metrics) in the tools cache, taken from
# Debian's `prometheus` package WITHOUT installing it: installing would start a Prometheus service.
# Cached as ~/.cache/lifeboat/bin/promtool-<package version>, so a second run is instant.
set -euo pipefail

cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
bin=$cache/bin
mkdir -p "$bin"

candidate() { apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '^(none)$' || true; }
refresh_package_lists() {
  [ "$(id -u)" -eq 0 ] || { echo "apt cannot fetch the prometheus package: run apt-get update as root" >&2; exit 1; }
  apt-get update -qq
}

version=$(candidate)
if [ -z "$version" ]; then
  refresh_package_lists
  version=$(candidate)
  [ -n "$version" ] || { echo "no prometheus package in the apt sources" >&2; exit 1; }
fi

target=$bin/promtool-${version//[^A-Za-z0-9.+_-]/_}
if [ ! -x "$target" ] || ! "$target" --version >/dev/null 2>&1; then
  echo "extracting promtool from Debian's prometheus $version (not installing the package)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  chmod 0777 "$work"  # apt-get download writes as the unprivileged _apt user when it can
  download() { (cd "$work" && apt-get download -qq "prometheus=$version"); }
  if ! download; then
    # Old package lists name a file the mirror no longer has: refresh them once and take the new version.
    refresh_package_lists
    version=$(candidate)
    target=$bin/promtool-${version//[^A-Za-z0-9.+_-]/_}
    download
  fi
  dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
  "$work/usr/bin/promtool" --version >/dev/null
  mv "$work/usr/bin/promtool" "$target.tmp" && mv "$target.tmp" "$target"
fi
ln -sfn "$target" "$bin/promtool"
echo "promtool ready in $bin"
