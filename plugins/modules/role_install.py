#!/usr/bin/python
# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Documentation only: the work is done on the controller by plugins/action/role_install.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: role_install
short_description: One host's install from the roles' contract, in one task
version_added: "0.1.0"
description:
  - "playbooks/site.yml's install of a host, over the contract C(xcluster_multus_plan) the roles'
    preflight set (M(xcluster.multus.role_plan)). No module is sent: the node needs no Python."
  - "First one read of the node (a shell command, also in check mode) for the roles' prechecks
    and probes (each role's C(node) entry in the contract, plugins/plugin_utils/nodestep.py):
    a node that fails a precheck (multus: no base CNI config to wrap) fails here naming what it
    holds, and nothing is pushed to it."
  - "Then one push of every role's files and secrets, exactly as M(xcluster.multus.push_files)
    does (the same code: one read, one tar, one finalize; records; check mode; C(--diff))."
  - "Returns the contract with each role's C(changed) set (RV(plan)), and the roles whose entry
    point C(configure) has work on this host (RV(configure)): a role whose files (or the files
    of a role it depends on) changed, whose probe says the node needs it (multus not
    activated, node-local not answering, a multus-service daemon not running), or that works on
    every run on this host (the control plane's manifests when an API server answers); a role
    without a C(node) entry always. A no-op rerun therefore configures nothing where no API
    server answers. When a role's configure does not run, its probe may set the role's report
    and say why as a warning (multus on the control plane: the manifests were not applied)."
options:
  roles:
    description:
      - The roles this host gets, in order (each must have an entry in C(xcluster_multus_plan)).
    type: list
    elements: str
    required: true
  selected:
    description:
      - "C({<role>_install: bool, <role>_configure: bool}) from the tags (the filter
        C(xcluster.multus.plan('tagged'))): a role whose install is not selected keeps its files
        out; one whose configure is not selected gets no precheck, probe or configure."
    type: dict
  state_dir:
    description:
      - As M(xcluster.multus.push_files)'s O(xcluster.multus.push_files#module:state_dir).
    type: str
  group:
    description:
      - "A group the host joins (as M(ansible.builtin.group_by) adds it, RV(add_group)) when RV(plan)
        changed or RV(configure) is not empty: site.yml's configure play runs on group
        C(xcluster_multus_configure) only, so hosts with nothing to configure cost it nothing."
      - "Ansible marks a task C(changed) when it adds a host to a group, whatever the action said:
        a task that sets O(group) gives C(changed_when) RV(install_changed)."
    type: str
author:
  - xcluster.multus contributors (@xcluster-multus)
"""

EXAMPLES = r"""
- name: Install every role's files (one push)
  xcluster.multus.role_install:
    roles: "{{ _xcm_host_roles }}"
    selected: "{{ _xcm_tagged }}"
    group: xcluster_multus_configure  # then a play on that group configures the hosts with work
  register: _xcm_push
  changed_when: _xcm_push.install_changed
"""

RETURN = r"""
plan:
  description: The contract (C(xcluster_multus_plan)) with each role's C(changed) set from the push.
  returned: always
  type: dict
plan_changed:
  description:
    - Whether RV(plan) differs from the contract given (files changed, or a role's report set from
      its probe, e.g. multus's "manifests skipped" on the control plane when no API server answers).
  returned: always
  type: bool
configure:
  description: The roles whose entry point C(configure) has work on this host, in order.
  returned: always
  type: list
  elements: str
  sample: ["node_local", "multus"]
configure_why:
  description: For each role of RV(configure), why (for a person to read).
  returned: always
  type: dict
install_changed:
  description: Whether the install changed the node (the task's C(changed) without O(group)).
  returned: always
  type: bool
add_group:
  description: O(group), when given and the host has something to configure or record.
  returned: when O(group) is given and RV(plan_changed) or RV(configure)
  type: str
changed_files:
  description: As M(xcluster.multus.push_files) returns (with its other results), when something was pushed.
  returned: when the roles have files
  type: list
  elements: str
"""
