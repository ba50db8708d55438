# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""VMs booted the way xcluster boots them: from overlays, with no SSH push at all.

`ovl/tar` makes the collection's overlay (the lab's variables); tests/lab/ovl-base/tar a base
overlay whose bridge rc (named as xcluster's 2022 images name it, 20bridge.rc, or as HEAD's,
26bridge.rc) writes the base CNI config at boot. `LAB=vm lab up` with LAB_OVLS boots two VMs
whose /init unpacks both and runs /etc/init.d/*.rc in sort order before ssh is served. Then,
for both layouts: exactly one active CNI config (multus's), the base config under multus's
confDir with its network renamed (the original kept byte for byte), the links up,
CNI_INFO=multus+bridge in /etc/profile, the rcs ran in order; and the seed's basic check
(playbooks/basic.yml, ipvlan required: the VMs have their own kernel) passes.
About 3-4 minutes per layout here (TCG). Needs root, qemu and the lab's archives
(tests/artifacts/build-all).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import labrun  # tests/helpers
import pytest

REPO = labrun.REPO
LAB_VARS = labrun.LAB_VARS
NODES = (1, 2)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the VM lab needs root"),
    pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="the VM lab needs qemu-system-x86"),
]


def base_conf(n):
    """The lab's base CNI config of node n (tests/lab/common.sh lab_base_cni_conf)."""
    p = subprocess.run(
        ["bash", "-c", f"source {REPO}/tests/lab/common.sh && lab_base_cni_conf {n}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return p.stdout


@pytest.fixture(scope="module")
def multus_ovl(tmp_path_factory):
    labrun.require_lab()  # (root and qemu: pytestmark)
    tmp = tmp_path_factory.mktemp("ovl")
    # the overlay's hosts and the lab's variables (its group_vars), as for the lab's inventory
    (tmp / "group_vars").symlink_to(os.path.join(REPO, "tests", "lab", "group_vars"))
    (tmp / "inventory.yml").write_text(
        "all:\n  children:\n    xcluster:\n      hosts:\n"
        + "".join(f"        vm-00{n}:\n" for n in NODES)
        + "    xcluster_control_plane:\n      hosts:\n        vm-001:\n"
        + "  vars:\n    ansible_connection: local\n"
    )
    env = dict(os.environ, OVL_INVENTORY=str(tmp / "inventory.yml"), OVL_VARS=LAB_VARS)
    env.pop("ARCHIVE", None)
    env.pop("WHEREABOUTS_DIR", None)
    env.pop("MSERVICE_DIR", None)
    env["GOPATH"] = str(tmp / "no-gopath")  # no whereabouts clone by xcluster's default either
    out = tmp / "multus.tar"
    # No whereabouts here: the ipvlan NADs (whereabouts IPAM) are asked for explicitly; the
    # basic check runs ipvlan with node-local IPAM.
    p = subprocess.run(
        [os.path.join(REPO, "ovl", "tar"), str(out), "-e", "multus_nads_without_plugin=true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    # without that ask the overlay is refused, naming the NAD and the plugin (an explicit -e
    # wins over the lab's variables in OVL_VARS, which ask for it)
    q = subprocess.run(
        [os.path.join(REPO, "ovl", "tar"), "-", "-e", "multus_nads_without_plugin=false"],
        env=env,
        capture_output=True,
        timeout=900,
        check=False,
    )
    assert q.returncode != 0 and q.stdout == b""
    assert "NAD ipvlan uses whereabouts" in q.stderr.decode()
    return out


@pytest.mark.parametrize("bridge_rc", ["20bridge.rc", "26bridge.rc"])
def test_vms_booted_from_overlays(multus_ovl, tmp_path, bridge_rc):
    base = tmp_path / "base.tar"
    subprocess.run(
        [os.path.join(REPO, "tests", "lab", "ovl-base", "tar"), str(base)],
        env=dict(os.environ, LAB_BRIDGE_RC=bridge_rc),
        check=True,
    )
    lab = labrun.Lab(
        labrun.lab_env(
            f"xvo{os.getpid() % 10000}{bridge_rc[:2]}",
            len(NODES),
            backend="vm",
            json_results=False,
            LAB_SSH_TIMEOUT="400",
            LAB_OVLS=f"{base} {multus_ovl}",
        )
    )
    ssh = lab.ssh
    try:
        lab.up(timeout=900)
        for n in NODES:
            log = ssh(n, "cat /var/log/lab-rc.log")
            order = [ln[3:] for ln in log.splitlines() if ln.startswith("== ") and not ln.endswith("exited")]
            assert order == [f"/etc/init.d/{bridge_rc}", "/etc/init.d/27multus.rc"], log
            assert "CHANGED: moved /etc/cni/net.d/10-bridge.conf to /etc/cni/multus/net.d/bridge.conf" in log
            assert "ERROR" not in log, log
            # exactly one active config, multus's; the base under multus's confDir, renamed
            assert ssh(n, "ls /etc/cni/net.d").split() == ["10-multus.conf"]
            conf = json.loads(ssh(n, "cat /etc/cni/net.d/10-multus.conf"))
            assert conf["clusterNetwork"] == "bridge" and conf["confDir"] == "/etc/cni/multus/net.d"
            moved = json.loads(ssh(n, "cat /etc/cni/multus/net.d/bridge.conf"))
            assert moved == dict(json.loads(base_conf(n)), name="bridge")
            kept = ssh(n, "sha256sum /var/lib/xcluster-multus/base.conf").split()[0]
            assert kept == hashlib.sha256(base_conf(n).encode()).hexdigest()  # byte for byte
            links = ssh(n, "for l in eth2 eth3 eth4; do ip -o link show dev $l; done")
            assert links.count("state UP") == 3, links
            profile = ssh(n, "cat /etc/profile")
            info = [ln for ln in profile.splitlines() if ln.startswith("CNI_INFO=")]
            assert info == ["CNI_INFO=multus+bridge"], profile
        # the seed's basic check, on VMs nothing was pushed to
        p = lab.play("playbooks/basic.yml", "-e", "basic_ipvlan=required", vars_files=())
        assert p.rc == 0, p.out[-6000:]
        assert "failed=0" in p.out
    finally:
        lab.down()
