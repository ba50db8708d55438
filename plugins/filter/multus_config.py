# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, multus_config

DOCUMENTATION = r"""
name: multus_config
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The multus CNI config (10-multus.conf) of one node
description:
  - Builds the content of C(/etc/cni/net.d/10-multus.conf) as xcluster's C(25multus.rc) writes
    it, from the role's variables, with C(type) derived from the release
    (P(xcluster.multus.multus_flavour#filter)).
  - "Mode C(cluster_network): C(clusterNetwork) and C(defaultNetworks) (multus reads the cluster
    network from its confDir or a NetworkAttachmentDefinition)."
  - "Mode C(delegates) (xcluster's C(DELEGATES=yes)): the inline C(delegates) list; the first one
    gives the pod's C(eth0), the next ones C(net1), C(net2), ... Node placeholders in them (C(%),
    C(.x)) are replaced by the node index and host-local ranges are checked, as
    P(xcluster.multus.node_subst#filter) does."
  - Empty values (log file, kubeconfig) are left out. Bad input raises an error naming the host,
    the variable, its value and what is expected.
options:
  _input:
    description:
      - The settings, a dict with the keys C(version), C(mode), C(cni_version), C(name), C(log_file),
        C(log_level), C(log_to_stderr), C(kubeconfig), C(conf_dir), C(cni_dir), C(bin_dir),
        C(cluster_network), C(default_networks), C(delegates), C(extra) (the role's C(multus_*)
        variables of the same names).
    type: dict
    required: true
  index:
    description: The node index (for placeholders in C(delegates)).
    type: int
  host:
    description: The host name, for error messages.
    type: str
"""

EXAMPLES = r"""
- name: 10-multus.conf of this host
  ansible.builtin.set_fact:
    _multus_conf: >-
      {{ {'version': multus_version, 'mode': 'delegates', 'delegates': multus_delegates}
         | xcluster.multus.multus_config(index=_multus_index, host=inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: The config, a dict (write it with C(to_nice_json)).
  type: dict
"""


def _multus_config(settings, index=None, host=None):
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"multus_config: settings {settings!r} are invalid; expected a dict")
    known = {
        "version", "mode", "cni_version", "name", "log_file", "log_level", "log_to_stderr", "kubeconfig",
        "conf_dir", "cni_dir", "bin_dir", "cluster_network", "default_networks", "delegates", "extra",
    }  # fmt: skip
    unknown = sorted(set(settings) - known)
    if unknown:
        raise AnsibleFilterError(
            f"multus_config: unknown settings {unknown}; expected some of {sorted(known)}"
        )
    try:
        return multus_config(index=index, host=host, **settings)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_config: {exc}") from exc
    except TypeError as exc:
        raise AnsibleFilterError(f"multus_config: {exc}") from exc


class FilterModule:
    """The multus_config filter."""

    def filters(self):
        return {"multus_config": _multus_config}
