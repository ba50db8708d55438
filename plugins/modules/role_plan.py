#!/usr/bin/python
# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Documentation only: the work is done on the controller by plugins/action/role_plan.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: role_plan
short_description: The roles' preflight and rendering for one host, on the controller
version_added: "0.1.0"
description:
  - Runs entirely on the controller and never contacts the host it runs for. It is each role's
    entry point C(preflight) (and C(files)), and playbooks/tasks/preflight.yml's one task per
    host for all the host's roles.
  - "With O(scope=host), for each role of O(roles) in order: the role's variables (its
    C(defaults/main.yml) under the host's variables, its C(vars/main.yml) over both, as
    C(include_role) layers them) are checked against the role's own argument spec
    (C(meta/argument_specs.yml), entry point C(preflight)), then against the role's cross-field
    checks (C(plugins/plugin_utils/preflight.py)); the release archive a role installs is found,
    verified and unpacked once per run for each request (C(plugins/plugin_utils/artifacts.py));
    then the role's files are rendered into its entry of the contract
    C(xcluster_multus_plan[<role>]) (files, secrets, directories, report, overlay...), set as a
    host fact with the role's private facts its later entry points read."
  - "With O(scope=play) (use it with C(run_once=true) after the host scope), the checks across the
    play's hosts over the facts the host scope set: every host asks for the same archive; node
    indexes unique, node-local ranges disjoint."
  - "A problem fails naming the host, the value and what is expected. It always reports
    C(changed=false) and runs the same in check mode."
options:
  roles:
    description:
      - The roles, by name (V(cni_plugins), V(node_local)), in the order they run.
      - One of O(roles) and O(registry) is required.
    type: list
    elements: str
  registry:
    description:
      - "Instead of O(roles), the collection's list of roles (C(_xcm_registry) in
        C(playbooks/vars/xcluster_multus.yml), items C({name, auto, not_installed})) and
        O(switches): the roles this host gets, returned as RV(host_roles)."
    type: list
    elements: dict
  switches:
    description:
      - With O(registry), each role's switch C(xcluster_multus_<role>) (auto, true, yes, false, no).
      - Default, the host's own variables C(xcluster_multus_<role>) (auto when not set).
    type: dict
  fact:
    description:
      - "The host fact the plan is set in: the contract C(xcluster_multus_plan) with each role's
        entry (and the earlier roles' entries kept). An action's facts rank below C(set_fact), so
        a play that set C(xcluster_multus_plan) before copies this one into it with
        M(ansible.builtin.set_fact) (the roles' preflight.yml and playbooks/tasks/preflight.yml do)."
    type: str
    default: xcluster_multus_plan
  scope:
    description:
      - V(host) checks and renders this host; V(play) checks across the play's hosts.
    type: str
    choices: [host, play]
    default: host
  nad_check:
    description:
      - "With O(scope=play), after every role's preflight of the play's hosts, whether to check
        that no example NetworkAttachmentDefinition is shipped without its plugin (unless
        C(multus_nads_without_plugin)): V(all) the multus role's manifests, V(base) those an
        overlay made with C(ovl_setup=None) keeps, V(none) no check."
    type: str
    choices: [none, all, base]
    default: none
  unknown:
    description:
      - What a role without a plan in C(plugins/plugin_utils/roleplan.py) does. V(fail) fails;
        V(skip) leaves it out (the result's RV(roles) says which roles were planned), for a
        playbook that includes such a role's own entry point C(preflight) instead.
    type: str
    choices: [fail, skip]
    default: fail
author:
  - xcluster.multus contributors (@xcluster-multus)
notes:
  - Controller only, check mode and any connection.
"""

EXAMPLES = r"""
- name: Check this host's inputs and render its files (the contract)
  xcluster.multus.role_plan:
    roles: [cni_plugins, node_local]

- name: Check across the play's hosts (one archive, indexes, ranges)
  xcluster.multus.role_plan:
    roles: [cni_plugins, node_local]
    scope: play
  run_once: true
"""

RETURN = r"""
host_roles:
  description: With O(registry), the roles this host gets, in order.
  returned: success and registry given
  type: list
  elements: str
switches:
  description: With O(registry), each role's switch as read (O(switches) or the host's variables).
  returned: success and registry given
  type: dict
tagged:
  description:
    - "With O(registry), C({<role>_install: bool, <role>_configure: bool}) for RV(host_roles): whether
      C(--tags) / C(--skip-tags) select the step (an untagged run selects every step)."
  returned: success and registry given
  type: dict
registry:
  description: With O(registry), its items with only C(name), C(not_installed), C(credentials) (templated).
  returned: success and registry given
  type: list
  elements: dict
roles:
  description: The roles planned (or checked), in order.
  returned: success
  type: list
  elements: str
credentials:
  description:
    - "With O(scope=host), the roles whose entry point C(credentials) has work on this host (their
      C(<role>_serviceaccount) is true), in order. When there is one and O(registry) is given (the
      playbooks' preflight), the host also joins the
      group C(xcluster_multus_credentials) (as M(ansible.builtin.group_by) adds it, RV(add_group)),
      the hosts of site.yml's credentials play."
  returned: success and scope host
  type: list
  elements: str
add_group:
  description: C(xcluster_multus_credentials), when RV(credentials) is not empty and O(registry) given.
  returned: when RV(credentials) is not empty and O(registry) is given
  type: str
ansible_facts:
  description: With O(scope=host), O(fact) (the plan with each role's entry), and the roles' private facts.
  returned: success
  type: dict
"""
