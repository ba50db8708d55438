# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, missing_nad_plugins

DOCUMENTATION = r"""
name: multus_nad_plugins_check
author: xcluster.multus developers
version_added: "0.1.0"
short_description: Every example NAD's plugins must be installed
description:
  - For the manifests of P(xcluster.multus.multus_manifests#filter), the NADs whose plugin
    (the config's C(type) or its IPAM's) is not among the installed ones. An error names each
    NAD and plugin and how to fix it, unless O(allow) is true.
positional: installed, host, allow
options:
  _input:
    description: The manifests (a list of dicts with C(content)).
    type: list
    required: true
  installed:
    description: The plugin names installed in the CNI bin directory.
    type: list
    required: true
  host:
    description: The host name, for error messages.
    type: str
  allow:
    description: Return the missing ones instead of failing.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Check the NADs
  ansible.builtin.set_fact:
    _missing: >-
      {{ _multus_manifests | xcluster.multus.multus_nad_plugins_check(_plugins, inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: A list of [NAD name, [missing plugins]].
  type: list
"""


def _multus_nad_plugins_check(*args, **kwargs):
    try:
        return missing_nad_plugins(*args, **kwargs)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_nad_plugins_check: {exc}") from exc


class FilterModule:
    """The multus_nad_plugins_check filter."""

    def filters(self):
        return {"multus_nad_plugins_check": _multus_nad_plugins_check}
