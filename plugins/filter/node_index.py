# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.nodeindex import NodeIndexError, node_index

DOCUMENTATION = r"""
name: node_index
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The node index of a host (vm-004 gives 4)
description:
  - Returns the node index of a host, the number that xcluster's placeholders (C(%) and C(.x))
    are replaced with on that node.
  - By default the index is taken from the host name with the pattern C(^vm-0*([1-9][0-9]*)$),
    so C(vm-004) gives C(4) (leading zeros stripped).
  - An explicit O(index) overrides the pattern; use it for hosts not named C(vm-NNN).
  - C(vm-000), C(vm), C(node-a), an index below 1 or a pattern without a capturing group raise
    an error naming the host and the value.
  - The node-local IPAM script takes the index from C(/etc/cni/node-local/.index) when that file
    exists (write this filter's result there, one line) and else from the host name with the
    default pattern, so hosts not named C(vm-NNN) need the file.
positional: pattern, index
options:
  _input:
    description: The host name, usually C(inventory_hostname).
    type: str
    required: true
  pattern:
    description:
      - A Python regular expression that must match the whole host name.
      - Its group named C(index), else its first group, captures the index (decimal digits, value at least 1).
      - Empty or null means the default.
    type: str
    default: ^vm-0*([1-9][0-9]*)$
  index:
    description:
      - An explicit index for this host (a positive integer, or a string of decimal digits).
      - Null means take the index from the host name.
    type: raw
"""

EXAMPLES = r"""
- name: Index from the host name (vm-004 -> 4)
  ansible.builtin.set_fact:
    _node_local_index: "{{ inventory_hostname | xcluster.multus.node_index }}"

- name: Hosts named node1, node2, ... or an explicit per-host value
  ansible.builtin.set_fact:
    _node_local_index: >-
      {{ inventory_hostname | xcluster.multus.node_index(pattern='^node([0-9]+)$',
         index=node_local_index | default(none)) }}
"""

RETURN = r"""
_value:
  description: The node index, an integer of at least 1.
  type: int
"""


def _node_index(hostname, pattern=None, index=None):
    try:
        return node_index(hostname, pattern=pattern, index=index)
    except NodeIndexError as exc:
        raise AnsibleFilterError(f"node_index: {exc}") from exc


class FilterModule:
    """The node_index filter."""

    def filters(self):
        return {"node_index": _node_index}
