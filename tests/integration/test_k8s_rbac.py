# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Least privilege and the whole apply/delete path against a real kube-apiserver: a netns lab of
this module's own with the lab's control plane (LAB_K8S=1), 2 nodes, whereabouts and
multus-service from their clone stand-ins.

1. site.yml with multus_serviceaccount (whereabouts follows it): upstream's RBAC applied, a
   token per ServiceAccount from the TokenRequest API (kubectl on vm-001), every node's
   kubeconfigs of their own (0600), 10-multus.conf and whereabouts.conf naming them; the NAD
   CRD, NADs, DaemonSet, whereabouts' CRDs and multus-service's Service and Deployments accepted
   by the server; no token ever printed; a rerun changes nothing (the token is kept);
2. the tokens cannot read Secrets (kubectl auth can-i, and a real GET of a Secret: 403) and
   can do what multus and whereabouts need;
3. the basic check in cluster_network mode with the shared token kubeconfig taken off every
   node (so multus can only use its own): network-status from the API, pings; whereabouts
   allocating through its own token (IPPools), DEL frees it all;
4. a shorter lifetime asked for gives a new token at once (its exp says so);
5. uninstall.yml with uninstall_api_objects=true leaves the API with the objects it had before
   site.yml (Events and whereabouts' leader Lease, runtime records of the CNI calls, aside), and
   the old tokens no longer authenticate.
The namespace lab has no ipvlan (host kernel), so the basic check's net1 is macvlan there and
whereabouts is run directly; `XCM_K8S_LAB=vm` runs the module on the VM lab, where net1 is
ipvlan over whereabouts, through multus, with both ServiceAccounts' tokens.
Needs root, the archives of tests/artifacts/build-all and its k8s target, etcd.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import k8slab  # tests/helpers
import labrun
import pytest
from k8slab import recap_changed

REPO = labrun.REPO
CACHE = labrun.CACHE
ARCHIVES = labrun.ARCHIVES
VENV_BIN = labrun.VENV_BIN
NODES = 2
# XCM_K8S_LAB=vm runs the module on the VM lab, where net1 is ipvlan over whereabouts: the basic
# check's whereabouts allocations then go through multus with both ServiceAccounts' tokens.
VM = k8slab.BACKEND == "vm"
MULTUS_KC = "/etc/cni/net.d/multus.d/multus.kubeconfig"
WB_KC = "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"
SA_VARS = ["-e", "multus_serviceaccount=true"]
# Runtime records the CNI calls leave (not objects site.yml applies): left out of the comparison.
RUNTIME = {"events", "events.events.k8s.io"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with k8slab.running(tmp_path_factory, "k8sr", NODES, standins=["WHEREABOUTS_DIR", "MSERVICE_DIR"]) as lab:
        lab.before = api_objects(lab)
        yield lab


def api_objects(lab):
    """Every object the API lists (resource, namespace, name), runtime records left out."""
    res = [r for r in lab.kubectl("api-resources", "--verbs=list", "-o", "name").split() if r not in RUNTIME]
    items = json.loads(lab.kubectl("get", ",".join(res), "-A", "-o", "json"))["items"]
    return {
        (i["kind"], i["metadata"].get("namespace", ""), i["metadata"]["name"])
        for i in items
        if not (i["kind"] == "Lease" and i["metadata"]["name"] == "whereabouts")
    }


def node_token(lab, node, path):
    text = lab.ssh(node, f"cat {path}")
    return next(
        ln.split("token:", 1)[1].strip() for ln in text.splitlines() if ln.strip().startswith("token:")
    )


def claims(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def test_site_with_serviceaccounts(lab):
    out = lab.playbook("site.yml", *SA_VARS)
    sas = json.loads(lab.kubectl("-n", "kube-system", "get", "serviceaccounts", "-o", "json"))["items"]
    assert {"multus", "whereabouts"} <= {s["metadata"]["name"] for s in sas}
    crs = lab.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").split()
    for want in ("multus", "whereabouts-cni"):
        assert f"clusterrole.rbac.authorization.k8s.io/{want}" in crs, crs
    for want in ("multus", "whereabouts"):
        assert f"clusterrolebinding.rbac.authorization.k8s.io/{want}" in crs, crs
    # every object site.yml applies, accepted by the server
    names = lab.kubectl("get", "crd", "-o", "name")
    for crd in ("network-attachment-definitions.k8s.cni.cncf.io", "ippools.whereabouts.cni.cncf.io"):
        assert crd in names, names
    assert "ipvlan2" in lab.kubectl("get", "network-attachment-definitions", "-o", "name")
    assert "multus-alpine" in lab.kubectl("get", "daemonset", "-A", "-o", "name")
    svc = json.loads(lab.kubectl("get", "service", "multus-service", "-o", "json"))
    assert svc["metadata"]["annotations"]["k8s.v1.cni.cncf.io/service-network"] == "ipvlan2"
    assert svc["spec"]["clusterIP"].startswith("198.19.216."), svc["spec"]
    deps = lab.kubectl("get", "deployments", "-o", "name").split()
    assert sorted(deps) == ["deployment.apps/multus-client", "deployment.apps/multus-server"], deps
    # every node: its own kubeconfigs, 0600, with the ServiceAccounts' tokens; the configs name them
    for n in range(1, NODES + 1):
        conf = json.loads(lab.ssh(n, "cat /etc/cni/net.d/10-multus.conf"))
        assert conf["kubeconfig"] == MULTUS_KC, conf
        wconf = json.loads(lab.ssh(n, "cat /etc/cni/net.d/whereabouts.d/whereabouts.conf"))
        assert wconf["kubernetes"]["kubeconfig"] == WB_KC, wconf
        assert lab.ssh(n, f"stat -c %a {MULTUS_KC} {WB_KC}").split() == ["600", "600"]
        for path, sa in ((MULTUS_KC, "multus"), (WB_KC, "whereabouts")):
            tok = node_token(lab, n, path)
            assert claims(tok)["sub"] == f"system:serviceaccount:kube-system:{sa}"
            if tok not in lab.secrets:
                lab.secrets.append(tok)
    for s in lab.secrets:
        assert s not in out, "a token showed in the output"
    lab.tokens = {p: node_token(lab, 1, p) for p in (MULTUS_KC, WB_KC)}
    # the token's lifetime: what was asked for (8760 h), the API server did not cut it
    c = claims(lab.tokens[MULTUS_KC])
    assert c["exp"] - c["iat"] == 8760 * 3600, c


def test_rerun_keeps_the_tokens(lab):
    out = lab.playbook("site.yml", *SA_VARS)
    assert set(recap_changed(out).values()) == {0}, out[-4000:]
    assert {p: node_token(lab, 2, p) for p in (MULTUS_KC, WB_KC)} == lab.tokens
    lab.playbook("site.yml", "--check", *SA_VARS)
    assert {p: node_token(lab, 1, p) for p in (MULTUS_KC, WB_KC)} == lab.tokens


CAN = {
    MULTUS_KC: {
        "yes": [
            "get pods -n default",
            "update pods/status -n default",
            "get network-attachment-definitions.k8s.cni.cncf.io -n kube-system",
            "create events -n default",
        ],
        "no": [
            "get secrets -n default",
            "list secrets -A",
            "create pods -n default",
            "delete pods -n default",
        ],
    },
    WB_KC: {
        "yes": [
            "create ippools.whereabouts.cni.cncf.io -n kube-system",
            "update overlappingrangeipreservations.whereabouts.cni.cncf.io -n kube-system",
            "create leases.coordination.k8s.io -n kube-system",
            "list pods -A",
        ],
        "no": [
            "get secrets -n kube-system",
            "list secrets -A",
            "update pods -n default",
            "create pods -n default",
        ],
    },
}


def test_tokens_cannot_read_secrets(lab):
    lab.kubectl("-n", "default", "create", "secret", "generic", "xcm-probe", "--from-literal=k=v")
    try:
        for kc, want in CAN.items():
            for answer, checks in want.items():
                for check in checks:
                    out = lab.ssh(1, f"kubectl --kubeconfig={kc} auth can-i {check} || true").strip()
                    assert out == answer, (kc, check, out)
            # a real GET of an existing Secret: 403 Forbidden
            p = lab.ssh_run(1, f"kubectl --kubeconfig={kc} -n default get secret xcm-probe -v=6 2>&1")
            assert p.returncode != 0 and "403 Forbidden" in p.stdout and "forbidden" in p.stdout, p.stdout[
                -2000:
            ]
            sa = "multus" if kc == MULTUS_KC else "whereabouts"
            assert f'User "system:serviceaccount:kube-system:{sa}" cannot get resource "secrets"' in p.stdout
    finally:
        lab.kubectl("-n", "default", "delete", "secret", "xcm-probe")


def test_basic_and_whereabouts_with_their_own_tokens(lab, tmp_path):
    # the shared token kubeconfig off every node: multus and whereabouts have only their own
    hide = "mv /etc/kubernetes/kubeconfig.token /root/xcm-shared.kubeconfig"
    back = "mv /root/xcm-shared.kubeconfig /etc/kubernetes/kubeconfig.token"
    for n in range(1, NODES + 1):
        lab.ssh(n, hide)
    try:
        out, got = lab.basic(tmp_path, "-e", "basic_kubeconfig=/root/xcm-shared.kubeconfig")
        assert "network-status from the API" in out, out[-4000:]
        assert sorted(got) == [f"vm-00{n}" for n in range(1, NODES + 1)]
        for pod, _pings in got.values():
            nets = (["ipvlan"] if VM else []) + ["macvlan", "host-device"]
            assert [i["network"] for i in pod][1:] == nets, pod
            assert all(i["present"] and i["match"] for i in pod), pod
            if VM:  # net1: whereabouts' addresses (IPv4 and IPv6) through multus, its own tokens
                assert {":" in a for a in pod[1]["ips"]} == {True, False}, pod
        nad = json.loads(lab.kubectl("get", "network-attachment-definition", "ipvlan", "-o", "json"))
        conf = dict(json.loads(nad["spec"]["config"]), name="ipvlan")
        out = lab.whereabouts(conf, "ADD", 10, "xcm-wbr")
        results = [json.loads(ln.split(" ", 1)[1]) for ln in out.splitlines() if ln.startswith("out.")]
        assert len(results) == 10 and all(r.get("ips") for r in results), out[-3000:]
        pools = json.loads(lab.kubectl("get", "ippools.whereabouts.cni.cncf.io", "-A", "-o", "json"))["items"]
        refs = {a["podref"] for p in pools for a in p["spec"].get("allocations", {}).values()}
        assert refs == {f"default/xcm-wbr-{i}" for i in range(10)}, refs
        lab.whereabouts(conf, "DEL", 10, "xcm-wbr")
        pools = json.loads(lab.kubectl("get", "ippools.whereabouts.cni.cncf.io", "-A", "-o", "json"))["items"]
        assert [a for p in pools for a in p["spec"].get("allocations", {}).values()] == []
    finally:
        for n in range(1, NODES + 1):
            lab.ssh(n, back)


def test_shorter_lifetime_gives_a_new_token(lab):
    out = lab.playbook("site.yml", *SA_VARS, "-e", "multus_serviceaccount_token_hours=24")
    tok = node_token(lab, 2, MULTUS_KC)
    lab.secrets.append(tok)
    assert tok != lab.tokens[MULTUS_KC]
    c = claims(tok)
    assert c["exp"] - c["iat"] == 24 * 3600, c
    assert node_token(lab, 2, WB_KC) == lab.tokens[WB_KC]  # whereabouts' is its own
    assert recap_changed(out)["vm-002"] > 0
    lab.old = [lab.tokens[MULTUS_KC], tok, lab.tokens[WB_KC]]


def authenticates(lab, token):
    k8s = lab.k8s
    with open(os.path.join(k8s, "admin.kubeconfig")) as f:
        server = next(ln.split("server:", 1)[1].strip() for ln in f if "server:" in ln)
    kc = os.path.join(CACHE, "go", "k8s.io", "kubernetes@v1.34.4", "kubectl")
    p = subprocess.run(
        [kc, "--kubeconfig=/dev/null", f"--server={server}", f"--certificate-authority={k8s}/pki/ca.crt"]
        + [f"--token={token}", "get", "--raw", "/api"],
        capture_output=True,
        text=True,
        check=False,
    )
    return p.returncode == 0, p.stderr


def test_uninstall_leaves_the_api_as_it_was(lab):
    assert all(authenticates(lab, t)[0] for t in lab.old[1:])
    out = lab.playbook("playbooks/uninstall.yml", *SA_VARS, "-e", "uninstall_api_objects=true")
    after = api_objects(lab)
    assert after == lab.before, (sorted(after - lab.before), sorted(lab.before - after), out[-3000:])
    for n in range(1, NODES + 1):
        assert lab.ssh(n, f"ls {MULTUS_KC} {WB_KC} 2>&1 || true").count("No such file") == 2
    # the API server caches a token's successful authentication for 10 s (kube-apiserver's
    # token cache): a deleted ServiceAccount's token is refused within that time
    for t in lab.old:
        deadline = time.monotonic() + 30
        ok, err = authenticates(lab, t)
        while ok and time.monotonic() < deadline:
            time.sleep(2)
            ok, err = authenticates(lab, t)
        assert not ok and "Unauthorized" in err, err


def test_overlay_refuses_serviceaccounts(tmp_path):
    """An overlay is made with no API server to take a token from: ovl/tar stops, naming it."""
    arch = os.path.join(CACHE, "archives")
    missing = [a for a in ARCHIVES if not os.path.isfile(os.path.join(arch, a))]
    assert not missing, f"{missing} missing in {arch}: run tests/artifacts/build-all"
    env = {k: v for k, v in os.environ.items() if k not in ("WHEREABOUTS_DIR", "MSERVICE_DIR")}
    env.update(ARCHIVE=arch, PATH=os.pathsep.join([VENV_BIN, env.get("PATH", "")]), ANSIBLE_NOCOLOR="1")
    sums = os.path.join(arch, "SHA256SUMS")
    p = subprocess.run(
        [os.path.join(REPO, "ovl", "tar"), str(tmp_path / "m.tar"), "-e", "multus_serviceaccount=true"]
        + [
            "-e",
            f"cni_plugins_checksum={sums}",
            "-e",
            f"multus_checksum={sums}",
            "-e",
            "multus_version=3.9.3",
        ]
        + ["-e", "multus_nads_without_plugin=true"],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode != 0 and not (tmp_path / "m.tar").exists()
    assert "vm-001: multus_serviceaccount true, but an overlay has no API server" in p.stdout + p.stderr
