# shellcheck shell=bash
# tests/lab/selftests.sh - the lab's self-tests (work in progress).
lab_selftests() { lab_die "self-tests not written yet"; }
