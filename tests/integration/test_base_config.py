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

import labrun  # tests/helpers
import pytest
from nodetree import delta

NODES = (1, 2, 3)
CONFLIST = (
    '{"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": [{"type": "bridge", "bridge": "cbr0",\n'
    '  "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.19.131.0/24"}]]}},\n'
    '  {"type": "portmap", "capabilities": {"portMappings": true}}]}'  # no final newline: kept as is
)
LOOPBACK = '{"cniVersion": "0.3.1", "name": "lo", "type": "loopback"}\n'


@pytest.fixture(scope="module")
def lab():
    labrun.require_lab()
    lab = labrun.Lab(labrun.lab_env(f"xbc{os.getpid() % 100000}", len(NODES)))
    with labrun.running(lab):
        yield lab


def play(lab, playbook):
    r = lab.play(playbook, "-e", "multus_nads_without_plugin=true")
    return r.rc, r.out


def test_any_primary_cni_and_a_node_with_none(lab):
    lab.ssh(2, "rm /etc/cni/net.d/10-bridge.conf && echo notes >/etc/cni/net.d/README")
    lab.ssh(3, "rm /etc/cni/net.d/10-bridge.conf && cat >/etc/cni/net.d/05-calico.conflist", CONFLIST)
    lab.ssh(3, "cat >/etc/cni/net.d/99-loopback.conf", LOOPBACK)
    before2 = lab.upper(2)
    rc, out = play(lab, "site.yml")
    assert rc != 0, out[-4000:]
    assert (
        "host vm-002: no base CNI config for multus to wrap: expected a *.conf, *.conflist or *.json "
        "other than 10-multus.conf in /etc/cni/net.d (the primary CNI's, e.g. xcluster's 10-bridge.conf); "
        "found README"
    ) in out, out[-4000:]
    # nothing was pushed to vm-002 (the read found it first); the others converged
    assert {k: v for k, v in delta(before2, lab.upper(2)).items() if not k.startswith("tmp/")} == {}
    assert "vm-001" not in [ln.split(":")[0] for ln in out.splitlines() if "fatal:" in ln]
    for n in (1, 3):
        assert lab.ssh(n, "ls /etc/cni/net.d").split() == (
            ["10-multus.conf"] if n == 1 else ["10-multus.conf", "99-loopback.conf"]
        )
    moved = json.loads(lab.ssh(3, "cat /etc/cni/multus/net.d/bridge.conflist"))
    assert moved["name"] == "bridge" and moved["plugins"][1]["type"] == "portmap"
    assert json.loads(lab.ssh(3, "cat /etc/cni/net.d/10-multus.conf"))["clusterNetwork"] == "bridge"

    rc, out = play(lab, "playbooks/uninstall.yml")
    assert rc == 0, out[-4000:]
    assert lab.ssh(3, "cat /etc/cni/net.d/05-calico.conflist") == CONFLIST  # byte for byte
    assert lab.ssh(3, "ls /etc/cni/net.d").split() == ["05-calico.conflist", "99-loopback.conf"]
    assert lab.ssh(1, "ls /etc/cni/net.d").split() == ["10-bridge.conf"]
