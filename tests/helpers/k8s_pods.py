# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Pods in the lab's real API server, with the runtime's part played by the lab: the Pod objects
are made with kubectl (the lab's admin kubeconfig, `tests/lab/lab kubectl`), bound to a node
by spec.nodeName (no scheduler, no kubelet); the installed multus runs on the node for each of
them (tests/helpers/cni_pods.sh: the node's own 10-multus.conf and kubeconfig, CNI_ARGS naming
the pod), concurrently; the pods' network-status is read back from the API.

What is real: kube-apiserver, etcd, multus, the CNI plugins, whereabouts, the nodes' kernels.
What the lab plays: the kubelet/runtime (it runs multus as CRI-O would) and, where a test says
so, the pod status the kubelet would write (phase, Ready, podIP: ``set_running``)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LABCMD = os.path.join(REPO, "tests", "lab", "lab")
SCRIPT = os.path.join(REPO, "tests", "helpers", "cni_pods.sh")
NETWORKS = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"


def kubectl(env, *args, data=None, check=True):
    p = subprocess.run(
        [LABCMD, "kubectl", *args], env=env, input=data, capture_output=True, text=True, check=False
    )
    if check:
        assert p.returncode == 0, f"kubectl {' '.join(args)}: {p.stderr}"
    return p.stdout


def kget(env, *args):
    return json.loads(kubectl(env, "get", *args, "-o", "json"))


def apply(env, objs):
    kubectl(env, "apply", "-f", "-", data=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def nodes(env, names):
    """Node objects for the lab's nodes (no kubelet registers them; controllers look them up)."""
    apply(env, [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in names])


def pod(name, node, networks, *, labels=None, namespace="default", template=None):
    """A Pod object bound to node; template: a pod template (metadata + spec) to start from."""
    meta = dict((template or {}).get("metadata") or {})
    spec = dict((template or {}).get("spec") or {"containers": [{"name": "c", "image": "alpine"}]})
    meta.update(name=name, namespace=namespace)
    meta["labels"] = dict(meta.get("labels") or {}, **(labels or {}))
    meta["annotations"] = dict(meta.get("annotations") or {})
    if networks is not None:
        meta["annotations"][NETWORKS] = networks
    spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def create(env, pods):
    """Create the pods; -> {name: (node, uid)}."""
    apply(env, pods)
    got = {}
    for p in pods:
        m = p["metadata"]
        uid = kubectl(env, "-n", m["namespace"], "get", "pod", m["name"], "-o", "jsonpath={.metadata.uid}")
        got[m["name"]] = (p["spec"]["nodeName"], m["namespace"], uid)
    return got


def run_on_nodes(env, command, pods, parallel=0, *, conf=None, timeout=1800):
    """cni_pods.sh COMMAND for every pod, on every node at once (a node's pods all at once, or
    in waves of `parallel`). pods: {name: (node, namespace, uid)}. -> ({name: result},
    {node: seconds on the node}, wall seconds)."""
    with open(SCRIPT) as f:
        script = f.read()
    by_node = {}
    for name, (node, ns, uid) in pods.items():
        by_node.setdefault(node, []).append(f"{ns} {name} {uid}\n")
    procs = {}
    t0 = time.monotonic()
    for node, lines in by_node.items():
        cmd = f"sh -c {shlex.quote(script)} cni_pods.sh {command} {int(parallel)}"
        cmd += f" {shlex.quote(conf)}" if conf else ""
        procs[node] = (
            subprocess.Popen(
                [LABCMD, "ssh", node.split("-")[-1].lstrip("0"), cmd],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            "".join(lines),
        )
    results, secs = {}, {}
    for node, (p, lines) in procs.items():
        out, err = p.communicate(lines, timeout=timeout)
        assert p.returncode == 0, f"{node}: {err}{out[-3000:]}"
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                r["node"] = node
                results[r["pod"]] = r
            elif line.startswith("XCM-PODS-DONE"):
                secs[node] = int(line.split()[1])
    return results, secs, time.monotonic() - t0


def links(env, node):
    """The node's links (names), to compare before ADD and after DEL."""
    out = subprocess.run(
        [LABCMD, "ssh", node.split("-")[-1].lstrip("0"), "ip -j link show"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(link["ifname"] for link in json.loads(out))


def network_status(p):
    """The pod's network-status annotation (as multus wrote it), parsed."""
    raw = (p["metadata"].get("annotations") or {}).get(STATUS)
    return json.loads(raw) if raw else []


def in_pod(result):
    """{ifname: sorted global addresses} from the pod's `ip -j addr` after ADD."""
    return {
        link["ifname"]: sorted(a["local"] for a in link.get("addr_info", []) if a.get("scope") == "global")
        for link in json.loads(result["addr"] or "[]")
    }


def set_running(env, p, pod_ips):
    """What a kubelet would write, played by the lab: status phase Running, condition Ready,
    podIP(s) (the pod's cluster-network addresses)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "phase": "Running",
        "podIP": pod_ips[0],
        "podIPs": [{"ip": ip} for ip in pod_ips],
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }
    m = p["metadata"]
    kubectl(
        env,
        "-n",
        m["namespace"],
        "patch",
        "pod",
        m["name"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
