# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""plugins/plugin_utils/kubeapi.py without Ansible: the ServiceAccounts' RBAC, the settings'
checks, the control-plane script's output read, the kubeconfig, the contract's secrets; and the
node-side script (kubeapi_sa.sh) run for real with sh against a stand-in kubectl (the real API
server: tests/integration/test_k8s_rbac.py)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time

import pytest
import yaml
from ansible_collections.xcluster.multus.plugins.plugin_utils import kubeapi as k

SETTINGS = {
    "name": "multus",
    "namespace": "kube-system",
    "hours": 8760,
    "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
    "kubectl": "kubectl",
    "kubectl_kubeconfig": "/etc/kubernetes/kubeconfig.token",
    "timeout": 5,
    "content_given": False,
}


def test_rbac_follows_upstream_and_grants_no_secrets():
    for comp, role in (("multus", "multus"), ("whereabouts", "whereabouts-cni")):
        lst = k.rbac(comp, comp, "kube-system")
        kinds = [(i["kind"], i["metadata"]["name"]) for i in lst["items"]]
        assert kinds == [("ServiceAccount", comp), ("ClusterRole", role), ("ClusterRoleBinding", comp)]
        binding = lst["items"][2]
        assert binding["roleRef"]["name"] == role
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": comp, "namespace": "kube-system"}]
        for rule in lst["items"][1]["rules"]:
            assert "secrets" not in rule["resources"] and not (
                "" in rule["apiGroups"] and "*" in rule["resources"]
            )
    multus = k.rbac("multus", "m", "ns")["items"][1]["rules"]
    assert {"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["get", "update"]} in multus
    with pytest.raises(k.KubeApiError, match="no ServiceAccount rules for 'calico'"):
        k.rbac("calico", "x", "y", host="vm-001")


@pytest.mark.parametrize(
    ("change", "msg"),
    [
        ({"name": "Multus"}, "multus_serviceaccount_name 'Multus' is not a DNS label"),
        ({"namespace": ""}, "multus_serviceaccount_namespace '' is not a DNS label"),
        ({"hours": 0}, "multus_serviceaccount_token_hours 0 is not a number of hours 1-87600"),
        ({"hours": "x"}, "multus_serviceaccount_token_hours 'x'"),
        ({"kubeconfig": "rel/path"}, "multus_kubeconfig 'rel/path' is not an absolute file path"),
        ({"kubeconfig": "/etc/kubernetes/kubeconfig.token"}, "the shared one, which it would overwrite"),
        ({"content_given": True}, "multus_kubeconfig_content .* expected one or the other"),
        ({"timeout": 0}, "kubectl timeout 0"),
    ],
)
def test_settings_checked(change, msg):
    with pytest.raises(k.KubeApiError, match=f"host vm-002: multus ServiceAccount: .*{msg}"):
        k.check_settings("multus", dict(SETTINGS, **change), host="vm-002")


def test_settings_normalized():
    assert k.check_settings("multus", dict(SETTINGS, hours="24", timeout="7"))["hours"] == 24


def out(state="created", token="aaa.bbb.ccc", extra=()):
    return "\n".join(
        [
            *extra,
            "XCM-SA-SERVER https://198.19.201.254:6443",
            "XCM-SA-CA Q0EK",
            "XCM-SA-INSECURE ",
            f"XCM-SA-TOKEN {token}",
            "XCM-SA-EXP 1000",
            "XCM-SA-NOW 100",
            f"XCM-SA-STATE {state}",
        ]
    )


def test_parse_and_kubeconfig():
    info = k.parse(out(extra=["CHANGED: created serviceaccount/multus", "noise"]), "multus", SETTINGS)
    assert info["token"] == "aaa.bbb.ccc" and info["state"] == "created" and info["lifetime_hours"] == 0.2
    assert info["changes"] == ["CHANGED: created serviceaccount/multus"]
    doc = yaml.safe_load(k.kubeconfig_text(info, "multus"))
    assert doc["users"] == [{"name": "multus", "user": {"token": "aaa.bbb.ccc"}}]
    assert doc["clusters"][0]["cluster"] == {
        "server": "https://198.19.201.254:6443",
        "certificate-authority-data": "Q0EK",
    }
    assert doc["current-context"] == "multus"


def test_parse_errors_name_host_and_serviceaccount():
    with pytest.raises(
        k.KubeApiError, match="host vm-001: multus ServiceAccount kube-system/multus: no kubectl"
    ):
        k.parse("XCM-SA-ERROR: no kubectl on this host", "multus", SETTINGS, host="vm-001")
    with pytest.raises(k.KubeApiError, match="has no SERVER, TOKEN, STATE line"):
        k.parse("", "multus", SETTINGS)
    with pytest.raises(k.KubeApiError, match="gave no token"):
        k.parse(out(token="Error: forbidden!"), "multus", SETTINGS)


def test_contract_secret_and_check_mode():
    plan = {
        "multus": {"files": [], "secrets": [{"dest": "/old", "content": "x", "mode": "0600", "secret": True}]}
    }
    info = k.parse(out(), "multus", SETTINGS)
    new = k.with_serviceaccount(plan, "multus", info, SETTINGS["kubeconfig"], "multus")
    assert [s["dest"] for s in new["multus"]["secrets"]] == ["/old", SETTINGS["kubeconfig"]]
    assert new["multus"]["secrets"][1]["mode"] == "0600" and new["multus"]["secrets"][1]["secret"] is True
    assert plan["multus"]["secrets"][0]["dest"] == "/old" and len(plan["multus"]["secrets"]) == 1
    would = k.parse(out(state="would-create", token=""), "multus", SETTINGS)
    assert k.with_serviceaccount(plan, "multus", would, SETTINGS["kubeconfig"], "multus") is plan


def test_error_text_never_the_token():
    assert k.error_text({"rc": 0, "stdout": out()}) == ""
    assert k.error_text({"rc": 1, "stdout": "XCM-SA-ERROR: the API server does not answer"}, "vm-001") == (
        "vm-001: the API server does not answer"
    )
    assert "rc 255" in k.error_text({"rc": 255, "stdout": "", "stderr": "ssh: connect refused"})


def test_manifests_command_checks():
    with pytest.raises(k.KubeApiError, match="expected a list of absolute paths"):
        k.manifests_command("apply", ["svc.yaml"])
    with pytest.raises(k.KubeApiError, match="expected apply or delete"):
        k.manifests_command("replace", ["/a"])
    cmd = k.manifests_command("delete", ["/m/crd.yaml", "/m/nad.yaml"], kubeconfig="/k", timeout=3)
    assert cmd.index("/m/nad.yaml") < cmd.index("/m/crd.yaml") and "--kubeconfig=/k" in cmd


# The node-side script with a stand-in kubectl: it logs its arguments, answers the probe, apply,
# config view and create token (a JWT whose exp is NOW + the --duration asked for).
FAKE = r"""#!/bin/sh
echo "$*" >>"$XCM_LOG"
case "$*" in
*"get --raw"*) [ -n "$XCM_DOWN" ] && { echo "connection refused" >&2; exit 1; }; echo ok ;;
*"apply --dry-run=server"*) echo "serviceaccount/multus created (server dry run)" ;;
*" apply "*) echo "serviceaccount/multus $XCM_APPLY"; echo "clusterrole.rbac/multus unchanged" ;;
*"jsonpath={.clusters[0].cluster.server}"*) printf https://198.19.201.254:6443 ;;
*"certificate-authority-data"*) printf Q0EK ;;
*"insecure-skip-tls-verify"*) printf '' ;;
*"create token"*)
  h=$(echo "$*" | sed -n 's/.*--duration=\([0-9]*\)h.*/\1/p')
  now=$(date +%s)
  s=system:serviceaccount:kube-system:multus
  p=$(printf '{"exp":%s,"iat":%s,"sub":"%s"}' $((now + h * 3600)) "$now" "$s" |
      base64 -w0 | tr '+/' '-_' | tr -d '=')
  printf 'eyJhbGciOiJSUzI1NiJ9.%s.c2ln' "$p" ;;
*) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


def jwt(exp, sub="system:serviceaccount:kube-system:multus"):
    p = base64.urlsafe_b64encode(json.dumps({"exp": exp, "sub": sub}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{p}.c2ln"


@pytest.fixture
def fake(tmp_path):
    if not shutil.which("sh"):
        pytest.skip("no sh")
    kc = tmp_path / "kubectl"
    kc.write_text(FAKE)
    kc.chmod(0o755)
    log = tmp_path / "log"
    cur = tmp_path / "multus.kubeconfig"

    def run(action="apply", hours=8760, down="", applied="created"):
        s = dict(SETTINGS, kubectl=str(kc), kubeconfig=str(cur), hours=hours)
        env = dict(os.environ, XCM_LOG=str(log), XCM_DOWN=down, XCM_APPLY=applied)
        p = subprocess.run(
            ["sh", "-c", k.serviceaccount_command("multus", s, action)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return p, s

    return run, cur, log


def test_script_creates_then_reuses_then_renews(fake):
    run, cur, log = fake
    p, s = run()
    assert p.returncode == 0, p.stderr
    info = k.parse(p.stdout, "multus", s)
    assert info["state"] == "created" and 8759.9 <= info["lifetime_hours"] <= 8760
    assert "CHANGED: created serviceaccount/multus" in info["changes"]
    cur.write_text(k.kubeconfig_text(info, "multus"))
    p, s = run(applied="unchanged")
    again = k.parse(p.stdout, "multus", s)
    assert again["state"] == "reused" and again["token"] == info["token"] and again["changes"] == []
    # less than half of the lifetime asked for is left, or more than asked: a new token
    cur.write_text(k.kubeconfig_text(dict(info, token=jwt(int(time.time()) + 100 * 3600)), "multus"))
    assert k.parse(run(applied="unchanged")[0].stdout, "multus", s)["state"] == "created"
    cur.write_text(k.kubeconfig_text(info, "multus"))
    assert k.parse(run(hours=24)[0].stdout, "multus", dict(s, hours=24))["state"] == "created"
    # another ServiceAccount's token is not reused
    cur.write_text(
        k.kubeconfig_text(
            dict(info, token=jwt(int(time.time()) + 8000 * 3600, "system:serviceaccount:x:y")), "m"
        )
    )
    assert k.parse(run()[0].stdout, "multus", s)["state"] == "created"
    assert "--kubeconfig=/etc/kubernetes/kubeconfig.token" in log.read_text()


def test_script_check_mode_applies_and_creates_nothing(fake):
    run, _cur, log = fake
    p, s = run(action="check")
    info = k.parse(p.stdout, "multus", s)
    assert info["state"] == "would-create" and info["token"] == ""
    assert "WOULD: created serviceaccount/multus" in info["changes"]
    calls = log.read_text()
    assert "create token" not in calls and " apply -f" not in calls.replace("--dry-run=server -f", "")


def test_script_api_down_is_a_clear_error(fake):
    run, _cur, _log = fake
    p, s = run(down="1")
    assert p.returncode == 1
    with pytest.raises(k.KubeApiError, match="the API server does not answer .*connection refused"):
        k.parse(p.stdout, "multus", s, host="vm-001")


def test_script_is_shellcheck_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck missing")
    here = os.path.dirname(k.__file__)
    subprocess.run(["shellcheck", "-s", "sh", os.path.join(here, "kubeapi_sa.sh")], check=True)
