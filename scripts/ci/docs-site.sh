#!/usr/bin/env bash
# Builds the collection's HTML documentation site (not published): the landing page (scripts/docs/site/index.md),
# the guides (docs/*.md, read by MyST as they are), a page per playbook (generated from playbooks/*.yml and the roles'
# argument specs: scripts/docs/site_pages.py) and the module and role reference (antsibull-docs); Sphinx with warnings
# as errors. Then checks every link between its pages (scripts/docs/check_links.py) and looks at it in headless
# Chromium as a newcomer would (scripts/docs/browse_site.py: the landing page's links followed).
#   scripts/ci/docs-site.sh [OUTPUT_DIR]   (default: a temporary directory, removed after the check)
# LIFEBOAT_DOCS_SCREENSHOTS=DIR keeps Chromium's screenshots of the landing page and a guide (landing.png, guide.png).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}
req=$root/scripts/docs/requirements.txt
venv=$cache/docs-venv-$( (python3 --version; cat "$req") | sha256sum | cut -c1-12)
# shellcheck source=scripts/testbed/lib.sh
. "$root/scripts/testbed/lib.sh"
ensure_apt chromium   # the newcomer's browser of browse_site.py, from the machine's Debian mirror
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
cat >>"$site/conf.py" <<PY
intersphinx_mapping = {}  # offline build: scripts/ci/docs-site.sh
# The guides (Markdown, MyST) and the pages of scripts/docs/site_pages.py; lifeboat_sphinx turns the guides' links to
# repository files outside docs/ into plain text.
import sys
sys.path.insert(0, '$root/scripts/docs')
extensions += ['myst_parser', 'lifeboat_sphinx']
lifeboat_root = '$root'
myst_heading_anchors = 4  # foo.md#a-heading links between the guides, as GitHub makes them
html_title = 'lifeboat.ops'
PY
python3 "$root/scripts/docs/site_pages.py" "$root" "$site/rst"
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
python3 "$root/scripts/docs/browse_site.py" "$site/html" ${LIFEBOAT_DOCS_SCREENSHOTS:+"$LIFEBOAT_DOCS_SCREENSHOTS"}
if [ $# -gt 0 ]; then
  rm -rf "$1" && cp -a "$site/html" "$1"
  echo "docs site: $1/index.html"
fi
