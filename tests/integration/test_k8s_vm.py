# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Pods through multus + ipvlan + whereabouts, and multus-service-controller, against the lab's
real kube-apiserver, on the VM lab (ipvlan: the namespace lab's kernel has none).

A VM lab of this module's own (2 TCG VMs, LAB_K8S=1: kube-apiserver + etcd beside the nodes,
tests/lab/k8s.sh), whereabouts and multus-service built by their roles from clone stand-ins,
site.yml in multus's default mode (cluster_network) with multus_service_start: multus-proxy
on every node, multus-service-controller on vm-002, both with the nodes' token kubeconfig.

1. 40 Pod objects across the nodes name the ipvlan NAD (whereabouts, dual-stack ipRanges as
   the roles render it); the installed multus runs for them concurrently on both nodes, as the
   runtime would (tests/helpers/cni_pods.sh: the node's own 10-multus.conf and kubeconfig,
   CNI_ARGS naming the pod; XCM_K8S_VM_PARALLEL at once per node, default 2, see PARALLEL):
   every pod's network-status in the API has eth0 and net1, 40 distinct IPv4 and 40 distinct
   IPv6 net1 addresses, each in the pod and in the API's IPPools under the pod's name; then the
   40 DELs the same way: the IPPools are empty, every node has exactly the links it had, no
   netns, no multus cache entry.
2. multus-service-controller against the API, for the Service of the collection's manifests
   (/etc/kubernetes/multus-service/svc.yaml, applied with kubectl on vm-001): Pod objects made
   from deployment.yaml's multus-server template, one per node, get their ipvlan2 interface
   from the real ADD; the lab plays the kubelet's status (phase Running, Ready, podIP = the
   eth0 address multus reported, patched through the status subresource) and registers the
   Node objects (no kubelet). The controller writes an EndpointSlice whose endpoints are
   exactly the pods' net1 (ipvlan2) addresses, port 5001, Ready, on the pods' nodes; when a
   pod is deleted (DEL, then the Pod object) the slice drops it. multus-proxy needs CRI-O
   (it asks the runtime for the pods' network namespaces): without it, it exits, and the test
   reads that in its log.
Needs root, the archives of tests/artifacts/build-all and its k8s target, etcd
(scripts/install-deps), qemu (the VM lab). Timing of a run is printed (pytest -s).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time

import k8s_pods as kp
import k8slab  # tests/helpers
import pytest
import yaml

HOSTS = ["vm-001", "vm-002"]
PODS = 40
# At most this many ADDs (or DELs) at once per node (0: all of a node's pods at once). On the
# TCG VMs (1 emulated vCPU each) a pod ADD through multus + bridge + ipvlan + whereabouts costs
# ~10 s of CPU; 20 at once on one VM starve each other past whereabouts' hard-coded 2-minute
# ADD limit ("time limit exceeded while waiting to become leader": 15 of 20 failed, measured);
# 4 at once on VMs niced under a host load of 13 still starved 5 of 20 past whereabouts' 10 s
# API request limit ("client rate limiter Wait returned an error: context deadline exceeded").
PARALLEL = int(os.environ.get("XCM_K8S_VM_PARALLEL", "2"))
# the ipvlan NADs' whereabouts ranges in the lab (tests/lab/group_vars/all/multus.yml)
V4 = ipaddress.ip_network("198.19.224.0/24")
V6 = ipaddress.ip_network("2001:db8:16:224::/120")


def log(*a):
    print("[test_k8s_vm]", *a, flush=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    standins = ["WHEREABOUTS_DIR", "MSERVICE_DIR"]
    with k8slab.running(tmp_path_factory, "k8sv", len(HOSTS), backend="vm", standins=standins) as lab:
        lab.times = {"lab up": lab.up_seconds}
        t0 = time.monotonic()
        lab.playbook("site.yml", "-e", json.dumps({"multus_service_start": True}), timeout=1800)
        lab.times["site.yml"] = time.monotonic() - t0
        log(f"lab up {lab.times['lab up']:.0f} s, site.yml {lab.times['site.yml']:.0f} s")
        kp.nodes(lab.env, HOSTS)
        yield lab


def allocations(lab):
    pools = kp.kget(lab.env, "ippools.whereabouts.cni.cncf.io", "-A")["items"]
    return [a for p in pools for a in (p["spec"].get("allocations") or {}).values()]


def slices(lab):
    return kp.kget(lab.env, "endpointslices", "-l", "kubernetes.io/service-name=multus-service")["items"]


def wait_slices(lab, want, timeout=180):
    """The Service's EndpointSlices until their endpoints are `want` ({pod: addresses})."""
    deadline, got = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        items = slices(lab)
        got = {
            e["targetRef"]["name"]: sorted(e["addresses"]) for s in items for e in s.get("endpoints") or []
        }
        if got == want:
            return items
        time.sleep(2)
    raise AssertionError(f"EndpointSlices after {timeout} s: {got}, expected {want}: {json.dumps(items)}")


def test_multus_service_controller_writes_the_endpointslices(lab):
    """First in the module: a starved TCG VM can lose the controller's leader lease (its renew
    deadline is 10 s), and the controller then exits, as upstream's does."""
    env = lab.env
    alive = lab.ssh(
        "vm-002",
        "p=$(cat /var/run/multus-service-controller.pid); [ -d /proc/$p ] && echo ALIVE;"
        " tail -n 5 /var/log/multus-service-controller.log",
    )
    assert alive.startswith("ALIVE"), (
        f"multus-service-controller (started by the role) is not running: {alive}"
    )
    # the collection's Service, applied as a user does, with kubectl on vm-001
    out = lab.ssh(
        "vm-001",
        "kubectl --kubeconfig /etc/kubernetes/kubeconfig.token apply"
        " -f /etc/kubernetes/multus-service/svc.yaml",
    )
    assert "multus-service" in out, out
    svc = kp.kget(env, "service", "multus-service")
    network = svc["metadata"]["annotations"]["k8s.v1.cni.cncf.io/service-network"]
    assert network == "ipvlan2", svc
    deps = list(yaml.safe_load_all(lab.ssh("vm-001", "cat /etc/kubernetes/multus-service/deployment.yaml")))
    server = next(d for d in deps if d and d["metadata"]["name"] == "multus-server")
    tmpl = server["spec"]["template"]
    assert tmpl["metadata"]["annotations"][kp.NETWORKS] == network
    names = {f"multus-server-{h}": h for h in HOSTS}
    pods = kp.create(env, [kp.pod(n, h, None, template=tmpl) for n, h in names.items()])
    try:
        res, _secs, wall = kp.run_on_nodes(env, "ADD", pods)
        log(f"ADD of the {len(pods)} multus-server pods: {wall:.0f} s")
        assert all(r["rc"] == 0 for r in res.values()), res
        want, api = {}, {}
        for n in names:
            p = kp.kget(env, "pod", n)
            st = kp.network_status(p)
            eth0 = next(s for s in st if s["interface"] == "eth0")
            net1 = next(s for s in st if s["name"] == f"default/{network}")
            assert net1["interface"] == "net1" and kp.in_pod(res[n])["net1"] == sorted(net1["ips"]), (
                st,
                res[n],
            )
            assert all(ipaddress.ip_address(ip) in V4 for ip in net1["ips"]), st  # ipvlan2: IPv4 only
            kp.set_running(env, p, eth0["ips"])  # the kubelet's part, played by the lab
            want[n], api[n] = sorted(net1["ips"]), (eth0, net1)
        t0 = time.monotonic()
        items = wait_slices(lab, want)
        log(
            f"EndpointSlice written {time.monotonic() - t0:.0f} s after the pods' status: {json.dumps(items)}"
        )
        assert len(items) == 1, items
        s = items[0]
        labels = s["metadata"]["labels"]
        assert (
            labels["endpointslice.kubernetes.io/managed-by"] == "multus-endpointslice-controller.npwg.k8s.io"
        )
        assert s["addressType"] == "IPv4" and [p["port"] for p in s["ports"]] == [5001], s
        assert [o["name"] for o in s["metadata"]["ownerReferences"]] == ["multus-service"], s
        for e in s["endpoints"]:
            n = e["targetRef"]["name"]
            assert e["nodeName"] == names[n] and e["conditions"]["ready"] is True, e
            assert not set(e["addresses"]) & set(api[n][0]["ips"]), e  # not the cluster network's
        # a pod goes: DEL (runtime), then its Pod object; the slice follows
        gone = sorted(names)[0]
        res, _s, _w = kp.run_on_nodes(env, "DEL", {gone: pods[gone]})
        assert res[gone]["rc"] == 0, res
        kp.kubectl(env, "delete", "pod", gone, "--force", "--grace-period=0")
        del want[gone]
        t0 = time.monotonic()
        wait_slices(lab, want)
        log(f"EndpointSlice without {gone} {time.monotonic() - t0:.0f} s after its deletion")
    finally:
        kp.run_on_nodes(env, "DEL", {n: v for n, v in pods.items() if n in want})
        kp.kubectl(
            env, "delete", "pods", "-l", "app=multus-server", "--force", "--grace-period=0", check=False
        )
        kp.kubectl(env, "delete", "service", "multus-service", check=False)
    assert allocations(lab) == []
    # multus-proxy: started by the role on every node, it needs CRI-O (none in the lab)
    proxy = lab.ssh("vm-001", "cat /var/log/multus-proxy.log")
    assert "crio.sock" in proxy and "cannot create pod change tracker" in proxy, proxy


def test_40_concurrent_adds_through_multus_ipvlan_whereabouts(lab):
    env = lab.env
    nad = kp.kget(env, "network-attachment-definition", "ipvlan")
    conf = json.loads(nad["spec"]["config"])
    assert conf["type"] == "ipvlan" and conf["ipam"]["type"] == "whereabouts", conf
    assert len(conf["ipam"]["ipRanges"]) == 2, conf  # dual-stack, as the roles render it
    before = {h: kp.links(env, h) for h in HOSTS}
    names = [f"xcm-p{i:02d}" for i in range(PODS)]
    pods = kp.create(
        env,
        [kp.pod(n, HOSTS[i % len(HOSTS)], "ipvlan", labels={"app": "xcm-40"}) for i, n in enumerate(names)],
    )
    try:
        res, secs, wall = kp.run_on_nodes(env, "ADD", pods, PARALLEL)
        log(f"{PODS} ADDs ({PARALLEL or 'all'} at once per node): {wall:.0f} s wall ({secs} s on the nodes)")
        bad = {n: r["err"][-600:] for n, r in res.items() if r["rc"] != 0}
        assert sorted(res) == names and not bad, bad
        api = {p["metadata"]["name"]: p for p in kp.kget(env, "pods", "-l", "app=xcm-40")["items"]}
        v4, v6 = [], []
        for n in names:
            st = kp.network_status(api[n])
            assert [s["interface"] for s in st] == ["eth0", "net1"], (n, st)
            assert st[1]["name"] == "default/ipvlan", (n, st)
            ips = st[1]["ips"]
            v4 += [ip for ip in ips if ipaddress.ip_address(ip) in V4]
            v6 += [ip for ip in ips if ipaddress.ip_address(ip) in V6]
            assert len(ips) == 2, (n, st)
            assert kp.in_pod(res[n])["net1"] == sorted(ips), (n, st, res[n]["addr"])
        assert len(v4) == len(set(v4)) == PODS and len(v6) == len(set(v6)) == PODS, (v4, v6)
        got = allocations(lab)
        assert sorted(a["podref"] for a in got) == sorted(f"default/{n}" for n in names for _ in (4, 6)), got
        res, secs, wall = kp.run_on_nodes(env, "DEL", pods, PARALLEL)
        log(f"{PODS} DELs ({PARALLEL or 'all'} at once per node): {wall:.0f} s wall ({secs} s on the nodes)")
        bad = {n: r["err"][-600:] for n, r in res.items() if r["rc"] != 0}
        assert not bad, bad
        assert allocations(lab) == []
        assert {h: kp.links(env, h) for h in HOSTS} == before
        for h in HOSTS:
            left = lab.ssh(h, "ip netns list; ls /var/lib/cni/multus 2>/dev/null | grep xcm-; true")
            assert left.strip() == "", (h, left)
    finally:
        kp.kubectl(env, "delete", "pods", "-l", "app=xcm-40", "--force", "--grace-period=0", check=False)
