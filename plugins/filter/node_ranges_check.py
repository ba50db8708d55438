# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.nodeindex import NodeIndexError, check_inventory

DOCUMENTATION = r"""
name: node_ranges_check
author: xcluster.multus developers
version_added: "0.1.0"
short_description: Render every host's node-local configs and check them across the inventory
description:
  - Takes the node index of every host and the node-local config templates, renders each host's
    configs as P(xcluster.multus.node_subst#filter) does (every template must hold a placeholder
    and give a valid host-local config), and checks the inventory as a whole.
  - No two hosts may share a node index.
  - "For each config name, the effective ranges of two hosts may not overlap. The effective range is
    what host-local allocates from, C(rangeStart) (default the subnet's first address + 1) to
    C(rangeEnd) (default the subnet's last address, minus one for IPv4). A range with no C(rangeEnd)
    runs to the end of its subnet, so xcluster's macvlan config (subnet C(15.0.0.0/16), rangeStart
    C(15.0.%.0), no rangeEnd) overlaps the next host's range. The error names both hosts and
    ranges and shows the fix, for example C(rangeEnd: 15.0.%.255)."
  - Ranges of different config names are not compared (they are different networks).
  - Requires the Python library netaddr on the controller.
positional: configs, host_configs
options:
  _input:
    description: The node index of every host, a dict host name -> index.
    type: dict
    required: true
  configs:
    description: The templates every host gets, a dict config name -> template (string, list or dict).
    type: dict
    required: true
  host_configs:
    description:
      - Per-host templates added to (or replacing) O(configs).
      - A dict host name -> {config name -> template}.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Check the node-local configs of all play hosts, once, on the controller
  run_once: true
  ansible.builtin.set_fact:
    _node_local_rendered: >-
      {{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, '_node_local_index')))
         | xcluster.multus.node_ranges_check(node_local_configs) }}

- name: This host's rendered macvlan config
  ansible.builtin.debug:
    msg: "{{ _node_local_rendered[inventory_hostname].macvlan }}"
"""

RETURN = r"""
_value:
  description: For every host, its rendered configs, a dict host name -> {config name -> rendered config}.
  type: dict
"""


def _node_ranges_check(indexes, configs, host_configs=None):
    try:
        return check_inventory(indexes, configs, host_configs=host_configs)
    except NodeIndexError as exc:
        raise AnsibleFilterError(f"node_ranges_check: {exc}") from exc


class FilterModule:
    """The node_ranges_check filter."""

    def filters(self):
        return {"node_ranges_check": _node_ranges_check}
