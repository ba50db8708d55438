# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""push_files on the shared lab (tests/lab/lab): a lab of its own with 3 nodes, brought up
and taken down here. LAB=netns (default) or LAB=vm (qemu VMs: a real busybox userland).
The real Debian CNI plugins go to /opt/cni/bin on every node, and one of them runs there."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
from test_push_files_play import Runner  # a sibling test module (pytest puts its directory first)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LABCMD = os.path.join(REPO, "tests", "lab", "lab")
BACKEND = os.environ.get("LAB", "netns")
PLUGINS = "/usr/lib/cni"
NODES = ("vm-001", "vm-002", "vm-003")
VERSION_CMD = 'echo \'{"cniVersion":"0.4.0"}\' | CNI_COMMAND=VERSION /opt/cni/bin/bridge'


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if not os.path.isdir(PLUGINS):
        pytest.skip(f"{PLUGINS} missing (apt: containernetworking-plugins)")
    env = dict(os.environ, LAB=BACKEND, LAB_PREFIX=f"xpf{BACKEND[0]}{os.getpid() % 10000}", LAB_NET="auto")
    env["LAB_NODES"] = str(len(NODES))
    p = subprocess.run([LABCMD, "up"], env=env, capture_output=True, text=True, timeout=900, check=False)
    try:
        assert p.returncode == 0, f"lab up failed:\n{p.stdout}{p.stderr}"
        inv = subprocess.run([LABCMD, "inventory"], env=env, capture_output=True, text=True, check=True)
        yield env, inv.stdout.strip()
    finally:
        subprocess.run([LABCMD, "down"], env=env, capture_output=True, check=False)


def on_node(env, n, cmd):
    p = subprocess.run([LABCMD, "ssh", str(n), cmd], env=env, capture_output=True, text=True, check=False)
    return p.returncode, p.stdout


def test_lab_cni_plugins(lab, tmp_path):
    env, inv = lab
    src = tmp_path / "plugins"
    shutil.copytree(PLUGINS, src)
    r = Runner(tmp_path, hosts="xcluster", inventory=inv, state_dir=None)  # push_files' default
    args = {"files": [{"src": f"{src}/", "dest": "/opt/cni/bin/", "mode": "0755"}]}
    on_node(env, 2, "mkdir -p /opt/cni/bin && echo theirs > /opt/cni/bin/other-installer")
    listing = {n: on_node(env, n, "ls -la /opt/cni/bin 2>&1") for n in (1, 2, 3)}

    res = r.play(args, check=True)  # check mode on fresh nodes
    assert all(res[h]["changed"] and res[h]["bytes_transferred"] == 0 for h in NODES)
    assert {n: on_node(env, n, "ls -la /opt/cni/bin 2>&1") for n in (1, 2, 3)} == listing

    res = r.play(args)
    n_files = len(os.listdir(src))
    for h in NODES:
        assert res[h]["changed"] and len(res[h]["transferred"]) == n_files and res[h]["transport"] == "tar"
        assert res[h]["round_trips"] == 3
    for n in (1, 2, 3):
        rc, out = on_node(env, n, 'echo \'{"cniVersion":"0.4.0"}\' | CNI_COMMAND=VERSION /opt/cni/bin/bridge')
        assert rc == 0 and '"supportedVersions"' in out
        rc, out = on_node(env, n, "sha256sum /opt/cni/bin/* | sort -k2; ls -a /opt/cni/bin")
        with open(src / "macvlan", "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() + "  /opt/cni/bin/macvlan" in out
        assert ".xcm-tmp." not in out
    assert on_node(env, 2, "cat /opt/cni/bin/other-installer") == (0, "theirs\n")

    res = r.play(args)  # rerun: nothing moves, nothing is hashed (the nodes' records)
    assert all(not res[h]["changed"] and res[h]["bytes_transferred"] == 0 for h in NODES)
    assert all(res[h]["round_trips"] == 1 and res[h]["hashed"] == [] for h in NODES)
    rc, out = on_node(env, 1, "ls /var/lib/xcluster-multus/push/opt/cni/bin | wc -l")  # one record per file
    assert rc == 0 and int(out) == n_files

    patched = b"#!/bin/sh\necho patched\n"
    (src / "tuning").write_bytes(patched)  # one file changed: only it moves
    res = r.play(args, diff=True)
    assert all(res[h]["transferred"] == ["/opt/cni/bin/tuning"] for h in NODES)
    assert all(res[h]["bytes_transferred"] == len(patched) for h in NODES)
    assert "+++ after: /opt/cni/bin/tuning" in r.output
    assert on_node(env, 3, "/opt/cni/bin/tuning") == (0, "patched\n")
