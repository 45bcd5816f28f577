#!/usr/bin/env bash
# Creates (once) a virtual environment with ansible-navigator and ansible-builder, the tools docs/awx.md's commands
# use to build and run the execution environment (not test requirements), and prints its bin directory: put it first
# on PATH. Keyed by the tools' versions under ~/.cache/lifeboat/. ~0.01 s when it is there.
set -euo pipefail
NAVIGATOR_VERSION=26.10.0
BUILDER_VERSION=3.2.0
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
venv=$cache/ansible-navigator-$NAVIGATOR_VERSION-builder-$BUILDER_VERSION
mkdir -p "$cache"
exec 9>"$cache/.navigator.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "ansible-navigator==$NAVIGATOR_VERSION" \
    "ansible-builder==$BUILDER_VERSION" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin"
