"""The filters through Ansible: ansible-playbook (the venv's) on localhost, and ansible-doc."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils import nodeindex as ni
from nodelocal_cases import LAB_DEFAULT, LAB_IPVLAN, LAB_MACVLAN, REPO, VENV_BIN, XCLUSTER_MACVLAN

PLAYBOOK_DIR = REPO / "tests" / "integration" / "filters_playbook"
FILTERS = ("node_index", "node_subst", "node_ranges_check")


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def _tool(name):
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(f"{path} missing: run make venv")
    return str(path)


def test_filters_in_a_playbook(tmp_path):
    configs = {"default": LAB_DEFAULT, "macvlan": LAB_MACVLAN, "ipvlan": LAB_IPVLAN}
    expected = ni.check_inventory({"vm-001": 1, "vm-002": 2, "vm-010": 10, "node-a": 7}, configs)
    extra = tmp_path / "vars.json"
    extra.write_text(
        json.dumps(
            {
                "node_local_configs": configs,
                "xcluster_macvlan": XCLUSTER_MACVLAN,
                "expected_rendered": expected,
            }
        )
    )
    run = subprocess.run(
        [
            _tool("ansible-playbook"),
            "-i",
            str(PLAYBOOK_DIR / "inventory.yml"),
            "-e",
            f"@{extra}",
            str(PLAYBOOK_DIR / "filters.yml"),
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    recap = dict(re.findall(r"^(\S+)\s+: (ok=.*)$", out, re.M))
    assert sorted(recap) == ["node-a", "vm-001", "vm-002", "vm-010"], out
    for line in recap.values():
        assert "failed=0" in line, out
        assert "rescued=3" in line, out  # three blocks expect an error from a filter


def test_ansible_doc_shows_every_filter():
    names = [f"xcluster.multus.{f}" for f in FILTERS]
    run = subprocess.run(
        [_tool("ansible-doc"), "-t", "filter", "--json", *names],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    docs = json.loads(run.stdout)
    assert sorted(docs) == sorted(names)
    for name, doc in docs.items():
        assert doc["doc"]["short_description"], name
        assert doc["doc"]["options"]["_input"]["required"] is True, name
        assert "xcluster.multus." + name.rsplit(".", 1)[1] in doc["examples"], name
        assert doc["return"]["_value"]["type"], name
