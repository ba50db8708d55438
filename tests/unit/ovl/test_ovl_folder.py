# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ovl folder is xcluster's contract: tar, multus.sh (xcadmin k8s_test multus <test>), and
the images xcluster's `images lreg_preload multus` finds in its *.yaml files."""

from __future__ import annotations

import pathlib
import re
import subprocess

import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
OVL = REPO / "ovl"


def getimages(d):
    """What xcluster's images.sh getimages does: ' image:' lines of every *.yaml under d."""
    out = set()
    for f in d.rglob("*.yaml"):
        for line in f.read_text().splitlines():
            if " image:" in line:
                out.add(re.sub(r".*image: *", "", line).replace('"', "").replace("'", ""))
    return out


def test_preload_images_are_the_manifests_images():
    multus = yaml.safe_load((REPO / "roles/multus/defaults/main.yml").read_text())
    ms = yaml.safe_load((REPO / "roles/multus_service/defaults/main.yml").read_text())
    want = {
        multus["multus_daemonset_image"],
        ms["multus_service_server_image"],
        ms["multus_service_client_image"],
    }
    assert getimages(OVL) == want


def test_multus_sh_lists_the_seed_tests():
    p = subprocess.run([OVL / "multus.sh", "test", "--list"], capture_output=True, text=True, check=True)
    assert p.stdout.split() == ["start_empty", "start", "start_server", "basic"]


def test_multus_sh_says_what_it_needs_without_xcluster():
    p = subprocess.run(
        [OVL / "multus.sh", "test", "basic"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "XCLUSTER": ""},
        check=False,
    )
    assert p.returncode == 1 and p.stdout == ""
    assert "needs an xcluster environment: $XCLUSTER" in p.stderr
    assert "playbooks/basic.yml" in p.stderr and "make demo LAB=vm OVL=1" in p.stderr


def test_multus_sh_refuses_unknown_commands_and_options():
    p = subprocess.run([OVL / "multus.sh", "nope"], capture_output=True, text=True, check=False)
    assert p.returncode == 1 and "Invalid command [nope]" in p.stderr
    p = subprocess.run([OVL / "multus.sh", "test", "--x;y"], capture_output=True, text=True, check=False)
    assert p.returncode == 1 and "bad option" in p.stderr
