# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils import preflight

DOCUMENTATION = r"""
name: preflight_problems
author: xcluster.multus developers
version_added: "0.1.0"
short_description: A role's cross-field preflight checks, in Python
description:
  - Runs the checks of O(role) (plugins/plugin_utils/preflight.py, C(CHECKS)) on the values the
    role's preflight gives (its variables and what it found, such as the archive) and returns
    every problem found, each a sentence naming the value and what is expected. Types, choices
    and defaults are the role's argument spec's, checked at its entry point C(preflight).
  - "The role's preflight asserts the list is empty and shows C(host: problem; problem)."
positional: role, host
options:
  _input:
    description: The values the checks read (a dict).
    type: dict
    required: true
  role:
    description: The role whose checks run.
    type: str
    required: true
  host:
    description: The host the values are for (for the messages).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Check the inputs this host asks for
  ansible.builtin.assert:
    that: _problems | length == 0
    fail_msg: "{{ inventory_hostname }}: {{ _problems | join('; ') }}"
    quiet: true
  vars:
    _problems: >-
      {{ {'asks': {inventory_hostname: {'bin_dir': '/opt/cni/bin', 'conf_dir': '/etc/x', 'configs': {}}},
          'cfg_re': '^[a-z]+$'} | xcluster.multus.preflight_problems('node_local', inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: The problems found, a list of sentences (empty when none).
  type: list
  elements: str
"""


def _preflight_problems(values, role, host):
    try:
        return preflight.problems(role, host, values)
    except (KeyError, ValueError) as exc:
        raise AnsibleFilterError(f"preflight_problems: role {role}, host {host}: {exc}") from exc


class FilterModule:
    """The preflight_problems filter."""

    def filters(self):
        return {"preflight_problems": _preflight_problems}
