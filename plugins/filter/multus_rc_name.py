# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, rc_name

DOCUMENTATION = r"""
name: multus_rc_name
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The overlay's init.d script name for an xcluster layout
description:
  - C(auto) and C(head) give C(27multus.rc), which sorts after both of xcluster's bridge rcs
    (C(20bridge.rc) in 2022 images, C(26bridge.rc) since 2023); C(2022) gives C(25multus.rc).
    Any other value must be a file name ending in C(.rc).

options:
  _input:
    description: The layout or a name.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The rc's name
  ansible.builtin.set_fact:
    _rc: "{{ ovl_rc_name | default('auto') | xcluster.multus.multus_rc_name }}"
"""

RETURN = r"""
_value:
  description: The file name.
  type: str
"""


def _multus_rc_name(*args, **kwargs):
    try:
        return rc_name(*args, **kwargs)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_rc_name: {exc}") from exc


class FilterModule:
    """The multus_rc_name filter."""

    def filters(self):
        return {"multus_rc_name": _multus_rc_name}
