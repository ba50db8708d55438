# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, flavour

DOCUMENTATION = r"""
name: multus_flavour
author: xcluster.multus developers
version_added: "0.1.0"
short_description: What a multus release installs, and what its config calls it
description:
  - The one place that maps a multus release to its binary and config type.
  - "3.x releases ship the binary C(multus-cni) and their config says C(\"type\": \"multus-cni\");
    4.x releases ship the thin plugin C(multus) (beside C(multus-daemon) and C(multus-shim)) and
    their config says C(\"type\": \"multus\")."
  - The archive C(multus-cni_<version>_linux_<arch>.tar.gz) holds it as
    C(multus-cni_<version>_linux_<arch>/<binary>).
  - Any other major version, or a string that is not a release version, raises an error naming
    the host and the value.
positional: arch, host
options:
  _input:
    description: The multus release, with or without the leading C(v) (V(3.8), V(v4.3.0)). Quote it in YAML.
    type: str
    required: true
  arch:
    description: The architecture in the archive's name.
    type: str
    default: amd64
  host:
    description: The host name, for error messages.
    type: str
"""

EXAMPLES = r"""
- name: The binary of the installed release
  ansible.builtin.debug:
    msg: "{{ ('3.8' | xcluster.multus.multus_flavour).binary }}"  # multus-cni
"""

RETURN = r"""
_value:
  description: The release's facts.
  type: dict
  contains:
    binary:
      description: The binary's file name, V(multus-cni) (3.x) or V(multus) (4.x).
      type: str
    type:
      description: The C(type) of its CNI config, the same as the binary's name.
      type: str
    major:
      description: The major version, 3 or 4.
      type: int
    version:
      description: The version without the leading C(v).
      type: str
    directory:
      description: The archive's top directory, C(multus-cni_<version>_linux_<arch>).
      type: str
    member:
      description: The binary's path in the archive, C(<directory>/<binary>).
      type: str
"""


def _multus_flavour(version, arch="amd64", host=None):
    try:
        return flavour(version, arch, host)
    except MultusError as exc:
        raise AnsibleFilterError(f"multus_flavour: {exc}") from exc


class FilterModule:
    """The multus_flavour filter."""

    def filters(self):
        return {"multus_flavour": _multus_flavour}
