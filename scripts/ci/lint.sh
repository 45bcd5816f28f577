#!/usr/bin/env bash
# Static checks other than ansible-test sanity, offline:
#   1. ansible-lint --profile production (settings in .ansible-lint) on playbooks, roles, tests, ...
#   2. antsibull-changelog lint (changelogs/fragments/*.yml and changelogs/changelog.yaml)
#   3. antsibull-docs lint-collection-docs --plugin-docs (module docs, roles' meta/argument_specs.yml)
#   4. scripts/ci/check_role_defaults.py: each role's meta/argument_specs.yml agrees with its defaults/main.yml;
#      scripts/gen-deploy-role.py --check: the deploy role is what its generator writes from app_deploy today;
#      scripts/ci/check_role_docs.py: each role's README variable table and YAML examples (README, the commented ones
#      in defaults/main.yml; README.md, docs/*.md and examples/ too) agree with the roles' meta/argument_specs.yml
#   5. ruff check: style and bug patterns of the Python code (rules in pyproject.toml)
#   6. mypy (settings in pyproject.toml), twice: plugins/ inside the collections tree below (module_utils
#      strict), then bin/lifeboat, tests, scripts and extensions at the controller's Python 3.11
#
# Usage: scripts/ci/lint.sh [extra ansible-lint arguments, e.g. paths or -f pep8]
# Exit code: non-zero when any of them fails; all of them always run.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$("$root/scripts/testbed/venv.sh") || exit 2
export PATH=$venv/bin:$PATH

# A collection root whose ansible_collections/lifeboat/ops is this checkout, so that the
# lifeboat.ops.* FQCNs in playbooks and roles resolve to the files being linted.
colls=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-lint.XXXXXX") || exit 2
trap 'rm -rf "$colls"' EXIT   # removes the link only, never the checkout behind it
mkdir -p "$colls/ansible_collections/lifeboat"
ln -s "$root" "$colls/ansible_collections/lifeboat/ops"
# The checkout comes first and nothing else is scanned implicitly: left to itself, ansible-lint puts
# ~/.ansible/collections in front, where an installed (older) lifeboat.ops would shadow the checkout.
# The venv's site-packages stays on the path for collections that come from PyPI (the `ansible` package).
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || exit 2
export ANSIBLE_COLLECTIONS_PATH=$colls:$site
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false   # ansible-lint warns about this once; harmless
export ANSIBLE_NOCOLOR=1 NO_COLOR=1
cd "$root" || exit 2

failed=()
run() {
  local name=$1
  shift
  echo "== $name: $*"
  if "$@"; then
    echo "== $name: ok"
  else
    echo "== $name: FAILED (exit $?)"
    failed+=("$name")
  fi
}

run ansible-lint ansible-lint --nocolor --profile production --offline -c "$root/.ansible-lint" "$@"
run changelog antsibull-changelog lint
run changelog-yaml antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
# galaxy.yml's version ahead of the last release whenever fragments wait for the next one.
run version "$venv/bin/python" "$root/scripts/ci/check_version.py" "$root"
run docs antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs dependent "$root"
# The HTML docs site from the module and role docs (Sphinx warnings as errors, every internal link checked).
run docs-site bash "$root/scripts/ci/docs-site.sh"
run role-defaults "$venv/bin/python" "$root/scripts/ci/check_role_defaults.py"
run deploy-role "$venv/bin/python" "$root/scripts/gen-deploy-role.py" --check
run role-docs "$venv/bin/python" "$root/scripts/ci/check_role_docs.py"
run ruff ruff check --no-cache --output-format concise "$root"
# The plugins by their collection names, so that `ansible_collections.lifeboat.ops...` imports resolve to this
# checkout; the cache lives in the temporary tree, so nothing is left in the checkout.
mypy_plugins() {
  (cd "$colls" && mypy --config-file "$root/pyproject.toml" --cache-dir "$colls/.mypy_cache" ansible_collections/lifeboat/ops/plugins)
}
run mypy-plugins mypy_plugins
# Tests import their helpers (testbed, test_status) by bare name from their own directory, the docs
# site's tests its scripts from scripts/docs. Test functions
# without annotations are checked for their annotated parts only (mypy's default), the helpers in full.
run mypy-rest env MYPYPATH="$colls:$root/tests/shared:$root/tests/integration:$root/tests/unit:$root/scripts/docs:$root/scripts/ci" mypy --config-file "$root/pyproject.toml" \
  --cache-dir "$colls/.mypy_cache" --python-version 3.11 --no-check-untyped-defs bin/lifeboat tests scripts extensions

if [ "${#failed[@]}" -gt 0 ]; then
  echo "lint.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "lint.sh: all checks passed"
