# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, activate_script

DOCUMENTATION = r"""
name: multus_activate_script
author: xcluster.multus developers
version_added: "0.1.0"
short_description: Fill in the settings of the multus activation script
description:
  - Takes the body of C(roles/multus/files/activate.sh) and replaces the lines between its
    settings markers with the given values, shell-quoted. The result is the POSIX sh script the
    role pushes to the node and runs with C(ansible.builtin.raw) (and an overlay runs at boot).
  - Paths must be absolute, network names C([A-Za-z0-9_.-]), links interface names.
positional: settings, host
options:
  _input:
    description: The script body (C(lookup('ansible.builtin.file', 'activate.sh'))).
    type: str
    required: true
  settings:
    description:
      - A dict with C(multus_conf) (the active C(10-multus.conf)), C(conf_src) (where it waits
        until the base config is moved), C(moved_dir) (multus's confDir), C(base_conf) (the base
        CNI config; empty for the first config by name), C(base_name) (its network's name, empty
        for any), C(new_name) (the name it gets), C(links) (list of links to set up),
        C(state_dir) (where the original is kept for C(restore)).
    type: dict
    required: true
  host:
    description: The host name, for error messages.
    type: str
"""

EXAMPLES = r"""
- name: Render the activation script
  ansible.builtin.set_fact:
    _multus_activate: >-
      {{ lookup('ansible.builtin.file', 'activate.sh')
         | xcluster.multus.multus_activate_script(_multus_activate_settings, inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: The script with its settings filled in.
  type: str
"""


def _multus_activate_script(body, settings, host=None):
    try:
        return activate_script(body, settings, host)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_activate_script: {exc}") from exc


class FilterModule:
    """The multus_activate_script filter."""

    def filters(self):
        return {"multus_activate_script": _multus_activate_script}
