# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""ovl/tar for real, with the lab's archives (tests/artifacts/build-all), a few seconds each:
an explicit -e on the command line wins over OVL_VARS files (and the environment's settings), as
a later -e wins in ansible-playbook; with whereabouts, the rc keeps whereabouts.conf only from
FIRST_WORKER on."""

from __future__ import annotations

import os
import subprocess
import tarfile

import gobuild_cases  # tests/helpers
import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TAR = os.path.join(REPO, "ovl", "tar")
LAB_VARS = os.path.join(REPO, "tests", "integration", "vars", "lab-archives.yml")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xcluster-multus")
ARCHIVES = ["cni-plugins-linux-amd64-v1.0.1.tgz", "multus-cni_3.9.3_linux_amd64.tar.gz"]


@pytest.fixture
def ovl_env(tmp_path):
    missing = [a for a in ARCHIVES if not os.path.isfile(os.path.join(CACHE, "archives", a))]
    assert not missing, f"{missing} missing in {CACHE}/archives: run tests/artifacts/build-all"
    # the lab's variables (its group_vars) for two hosts, as for the lab's inventory
    (tmp_path / "group_vars").symlink_to(os.path.join(REPO, "tests", "lab", "group_vars"))
    (tmp_path / "inventory.yml").write_text(
        "all:\n  children:\n    xcluster:\n      hosts:\n        vm-001:\n        vm-002:\n"
        "    xcluster_control_plane:\n      hosts:\n        vm-001:\n"
        "  vars:\n    ansible_connection: local\n"
    )
    env = dict(os.environ, OVL_INVENTORY=str(tmp_path / "inventory.yml"), GOPATH=str(tmp_path / "no-gopath"))
    for k in ("ARCHIVE", "WHEREABOUTS_DIR", "MSERVICE_DIR", "OVL_RC", "__cniver", "__multus_ver"):
        env.pop(k, None)
    return env


def _tar(env, tmp_path, *args):
    out = tmp_path / "multus.tar"
    p = subprocess.run(
        [TAR, str(out), *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    return p, out


def test_explicit_e_beats_ovl_vars(ovl_env, tmp_path):
    # the lab's file asks for the NADs without their plugin (whereabouts); -e says no: refused
    with open(LAB_VARS) as f:
        assert "\nmultus_nads_without_plugin: true\n" in f.read()
    p, out = _tar(dict(ovl_env, OVL_VARS=LAB_VARS), tmp_path, "-e", "multus_nads_without_plugin=false")
    assert p.returncode == 1 and not out.exists(), p.stderr[-3000:]
    assert "NAD ipvlan uses whereabouts" in p.stderr
    # a file that says no, -e that says yes: the overlay is made, with the ipvlan NADs
    no = tmp_path / "no.yml"
    no.write_text("multus_nads_without_plugin: false\n")
    p, out = _tar(
        dict(ovl_env, OVL_VARS=f"{LAB_VARS} {no}"), tmp_path, "-e", '{"multus_nads_without_plugin": true}'
    )
    assert p.returncode == 0, p.stderr[-3000:]
    with tarfile.open(out) as t:
        assert "etc/kubernetes/multus/multus-crd-ipvlan.yaml" in t.getnames()


def test_explicit_e_beats_the_environment(ovl_env, tmp_path):
    # OVL_RC=2022 gives 25multus.rc; an explicit -e ovl_rc_name=head gives 27multus.rc
    p, out = _tar(dict(ovl_env, OVL_VARS=LAB_VARS, OVL_RC="2022"), tmp_path, "-e", "ovl_rc_name=head")
    assert p.returncode == 0, p.stderr[-3000:]
    with tarfile.open(out) as t:
        rcs = [n for n in t.getnames() if n.startswith("etc/init.d/")]
    assert rcs == ["etc/init.d/27multus.rc"]
    p, out = _tar(dict(ovl_env, OVL_VARS=LAB_VARS, OVL_RC="2022"), tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    with tarfile.open(out) as t:
        assert [n for n in t.getnames() if n.startswith("etc/init.d/")] == ["etc/init.d/25multus.rc"]


def test_whereabouts_conf_is_kept_from_first_worker(ovl_env, tmp_path, tiny_clone):
    """With whereabouts, the overlay's rc removes whereabouts.conf on nodes below FIRST_WORKER
    (read from /etc/profile at boot), as xcluster's 25whereabouts.rc writes it only from there
    (the rc itself is run in tests/unit/plugins/plugin_utils/test_ovl.py)."""
    env = gobuild_cases.go_env(dict(ovl_env, OVL_VARS=LAB_VARS, WHEREABOUTS_DIR=str(tiny_clone)))
    p, out = _tar(env, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    conf = "/etc/cni/net.d/whereabouts.d/whereabouts.conf"
    with tarfile.open(out) as t:
        assert conf[1:] in t.getnames()
        rc = t.extractfile("etc/init.d/27multus.rc").read().decode()
    assert "unset DELEGATES FIRST_WORKER\n" in rc
    assert f"\tfor f in {conf}; do\n" in rc
