# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""plugins/plugin_utils/basic.py, its filter xcluster.multus.basic and playbooks/files/basic.sh:
the rules of the basic check (playbooks/basic.yml, playbooks/tasks/basic_api.yml). The check
itself runs on real nodes in tests/integration (test_k8s.py, test_vm_ovl_boot.py, molecule
multus's verify)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.filter import basic as f_basic
from ansible_collections.xcluster.multus.plugins.plugin_utils import basic as b

REPO = pathlib.Path(__file__).resolve().parents[4]
SCRIPT = REPO / "playbooks/files/basic.sh"
BASIC = f_basic.FilterModule().filters()["basic"]
NAMES = ["ipvlan", "macvlan", "host-device"]

MANIFESTS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: network-attachment-definitions.k8s.cni.cncf.io}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: ipvlan}
spec:
  config: '{"cniVersion": "0.4.0", "type": "ipvlan", "master": "eth1",
    "ipam": {"type": "whereabouts", "range": "198.18.96.0/24"}}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: macvlan}
spec:
  config: '{"cniVersion": "0.4.0", "type": "macvlan", "master": "eth1",
    "ipam": {"type": "node-local", "cfg": "macvlan"}}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: host-device}
spec:
  config: '{"cniVersion": "0.4.0", "name": "hostdev", "type": "host-device", "device": "eth2"}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: bridge}
spec: {}
"""
DOCS = list(yaml.safe_load_all(MANIFESTS))

# node-local templates as the node holds them ('%' is the node index).
MACVLAN_CFG = {
    "ipam": {
        "type": "host-local",
        "ranges": [
            [{"subnet": "198.18.0.0/16", "rangeStart": "198.18.%.0", "rangeEnd": "198.18.%.255"}],
            [
                {
                    "subnet": "2001:db8:64::/64",
                    "rangeStart": "2001:db8:64::%:0",
                    "rangeEnd": "2001:db8:64::%:ff",
                }
            ],
        ],
    }
}
IPVLAN_CFG = {
    "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "198.19.0.0/16", "rangeStart": "198.19.%.0", "rangeEnd": "198.19.%.255"}]],
    }
}
CLUSTER = {"cniVersion": "0.4.0", "name": "xnet", "type": "bridge", "ipam": {"type": "host-local"}}
MULTUS = {
    "cniVersion": "0.4.0",
    "name": "multus",
    "type": "multus-cni",
    "kubeconfig": "/etc/kubernetes/kubeconfig.token",
    "clusterNetwork": "xnet",
    "defaultNetworks": [],
    "confDir": "/etc/cni/net.d",
    "cniDir": "/var/lib/cni/multus",
    "binDir": "/opt/cni/bin",
}


def link(ifname, *addrs):
    info = [{"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]
    info += [{"local": a.split("/")[0], "prefixlen": int(a.split("/")[1]), "scope": "global"} for a in addrs]
    return {"ifindex": 2, "ifname": ifname, "addr_info": info}


# ------------------------------------------------------------------------ NADs and delegates


def test_nad_configs_from_the_manifests_and_from_the_api():
    got = b.nad_configs(DOCS, NAMES + ["bridge", "absent"])
    assert sorted(got) == sorted(NAMES)  # bridge has no spec.config, absent is not there
    assert got["macvlan"] == {
        "name": "macvlan",
        "cniVersion": "0.4.0",
        "type": "macvlan",
        "master": "eth1",
        "ipam": {"type": "node-local", "cfg": "macvlan"},
    }
    assert got["host-device"]["name"] == "hostdev"  # the config's own name wins
    # kubectl get -o json's items are the same objects
    assert BASIC(json.loads(json.dumps(DOCS)), "nad_configs", names=["ipvlan"]) == {"ipvlan": got["ipvlan"]}


def test_nad_configs_bad_json_names_host_and_nad():
    docs = [
        {"kind": "NetworkAttachmentDefinition", "metadata": {"name": "macvlan"}, "spec": {"config": "{nope"}}
    ]
    with pytest.raises(
        AnsibleFilterError, match=r"basic nad_configs: vm-002: the spec.config of NAD macvlan is not JSON"
    ):
        BASIC(docs, "nad_configs", names=["macvlan"], host="vm-002")


def test_attached_order():
    assert b.attached(NAMES, True) == ["ipvlan", "macvlan", "host-device"]
    assert BASIC(NAMES, "attached", ipvlan_on=False) == ["macvlan", "host-device"]


def test_delegates_cluster_network_then_nads_ipvlan_on_node_local():
    nads = b.nad_configs(DOCS, NAMES)
    nets = b.delegates(MULTUS, nads, NAMES, ipvlan_on=True, ipvlan_cfg="ipvlan", cluster=json.dumps(CLUSTER))
    assert [n["name"] for n in nets] == ["xnet", "ipvlan", "macvlan", "hostdev"]
    assert nets[1]["ipam"] == {"type": "node-local", "cfg": "ipvlan"}  # whereabouts needs an API server
    assert nets[1]["master"] == "eth1"
    assert nads["ipvlan"]["ipam"]["type"] == "whereabouts"  # input left alone


def test_delegates_without_ipvlan_inline_and_api():
    nads = b.nad_configs(DOCS, NAMES)
    inline = dict(MULTUS, delegates=[CLUSTER])
    assert [n["type"] for n in b.delegates(inline, nads, NAMES, ipvlan_on=False, ipvlan_cfg="ipvlan")] == [
        "bridge",
        "macvlan",
        "host-device",
    ]
    assert [
        n["type"] for n in b.delegates(MULTUS, nads, NAMES, ipvlan_on=False, ipvlan_cfg="ipvlan", api_on=True)
    ] == [
        "macvlan",
        "host-device",
    ]


def test_delegates_errors():
    nads = b.nad_configs(DOCS, NAMES)
    with pytest.raises(
        AnsibleFilterError, match=r"vm-003: the installed multus config has neither inline delegates"
    ):
        BASIC(
            MULTUS,
            "delegates",
            nads=nads,
            names=NAMES,
            ipvlan_on=True,
            ipvlan_cfg="ipvlan",
            cluster="",
            host="vm-003",
        )
    with pytest.raises(AnsibleFilterError, match=r"no installed config for NAD 'macvlan'"):
        BASIC(MULTUS, "delegates", nads={}, names=NAMES, ipvlan_on=False, api_on=True)
    with pytest.raises(AnsibleFilterError, match=r"needs the argument 'nads'"):
        BASIC(MULTUS, "delegates", names=NAMES, ipvlan_on=False)


def test_check_conf_drops_the_api_keys():
    conf = BASIC(MULTUS, "check_conf", nets=[CLUSTER], log="/var/log/x.log")
    assert "kubeconfig" not in conf and "clusterNetwork" not in conf and "defaultNetworks" not in conf
    assert (
        conf["delegates"] == [CLUSTER]
        and conf["logFile"] == "/var/log/x.log"
        and conf["logToStderr"] is False
    )
    assert conf["cniDir"] == MULTUS["cniDir"]


# ------------------------------------------------------------------------ the pod (no API server)


def nets_with_ipvlan():
    nads = b.nad_configs(DOCS, NAMES)
    return b.delegates(MULTUS, nads, NAMES, ipvlan_on=True, ipvlan_cfg="ipvlan", cluster=json.dumps(CLUSTER))


def test_node_local_cfgs():
    assert BASIC(nets_with_ipvlan(), "node_local_cfgs") == ["ipvlan", "macvlan"]


def test_pod_interfaces_ranges_and_lines():
    nets = nets_with_ipvlan()
    links = [
        {
            "ifindex": 1,
            "ifname": "lo",
            "addr_info": [{"local": "127.0.0.1", "prefixlen": 8, "scope": "host"}],
        },
        link("eth0", "198.18.200.7/24"),
        link("net1", "198.19.3.1/16"),
        link("net2", "198.18.3.2/16", "2001:db8:64::3:2/64", "198.18.4.9/16"),  # the last: node 4's range
    ]  # net3 (host-device) missing
    docs = [3, IPVLAN_CFG, MACVLAN_CFG]  # the node index, then the cfgs in node_local_cfgs' order
    pod = BASIC(links, "pod", nets=nets, docs=docs, host="vm-003")
    assert [(i["ifname"], i["network"], i["type"], i["cfg"], i["present"]) for i in pod] == [
        ("eth0", "xnet", "bridge", "", True),
        ("net1", "ipvlan", "ipvlan", "ipvlan", True),
        ("net2", "macvlan", "macvlan", "macvlan", True),
        ("net3", "hostdev", "host-device", "", False),
    ]
    assert pod[0]["addresses"] == [{"local": "198.18.200.7", "prefixlen": 24, "range": None}]
    assert pod[1]["addresses"][0]["range"] == {
        "subnet": "198.19.0.0/16",
        "start": "198.19.3.0",
        "end": "198.19.3.255",
    }
    assert pod[2]["addresses"][1]["range"]["start"] == "2001:db8:64::3:0"
    assert pod[2]["addresses"][2]["range"] is None
    assert BASIC(pod, "pod_lines") == [
        "eth0  xnet         bridge       198.18.200.7/24",
        "net1  ipvlan       ipvlan       198.19.3.1/16 (node-local ipvlan 198.19.3.0-198.19.3.255)",
        "net2  macvlan      macvlan      198.18.3.2/16 (node-local macvlan 198.18.3.0-198.18.3.255), "
        "2001:db8:64::3:2/64 (node-local macvlan 2001:db8:64::3:0-2001:db8:64::3:ff), "
        "198.18.4.9/16 (node-local macvlan OUT OF THIS NODE'S RANGES)",
        "net3  hostdev      host-device  MISSING",
    ]


def test_pod_interfaces_no_address_and_bad_documents():
    nets = nets_with_ipvlan()
    pod = b.pod_interfaces(
        nets, [link("eth0"), link("net1"), link("net2"), link("net3")], [3, IPVLAN_CFG, MACVLAN_CFG]
    )
    assert b.pod_lines(pod)[1] == "net1  ipvlan       ipvlan       no address"
    with pytest.raises(AnsibleFilterError, match=r"vm-001: expected the node index and 2 node-local configs"):
        BASIC([], "pod", nets=nets, docs=[3, IPVLAN_CFG], host="vm-001")
    with pytest.raises(AnsibleFilterError, match=r"basic pod: .*vm-001"):
        BASIC(
            [], "pod", nets=nets, docs=[3, IPVLAN_CFG, {"ipam": {"ranges": "no placeholder"}}], host="vm-001"
        )


# ------------------------------------------------------------------------ against the API


def test_api_pods():
    pods = BASIC(
        ["vm-001", "vm-002"],
        "api_pods",
        names=NAMES,
        namespace="default",
        netns="xcm-basic",
        ipvlan_on={"vm-001": True, "vm-002": False},
    )
    assert pods["kind"] == "List" and pods["apiVersion"] == "v1"
    one, two = pods["items"]
    assert one["metadata"] == {
        "name": "xcm-basic-vm-001",
        "namespace": "default",
        "labels": {"app": "xcm-basic"},
        "annotations": {"k8s.v1.cni.cncf.io/networks": "ipvlan,macvlan,host-device"},
    }
    assert two["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "macvlan,host-device"
    assert two["spec"] == {
        "nodeName": "vm-002",
        "containers": [{"name": "alpine", "image": "alpine", "command": ["sleep", "60m"]}],
    }


STATUS = [
    {"name": "xnet", "interface": "eth0", "ips": ["198.18.200.7"], "default": True},
    {"name": "default/macvlan", "interface": "net1", "ips": ["198.18.3.2", "2001:db8:64::3:2"]},
    {"name": "default/host-device", "interface": "net2", "ips": []},
]
PODS = {
    "items": [
        {"metadata": {"name": "xcm-basic-vm-002", "uid": "u2", "annotations": {}}},
        {
            "metadata": {
                "name": "xcm-basic-vm-003",
                "uid": "u3",
                "annotations": {"k8s.v1.cni.cncf.io/network-status": json.dumps(STATUS)},
            }
        },
    ]
}


def test_pod_uid_and_network_status():
    assert BASIC(PODS, "pod_uid", name="xcm-basic-vm-003") == "u3"
    assert BASIC(PODS, "pod_uid", name="xcm-basic-vm-009") == ""
    assert BASIC(PODS, "network_status", name="xcm-basic-vm-003") == STATUS
    assert BASIC(PODS, "network_status", name="xcm-basic-vm-002") == []
    bad = {"items": [{"metadata": {"name": "p", "annotations": {"k8s.v1.cni.cncf.io/network-status": "{"}}}]}
    with pytest.raises(AnsibleFilterError, match=r"vm-001: the network-status of pod p is not JSON"):
        BASIC(bad, "network_status", name="p", host="vm-001")


def test_status_against_the_pod():
    links = [
        link("eth0", "198.18.200.7/24"),
        link("net1", "2001:db8:64::3:2/64", "198.18.3.2/18"),
        link("net2"),
    ]
    pod = BASIC(STATUS, "status", links=links)
    assert [(i["ifname"], i["network"], i["present"], i["match"]) for i in pod] == [
        ("eth0", "xnet", True, True),
        ("net1", "macvlan", True, True),
        ("net2", "host-device", True, True),
    ]
    assert BASIC(pod, "status_lines") == [
        "eth0 xnet 198.18.200.7 in-pod same-addresses",
        "net1 macvlan 198.18.3.2,2001:db8:64::3:2 in-pod same-addresses",
        "net2 host-device  in-pod same-addresses",
    ]
    assert BASIC(pod, "status_problems", names=["macvlan", "host-device"], pinged=["macvlan"]) == []


def test_status_problems_each_rule():
    links = [link("eth0", "198.18.200.9/24"), link("net1")]  # eth0's address differs, net2 not in the pod
    pod = b.status_interfaces(STATUS, links)
    assert b.status_lines(pod)[0] == "eth0 xnet 198.18.200.7 in-pod ADDRESSES-DIFFER"
    assert (
        b.status_lines(pod)[2] == "net2 host-device  MISSING-IN-POD ADDRESSES-DIFFER" or not pod[2]["present"]
    )
    wrong = b.status_problems(pod, ["ipvlan", "macvlan", "host-device"], ["macvlan", "host-device"])
    assert "3 interfaces, expected 4" in wrong
    assert "not in the network-status: ['ipvlan']" in wrong
    assert "net2 not in the pod" in wrong
    assert "eth0 addresses differ" in wrong and "net1 addresses differ" in wrong
    assert "net2 (host-device) has no address" in wrong
    # no cluster network, or two of them
    assert any(
        "besides the attached" in w for w in b.status_problems(pod[1:], ["macvlan", "host-device"], [])
    )
    two = b.status_interfaces([dict(STATUS[0], name="other")] + STATUS, links)
    assert any("besides the attached" in w for w in b.status_problems(two, ["macvlan", "host-device"], []))


# ------------------------------------------------------------------------ the ping matrix


def test_ping_targets_both_shapes():
    pods = {
        "vm-001": [
            {"network": "macvlan", "ips": ["198.18.1.2", "2001:db8:64::1:2"]},
            {"network": "xnet", "ips": ["x"]},
        ],
        "vm-002": [{"network": "macvlan", "addresses": [{"local": "198.18.2.2", "prefixlen": 18}]}],
        "vm-003": [
            {"network": "ipvlan", "ips": ["198.19.3.1"]},
            {"network": "macvlan", "ips": ["198.18.3.2"]},
        ],
    }
    assert BASIC(pods, "ping_targets", me="vm-002", pinged=["macvlan", "ipvlan"]) == [
        ["macvlan", "vm-001", "198.18.1.2"],
        ["macvlan", "vm-001", "2001:db8:64::1:2"],
        ["ipvlan", "vm-003", "198.19.3.1"],
        ["macvlan", "vm-003", "198.18.3.2"],
    ]
    assert b.ping_targets(pods, "vm-001", ["macvlan"]) == [
        ["macvlan", "vm-002", "198.18.2.2"],
        ["macvlan", "vm-003", "198.18.3.2"],
    ]


def test_pings_table():
    lines = [
        "noise",
        '{"net":"macvlan","to":"vm-002","addr":"198.18.2.2","ok":true}',
        ' {"net":"m","to":"vm-3","addr":"a","ok":false}',
    ]
    got = BASIC(lines, "pings", host="vm-001")
    assert len(got["pings"]) == 2 and got["lost"] == [got["pings"][1]]
    assert got["table"] == ["vm-001 -> macvlan vm-002 198.18.2.2 ok", "vm-001 -> m vm-3 a LOST"]


def test_unknown_op():
    with pytest.raises(AnsibleFilterError, match=r"basic: unknown op 'nope'"):
        BASIC({}, "nope")


# ------------------------------------------------------------------------ playbooks/files/basic.sh


def test_script_is_shellcheck_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck missing")
    subprocess.run(["shellcheck", "-s", "sh", str(SCRIPT)], check=True)


def run_script(tmp_path, *args):
    """basic.sh as the task runs it (sh -s -- ARGS, the file on stdin), with an `ip` on PATH that
    logs its arguments and lets `ping` reach only addresses ending in .1 (no netns needed)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "ip").write_text(
        '#!/bin/sh\necho "$*" >>"$IPLOG"\n'
        'if [ "$1 $2" = "netns exec" ]; then shift 3\n'
        '  case "$*" in ping*.1) exit 0 ;; ping*) exit 1 ;; esac\nfi\n'
    )
    (fake / "ip").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", IPLOG=str(tmp_path / "ip.log"))
    return subprocess.run(
        ["sh", "-s", "--", *args],
        input=SCRIPT.read_text(),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_script_ping_matrix_lines(tmp_path):
    res = run_script(
        tmp_path,
        "ping",
        "xcm-basic",
        "2",
        "3",
        "macvlan",
        "vm-002",
        "198.18.2.1",
        "ipvlan",
        "vm-003",
        "2001:db8::9",
    )
    assert res.returncode == 0, res.stderr
    assert [json.loads(line) for line in res.stdout.splitlines()] == [
        {"net": "macvlan", "to": "vm-002", "addr": "198.18.2.1", "ok": True},
        {"net": "ipvlan", "to": "vm-003", "addr": "2001:db8::9", "ok": False},
    ]
    assert (tmp_path / "ip.log").read_text().splitlines()[
        0
    ] == "netns exec xcm-basic ping -c 2 -W 3 198.18.2.1"
    assert run_script(tmp_path, "ping", "xcm-basic", "2", "3").stdout == ""  # one node: nothing to ping


def test_script_unknown_command(tmp_path):
    res = run_script(tmp_path, "nope")
    assert res.returncode == 2 and "unknown command 'nope'" in res.stderr


def test_script_pods_delete_finds_allocations_left(tmp_path):
    """pods-delete against a kubectl on PATH that answers with a whereabouts IPPool (the real
    API server path runs in tests/integration/test_k8s.py)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    pool = {"items": [{"spec": {"allocations": {"5": {"id": "c1", "podref": "default/xcm-basic-vm-002"}}}}]}
    (tmp_path / "pool.json").write_text(json.dumps(pool, indent=2))
    (fake / "kubectl").write_text(
        '#!/bin/sh\necho "$*" >>"$KLOG"\ncase "$*" in *"get ippools"*) cat "$POOL" ;; esac\n'
    )
    (fake / "kubectl").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", KLOG=str(tmp_path / "k.log"))

    def run(*args):
        return subprocess.run(
            ["sh", "-s", "--", "pods-delete", "/etc/kubernetes/kc", *args],
            input=SCRIPT.read_text(),
            env=dict(env, POOL=str(tmp_path / "pool.json")),
            capture_output=True,
            text=True,
            check=False,
        )

    res = run("default", "xcm-basic")
    assert res.returncode == 1
    assert 'whereabouts allocations left after DEL: "podref": "default/xcm-basic-vm-002"' in res.stdout
    assert "IPPOOLS-CHECKED" in res.stdout
    log = (tmp_path / "k.log").read_text().splitlines()
    assert log[-1] == (
        "--kubeconfig=/etc/kubernetes/kc --request-timeout=20s -n default delete pod -l app=xcm-basic"
        " --force --grace-period=0 --ignore-not-found"
    )
    res = run("other", "xcm-basic")  # another namespace's allocations are not the check's
    assert res.returncode == 0 and "IPPOOLS-CHECKED" in res.stdout, res.stdout
