# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, boot_confs

DOCUMENTATION = r"""
name: multus_boot_confs
author: xcluster.multus developers
version_added: "0.1.0"
short_description: Both 10-multus.conf an overlay carries (DELEGATES picks at boot)
description:
  - From a rendered C(10-multus.conf) (either mode), the C(cluster_network) variant
    (C(clusterNetwork), C(defaultNetworks)) and the C(delegates) variant (the inline delegates
    with their node placeholders kept, substituted by the overlay's .rc at boot), so that
    C(DELEGATES=yes) in the node's C(/etc/profile) chooses at boot, as in xcluster.
positional: delegates, cluster_network, default_networks, host
options:
  _input:
    description: The rendered 10-multus.conf (a dict).
    type: dict
    required: true
  delegates:
    description: The delegates list (O(xcluster.multus.multus#role:main:multus_delegates)).
    type: list
    required: true
  cluster_network:
    description: The cluster network's name.
    type: str
    required: true
  default_networks:
    description: The default networks.
    type: list
    default: []
  host:
    description: The host name, for error messages.
    type: str
"""

EXAMPLES = r"""
- name: Both variants
  ansible.builtin.set_fact:
    _confs: "{{ _multus_conf | xcluster.multus.multus_boot_confs(multus_delegates, multus_cluster_network) }}"
"""

RETURN = r"""
_value:
  description: A dict with C(cluster_network) and C(delegates), each a 10-multus.conf dict.
  type: dict
"""


def _multus_boot_confs(*args, **kwargs):
    try:
        return boot_confs(*args, **kwargs)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_boot_confs: {exc}") from exc


class FilterModule:
    """The multus_boot_confs filter."""

    def filters(self):
        return {"multus_boot_confs": _multus_boot_confs}
