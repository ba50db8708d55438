# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Any primary CNI, and a node with none, through site.yml and uninstall.yml on a netns lab of
this module's own (3 nodes):

- vm-001 keeps the lab's xcluster bridge (10-bridge.conf, network cni-x);
- vm-002 has NO base config (only a README in /etc/cni/net.d): site.yml fails there before
  anything is pushed to it (one raw read), naming the node and what it found; nothing on it
  changes; the other nodes converge;
- vm-003 runs another CNI: 05-calico.conflist (network k8s-pod-network) and a later
  99-loopback.conf: the first config by name is moved (renamed bridge, as a .conflist), the
  loopback stays, 10-multus.conf is the only active config; uninstall.yml gives the conflist
  back byte for byte.
About 1 minute. Needs root and the archives of tests/artifacts/build-all.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from nodetree import delta, snapshot

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LABCMD = os.path.join(REPO, "tests", "lab", "lab")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
LAB_VARS = os.path.join(REPO, "tests", "integration", "vars", "lab-archives.yml")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xcluster-multus")
NODES = (1, 2, 3)
CONFLIST = (
    '{"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": [{"type": "bridge", "bridge": "cbr0",\n'
    '  "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.19.131.0/24"}]]}},\n'
    '  {"type": "portmap", "capabilities": {"portMappings": true}}]}'  # no final newline: kept as is
)
LOOPBACK = '{"cniVersion": "0.3.1", "name": "lo", "type": "loopback"}\n'


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    for a in ("cni-plugins-linux-amd64-v1.0.1.tgz", "multus-cni_3.9.3_linux_amd64.tar.gz"):
        assert os.path.isfile(os.path.join(CACHE, "archives", a)), f"{a}: run tests/artifacts/build-all"
    env = dict(os.environ, LAB="netns", LAB_PREFIX=f"xbc{os.getpid() % 100000}", LAB_NET="auto")
    env.update(
        LAB_NODES=str(len(NODES)),
        PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
    )
    for var in ("ARCHIVE", "WHEREABOUTS_DIR", "MSERVICE_DIR"):
        env.pop(var, None)
    state = os.path.join(env.get("LAB_STATE_DIR", "/run/xcluster-multus-lab"), env["LAB_PREFIX"])
    try:
        p = subprocess.run([LABCMD, "up"], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert p.returncode == 0, p.stdout + p.stderr
        yield env, state
    finally:
        subprocess.run([LABCMD, "down"], env=env, capture_output=True, check=False)


def ssh(env, n, cmd, data=None):
    p = subprocess.run(
        [LABCMD, "ssh", str(n), cmd], env=env, input=data, capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, f"vm-00{n}: {cmd}: {p.stdout} {p.stderr}"
    return p.stdout


def play(env, state, playbook):
    p = subprocess.run(
        [os.path.join(VENV_BIN, "ansible-playbook"), "-i", os.path.join(state, "inventory.yml"), playbook,
         "-e", f"@{LAB_VARS}", "-e", "multus_nads_without_plugin=true"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    return p.returncode, p.stdout + p.stderr


def upper(state, n):
    return snapshot(os.path.join(state, "nodes", f"vm-00{n}", "upper"))


def test_any_primary_cni_and_a_node_with_none(lab):
    env, state = lab
    ssh(env, 2, "rm /etc/cni/net.d/10-bridge.conf && echo notes >/etc/cni/net.d/README")
    ssh(env, 3, "rm /etc/cni/net.d/10-bridge.conf && cat >/etc/cni/net.d/05-calico.conflist", CONFLIST)
    ssh(env, 3, "cat >/etc/cni/net.d/99-loopback.conf", LOOPBACK)
    before2 = upper(state, 2)
    rc, out = play(env, state, "site.yml")
    assert rc != 0, out[-4000:]
    assert (
        "host vm-002: no base CNI config for multus to wrap: expected a *.conf, *.conflist or *.json "
        "other than 10-multus.conf in /etc/cni/net.d (the primary CNI's, e.g. xcluster's 10-bridge.conf); "
        "found README"
    ) in out, out[-4000:]
    # nothing was pushed to vm-002 (the read found it first); the others converged
    assert {k: v for k, v in delta(before2, upper(state, 2)).items() if not k.startswith("tmp/")} == {}
    assert "vm-001" not in [ln.split(":")[0] for ln in out.splitlines() if "fatal:" in ln]
    for n in (1, 3):
        assert ssh(env, n, "ls /etc/cni/net.d").split() == (
            ["10-multus.conf"] if n == 1 else ["10-multus.conf", "99-loopback.conf"]
        )
    moved = json.loads(ssh(env, 3, "cat /etc/cni/multus/net.d/bridge.conflist"))
    assert moved["name"] == "bridge" and moved["plugins"][1]["type"] == "portmap"
    assert json.loads(ssh(env, 3, "cat /etc/cni/net.d/10-multus.conf"))["clusterNetwork"] == "bridge"

    rc, out = play(env, state, "playbooks/uninstall.yml")
    assert rc == 0, out[-4000:]
    assert ssh(env, 3, "cat /etc/cni/net.d/05-calico.conflist") == CONFLIST  # byte for byte
    assert ssh(env, 3, "ls /etc/cni/net.d").split() == ["05-calico.conflist", "99-loopback.conf"]
    assert ssh(env, 1, "ls /etc/cni/net.d").split() == ["10-bridge.conf"]
