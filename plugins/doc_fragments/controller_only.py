# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The attributes of the modules that run on the controller only and never change a node."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: Runs the same in check mode; it changes nothing on nodes.
  diff_mode:
    support: none
    description: Nothing to show; nodes are not changed.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller only.
"""
