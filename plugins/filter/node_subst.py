# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.nodeindex import NodeIndexError, node_subst

DOCUMENTATION = r"""
name: node_subst
author: xcluster.multus developers
version_added: "0.1.0"
short_description: Put a node index into a template (a string or a host-local IPAM config)
description:
  - Replaces every placeholder in every string value of the input (dict keys are left alone) with
    the decimal node index, the way the node-local IPAM script does on the node.
  - "Placeholders: C(%) anywhere, and C(x) right after a C(.) when not followed by C([0-9A-Za-z_]).
    All are found in the original string and replaced at once: C(11.0.x.0/24) gives C(11.0.4.0/24),
    C(1100::11.0.%.0/120) gives C(1100::11.0.4.0/120), C(a.xy) stays C(a.xy)."
  - The input must hold at least one placeholder.
  - With O(validate) (the default) the result is checked with netaddr. It must be a host-local
    IPAM structure (a CNI config with C(ipam), an C(ipam) dict, a C(ranges) list of range sets,
    a range set, or a range with C(subnet), C(rangeStart), C(rangeEnd), C(gateway)), an IP address
    or network string, or a list of those.
  - "The checks: subnets are networks (no host bits, room to allocate from); addresses are inside
    their subnet and of its family; C(rangeStart) <= C(rangeEnd); ranges do not overlap; C(ipam.type)
    is C(host-local) if set. An index too large for where it lands (C(256) in an IPv4 octet, five
    digits in an IPv6 group) makes an invalid address and raises."
  - Errors name the host (O(host)), the index, the path of the value, the value, the template
    and what is expected.
  - Requires the Python library netaddr on the controller when O(validate) is true.
positional: index, host, validate
options:
  _input:
    description: The template, a string, list or dict (for example the content of a node-local config).
    type: raw
    required: true
  index:
    description: The node index, from P(xcluster.multus.node_index#filter).
    type: int
    required: true
  host:
    description: The host name, for error messages.
    type: str
  validate:
    description: Check the result as a host-local IPAM structure or IP address/network string.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: The node's own default network (.x as in the seed README)
  ansible.builtin.debug:
    msg: "{{ '11.0.x.0/24' | xcluster.multus.node_subst(4) }}"  # 11.0.4.0/24

- name: Render a node-local config for this host (xcluster's '%' form)
  ansible.builtin.set_fact:
    _node_local_macvlan: >-
      {{ node_local_configs.macvlan
         | xcluster.multus.node_subst(_node_local_index, host=inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: The input with every placeholder replaced by the node index (same shape).
  type: raw
"""


def _node_subst(template, index, host=None, validate=True):
    try:
        return node_subst(template, index, host=host, validate=validate)
    except NodeIndexError as exc:
        raise AnsibleFilterError(f"node_subst: {exc}") from exc


class FilterModule:
    """The node_subst filter."""

    def filters(self):
        return {"node_subst": _node_subst}
