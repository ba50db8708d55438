# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible_collections.xcluster.multus.plugins.plugin_utils import plan as p
from ansible_collections.xcluster.multus.plugins.plugin_utils.opfilter import op_filter

DOCUMENTATION = r"""
name: plan
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The roles' contract, xcluster_multus_plan, and what the playbooks make of it
description:
  - Every role of the collection gives one public result, its entry in the host fact
    C(xcluster_multus_plan) (files, secrets, directories, report, changed, notes, made_dirs,
    overlay). The playbooks read only that; this filter does what they need with it, in Python
    (plugins/plugin_utils/plan.py).
  - "O(op): C(roles) (input: the registry of roles; the names in order), C(host_roles) (input: the
    registry; O(switches), O(host): the roles this host gets), C(tagged) (input: role names;
    O(run_tags), O(skip_tags)), C(push) (input: the plan; O(roles), O(selected): the files and
    directories of one push, and whether a secret is among them), C(pushed) (input: the plan;
    O(results) of push_files, O(roles): each role's C(changed)), C(note) (input: the plan;
    O(role), O(notes), O(report)), C(summary) (input: the plan; the summary lines of O(host)),
    C(remove) (input: the plan; what uninstall removes), C(overlay) (input: the plan; this host's
    overlay item), C(secret) (input: the plan; whether a secret is among the roles' files),
    C(nad_check) (input: the plan; no example NAD of the multus role whose plugin O(roles) do not
    put in O(bin_dir), unless O(allow); the NADs missing a plugin)."
positional: op
options:
  _input:
    description: The plan (a dict role -> entry), the registry of roles, or role names (O(op) says).
    type: raw
    required: true
  op:
    description: What to do.
    type: str
    required: true
    choices: [roles, host_roles, tagged, push, pushed, note, summary, remove, overlay, secret, nad_check]
  roles:
    description: The role names the operation is about, in order.
    type: list
    elements: str
  registry:
    description: The registry of roles (op summary).
    type: list
    elements: dict
  switches:
    description: The switch of each role, a dict role -> value of C(xcluster_multus_<role>).
    type: dict
  selected:
    description: The C(<role>_install) / C(<role>_configure) tags selected (op C(tagged)'s result).
    type: dict
  results:
    description: push_files results (one or a list).
    type: raw
  role:
    description: The role (op note).
    type: str
  notes:
    description: Lines to add to the role's notes (op note).
    type: list
    elements: str
  report:
    description: The role's new report (op note).
    type: str
  run_tags:
    description: ansible_run_tags.
    type: list
    elements: str
  skip_tags:
    description: ansible_skip_tags.
    type: list
    elements: str
  keep_dirs:
    description: Directories uninstall never removes (op remove).
    type: list
    elements: str
  index:
    description: The node index the overlay's .rc takes from the host name (op overlay).
    type: int
  base_only:
    description: ovl_setup None (ops overlay, nad_check).
    type: bool
    default: false
  bin_dir:
    description: The CNI plugin directory on the nodes (op nad_check).
    type: str
  manifest_dir:
    description: Where the multus role's manifests go (op nad_check).
    type: str
  allow:
    description: Return the NADs missing a plugin instead of failing (op nad_check).
    type: bool
    default: false
  check_mode:
    description: ansible_check_mode (op summary).
    type: bool
    default: false
  host:
    description: The host, for messages.
    type: str
    default: this host
"""

EXAMPLES = r"""
- name: This host's files, in one push
  xcluster.multus.push_files:
    files: "{{ (xcluster_multus_plan | xcluster.multus.plan('push', roles=['multus'])).files }}"
"""

RETURN = r"""
_value:
  description: What O(op) makes (see the description).
  type: raw
"""


def _host(kw):
    return kw.get("host", "this host")


_OPS = {
    "roles": lambda d, kw: p.role_names(d),
    "host_roles": lambda d, kw: p.host_roles(d, kw.get("switches") or {}, _host(kw)),
    "tagged": lambda d, kw: p.tagged(d, kw.get("run_tags"), kw.get("skip_tags")),
    "push": lambda d, kw: p.push_items(d, kw["roles"], kw.get("selected"), _host(kw)),
    "pushed": lambda d, kw: p.pushed(d, kw.get("results"), kw["roles"], _host(kw)),
    "note": lambda d, kw: p.note(d, kw["role"], kw.get("notes"), kw.get("report"), _host(kw)),
    "summary": lambda d, kw: p.summary(
        d,
        _host(kw),
        kw["registry"],
        kw.get("switches") or {},
        kw.get("selected") or {},
        check_mode=bool(kw.get("check_mode")),
    ),
    "remove": lambda d, kw: p.remove_lists(d, kw["roles"], kw.get("keep_dirs") or (), _host(kw)),
    "overlay": lambda d, kw: p.overlay_item(
        d, kw["roles"], kw["index"], bool(kw.get("base_only")), _host(kw)
    ),
    "secret": lambda d, kw: p.secret(d, kw.get("roles")),
    "nad_check": lambda d, kw: p.nad_check(
        d,
        kw["roles"],
        kw["bin_dir"],
        kw["manifest_dir"],
        allow=kw.get("allow", False),
        base_only=bool(kw.get("base_only")),
        host=_host(kw),
    ),
}


class FilterModule:
    """The plan filter."""

    def filters(self):
        return {"plan": op_filter("plan", _OPS, p.PlanError)}
