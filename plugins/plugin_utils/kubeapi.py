# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The collection against a Kubernetes API server, without Ansible: least-privilege
ServiceAccounts for multus and whereabouts, and kubectl apply/delete of shipped manifests.

Least privilege (the roles' ``<role>_serviceaccount`` option): xcluster's shared token
kubeconfig (``/etc/kubernetes/kubeconfig.token``, system:masters) stays the default; with the
option on, multus and whereabouts each get a kubeconfig of their own ServiceAccount instead:

- ``rbac(component, name, namespace)``: the ServiceAccount, ClusterRole and ClusterRoleBinding,
  with upstream's rules (multus-cni's deployments/multus-daemonset*.yml, whereabouts'
  doc/crds/daemonset-install.yaml), as one ``List`` kubectl applies or deletes;
- ``serviceaccount_command(...)``: ONE sh command for the control-plane host (raw): the RBAC
  applied (or ``--dry-run=server`` in check mode, or deleted), then the token: the one in the
  component's kubeconfig already on that host is reused while it still authenticates as the
  ServiceAccount and more than half of the lifetime asked for is left, else a new one from the
  TokenRequest API (``kubectl create token --duration``; the lab has no controller-manager, so
  legacy Secret tokens would never be filled). Node-side shell: kubeapi_sa.sh (shellcheck);
- ``parse(stdout, ...)``: the script's output read (server, CA, token, expiry), errors raised;
- ``kubeconfig_text(info, user)``: the component's kubeconfig (YAML, the token inline);
- ``with_serviceaccount(plan, role, info, dest, ...)``: the role's entry in the contract with
  that kubeconfig among its secrets (pushed mode 0600 by whoever pushes, never shown).

Manifests: ``manifests_command(action, files, ...)``: ONE sh command that applies (in order) or
deletes (in reverse order) manifest files on the control-plane host when an API server answers,
printing CHANGED: lines, or XCM-API-NO: why not.

Bad input raises KubeApiError naming the host, the value and what is expected.
"""

from __future__ import annotations

import json
import re
import shlex

from ansible_collections.xcluster.multus.plugins.plugin_utils import plan as planlib
from ansible_collections.xcluster.multus.plugins.plugin_utils.push import load_sh

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MIN_HOURS, MAX_HOURS = 1, 87600
_MANAGED = {"app.kubernetes.io/managed-by": "xcluster.multus"}

# Upstream's rules, written from its manifests (not copied): what the CNI calls need.
RULES = {
    # multus-cni deployments/multus-daemonset.yml (3.x and 4.x thin: the same ClusterRole): the
    # NADs (k8s.cni.cncf.io), the pod and its status (the network-status annotation), events.
    "multus": [
        {"apiGroups": ["k8s.cni.cncf.io"], "resources": ["*"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["get", "update"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
    ],
    # whereabouts doc/crds/daemonset-install.yaml (ClusterRole whereabouts-cni): its pools and
    # reservations, the leader lease, pods and nodes read, NADs read, events.
    "whereabouts": [
        {
            "apiGroups": ["whereabouts.cni.cncf.io"],
            "resources": ["ippools", "overlappingrangeipreservations", "nodeslicepools"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["k8s.cni.cncf.io"],
            "resources": ["network-attachment-definitions"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["", "events.k8s.io"],
            "resources": ["events"],
            "verbs": ["create", "patch", "update", "get"],
        },
    ],
}
# upstream's ClusterRole names: multus's is the ServiceAccount's, whereabouts' has "-cni"
_ROLE_SUFFIX = {"multus": "", "whereabouts": "-cni"}


class KubeApiError(ValueError):
    """Bad input: the message names the host, the value and what is expected."""


def _component(component, host):
    if component not in RULES:
        raise KubeApiError(
            f"host {host}: no ServiceAccount rules for {component!r}; expected one of {sorted(RULES)}"
        )
    return component


def check_settings(component, s, host="this host"):
    """The ServiceAccount settings of a role: name, namespace, hours, kubeconfig (its path on
    the nodes), kubectl, kubectl_kubeconfig, timeout. Returns them normalized."""
    _component(component, host)
    p = f"{component}_serviceaccount"
    probs = []
    for key in ("name", "namespace"):
        v = s.get(key)
        if not isinstance(v, str) or not _DNS_LABEL.match(v):
            probs.append(f"{p}_{key} {v!r} is not a DNS label (lower-case letters, digits, '-', at most 63)")
    try:
        hours = int(s.get("hours"))
    except (TypeError, ValueError):
        hours = None
    if hours is None or not MIN_HOURS <= hours <= MAX_HOURS:
        probs.append(f"{p}_token_hours {s.get('hours')!r} is not a number of hours {MIN_HOURS}-{MAX_HOURS}")
    dest = s.get("kubeconfig")
    if not isinstance(dest, str) or not dest.startswith("/") or dest.endswith("/"):
        probs.append(f"{component}_kubeconfig {dest!r} is not an absolute file path")
    elif dest == s.get("kubectl_kubeconfig"):
        probs.append(
            f"{component}_kubeconfig {dest!r} is the kubeconfig kubectl uses to make the token "
            f"(the shared one, which it would overwrite); expected a path of its own, e.g. the default"
        )
    if s.get("content_given"):
        probs.append(
            f"{component}_kubeconfig_content (or _server/_token) gives a kubeconfig, and "
            f"{component}_serviceaccount makes one; expected one or the other"
        )
    if not s.get("kubectl"):
        probs.append("no kubectl command given")
    try:
        timeout = int(s.get("timeout", 5))
    except (TypeError, ValueError):
        timeout = 0
    if timeout < 1:
        probs.append(f"kubectl timeout {s.get('timeout')!r} is not a number of seconds >= 1")
    if probs:
        raise KubeApiError(f"host {host}: {component} ServiceAccount: " + "; ".join(probs))
    return dict(s, hours=hours, timeout=timeout)


def rbac(component, name, namespace, host="this host"):
    """The ServiceAccount, ClusterRole and ClusterRoleBinding of a component (a v1 List)."""
    _component(component, host)
    role = name + _ROLE_SUFFIX[component]
    meta = {"labels": dict(_MANAGED)}
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": dict(meta, name=name, namespace=namespace),
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": dict(meta, name=role),
                "rules": RULES[component],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": dict(meta, name=name),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ],
    }


_SA_SCRIPT = load_sh("kubeapi_sa.sh")


def serviceaccount_command(component, settings, action="apply", host="this host"):
    """The raw command for the control-plane host (see kubeapi_sa.sh): action apply, check or
    delete."""
    if action not in ("apply", "check", "delete"):
        raise KubeApiError(f"host {host}: action {action!r}; expected apply, check or delete")
    s = check_settings(component, settings, host)
    manifest = json.dumps(rbac(component, s["name"], s["namespace"], host), sort_keys=True)
    args = [
        action,
        '"$m"',
        shlex.quote(s["kubectl"]),
        shlex.quote(s.get("kubectl_kubeconfig") or ""),
        str(s["timeout"]),
        s["namespace"],
        s["name"],
        str(s["hours"]),
        shlex.quote(s["kubeconfig"]),
    ]
    return (
        "m=$(mktemp) || exit 1\n"
        f"cat >\"$m\" <<'XCM_RBAC_EOF'\n{manifest}\nXCM_RBAC_EOF\n"
        f"sh -s -- {' '.join(args)} <<'XCM_SA_EOF'\n{_SA_SCRIPT}\nXCM_SA_EOF\n"
    )


def parse(stdout, component, settings, host="this host"):
    """The script's output: {server, ca_data, insecure, token, expires, now, state, changes,
    lifetime_hours}. An XCM-SA-ERROR line raises, naming the host and the ServiceAccount."""
    who = f"{component} ServiceAccount {settings.get('namespace')}/{settings.get('name')}"
    lines = (stdout or "").splitlines()
    errors = [ln.split("XCM-SA-ERROR:", 1)[1].strip() for ln in lines if "XCM-SA-ERROR:" in ln]
    if errors:
        raise KubeApiError(f"host {host}: {who}: {'; '.join(errors)}")
    fields = {}
    for ln in lines:
        m = re.match(r"^\s*XCM-SA-([A-Z]+) ?(.*)$", ln)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    missing = [k for k in ("SERVER", "TOKEN", "STATE") if k not in fields]
    if missing:
        raise KubeApiError(
            f"host {host}: {who}: the control-plane host's output has no {', '.join(missing)} line; "
            "expected the ServiceAccount script to run to its end (is sh there?)"
        )
    state = fields["STATE"]
    if state not in ("reused", "created", "would-create"):
        raise KubeApiError(f"host {host}: {who}: unknown state {state!r}")
    token = fields["TOKEN"]
    if state != "would-create" and not re.match(r"^[A-Za-z0-9_.-]+$", token):
        raise KubeApiError(f"host {host}: {who}: kubectl create token gave no token (expected a JWT)")

    def num(k):
        return int(fields[k]) if re.match(r"^[0-9]+$", fields.get(k, "")) else None

    expires, now = num("EXP"), num("NOW")
    return {
        "server": fields["SERVER"],
        "ca_data": fields.get("CA", ""),
        "insecure": fields.get("INSECURE", "") == "true",
        "token": token,
        "expires": expires,
        "now": now,
        "state": state,
        "lifetime_hours": round((expires - now) / 3600, 1) if expires and now else None,
        "changes": [ln.strip() for ln in lines if ln.strip().startswith(("CHANGED:", "WOULD:"))],
    }


def error_text(result, host="this host"):
    """What went wrong in the ServiceAccount command's raw result (its XCM-SA-ERROR lines, or
    its rc and the end of stderr), never the token; "" when it ran to its end."""
    result = result or {}
    out = result.get("stdout") or ""
    errors = [ln.split("XCM-SA-ERROR:", 1)[1].strip() for ln in out.splitlines() if "XCM-SA-ERROR:" in ln]
    if errors:
        return f"{host}: " + "; ".join(errors)
    if result.get("rc", 0) != 0 or result.get("unreachable"):
        tail = (result.get("stderr") or result.get("msg") or "").strip().splitlines()[-3:]
        return f"{host}: the ServiceAccount command failed (rc {result.get('rc')}): " + " ".join(tail)
    return ""


def _q(value):
    """A YAML scalar: JSON strings are YAML."""
    return json.dumps(value)


def kubeconfig_text(info, user):
    """The component's kubeconfig: the API server and CA of the control-plane host's kubeconfig,
    the ServiceAccount's token inline (what upstream's install scripts write)."""
    cluster = [f"      server: {_q(info['server'])}"]
    if info.get("ca_data"):
        cluster.append(f"      certificate-authority-data: {_q(info['ca_data'])}")
    elif info.get("insecure"):
        cluster.append("      insecure-skip-tls-verify: true")
    return "\n".join(
        [
            "# Written by xcluster.multus: the kubeconfig of a ServiceAccount of its own (least privilege).",
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            "  - name: xcluster",
            "    cluster:",
            *cluster,
            "users:",
            f"  - name: {_q(user)}",
            "    user:",
            f"      token: {info['token']}",
            "contexts:",
            f"  - name: {_q(user)}",
            "    context:",
            "      cluster: xcluster",
            f"      user: {_q(user)}",
            f"current-context: {_q(user)}",
            "",
        ]
    )


def with_serviceaccount(plan, role, info, dest, user, *, host="this host"):
    """The plan with the role's kubeconfig at ``dest`` among its secrets (replacing one with the
    same dest). Without a token (check mode, none made yet) the secrets stay as they are."""
    if not info.get("token"):
        return plan
    item = {"content": kubeconfig_text(info, user), "dest": dest, "mode": "0600", "secret": True}
    return planlib.set_secrets(plan, role, [item], host)


def manifests_command(action, files, *, kubectl="kubectl", kubeconfig="", timeout=5, host="this host"):
    """ONE sh command for the control-plane host: kubectl apply (files in order) or delete (in
    reverse order, --ignore-not-found) of manifest files on that host, when an API server
    answers; prints XCM-API-NO: why not (exit 0), CHANGED: per object created, configured or
    deleted, and KEPT: per file missing on the node. A kubectl error fails the command."""
    if action not in ("apply", "delete"):
        raise KubeApiError(f"host {host}: manifests action {action!r}; expected apply or delete")
    if not isinstance(files, list) or not all(isinstance(f, str) and f.startswith("/") for f in files):
        raise KubeApiError(f"host {host}: manifest files {files!r}; expected a list of absolute paths")
    try:
        timeout = int(timeout)
    except (TypeError, ValueError):
        timeout = 0
    if timeout < 1:
        raise KubeApiError(f"host {host}: kubectl timeout {timeout!r}; expected seconds >= 1")
    k = shlex.quote(kubectl) + f" --request-timeout={timeout}s"
    if kubeconfig:
        k += " --kubeconfig=" + shlex.quote(kubeconfig)
    order = files if action == "apply" else list(reversed(files))
    if action == "apply":
        run = '$k apply -f "$f"'
        mark = 'awk \'$2 == "created" || $2 == "configured" {print "CHANGED: " $2 " " $1}\''
    else:
        run = '$k delete --ignore-not-found -f "$f"'
        mark = "awk '/ deleted/ {print \"CHANGED: \" $0}'"
    return "\n".join(
        [
            f"k={shlex.quote(k)}",
            f"if ! command -v {shlex.quote(kubectl)} >/dev/null 2>&1; then "
            f"echo 'XCM-API-NO: no {kubectl} on this node'; exit 0; fi",
            "if ! out=$($k get --raw /readyz 2>&1); then "
            'echo "XCM-API-NO: $(printf \'%s\\n\' "$out" | tail -n 1)"; exit 0; fi',
            "echo XCM-API-UP",
            f"for f in {' '.join(shlex.quote(f) for f in order)}; do",
            '  if [ ! -f "$f" ]; then echo "KEPT: $f is not on this node"; continue; fi',
            f'  out=$({run} 2>&1) || {{ echo "kubectl {action} -f $f failed: $out"; exit 1; }}',
            f"  printf '%s\\n' \"$out\" | {mark}",
            "done",
            "",
        ]
    )
