# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The node_local and multus roles' preflight through ansible-playbook: bad input fails on the
controller, naming the host and the value, before any node changes (any_errors_fatal: one bad
host stops all). Hosts use the local connection with every path under the test's tmp dir and
links that cannot exist, so even a preflight that wrongly passed would touch nothing else."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
ARCHIVES = (
    pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    / "xcluster-multus/archives"
)
LAB_NODE_LOCAL = yaml.safe_load((REPO / "tests/lab/group_vars/all/node_local.yml").read_text())

PLAY = """
- name: {role} (the test's tmp paths, local connection)
  hosts: xcluster
  gather_facts: false
  any_errors_fatal: true
  roles:
    - role: xcluster.multus.{role}
"""


def run_play(
    tmp, role, *, hosts=("vm-001", "vm-002", "vm-003"), host_vars=None, tags=None, verbosity=None, **extra
):
    root = tmp / "root"
    inv = {"all": {"children": {"xcluster": {"hosts": {h: (host_vars or {}).get(h, {}) for h in hosts}}}}}
    inv["all"]["vars"] = {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(VENV_BIN / "python"),
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inv))
    (tmp / "play.yml").write_text(PLAY.format(role=role))
    v = {
        "node_local_bin_dir": f"{root}/opt/cni/bin",
        "node_local_conf_dir": f"{root}/etc/cni/node-local",
        "node_local_configs": LAB_NODE_LOCAL["node_local_configs"],
        "multus_version": "3.9.3",
        "multus_archive_dirs": [str(ARCHIVES)],
        "multus_checksum": f"{ARCHIVES}/SHA256SUMS",
        "multus_download": False,
        "multus_cache_dir": str(tmp / "cache"),
        "multus_bin_dir": f"{root}/opt/cni/bin",
        "multus_conf_file": f"{root}/etc/cni/net.d/10-multus.conf",
        "multus_conf_dir": f"{root}/etc/cni/multus/net.d",
        "multus_base_conf": f"{root}/etc/cni/net.d/10-bridge.conf",
        "multus_activate_path": f"{root}/usr/lib/xcluster-multus/activate",
        "multus_state_dir": f"{root}/var/lib/xcluster-multus",
        "multus_manifest_dir": f"{root}/etc/kubernetes",
        "multus_manifests_apply": False,
    }
    v.update(extra)
    (tmp / "vars.json").write_text(json.dumps(v))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", HOME=str(tmp))
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("ARCHIVE", None)
    cmd = [
        str(VENV_BIN / "ansible-playbook"),
        "-i",
        str(tmp / "inventory.yml"),
        "-e",
        f"@{tmp / 'vars.json'}",
    ]
    if tags:
        cmd += ["--tags", tags]
    if verbosity:
        cmd.append(verbosity)
    run = subprocess.run(
        [*cmd, str(tmp / "play.yml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return run, run.stdout + run.stderr, root


pytestmark = pytest.mark.skipif(
    not (ARCHIVES / "multus-cni_3.9.3_linux_amd64.tar.gz").exists(),
    reason="run tests/artifacts/build-all first",
)


def unchanged(root):
    return not root.exists() or not any(p.is_file() for p in root.rglob("*"))


@pytest.mark.parametrize("role", ["node_local", "multus"])
def test_preflight_passes_on_good_input(tmp_path, role):
    run, out, root = run_play(tmp_path, role, tags="xcm_preflight_only")  # only preflight (tags: always)
    assert run.returncode == 0, out
    assert unchanged(root)
    assert re.search(r"^vm-003\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out, re.M), out


@pytest.mark.parametrize(
    ("role", "case", "expect"),
    [
        ("node_local", "seed_macvlan", r"hosts? vm-00[12].*overlap.*vm-00[23]|overlap"),
        ("node_local", "duplicate_index", r"hosts vm-002 and vm-003 both have node index 2"),
        (
            "node_local",
            "bad_cfg_name",
            r"vm-00\d: .*names of \[A-Za-z0-9_.-\] not starting with '.'.*\"\.hidden\"",
        ),
        ("multus", "bad_version", r"multus_flavour: host vm-00\d: multus_version is '5.0'"),
        (
            "multus",
            "delegates_vm100",
            r"host vm-100 \(index 100\): ipam.ranges\[1\]\[0\].subnet is '1100::10000/120'",
        ),
        ("multus", "bad_link_on_one_host", r"host vm-002: multus_links_up is \['eth 2'\]"),
        ("multus", "no_archive", r"multus-cni_4.3.0_linux_amd64.tar.gz"),
    ],
)
def test_preflight_fails_before_any_node_changes(tmp_path, role, case, expect):
    extra, host_vars, hosts = {}, {}, ("vm-001", "vm-002", "vm-003")
    if case == "seed_macvlan":
        seed = json.loads(json.dumps(LAB_NODE_LOCAL["node_local_configs"]))
        for rset in seed["macvlan"]["ipam"]["ranges"]:
            del rset[0]["rangeEnd"]
        extra["node_local_configs"] = seed
    elif case == "duplicate_index":
        host_vars = {"vm-003": {"node_local_index": 2}}
    elif case == "bad_cfg_name":
        extra["node_local_configs"] = dict(LAB_NODE_LOCAL["node_local_configs"], **{".hidden": {"ipam": {}}})
    elif case == "bad_version":
        extra["multus_version"] = "5.0"
    elif case == "delegates_vm100":
        extra["multus_mode"] = "delegates"
        hosts = ("vm-001", "vm-100")
    elif case == "bad_link_on_one_host":
        host_vars = {"vm-002": {"multus_links_up": ["eth 2"]}}
    elif case == "no_archive":
        extra.update(multus_version="4.3.0", multus_archive_dirs=[str(tmp_path / "empty")])
    run, out, root = run_play(tmp_path, role, hosts=hosts, host_vars=host_vars, **extra)
    assert run.returncode != 0, out
    assert re.search(expect, out, re.S), out
    assert unchanged(root), sorted(str(p) for p in root.rglob("*"))
    # any_errors_fatal: no host got past the failed preflight task to the install step
    assert re.findall(r"^TASK \[xcluster\.multus\.\w+ : (Install|Activate)", out, re.M) == [], out


def test_token_never_shown_even_at_vvv(tmp_path):
    """The kubeconfig's token is in no output of the preflight (argument check, rendering)."""
    token = "xcm-test-token-c2VjcmV0LXRva2Vu"
    run, out, root = run_play(
        tmp_path,
        "multus",
        tags="xcm_preflight_only",
        verbosity="-vvv",
        multus_kubeconfig_server="https://198.19.250.1:6443",
        multus_kubeconfig_token=token,
    )
    assert run.returncode == 0, out
    assert "its kubeconfig, if one is given, never shown" in out and "censored" in out  # the task ran, hidden
    assert token not in out
    assert unchanged(root)
