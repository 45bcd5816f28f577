#!/usr/bin/env bash
# Builds the collection's HTML documentation site from the module and role docs (antsibull-docs, then Sphinx with
# warnings as errors) and checks every link between its pages (scripts/docs/check_links.py). Not published.
#   scripts/ci/docs-site.sh [OUTPUT_DIR]   (default: a temporary directory, removed after the check)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
req=$root/scripts/docs/requirements.txt
venv=$cache/docs-venv-$( (python3 --version; cat "$req") | sha256sum | cut -c1-12)
mkdir -p "$cache"
exec 9>"$cache/.docs-venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
flock -u 9
work=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-docs.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PATH=$venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$work/collections ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
# The collection as a user installs it (build_ignore applied).
ansible-galaxy collection build --force --output-path "$work/built" "$root" >/dev/null
ansible-galaxy collection install --offline --no-deps -p "$work/collections" "$work"/built/lifeboat-ops-*.tar.gz >/dev/null
site=$work/site
mkdir -m 700 "$site"
antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$site" --project lifeboat.ops \
  --title lifeboat.ops --copyright "lifeboat developers" lifeboat.ops >/dev/null
chmod 700 "$site/rst"
antsibull-docs --config-file "$site/antsibull-docs.cfg" collection --cleanup everything --fail-on-error --use-current \
  --dest-dir "$site/rst" lifeboat.ops >/dev/null
# Offline: no intersphinx inventory can be fetched. The two labels of Ansible's own docs that the generated pages
# refer to resolve to a page of the site that links to them (docs.ansible.com), so every reference still resolves.
echo 'intersphinx_mapping = {}  # offline build: scripts/ci/docs-site.sh' >>"$site/conf.py"
cat >"$site/rst/ansible_docs.rst" <<'RST'
:orphan:

Ansible's own documentation
===========================

.. _common_return_values:

Common return values
--------------------

Every module also returns Ansible's common values: see
`Return Values <https://docs.ansible.com/ansible/latest/reference_appendices/common_return_values.html>`_.

.. _ansible_configuration_settings:

Ansible configuration settings
------------------------------

See `Ansible Configuration Settings <https://docs.ansible.com/ansible/latest/reference_appendices/config.html>`_.
RST
# -W: a warning (a broken reference, a malformed doc) fails the build; -n: every reference must resolve.
sphinx-build -q -W -n --keep-going -b html -c "$site" "$site/rst" "$site/html"
python3 "$root/scripts/docs/check_links.py" "$site/html"
if [ $# -gt 0 ]; then
  rm -rf "$1" && cp -a "$site/html" "$1"
  echo "docs site: $1/index.html"
fi
