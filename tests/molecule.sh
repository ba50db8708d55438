#!/bin/bash
# tests/molecule.sh [scenario...] - run molecule scenarios (all under extensions/molecule/ by
# default) on the lab: each brings up a lab of its own (LAB=netns|vm, default netns) and takes
# it down. `make molecule` calls this after tests/artifacts/build-all.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" # molecule finds the collection (galaxy.yml) and extensions/molecule/config.yml here
export PATH=$REPO/.venv/bin:$PATH
command -v molecule >/dev/null || { echo "molecule.sh: molecule not found: make venv" >&2; exit 1; }
# The interactive lab's prefix, slot and size are not the scenarios' (each sets its own).
unset LAB_PREFIX LAB_NET LAB_NODES
if [ $# -eq 0 ]; then
	exec molecule test --all
fi
rc=0
for s in "$@"; do
	molecule test -s "$s" || rc=1
done
exit $rc
