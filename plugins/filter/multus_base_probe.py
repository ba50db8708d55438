# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, base_config_probe

DOCUMENTATION = r"""
name: multus_base_probe
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The one raw read that P(xcluster.multus.multus_base_config#filter) reads
description:
  - A POSIX sh command listing the files of the directory of C(10-multus.conf) and the
    activation's record of a base config it moved before.
positional: state_dir
options:
  _input:
    description: The path of C(10-multus.conf).
    type: str
    required: true
  state_dir:
    description: The activation's state directory (O(xcluster.multus.multus#role:main:multus_state_dir)).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read the node's CNI configs
  ansible.builtin.raw: "{{ multus_conf_file | xcluster.multus.multus_base_probe(multus_state_dir) }}"
  register: _probe
  changed_when: false
"""

RETURN = r"""
_value:
  description: The command.
  type: str
"""


def _multus_base_probe(*args, **kwargs):
    try:
        return base_config_probe(*args, **kwargs)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_base_probe: {exc}") from exc


class FilterModule:
    """The multus_base_probe filter."""

    def filters(self):
        return {"multus_base_probe": _multus_base_probe}
