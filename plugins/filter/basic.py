# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible_collections.xcluster.multus.plugins.plugin_utils import basic as b
from ansible_collections.xcluster.multus.plugins.plugin_utils.opfilter import op_filter

DOCUMENTATION = r"""
name: basic
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The rules of the basic check (playbooks/basic.yml), in Python
description:
  - The basic check (playbooks/basic.yml and its tasks/basic_api.yml) reads things on the nodes
    and hands them to this filter; the rules live in plugins/plugin_utils/basic.py.
  - "O(op): C(nad_configs) (input: Kubernetes objects; O(names): name -> the NAD's CNI config),
    C(attached) (input: the ipvlan, macvlan and host-device NAD names; O(ipvlan_on): the names
    the pod attaches, in order), C(delegates) (input: the installed multus config; O(nads),
    O(names), O(ipvlan_on), O(ipvlan_cfg), O(api_on), O(cluster): the pod's delegates),
    C(check_conf) (input: the installed multus config; O(nets), O(log): the check's own config),
    C(node_local_cfgs) (input: delegates; their node-local cfg names), C(pod) (input: C(ip -j
    addr) in the pod; O(nets), O(docs): the pod's interfaces by position with their node-local
    ranges), C(pod_lines) (input: C(pod)'s result; lines to show), C(api_pods) (input: the
    play's hosts; O(ipvlan_on), O(names), O(namespace), O(netns): the Pod objects),
    C(pod_uid) and C(network_status) (input: C(kubectl get pods -o json); O(name)),
    C(status) (input: C(network_status)'s result; O(links): the interfaces as the API says and
    as the pod has them), C(status_lines), C(status_problems) (input: C(status)'s result;
    O(names) attached, O(pinged)), C(ping_targets) (input: host -> pod; O(me), O(pinged): C([net, host,
    addr]) lists), C(pings) (input: the ping script's output lines; the pings, the lost
    ones and the matrix as lines)."
positional: op
options:
  _input:
    description: What O(op) works on (see the description).
    type: raw
    required: true
  op:
    description: What to do.
    type: str
    required: true
    choices: [nad_configs, attached, delegates, check_conf, node_local_cfgs, pod, pod_lines, api_pods,
              pod_uid, network_status, status, status_lines, status_problems, ping_targets, pings]
  names:
    description: NAD names (op C(nad_configs)); the ipvlan, macvlan and host-device NAD names (ops
      C(delegates), C(api_pods)); the attached NADs (op C(status_problems)).
    type: list
    elements: str
  nads:
    description: NAD name -> CNI config (op C(nad_configs)'s result).
    type: dict
  ipvlan_on:
    description: Whether ipvlan is attached (ops C(attached), C(delegates)); host -> that (op C(api_pods)).
    type: raw
  ipvlan_cfg:
    description: The node-local cfg that replaces the ipvlan NAD's whereabouts IPAM.
    type: str
  api_on:
    description: Whether the check runs against the API server (multus reads the cluster network itself).
    type: bool
    default: false
  cluster:
    description: The cluster network's config (JSON text), when the multus config names it by clusterNetwork.
    type: str
  nets:
    description: The pod's delegates (op C(delegates)'s result).
    type: list
    elements: dict
  log:
    description: The check's multus log file.
    type: str
  docs:
    description: The node index then the node-local configs of O(nets) (op pod).
    type: list
  links:
    description: C(ip -j addr) in the pod (op status).
    type: list
  namespace:
    description: The Pods' namespace.
    type: str
  netns:
    description: The pod's name prefix.
    type: str
  name:
    description: The Pod's name.
    type: str
  pinged:
    description: The networks pinged.
    type: list
    elements: str
  me:
    description: This host (op ping_targets leaves its own pod out).
    type: str
  host:
    description: The host, for error messages and the ping matrix.
    type: str
"""

EXAMPLES = r"""
- name: The NADs' CNI configs from the manifests on the node
  ansible.builtin.set_fact:
    _basic_nad_configs: >-
      {{ _basic_read_nads.stdout | from_yaml_all | list
         | xcluster.multus.basic('nad_configs', names=['ipvlan', 'macvlan', 'host-device']) }}
"""

RETURN = r"""
_value:
  description: What O(op) gives (see the description).
  type: raw
"""

_OPS = {
    "nad_configs": lambda d, kw: b.nad_configs(d, kw["names"], kw.get("host")),
    "attached": lambda d, kw: b.attached(d, kw["ipvlan_on"]),
    "delegates": lambda d, kw: b.delegates(
        d,
        kw["nads"],
        kw["names"],
        ipvlan_on=kw["ipvlan_on"],
        ipvlan_cfg=kw.get("ipvlan_cfg"),
        api_on=bool(kw.get("api_on")),
        cluster=kw.get("cluster"),
        host=kw.get("host"),
    ),
    "check_conf": lambda d, kw: b.check_conf(d, kw["nets"], kw["log"]),
    "node_local_cfgs": lambda d, kw: b.node_local_cfgs(d),
    "pod": lambda d, kw: b.pod_interfaces(kw["nets"], d, kw.get("docs"), kw.get("host")),
    "pod_lines": lambda d, kw: b.pod_lines(d),
    "api_pods": lambda d, kw: b.api_pods(d, kw["ipvlan_on"], kw["names"], kw["namespace"], kw["netns"]),
    "pod_uid": lambda d, kw: b.pod_uid(d, kw["name"]),
    "network_status": lambda d, kw: b.network_status(d, kw["name"], kw.get("host")),
    "status": lambda d, kw: b.status_interfaces(d, kw["links"]),
    "status_lines": lambda d, kw: b.status_lines(d),
    "status_problems": lambda d, kw: b.status_problems(d, kw["names"], kw["pinged"]),
    "ping_targets": lambda d, kw: b.ping_targets(d, kw["me"], kw["pinged"]),
    "pings": lambda d, kw: b.pings(d, kw.get("host", "")),
}


class FilterModule:
    """The basic filter."""

    def filters(self):
        return {"basic": op_filter("basic", _OPS, b.BasicError)}
