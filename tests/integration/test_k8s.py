# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The collection against a real kube-apiserver: a netns lab of this module's own with the lab's
control plane (LAB_K8S=1, tests/lab/k8s.sh: kube-apiserver + etcd beside the nodes, the token
kubeconfig on every node, kubectl on vm-001), 2 nodes.

1. site.yml in multus's default mode (multus_mode cluster_network, multus 3.9.3) applies the
   NAD CRD, the NADs and the DaemonSet to the real server with kubectl on vm-001; the server
   has them (server-side validation passed); the token never shows;
2. a rerun reports nothing changed; --check applies nothing (an object deleted beforehand stays
   deleted);
3. playbooks/basic.yml in the default mode (basic_api=required): a Pod object per node, the
   installed multus reads it and the NADs from the API, the pod's network-status is read back
   from the API and matches the pod's interfaces, pings cross the nodes, DEL removes it all;
4. the same with the thin multus 4.x (4.3.0);
5. whereabouts (built by the role from a clone stand-in) allocates for real: the ipvlan NAD's
   IPAM as the roles render it (dual-stack ipRanges), 40 concurrent ADDs across the nodes give
   40 distinct addresses per family, each recorded in the API's IPPools; DEL frees them all.
The namespace lab has no ipvlan (host kernel), so net1 is macvlan there; `XCM_K8S_LAB=vm` runs
the module on the VM lab, where net1 is ipvlan over whereabouts (addresses from the API's
IPPools) and every ping goes over ipvlan and macvlan. Needs root, the archives of
tests/artifacts/build-all and its k8s target (built on first use by the lab), and etcd
(scripts/install-deps).
"""

from __future__ import annotations

import json

import k8slab  # tests/helpers
import pytest
from k8slab import recap_changed

ARCHIVES = [
    "cni-plugins-linux-amd64-v1.0.1.tgz",
    "multus-cni_3.9.3_linux_amd64.tar.gz",
    "multus-cni_4.3.0_linux_amd64.tar.gz",
]
NODES = 2
# XCM_K8S_LAB=vm runs the module on the VM lab (ipvlan works there: net1 is ipvlan over
# whereabouts, allocated from the API's IPPools); netns by default.
VM = k8slab.BACKEND == "vm"
NADS = {"bridge", "ipvlan", "ipvlan2", "macvlan", "host-device"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with k8slab.running(
        tmp_path_factory, "k8si", NODES, standins=["WHEREABOUTS_DIR"], archives=ARCHIVES
    ) as lab:
        yield lab


def test_site_applies_to_the_real_server(lab):
    out = lab.playbook("site.yml")
    crd = json.loads(
        lab.kubectl("get", "crd", "network-attachment-definitions.k8s.cni.cncf.io", "-o", "json")
    )
    assert crd["spec"]["names"]["kind"] == "NetworkAttachmentDefinition"
    nads = json.loads(lab.kubectl("get", "network-attachment-definitions", "-A", "-o", "json"))["items"]
    assert {n["metadata"]["name"] for n in nads} >= NADS, nads
    cfg = {n["metadata"]["name"]: json.loads(n.get("spec", {}).get("config") or "{}") for n in nads}
    assert cfg["macvlan"]["type"] == "macvlan" and cfg["ipvlan"]["ipam"]["type"] == "whereabouts"
    ds = json.loads(lab.kubectl("get", "daemonset", "-A", "-o", "json"))["items"]
    assert [d["metadata"]["name"] for d in ds] == ["multus-alpine"], ds
    assert "PLAY RECAP" in out


def test_rerun_unchanged_and_check_applies_nothing(lab):
    out = lab.playbook("site.yml")
    assert set(recap_changed(out).values()) == {0}, out[-4000:]
    lab.kubectl("delete", "network-attachment-definition", "host-device")
    lab.playbook("site.yml", "--check")
    names = lab.kubectl("get", "network-attachment-definitions", "-o", "name")
    assert "host-device" not in names, names
    lab.playbook("site.yml")
    assert "host-device" in lab.kubectl("get", "network-attachment-definitions", "-o", "name")


@pytest.mark.parametrize("version", ["3.9.3", "4.3.0"])
def test_basic_in_the_default_mode(lab, version, tmp_path):
    if version != "3.9.3":
        lab.playbook("site.yml", "-e", f"multus_version={version}")
    out, got = lab.basic(tmp_path, "-e", f"multus_version={version}")
    assert "network-status from the API" in out, out[-4000:]
    assert sorted(got) == [f"vm-00{n}" for n in range(1, NODES + 1)]
    for host, (pod, lines) in got.items():
        # eth0 (the cluster network), then ipvlan (VMs only: whereabouts), macvlan, host-device
        nets = (["ipvlan"] if VM else []) + ["macvlan", "host-device"]
        assert [i["ifname"] for i in pod] == ["eth0"] + [f"net{n}" for n in range(1, len(nets) + 1)], pod
        assert [i["network"] for i in pod][1:] == nets, pod
        assert all(i["present"] and i["match"] for i in pod), pod
        for i in pod[1:-1]:
            assert {":" in a for a in i["ips"]} == {True, False}, pod  # IPv4 and IPv6
        pings = [json.loads(p) for p in lines if p.strip().startswith("{")]
        assert len(pings) == 2 * (len(nets) - 1) * (NODES - 1) and all(p["ok"] for p in pings), (host, pings)
    # DEL and the cleanup left no Pod object
    assert lab.kubectl("get", "pods", "-A", "-o", "name").strip() == ""


def test_whereabouts_allocates_40_concurrent(lab):
    wb = json.loads(lab.kubectl("get", "network-attachment-definition", "ipvlan", "-o", "json"))
    conf = dict(json.loads(wb["spec"]["config"]), name="ipvlan")
    assert conf["ipam"]["type"] == "whereabouts" and len(conf["ipam"]["ipRanges"]) == 2, conf
    out = lab.whereabouts(conf, "ADD", 40, "xcm-wb")
    results = {}
    for line in out.splitlines():
        if line.startswith("out."):
            name, _, body = line.partition(" ")
            results[name] = json.loads(body) if body.strip() else None
    assert len(results) == 40 and None not in results.values(), out[-3000:]
    v4 = [ip["address"] for r in results.values() for ip in r["ips"] if ":" not in ip["address"]]
    v6 = [ip["address"] for r in results.values() for ip in r["ips"] if ":" in ip["address"]]
    assert len(v4) == len(set(v4)) == 40 and len(v6) == len(set(v6)) == 40, (v4, v6)
    pools = json.loads(lab.kubectl("get", "ippools.whereabouts.cni.cncf.io", "-A", "-o", "json"))["items"]
    recorded = {a["podref"] for p in pools for a in p["spec"].get("allocations", {}).values()}
    assert recorded == {f"default/xcm-wb-{i}" for i in range(40)}, recorded
    assert sum(len(p["spec"].get("allocations", {})) for p in pools) == 80
    lab.whereabouts(conf, "DEL", 40, "xcm-wb")
    pools = json.loads(lab.kubectl("get", "ippools.whereabouts.cni.cncf.io", "-A", "-o", "json"))["items"]
    assert [a for p in pools for a in p["spec"].get("allocations", {}).values()] == [], pools


FAIL_ADD = r"""
ns=xcm-fail conf=/tmp/xcm-fail.conf bin=$(jq -r '.binDir + "/" + .type' /etc/cni/net.d/10-multus.conf)
{setup}
jq --arg k "$kc" '.kubeconfig = $k | .logToStderr = false | .logFile = "/var/log/xcm-fail.log"' \
  /etc/cni/net.d/10-multus.conf >$conf
ip netns add $ns
export CNI_NETNS=/run/netns/$ns CNI_IFNAME=eth0 CNI_CONTAINERID=xcm-fail-cid CNI_PATH=/opt/cni/bin
a="IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}"
export CNI_ARGS="$a;K8S_POD_UID={uid};K8S_POD_INFRA_CONTAINER_ID=xcm-fail-cid"
CNI_COMMAND=ADD timeout 120 $bin <$conf; rc=$?; echo; echo "ADD-RC=$rc"
echo "LINKS=$(ip netns exec $ns ip -o link show | grep -cv ': lo:')"
echo "LEASES=$(grep -rl xcm-fail-cid /var/lib/cni/networks 2>/dev/null | wc -l)"
CNI_COMMAND=DEL $bin <$conf >/dev/null 2>&1
ip netns del $ns; rm -f $conf /tmp/xcm-bad.kubeconfig
"""


def make_pod(lab, name, networks):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
        },
        "spec": {"nodeName": "vm-001", "containers": [{"name": "c", "image": "alpine"}]},
    }
    lab.kubectl("apply", "-f", "-", data=json.dumps(pod))
    return lab.kubectl("get", "pod", name, "-o", "jsonpath={.metadata.uid}")


@pytest.mark.parametrize(
    ("case", "networks", "setup", "expect"),
    [
        ("missing-nad", "macvlan,no-such-nad", "kc=/etc/kubernetes/kubeconfig.token", "no-such-nad"),
        (
            "wrong-token",
            "macvlan",
            "sed 's/token: .*/token: wrong-token/' /etc/kubernetes/kubeconfig.token >/tmp/xcm-bad.kubeconfig;"
            " kc=/tmp/xcm-bad.kubeconfig",
            "Unauthorized|provide credentials",
        ),
        (
            "api-unreachable",
            "macvlan",
            "sed 's,\\(server: https://[^:]*\\):6443,\\1:6449,' /etc/kubernetes/kubeconfig.token"
            " >/tmp/xcm-bad.kubeconfig; kc=/tmp/xcm-bad.kubeconfig",
            "connection refused",
        ),
    ],
)
def test_failures_a_user_meets(lab, case, networks, setup, expect):
    name = f"xcm-fail-{case}"
    uid = make_pod(lab, name, networks)
    script = FAIL_ADD.format(setup=setup, pod=name, uid=uid)
    p = lab.ssh_run(1, script)
    out = p.stdout + p.stderr
    lab.kubectl("delete", "pod", name, "--force", "--grace-period=0")
    assert "ADD-RC=0" not in out and "ADD-RC=" in out, out
    assert any(e in out for e in expect.split("|")), out
    assert "LINKS=0" in out and "LEASES=0" in out, out
