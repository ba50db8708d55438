#!/usr/bin/env bash
# make lint: ansible-lint (production profile), yamllint, ruff, the changelog fragments and
# CHANGELOG.md (antsibull-changelog), and on the collection as it installs from its built
# tarball the collection docs linter (antsibull-docs) and ansible-test sanity. Every step must
# be clean.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export ANSIBLE_CONFIG=$repo/ansible.cfg
rc=0
step() { printf '== %s\n' "$*"; }

step ruff
ruff check . || rc=1
ruff format --check . || rc=1

step shellcheck
# node-side shell: what the plugins load (plugins/**/*.sh), the roles' node scripts
# (roles/*/files/*.sh) and the playbooks' (playbooks/files/*.sh)
find plugins roles/*/files playbooks/files tests/helpers -name '*.sh' -print0 | xargs -0 -r shellcheck -s sh || rc=1

step yamllint
yamllint -s . || rc=1

step ansible-lint
ansible-lint --profile production -q || rc=1

step antsibull-changelog
antsibull-changelog lint || rc=1
scripts/gen-changelog --check || rc=1

step "the collection, built and installed"
# ansible-test seeds its venvs with a get-pip script it downloads; offline, use our shim.
pipver=$(grep -o "pip='[0-9.]*'" "$(python -c 'import ansible_test,os;print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" | head -1 | tr -dc '0-9.')
getpip=$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py
if [ ! -s "$getpip" ]; then
  mkdir -p "$(dirname "$getpip")"
  cp tests/get_pip_shim.py "$getpip"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside the checkout (no ansible.cfg there), so the checkout's collection link is not seen.
(cd "$tmp" && env -u ANSIBLE_CONFIG ansible-galaxy collection build -f --output-path "$tmp" "$repo" >/dev/null &&
  env -u ANSIBLE_CONFIG ansible-galaxy collection install -f -p "$tmp/c" "$tmp"/xcluster-multus-*.tar.gz >/dev/null)
step "antsibull-docs lint-collection-docs"
(cd "$tmp" && env -u ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH="$tmp/c" \
  antsibull-docs lint-collection-docs --plugin-docs "$tmp/c/ansible_collections/xcluster/multus") || rc=1

step "ansible-test sanity"
# The built collection leaves tests/ out; sanity wants its ignore file (tests/sanity/).
mkdir -p "$tmp/c/ansible_collections/xcluster/multus/tests"
cp -r tests/sanity "$tmp/c/ansible_collections/xcluster/multus/tests/"
pyver=$(python -c 'import sys;print("%d.%d" % sys.version_info[:2])')
(cd "$tmp/c/ansible_collections/xcluster/multus" && ansible-test sanity --python "$pyver" --color no) || rc=1

exit $rc
