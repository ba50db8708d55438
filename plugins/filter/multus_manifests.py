# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, manifests

DOCUMENTATION = r"""
name: multus_manifests
author: xcluster.multus developers
version_added: "0.1.0"
short_description: The multus example manifests (CRD, NetworkAttachmentDefinitions, DaemonSet)
description:
  - "Renders, as YAML text, the NetworkAttachmentDefinition CRD, the NADs C(bridge) (no config:
    multus reads the cluster network from its confDir), C(ipvlan) and C(ipvlan2) (whereabouts
    IPAM), C(macvlan) (node-local IPAM) and C(host-device), and the C(multus-alpine) DaemonSet
    whose pods attach to ipvlan, macvlan and host-device."
  - Each NAD's CNI config is JSON in C(spec.config) (a YAML literal block).
  - "whereabouts: with C(whereabouts_dual_stack) true (null derives it from C(whereabouts_version):
    v0.6 and later; an empty version counts as the seed's, without) NAD ipvlan gets
    C(ipRanges) with the IPv4 and the IPv6 range; without it, as in the seed, ipvlan is IPv6
    only (C(range), C(gateway)). ipvlan2 is IPv4 only in both cases."
  - Every name, namespace, master and range comes from the settings; bad values raise an error
    naming the host, the variable and its value.
options:
  _input:
    description:
      - The settings, a dict with the role's C(multus_nad_*), C(multus_daemonset_*) and
        C(multus_whereabouts_dual_stack) and C(multus_whereabouts_version) values under their names
        without C(multus_).
    type: dict
    required: true
  host:
    description: The host name, for error messages.
    type: str
"""

EXAMPLES = r"""
- name: The manifests' file names
  ansible.builtin.debug:
    msg: "{{ _multus_manifest_settings | xcluster.multus.multus_manifests | map(attribute='file') }}"
"""

RETURN = r"""
_value:
  description: The manifests in apply order (CRD, NADs, DaemonSet).
  type: list
  elements: dict
  contains:
    file:
      description: The file name (C(multus-crd.yaml), C(multus-crd-<nad>.yaml), C(<daemonset>.yaml)).
      type: str
    kind:
      description: The object's kind.
      type: str
    name:
      description: The object's name.
      type: str
    namespace:
      description: The object's namespace (null for the CRD).
      type: str
    content:
      description: The YAML text.
      type: str
"""


def _multus_manifests(settings, host=None):
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"multus_manifests: settings {settings!r} are invalid; expected a dict")
    try:
        return manifests(settings, host)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_manifests: {exc}") from exc
    except KeyError as exc:
        raise AnsibleFilterError(f"multus_manifests: the setting {exc} is missing") from exc


class FilterModule:
    """The multus_manifests filter."""

    def filters(self):
        return {"multus_manifests": _multus_manifests}
