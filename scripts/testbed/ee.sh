#!/usr/bin/env bash
# Builds the execution environment of examples/execution-environment/ with ansible-builder 3 on the test bed's own
# Debian trixie minbase image (scripts/testbed/trixie-base.sh) and the test bed's Go builds of the MongoDB tools
# (scripts/testbed/build-go-tools.sh); no registry is used. Prints the image name.
# The image is tagged lifeboat/ee:<key>, the key a hash of what goes into it besides the collection's code: the EE
# definition, the collection's meta/execution-environment.yml and the files it names, this script, the base image,
# the MongoDB tools' build, ansible-builder's version. It is saved under ~/.cache/lifeboat/images/ and loaded from
# there when the engine lost it, so CI builds it again only when one of those changes (a cold build takes about 90 s
# on 2 cores once the base and the tools are there: apt and PyPI from inside the build). The collection inside is
# the one of the build; runs take the checkout's collection from their project, as AWX does with a project's
# collections/requirements.yml.
# Also prints nothing else on stdout; logs go to stderr. LIFEBOAT_EE_REBUILD=1 builds even when cached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/testbed/lib.sh
source "$here/lib.sh"
BUILDER_VERSION=3.2.0
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
log() { echo "ee.sh: $*" >&2; }

bash "$here/docker.sh" >/dev/null  # the engine
base=$(bash "$here/trixie-base.sh")
bash "$here/build-go-tools.sh" >&2
tools=$(dirname "$(readlink -f "$cache/bin/mongodump")")  # .../mongo-tools-<version>

# ansible-builder in a venv of its own (it is not a test requirement), keyed by its version.
builder_venv=$cache/ansible-builder-$BUILDER_VERSION
if [ ! -f "$builder_venv/.complete" ]; then
  rm -rf "$builder_venv"
  python3 -m venv "$builder_venv" >&2
  "$builder_venv/bin/pip" install -q --disable-pip-version-check "ansible-builder==$BUILDER_VERSION" >&2
  touch "$builder_venv/.complete"
fi

definition=$root/examples/execution-environment
key=$( (cd "$root" && cat examples/execution-environment/execution-environment.yml \
  examples/execution-environment/requirements.yml meta/execution-environment.yml meta/ee-requirements.txt \
  meta/ee-bindep.txt scripts/testbed/ee.sh
  echo "$base" "$(docker image inspect -f '{{.Id}}' "$base")" "$tools" "$BUILDER_VERSION") | sha256sum | cut -c1-12)
image=lifeboat/ee:$key
saved=$cache/images/lifeboat-ee-$key.docker.tar
if [ "${LIFEBOAT_EE_REBUILD:-0}" != 1 ]; then
  if docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
  if [ -s "$saved" ] && docker load --input "$saved" >/dev/null && docker image inspect "$image" >/dev/null 2>&1; then
    log "loaded $image from $saved"
    echo "$image"
    exit 0
  fi
fi

mkdir -p "$cache/images"
exec 9>"$cache/images/.ee.lock"
flock 9
work=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-ee.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -a "$definition/execution-environment.yml" "$definition/requirements.yml" "$work/"
venv=$(bash "$here/venv.sh")
"$venv/bin/ansible-galaxy" collection build --force --output-path "$work/built" "$root" >/dev/null
mv "$work"/built/lifeboat-ops-*.tar.gz "$work/lifeboat-ops.tar.gz"
mkdir -p "$work/mongo-tools"
cp -L "$tools/mongodump" "$tools/mongorestore" "$tools/bsondump" "$work/mongo-tools/"
# Without their symbol tables and debug information (a third of their size; Go's runtime does not read them).
if command -v strip >/dev/null; then strip "$work"/mongo-tools/*; fi
# The CA certificates this machine added to its trust store (a TLS-inspecting proxy's, if any): the build's pip and
# apt reach the network through the same way as this machine.
mkdir -p "$work/ca"
find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$work/ca/" \; 2>/dev/null || true
sed -i "s|name: lifeboat/debian-minbase:trixie-1|name: $base|" "$work/execution-environment.yml"
start=$SECONDS
log "building $image on $base (ansible-builder $BUILDER_VERSION; log: $work/build.log)"
if ! (cd "$work" && "$builder_venv/bin/ansible-builder" build -f execution-environment.yml -c context -t "$image" \
  --container-runtime docker -v 3 >"$work/build.log" 2>&1); then
  tail -n 40 "$work/build.log" >&2
  log "ansible-builder build failed"
  exit 1
fi
# The build stages' images (the classic builder keeps them, untagged): a GB or so per build otherwise.
docker image prune --force --filter label=lifeboat.ee.stage=build >/dev/null
docker save --output "$saved.part" "$image" && mv "$saved.part" "$saved"
log "$image built in $((SECONDS - start)) s, saved as $saved"
echo "$image"
