# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, jmespath_search

DOCUMENTATION = r"""
name: jmespath
author: xcluster.multus developers
version_added: "0.1.0"
short_description: Query JSON data with a JMESPath expression
description:
  - Runs C(jmespath.search(expression, data)) on the controller, the way community.general's
    C(json_query) does, which this collection does not depend on.
  - The data is first turned into plain dicts, lists, strings and numbers (JMESPath functions
    such as C(contains) check types by exact name, which Ansible's tagged values fail).
  - Used to read CNI results and C(ip -j) output, never by hand-written string parsing.
  - A bad expression raises an error naming it. Requires the Python library jmespath on the
    controller (one of the collection's runtime requirements).
positional: expression
options:
  _input:
    description: The data (for example C(result.stdout | from_json)).
    type: raw
    required: true
  expression:
    description: The JMESPath expression.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The IPv4 addresses of a CNI result
  ansible.builtin.debug:
    msg: "{{ _add.stdout | from_json | xcluster.multus.jmespath(_expr) }}"
  vars:
    _expr: "ips[?contains(address, '.')].address"
"""

RETURN = r"""
_value:
  description: What the expression selects (null when nothing matches a single-value expression).
  type: raw
"""


def _jmespath(data, expression):
    try:
        return jmespath_search(data, expression)
    except MultusError as exc:
        raise AnsibleFilterError(f"jmespath: {exc}") from exc


class FilterModule:
    """The jmespath filter."""

    def filters(self):
        return {"jmespath": _jmespath}
