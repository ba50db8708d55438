# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The roles' cross-field preflight checks without Ansible (plugins/plugin_utils/preflight.py):
each problem names the value and what is expected; good input gives none."""

from __future__ import annotations

import re

import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils import preflight as pf

WANT = {
    "version": "v1.0.1",
    "arch": "amd64",
    "url": "u",
    "checksum": "",
    "dirs": [],
    "download": True,
    "cache_dir": "",
    "host": "vm-001",
}
ARTIFACT = {
    "archive": "/c/cni-plugins-linux-amd64-v1.0.1.tgz",
    "files": ["bridge", "host-local", "LICENSE", "d/x"],
}


def cni(**kw):
    v = {
        "cni_plugins_bin_dir": "/opt/cni/bin",
        "cni_plugins_list": [],
        "cni_plugins_archive_dirs": [],
        "mine": dict(WANT),
        "want": dict(WANT),
        "artifact": ARTIFACT,
        "not_plugins": ["LICENSE", "README.md"],
    }
    v.update(kw)
    return pf.problems("cni_plugins", "vm-002", v)


def test_cni_plugins_good():
    assert cni() == [] and cni(cni_plugins_list=["bridge"]) == []


@pytest.mark.parametrize(
    ("kw", "expect"),
    [
        ({"cni_plugins_bin_dir": "opt"}, r'^expected cni_plugins_bin_dir an absolute path \(got "opt"\)'),
        (
            {"cni_plugins_list": "bridge"},
            r'cni_plugins_list a list of plain file names.*\(got "bridge"; on the command',
        ),
        ({"cni_plugins_list": [".hidden"]}, r'\(got \[".hidden"\];'),
        ({"cni_plugins_archive_dirs": "/x"}, r'cni_plugins_archive_dirs a list of directories \(got "/x"\)'),
        (
            {"cni_plugins_list": ["bridge", "vlan", "vlan"]},
            r'^cni_plugins_list names \["vlan"\], not in /c/cni-plugins-linux-amd64-v1.0.1.tgz; '
            r"it has bridge, host-local$",
        ),
        (
            {"mine": dict(WANT, version="v1.9.1", host="vm-001")},
            r"^the hosts of this play ask for different cni-plugins archives .*: "
            r"vm-001 asks for \{.*\"v1.0.1\".*\}, vm-002 for \{.*\"v1.9.1\"",
        ),
    ],
)
def test_cni_plugins_problems(kw, expect):
    got = cni(**kw)
    assert len(got) == 1 and re.search(expect, got[0]), got


MWANT = dict(WANT, version="3.9.3")


def multus(**kw):
    v = {
        "multus_bin_dir": "/opt/cni/bin",
        "multus_conf_file": "/etc/cni/net.d/10-multus.conf",
        "multus_activate_path": "/usr/lib/xcluster-multus/activate",
        "multus_manifest_dir": "/etc/kubernetes",
        "multus_kubectl_timeout": 5,
        "multus_kubeconfig": "/etc/kubernetes/kubeconfig.token",
        "multus_kubeconfig_server": "",
        "multus_kubeconfig_token": "",
        "multus_kubeconfig_content": "",
        "multus_version": "3.9.3",
        "mine": dict(MWANT),
        "want": dict(MWANT),
        "artifact": {"archive": "/c/multus.tgz", "members": ["m/multus"]},
        "flavour": {"member": "m/multus", "binary": "multus"},
    }
    v.update(kw)
    return pf.problems("multus", "vm-001", v)


def test_multus_good():
    assert multus() == []
    assert multus(multus_kubeconfig_server="https://198.19.0.1:6443", multus_kubeconfig_token="t") == []
    assert multus(multus_kubeconfig_content="apiVersion: v1") == []


@pytest.mark.parametrize(
    "kw",
    [
        {"multus_conf_file": "/etc/cni/net.d/"},
        {"multus_bin_dir": "bin"},
        {"multus_kubectl_timeout": "soon"},
        {"multus_kubectl_timeout": 0},
        {"multus_kubeconfig_server": "https://198.19.0.1:6443"},  # no token
        {"multus_kubeconfig_token": "t"},  # no server
        {"multus_kubeconfig_content": "x", "multus_kubeconfig_server": "s", "multus_kubeconfig_token": "t"},
        {"multus_kubeconfig_content": "x", "multus_kubeconfig": ""},
    ],
)
def test_multus_inputs(kw):
    got = multus(**kw)
    assert len(got) == 1 and got[0].startswith("multus_bin_dir, multus_manifest_dir ("), got
    assert "t" not in re.findall(r'"([^"]*)"', got[0])  # the token is never in a message


def test_multus_archive():
    got = multus(artifact={"archive": "/c/multus.tgz", "members": ["m/multus-thick"]})
    assert got == ["/c/multus.tgz has no m/multus (multus 3.9.3 ships multus); it holds m/multus-thick"]
    got = multus(mine=dict(MWANT, arch="arm64", host="vm-001"))
    assert len(got) == 1 and got[0].startswith("the hosts of this play ask for different multus archives")


def test_node_local_every_host_once():
    asks = {
        "vm-001": {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/node-local", "configs": {"macvlan": {}}},
        "vm-002": {"bin_dir": "bin", "conf_dir": "/etc/cni/node-local", "configs": {".hidden": {}}},
        "vm-003": {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc", "configs": None},
        "vm-004": {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc", "configs": {"a..b": {}}},
    }
    got = pf.problems("node_local", "vm-001", {"asks": asks, "cfg_re": "^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"})
    assert [g.split(":")[0] for g in got] == ["vm-002", "vm-003", "vm-004"]
    assert got[0].endswith('got the names [".hidden"]') and got[1].endswith("got no dicts")


def test_unknown_role():
    with pytest.raises(ValueError, match="no preflight checks for role 'sixth'"):
        pf.problems("sixth", "vm-001", {})
