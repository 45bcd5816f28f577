#!/usr/bin/env bash
# Creates (once) and prints the path of the Python virtual environment the tests, demo and benchmarks use.
# It lives under ~/.cache, keyed by the requirements' hash, so CI's fresh clones reuse it on the same machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
req=$root/tests/requirements.txt
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
key=$( (python3 --version; cat "$req") | sha256sum | cut -c1-12)
venv=$cache/venv-$key
mkdir -p "$cache"
# Several scripts may ask at once: one creates the venv, the others wait for it.
exec 9>"$cache/.venv.lock"
flock 9
if [ ! -x "$venv/bin/ansible-playbook" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  # Debian's own python3 needs python3-venv for `python3 -m venv` (pyenv builds have it).
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2; }
  fi
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv"
