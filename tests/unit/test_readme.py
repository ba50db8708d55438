# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""README.md stays true: its role tables are what scripts/gen-role-docs makes from the roles'
argument specs today; every repository path it names exists; every `make` target it names is
in the Makefile; the example inventories give what it says; the playbooks it runs pass
ansible-playbook --syntax-check with them; ovl/tar refuses a call without OUTFILE with nothing
on stdout. (What needs a lab - site.yml, ovl/tar, uninstall.yml, import_playbook - is proved in
tests/integration/test_site_ovl_uninstall.py; make demo is run by hand, see the report.)"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BIN = pathlib.Path(sys.executable).parent
ENV = dict(
    os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"
)
TOP = ("examples/", "scripts/", "tests/", "playbooks/", "plugins/", "roles/", "docs/", "extensions/", "ovl/")


def test_the_role_tables_are_up_to_date():
    p = subprocess.run(
        [sys.executable, str(REPO / "scripts/gen-role-docs"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    for role in ("cni_plugins", "node_local", "multus", "whereabouts", "multus_service"):
        assert f"### `xcluster.multus.{role}`" in README


def test_gen_role_docs_sees_a_stale_readme(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(README.replace("| `multus_mode` |", "| `multus_mood` |"))
    p = subprocess.run(
        [sys.executable, str(REPO / "scripts/gen-role-docs"), "--check", str(stale)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 1 and "multus_mood" in p.stdout and "not up to date" in p.stderr


def test_every_path_it_names_exists():
    named = set()
    for token in re.findall(r"`([^`\n]+)`", README) + re.findall(r"^(?:\S+=\S+ )*(\S+)", README, re.M):
        for word in token.split():
            if word.startswith(TOP) and not re.search(r"[<>{}*$]", word):
                named.add(word.rstrip(".,:;)"))
    assert len(named) > 10, named
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing


def test_every_make_target_it_names_is_in_the_makefile():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    named = set(re.findall(r"(?:^|`)make ([a-z][a-z-]*)", README, re.M))
    assert {"demo", "test", "lab-down"} <= named
    assert named <= targets, named - targets


@pytest.mark.parametrize(
    ("inventory", "hosts"),
    [
        ("xcluster.yml", {f"vm-00{n}": {"ansible_host": f"192.168.0.{n}"} for n in range(1, 5)}),
        (
            "xcluster-user.yml",
            {f"vm-00{n}": {"ansible_host": "127.0.0.1", "ansible_port": 12300 + n} for n in range(1, 5)},
        ),
    ],
)
def test_the_example_inventories(inventory, hosts):
    path = REPO / "examples/inventory" / inventory
    assert str(path.relative_to(REPO)) in README
    p = subprocess.run(
        ["ansible-inventory", "-i", str(path), "--list"], env=ENV, capture_output=True, text=True, check=True
    )
    inv = json.loads(p.stdout)
    assert sorted(inv["xcluster"]["hosts"]) == sorted(hosts)
    assert inv["xcluster_control_plane"]["hosts"] == ["vm-001"]
    for host, want in hosts.items():
        got = inv["_meta"]["hostvars"][host]
        assert {k: got[k] for k in want} == want
        assert got["ansible_user"] == "root"
        assert "StrictHostKeyChecking=no" in got["ansible_ssh_common_args"]
        assert "UserKnownHostsFile=/dev/null" in got["ansible_ssh_common_args"]


@pytest.mark.parametrize(
    "playbook",
    ["site.yml", "playbooks/site.yml", "playbooks/ovl.yml", "playbooks/uninstall.yml", "playbooks/basic.yml"],
)
def test_the_playbooks_it_runs_pass_the_syntax_check(playbook):
    assert playbook in README
    p = subprocess.run(
        ["ansible-playbook", "--syntax-check", "-i", str(REPO / "examples/inventory/xcluster.yml"), playbook],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_ovl_tar_without_outfile_says_so_and_writes_nothing():
    p = subprocess.run([str(REPO / "ovl/tar")], capture_output=True, check=False)
    assert p.returncode == 1 and p.stdout == b"" and b"No out-file" in p.stderr
