# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The node index filters (plugins/filter/node_index.py, node_subst.py, node_ranges_check.py),
called directly: registered names, return values, AnsibleFilterError naming the filter and host.
The logic under them is tested in tests/unit/plugins/plugin_utils/test_nodeindex.py."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.filter import node_index as f_index
from ansible_collections.xcluster.multus.plugins.filter import node_ranges_check as f_check
from ansible_collections.xcluster.multus.plugins.filter import node_subst as f_subst
from nodelocal_cases import SEED_DEFAULT, XCLUSTER_MACVLAN


def _hosts(n, start=1):
    return {f"vm-{i:03d}": i for i in range(start, start + n)}


def test_filters_registered():
    assert set(f_index.FilterModule().filters()) == {"node_index"}
    assert set(f_subst.FilterModule().filters()) == {"node_subst"}
    assert set(f_check.FilterModule().filters()) == {"node_ranges_check"}


def test_filters_return_values():
    assert f_index.FilterModule().filters()["node_index"]("vm-004") == 4
    subst = f_subst.FilterModule().filters()["node_subst"]
    assert subst("11.0.x.0/24", 4) == "11.0.4.0/24"
    check = f_check.FilterModule().filters()["node_ranges_check"]
    assert (
        check({"vm-001": 1}, {"d": SEED_DEFAULT})["vm-001"]["d"]["ipam"]["ranges"][0][0]["gateway"]
        == "11.0.1.1"
    )


def test_filters_raise_ansible_filter_error():
    with pytest.raises(
        AnsibleFilterError, match=r"node_index: host vm-000: host name 'vm-000' does not match"
    ):
        f_index.FilterModule().filters()["node_index"]("vm-000")
    with pytest.raises(AnsibleFilterError, match=r"node_subst: host vm-256 \(index 256\): .*too large"):
        f_subst.FilterModule().filters()["node_subst"](SEED_DEFAULT, 256, host="vm-256")
    with pytest.raises(
        AnsibleFilterError, match=r"node_ranges_check: node-local config 'm'.*rangeEnd: 15.0.%.255"
    ):
        f_check.FilterModule().filters()["node_ranges_check"](_hosts(2), {"m": XCLUSTER_MACVLAN})
