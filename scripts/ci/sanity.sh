#!/usr/bin/env bash
# Runs `ansible-test sanity` on the collection, offline.
#
# Usage: scripts/ci/sanity.sh [extra ansible-test sanity options, e.g. --test pylint]
# Exit code: non-zero when any sanity test fails (the failures are printed).
#
# What it takes care of:
# - ansible-test must run from an `ansible_collections/<ns>/<name>` tree: a per-run temp dir holds
#   `ansible_collections/lifeboat/ops` -> this checkout (a symlink), and ANSIBLE_TEST_CONTENT_ROOT
#   names that symlinked path (os.getcwd() would resolve the link and lose the layout).
# - ansible-test bootstraps pip into each virtual environment it makes with a get-pip script from a
#   host that is unreachable here. An offline stand-in is written to ~/.ansible/test/cache/ (the path
#   ansible-test looks at first) that installs pip from a wheel fetched from PyPI with `pip download`.
# - ansible-test sees the files git lists as tracked or untracked-but-not-ignored; ignored files
#   (.gitignore) are invisible to it.
# - --local, not --venv: --venv delegates to a child ansible-test that is handed the resolved
#   (symlink-free) path /.../main and then finds no ansible_collections parent. --local runs on the
#   project venv (scripts/testbed/venv.sh); each sanity test still gets its own pinned venv.
# Those per-test virtual environments are cached under ~/.ansible/test/venv (warm runs reuse them).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$("$root/scripts/testbed/venv.sh")
python=$venv/bin/python
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# --- offline stand-in for ansible-test's get-pip bootstrap script -------------------------------
# The pip version ansible-test pins is read from ansible-test itself, so an ansible-core bump follows.
pip_version=$("$python" - <<'EOF'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / '_internal' / 'python_requirements.py'
m = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", src.read_text())
print(m.group(1) if m else '')
EOF
)
if [ -z "$pip_version" ]; then
  echo "sanity.sh: cannot find the pip version ansible-test pins (ansible-test changed?)" >&2
  exit 2
fi
cache=$HOME/.ansible/test/cache
get_pip=$cache/get_pip_${pip_version//./_}.py
wheel=$cache/pip-$pip_version-py3-none-any.whl
mkdir -p "$cache"
if [ ! -f "$wheel" ]; then
  dl=$(mktemp -d)
  "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$dl" "pip==$pip_version"
  mv "$dl/pip-$pip_version-py3-none-any.whl" "$wheel.part" && mv "$wheel.part" "$wheel"
  rm -rf "$dl"
fi
if [ ! -f "$get_pip" ] || ! grep -q 'lifeboat offline get-pip stand-in' "$get_pip"; then
  cat >"$get_pip.part" <<EOF
"""lifeboat offline get-pip stand-in: installs pip $pip_version from the wheel beside this file.

Written by scripts/ci/sanity.sh. ansible-test runs it (through its quiet_pip wrapper) as
'get-pip.py [pip options] pip==$pip_version [--no-setuptools] [--no-wheel]'.
"""
import os
import sys

wheel = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pip-$pip_version-py3-none-any.whl')
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
args = [wheel if a.split('==')[0].strip().lower() == 'pip' else a for a in args]
sys.path.insert(0, wheel)
from pip._internal.cli.main import main  # noqa: E402

sys.exit(main(['install', '--no-index', '--upgrade', '--force-reinstall'] + args))
EOF
  mv "$get_pip.part" "$get_pip"
fi

# --- ansible_collections/lifeboat/ops tree ------------------------------------------------------
tree=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-sanity.XXXXXX")
trap 'rm -rf "$tree"' EXIT   # removes the link only, never the checkout behind it
mkdir -p "$tree/ansible_collections/lifeboat"
ln -s "$root" "$tree/ansible_collections/lifeboat/ops"
content=$tree/ansible_collections/lifeboat/ops

cd "$content"
export ANSIBLE_TEST_CONTENT_ROOT=$content
export PATH=$venv/bin:$PATH
status=0
ansible-test sanity --local --python "$py_version" --color no "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "sanity.sh: ansible-test sanity FAILED (exit $status); see the ERROR lines above" >&2
fi
exit "$status"
