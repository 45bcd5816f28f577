#!/usr/bin/env bash
# Puts the community collections the molecule scenarios need (community.docker for the docker driver,
# ansible.posix) in ~/.cache/lifeboat/collections-ansible-<version>/ansible_collections and prints that
# folder's parent path. Galaxy is unreachable here: they are unpacked from the PyPI `ansible` wheel, fetched
# once with `pip download` (the same wheel bench/bench_dump.py uses). ~0 s once cached.
set -euo pipefail
ANSIBLE_PYPI=${LIFEBOAT_ANSIBLE_PYPI:-12.3.0}
COLLECTIONS=(community/docker community/library_inventory_filtering_v1 ansible/posix)
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
target=$cache/collections-ansible-$ANSIBLE_PYPI
if [ -f "$target/.complete" ]; then
  echo "$target"
  exit 0
fi
python=$("$root/scripts/testbed/venv.sh")/bin/python
wheel=$cache/pypi/ansible-$ANSIBLE_PYPI-py3-none-any.whl
if [ ! -s "$wheel" ]; then
  mkdir -p "$cache/pypi"
  "$python" -m pip download -q --disable-pip-version-check --no-deps "ansible==$ANSIBLE_PYPI" -d "$cache/pypi" >&2
fi
partial=$(mktemp -d "$cache/collections.XXXXXX")
"$python" - "$wheel" "$partial" "${COLLECTIONS[@]}" <<'PY'
import sys, zipfile
wheel, target, *names = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    members = [m for m in archive.namelist() if any(m.startswith(f"ansible_collections/{n}/") for n in names)]
    archive.extractall(target, members)
PY
touch "$partial/.complete"
rm -rf "$target"
mv "$partial" "$target"
echo "$target"
