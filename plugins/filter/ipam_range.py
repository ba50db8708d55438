# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, ipam_range

DOCUMENTATION = r"""
name: ipam_range
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The host-local range an address was allocated from
description:
  - Finds the range of a rendered host-local IPAM config (for example a node-local config after
    P(xcluster.multus.node_subst#filter)) that holds an address.
  - "The range is what host-local allocates from: C(rangeStart) to C(rangeEnd), by default the
    subnet's first address + 1 to its last (minus one for IPv4)."
  - The config is validated as P(xcluster.multus.node_subst#filter) does; a bad config or
    address raises an error naming it. Requires netaddr on the controller.
positional: config, host
options:
  _input:
    description: The address, with or without a prefix length (V(198.18.2.0/16)).
    type: str
    required: true
  config:
    description: The rendered host-local config (a dict with C(ipam), an C(ipam) dict or C(ranges)).
    type: raw
    required: true
  host:
    description: The host name, for error messages.
    type: str
"""

EXAMPLES = r"""
- name: The address is in this node's own macvlan range
  ansible.builtin.assert:
    that:
      - "'198.18.2.0/16' | xcluster.multus.ipam_range(_rendered_macvlan) is not none"
"""

RETURN = r"""
_value:
  description: The range (C(subnet), C(start), C(end) as strings), or null when no range holds the address.
  type: dict
"""


def _ipam_range(address, config, host=None):
    try:
        return ipam_range(address, config, host)
    except MultusError as exc:
        raise AnsibleFilterError(f"ipam_range: {exc}") from exc


class FilterModule:
    """The ipam_range filter."""

    def filters(self):
        return {"ipam_range": _ipam_range}
