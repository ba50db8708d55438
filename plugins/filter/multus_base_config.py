# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, base_config

DOCUMENTATION = r"""
name: multus_base_config
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The base CNI config multus will wrap on a node
description:
  - From the output of one raw read of the node (the listing of the directory of
    C(10-multus.conf), and the activation's record), the config the activation will move, the
    given one, or the one the runtime would pick (the first C(*.conf), C(*.conflist) or
    C(*.json) by name, multus's own excluded). The activation script applies the same rule.
  - A node with neither a base config nor an earlier activation is an error naming the host,
    the directory and what it holds (raised before anything is pushed to the node).
positional: multus_conf, base_conf, host
options:
  _input:
    description: The output of the probe command (lines C(XCM-BASE file NAME), C(XCM-BASE moved PATH)).
    type: str
    required: true
  multus_conf:
    description: The path of C(10-multus.conf) (its directory is searched).
    type: str
    required: true
  base_conf:
    description: An explicit base config path; empty for the runtime's pick.
    type: str
    default: ""
  host:
    description: The host name, for error messages.
    type: str
"""

EXAMPLES = r"""
- name: The base config of this node
  ansible.builtin.set_fact:
    _multus_base: >-
      {{ _probe.stdout | xcluster.multus.multus_base_config(multus_conf_file, multus_base_conf,
                                                           inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: A dict with C(path) (the config to move, or null when it was moved before) and C(moved).
  type: dict
"""


def _multus_base_config(*args, **kwargs):
    try:
        return base_config(*args, **kwargs)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_base_config: {exc}") from exc


class FilterModule:
    """The multus_base_config filter."""

    def filters(self):
        return {"multus_base_config": _multus_base_config}
