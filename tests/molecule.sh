#!/bin/bash
# tests/molecule.sh [scenario...] - run molecule scenarios (all under molecule/ by default) on
# the lab: each brings up a lab of its own (LAB=netns|vm, default netns) and takes it down.
# `make molecule` calls this after tests/artifacts/build-all.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" # molecule looks for molecule/<scenario>/molecule.yml from here
# The scenarios are at the top level (molecule/, the design card's place), not in molecule 26's
# collection default extensions/molecule/: say so, so that molecule neither warns nor guesses.
# Their shared base config is .config/molecule/config.yml, which molecule finds by itself at
# the root of a git checkout (it looks for .git); named here so that a copy without .git finds
# it too.
export MOLECULE_GLOB='molecule/*/molecule.yml'
base=(--base-config "$REPO/.config/molecule/config.yml")
export PATH=$REPO/.venv/bin:$PATH
command -v molecule >/dev/null || { echo "molecule.sh: molecule not found: make venv" >&2; exit 1; }
# The interactive lab's prefix, slot and size are not the scenarios' (each sets its own).
unset LAB_PREFIX LAB_NET LAB_NODES
if [ $# -eq 0 ]; then
	exec molecule "${base[@]}" test --all
fi
rc=0
for s in "$@"; do
	molecule "${base[@]}" test -s "$s" || rc=1
done
exit $rc
