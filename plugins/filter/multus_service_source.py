# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.plugin_utils.mservice import MserviceError, choose

DOCUMENTATION = r"""
name: multus_service_source
author: xcluster.multus developers
version_added: "0.1.0"
short_description: Where the multus-service binaries come from (a clone's build, or prebuilt)
description:
  - With O(source=auto), a clone given (the input) is built; else C(multus-proxy) and
    C(multus-service-controller) are taken prebuilt from O(prebuilt_dir) when both are there and
    executable (xcluster's C($GOPATH/bin) after C(go install ./cmd/...)); else none.
  - C(clone) and C(prebuilt) force one; what is missing is the result's C(problem).
  - Reads the controller's O(prebuilt_dir) (its files' kind and mode), nothing else.
options:
  _input:
    description: The clone (C(multus_service_src_dir)); empty for none.
    type: str
    required: true
  source:
    description: C(auto), C(clone) or C(prebuilt).
    type: str
    default: auto
  prebuilt_dir:
    description:
      - The directory of the prebuilt binaries; empty for C($GOPATH/bin) (C($HOME/go/bin) without GOPATH).
    type: str
    default: ""
  gopath:
    description: The controller's C(GOPATH).
    type: str
    default: ""
  home:
    description: The controller's C(HOME).
    type: str
    default: ""
  required:
    description: Fail with the result's C(problem) when there is one.
    type: bool
    default: false
  host:
    description: The host, for messages.
    type: str
    default: this host
"""

EXAMPLES = r"""
- name: Where the binaries come from
  ansible.builtin.set_fact:
    _src: >-
      {{ multus_service_src_dir | xcluster.multus.multus_service_source(source=multus_service_source,
           prebuilt_dir=multus_service_prebuilt_dir, gopath=lookup('ansible.builtin.env', 'GOPATH'),
           home=lookup('ansible.builtin.env', 'HOME'), required=true, host=inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: "C({source: clone|prebuilt|none, dir, binaries: {name: path}, report, problem})."
  type: dict
"""


def _multus_service_source(
    src_dir, *, source="auto", prebuilt_dir="", gopath="", home="", required=False, host="this host"
):
    try:
        return choose(source, src_dir, prebuilt_dir, gopath, home, required=bool(required), host=host)
    except MserviceError as exc:
        raise AnsibleFilterError(f"multus_service_source: {exc}") from exc


class FilterModule:
    """The multus_service_source filter."""

    def filters(self):
        return {"multus_service_source": _multus_service_source}
