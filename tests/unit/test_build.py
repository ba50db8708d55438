# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The built collection (ansible-galaxy collection build, galaxy.yml build_ignore) holds what a
user runs and leaves out what only development needs."""

from __future__ import annotations

import os
import pathlib
import subprocess
import tarfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"

# Top-level entries of the checkout that the tarball must not hold.
DEV_ONLY = (
    "tests", "bench", "molecule", "scripts", "docs", "collections", ".config", ".ci", ".ansible-lint",
    ".yamllint", "Makefile", "ansible.cfg", "pyproject.toml", "requirements-test.txt", "changelogs/fragments",
)  # fmt: skip


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    if not (BIN / "ansible-galaxy").exists():
        pytest.skip("ansible-galaxy missing: make venv")
    out = tmp_path_factory.mktemp("build")
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO)],
        cwd=out, env=env, check=True, capture_output=True,
    )  # fmt: skip
    (tarball,) = out.glob("xcluster-multus-*.tar.gz")
    with tarfile.open(tarball) as tar:
        return {m.name for m in tar.getmembers() if not m.isdir()}


def test_build_holds_what_a_user_runs(members):
    ls = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    git = ls.stdout.split()
    runtime = [
        p
        for p in git
        if p.split("/")[0] in ("plugins", "roles", "playbooks", "meta", "examples")
        or p in ("README.md", "CHANGELOG.md", "site.yml", "ovl/tar", "requirements.txt", "galaxy.yml")
        or p in ("changelogs/changelog.yaml", "changelogs/config.yaml")
    ]
    assert "plugins/action/push_files.py" in runtime and "roles/node_local/files/node-local" in runtime
    missing = sorted(set(runtime) - members - {"galaxy.yml"})  # galaxy.yml becomes MANIFEST.json
    assert not missing, missing
    assert {"MANIFEST.json", "FILES.json"} <= members


def test_build_leaves_out_what_only_development_needs(members):
    leaked = sorted(m for m in members for d in DEV_ONLY if m == d or m.startswith(d + "/"))
    assert not leaked, leaked
    # nothing in it is a test, a lab or a development tool
    assert not [m for m in members if "/tests/" in f"/{m}" or m.endswith(("conftest.py", ".pyc"))]
