# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible_collections.xcluster.multus.plugins.plugin_utils import kubeapi as k
from ansible_collections.xcluster.multus.plugins.plugin_utils import plan as planlib
from ansible_collections.xcluster.multus.plugins.plugin_utils.opfilter import op_filter

DOCUMENTATION = r"""
name: kubeapi
author: xcluster.multus developers
version_added: "0.1.0"
short_description: Own ServiceAccounts for multus and whereabouts; kubectl apply/delete of manifests
description:
  - The Python side (plugins/plugin_utils/kubeapi.py) of the roles' steps that talk to a
    Kubernetes API server with C(kubectl) on the control-plane host.
  - "O(op): C(sa_check) (input: the component; O(settings) checked, no node contact),
    C(sa_error) (input: the command's register: its error lines, never a token; empty when it
    ran), C(sa_remove) (input: the plan; O(role), O(settings): the plan with the component's
    kubeconfig among the role's secrets, by path only, for uninstall), C(sa_command) (input:
    the component, C(multus) or C(whereabouts); O(settings), O(action): the raw command that
    applies the ServiceAccount's RBAC (upstream's rules) and
    reuses or makes its token, or deletes the RBAC), C(sa_plan) (input: the plan; O(role),
    O(component), O(stdout) of that command, O(settings), O(user): the plan with the
    component's kubeconfig among the role's secrets), C(sa_notes) (input: that O(stdout);
    O(component), O(settings): what changed and the token's lifetime, never the token),
    C(manifests_command) (input: manifest file paths; O(action) apply or delete, O(kubectl),
    O(kubeconfig), O(timeout): the raw command)."
positional: op
options:
  _input:
    description: The component, the plan, the command's output or the file list (O(op) says).
    type: raw
    required: true
  op:
    description: What to do.
    type: str
    required: true
    choices: [sa_check, sa_command, sa_plan, sa_notes, sa_error, sa_remove, manifests_command]
  settings:
    description:
      - The ServiceAccount's settings, a dict with name, namespace, hours (the token's lifetime
        asked for), kubeconfig (the component's kubeconfig on the nodes), kubectl,
        kubectl_kubeconfig, timeout.
    type: dict
  action:
    description:
      - C(apply), C(check) or C(delete) (op sa_command); C(apply) or C(delete) (op manifests_command).
    type: str
  role:
    description: The role whose secrets get the kubeconfig (op sa_plan).
    type: str
  component:
    description: C(multus) or C(whereabouts) (ops sa_plan, sa_notes).
    type: str
  stdout:
    description: The output of the sa_command's command (ops sa_plan).
    type: str
  user:
    description: The user's name in the kubeconfig (op sa_plan).
    type: str
  kubectl:
    description: The kubectl command (op manifests_command).
    type: str
    default: kubectl
  kubeconfig:
    description: The kubeconfig kubectl uses, empty for its default (op manifests_command).
    type: str
    default: ""
  timeout:
    description: kubectl's request timeout in seconds (op manifests_command).
    type: int
    default: 5
  host:
    description: The host, for messages.
    type: str
    default: this host
"""

EXAMPLES = r"""
- name: multus's ServiceAccount, its RBAC and token (on the control-plane host)
  ansible.builtin.raw: "{{ 'multus' | xcluster.multus.kubeapi('sa_command', settings=_sa, action='apply') }}"
  register: _sa_out
  no_log: true
"""

RETURN = r"""
_value:
  description: What O(op) makes (see the description).
  type: raw
"""


def _host(kw):
    return kw.get("host", "this host")


def _sa_notes(data, kw):
    info = k.parse(data, kw["component"], kw["settings"], _host(kw))
    life = f", valid {info['lifetime_hours']} h more" if info["lifetime_hours"] is not None else ""
    s = kw["settings"]
    return info["changes"] + [f"token of serviceaccount {s['namespace']}/{s['name']}: {info['state']}{life}"]


def _sa_plan(data, kw):
    info = k.parse(kw["stdout"], kw["component"], kw["settings"], _host(kw))
    return k.with_serviceaccount(
        data, kw["role"], info, kw["settings"]["kubeconfig"], kw["user"], host=_host(kw)
    )


_OPS = {
    "sa_check": lambda d, kw: k.check_settings(d, kw["settings"], _host(kw)),
    "sa_error": lambda d, kw: k.error_text(d, _host(kw)),
    "sa_remove": lambda d, kw: planlib.set_secrets(
        d, kw["role"], [{"content": "", "dest": kw["settings"]["kubeconfig"], "mode": "0600"}], _host(kw)
    ),
    "sa_command": lambda d, kw: k.serviceaccount_command(
        d, kw["settings"], kw.get("action", "apply"), _host(kw)
    ),
    "sa_plan": _sa_plan,
    "sa_notes": _sa_notes,
    "manifests_command": lambda d, kw: k.manifests_command(
        kw["action"],
        d,
        kubectl=kw.get("kubectl", "kubectl"),
        kubeconfig=kw.get("kubeconfig", ""),
        timeout=kw.get("timeout", 5),
        host=_host(kw),
    ),
}


class FilterModule:
    """The kubeapi filter."""

    def filters(self):
        return {"kubeapi": op_filter("kubeapi", _OPS, (k.KubeApiError, planlib.PlanError))}
