"""plugins/plugin_utils/nodeindex.py and the three filters, called directly (no Ansible run)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
from ansible_collections.xcluster.multus.plugins.plugin_utils import nodeindex as ni
from ansible_collections.xcluster.multus.plugins.plugin_utils.nodeindex import NodeIndexError
from hypothesis import given, settings
from hypothesis import strategies as st
from nodelocal_cases import (
    COLLECTIONS,
    LAB_DEFAULT,
    LAB_IPVLAN,
    LAB_MACVLAN,
    ONE_LINE,
    SEED_DEFAULT,
    XCLUSTER_DEFAULT,
    XCLUSTER_IPVLAN,
    XCLUSTER_MACVLAN,
)

# ------------------------------------------------------------------------------ node_index


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("vm-001", 1),
        ("vm-004", 4),
        ("vm-010", 10),
        ("vm-200", 200),
        ("vm-1", 1),
        ("vm-0042", 42),
        ("vm-1000", 1000),
    ],
)
def test_index_from_hostname(host, expected):
    assert ni.node_index(host) == expected


@pytest.mark.parametrize(
    "host", ["vm-000", "vm-0", "vm", "vm-", "node-a", "vm-01a", "VM-001", "xvm-001", "vm-001\n"]
)
def test_index_bad_hostname(host):
    with pytest.raises(
        NodeIndexError, match=r"host .*does not match the index pattern.*expected a name like vm-001"
    ):
        ni.node_index(host)


def test_index_error_names_host_and_value():
    with pytest.raises(NodeIndexError, match=r"^host node-a: host name 'node-a' does not match"):
        ni.node_index("node-a")


@pytest.mark.parametrize(("index", "expected"), [(7, 7), ("7", 7), ("007", 7), (300, 300)])
def test_index_explicit_overrides(index, expected):
    assert ni.node_index("node-a", index=index) == expected
    assert ni.node_index("vm-003", index=index) == expected


@pytest.mark.parametrize("index", [0, -1, "0", "", "a", "1.5", 1.0, True, [1], "-3", " 3"])
def test_index_explicit_bad(index):
    with pytest.raises(
        NodeIndexError, match=r"host node-a: node index .* is invalid; expected a positive integer"
    ):
        ni.node_index("node-a", index=index)


@pytest.mark.parametrize(
    ("host", "pattern", "expected"),
    [
        ("node1", r"node([0-9]+)", 1),
        ("worker-12.example.com", r"worker-(?P<index>[0-9]+)\..*", 12),
        ("r7-n03", r"r([0-9]+)-n(?P<index>[0-9]+)", 3),
        ("vm-005", "", 5),
        ("vm-005", None, 5),
    ],
)
def test_index_pattern(host, pattern, expected):
    assert ni.node_index(host, pattern=pattern) == expected


@pytest.mark.parametrize(
    ("host", "pattern", "match"),
    [
        ("node1", r"node[0-9]+", r"has no capturing group"),
        ("node1", r"node(", r"is not a valid regular expression"),
        ("node0", r"node([0-9]+)", r"captured '0'; expected decimal digits with a value >= 1"),
        ("nodeA", r"node(.)", r"captured 'A'"),
        ("node1x", r"node([0-9]+)", r"does not match the index pattern"),  # whole name must match
        ("node1", 5, r"index pattern 5 is invalid"),
    ],
)
def test_index_pattern_bad(host, pattern, match):
    with pytest.raises(NodeIndexError, match=match):
        ni.node_index(host, pattern=pattern)


@pytest.mark.parametrize("host", ["", None, 5])
def test_index_bad_host(host):
    with pytest.raises(NodeIndexError, match=r"host name .* is invalid; expected a non-empty string"):
        ni.node_index(host)


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=4))
def test_index_roundtrip(n, zeros):
    assert ni.node_index(f"vm-{'0' * zeros}{n}") == n
    assert ni.node_index(f"vm-{n:03d}") == n


# ---------------------------------------------------------------------------- substitution


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("11.0.x.0/24", "11.0.4.0/24"),
        ("11.0.%.0/24", "11.0.4.0/24"),
        ("1100::11.0.%.0/120", "1100::11.0.4.0/120"),
        ("%%", "44"),
        (".x.x", ".4.4"),
        ("..x", "..4"),
        (".x%", ".44"),  # both found in the original string
        (".xx", ".xx"),
        (".x_", ".x_"),
        (".x9", ".x9"),
        (".X", ".X"),
        ("x.x", "x.4"),
        ("1100::x:0", "1100::x:0"),  # 'x' after ':' is not a placeholder
        (".x-", ".4-"),
        (".xé", ".4é"),  # only ASCII [0-9A-Za-z_] protects an x
        ("", ""),
        ("no placeholder", "no placeholder"),
    ],
)
def test_substitute_strings(text, expected):
    assert ni.substitute(text, 4) == expected


def test_substitute_structure_every_occurrence():
    template = {"a%": ["1.x", {"b": "%.x%"}, 3, 1.5, None, True], "c": ("x.x",)}
    assert ni.substitute(template, 12) == {
        "a%": ["1.12", {"b": "12.1212"}, 3, 1.5, None, True],
        "c": ["x.12"],
    }
    assert template["a%"][1] == {"b": "%.x%"}  # input not changed


def test_substitute_one_line_all_placeholders():
    out = ni.substitute(ONE_LINE, 9)
    assert out["ipam"]["ranges"][0][0] == {
        "subnet": "198.19.9.0/24",
        "rangeStart": "198.19.9.10",
        "rangeEnd": "198.19.9.20",
        "gateway": "198.19.9.1",
    }
    assert out["note"] == "a.9.9.9.xy.x_.X99 1:x::"


@pytest.mark.parametrize("value", [b"11.0.x.0", {1, 2}, object()])
def test_substitute_bad_type(value):
    with pytest.raises(
        NodeIndexError, match=r"host vm-002: .* expected a string, number, boolean, null, list or dict"
    ):
        ni.substitute({"k": [value]}, 2, host="vm-002")


@pytest.mark.parametrize("index", [0, -4, "x", None, True])
def test_substitute_bad_index(index):
    with pytest.raises(NodeIndexError, match=r"node index .* is invalid"):
        ni.substitute("11.0.x.0", index)


def _reference_subst(text, index):
    """An independent, character-by-character reading of the placeholder rule."""
    word = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
    out = []
    for i, ch in enumerate(text):
        after_dot = i > 0 and text[i - 1] == "."
        next_is_word = i + 1 < len(text) and text[i + 1] in word
        if ch == "%" or (ch == "x" and after_dot and not next_is_word):
            out.append(str(index))
        else:
            out.append(ch)
    return "".join(out)


placeholder_text = st.text(
    alphabet=st.sampled_from(list(".x%X_9aé:/-") + ["\n", "\\", '"']), max_size=40
) | st.text(max_size=40)
indexes = st.integers(min_value=1, max_value=100000)


@given(placeholder_text, indexes)
def test_prop_matches_reference(text, index):
    assert ni.substitute(text, index) == _reference_subst(text, index)


@given(placeholder_text, indexes, indexes)
def test_prop_no_placeholder_left_and_idempotent(text, i, j):
    once = ni.substitute(text, i)
    assert not ni.has_placeholder(once)
    assert ni.substitute(once, j) == once


@given(placeholder_text, indexes)
def test_prop_length(text, index):
    count = len(ni.PLACEHOLDER_RE.findall(text))
    assert len(ni.substitute(text, index)) == len(text) + count * (len(str(index)) - 1)
    assert ni.has_placeholder(text) == (count > 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | placeholder_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(placeholder_text, inner, max_size=4),
    max_leaves=20,
)


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return "str" if isinstance(value, str) else value


@given(json_values, indexes)
def test_prop_structure_kept(value, index):
    before = copy.deepcopy(value)
    out = ni.substitute(value, index)
    assert value == before
    assert _shape(out) == _shape(value)  # same keys, same non-strings, strings stay strings


# ------------------------------------------------------------------------ node_subst (IPAM)


@pytest.mark.parametrize(
    ("template", "index", "ranges"),
    [
        (XCLUSTER_DEFAULT, 3, [[{"subnet": "11.0.3.0/24"}], [{"subnet": "1100::11.0.3.0/120"}]]),
        (SEED_DEFAULT, 255, [[{"subnet": "11.0.255.0/24", "gateway": "11.0.255.1"}]]),
        (
            XCLUSTER_MACVLAN,
            200,
            [
                [{"subnet": "15.0.0.0/16", "rangeStart": "15.0.200.0", "gateway": "15.0.0.0"}],
                [
                    {
                        "subnet": "4000::15.0.0.0/112",
                        "rangeStart": "4000::15.0.200.0",
                        "gateway": "4000::15.0.0.0",
                    }
                ],
            ],
        ),
    ],
)
def test_node_subst_ipam(template, index, ranges):
    out = ni.node_subst(template, index, host=f"vm-{index:03d}")
    assert out["ipam"]["ranges"] == ranges
    assert out["name"] == template["name"]


@pytest.mark.parametrize(
    "template",
    [XCLUSTER_DEFAULT, XCLUSTER_MACVLAN, XCLUSTER_IPVLAN, SEED_DEFAULT, LAB_DEFAULT, LAB_MACVLAN, ONE_LINE],
)
@pytest.mark.parametrize("index", [1, 2, 10, 127, 254, 255])
def test_node_subst_valid_for_every_octet(template, index):
    ni.node_subst(template, index)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("11.0.x.0/24", "11.0.5.0/24"),
        ("1100::11.0.%.0/120", "1100::11.0.5.0/120"),
        ("11.0.x.1", "11.0.5.1"),
        (["11.0.x.0/24", "2001:db8:%::1"], ["11.0.5.0/24", "2001:db8:5::1"]),
        (
            {"subnet": "198.19.x.0/24", "rangeEnd": "198.19.x.9"},
            {"subnet": "198.19.5.0/24", "rangeEnd": "198.19.5.9"},
        ),
        ([{"subnet": "198.19.x.0/24"}], [{"subnet": "198.19.5.0/24"}]),
        ([[{"subnet": "198.19.x.0/24"}]], [[{"subnet": "198.19.5.0/24"}]]),
        ({"ranges": [[{"subnet": "198.19.x.0/24"}]]}, {"ranges": [[{"subnet": "198.19.5.0/24"}]]}),
        (
            {"type": "host-local", "subnet": "198.19.x.0/24"},
            {"type": "host-local", "subnet": "198.19.5.0/24"},
        ),
    ],
)
def test_node_subst_shapes(value, expected):
    assert ni.node_subst(value, 5, host="vm-005") == expected


def _range(**kw):
    return {"ipam": {"type": "host-local", "ranges": [[kw]]}}


@pytest.mark.parametrize(
    ("template", "index", "match"),
    [
        # no placeholder anywhere
        (
            _range(subnet="11.0.0.0/24"),
            1,
            r"host vm-001 \(index 1\): template .* has no placeholder; expected '%' or '.x'",
        ),
        ("11.0.0.0/24", 1, r"has no placeholder"),
        # an index too large for where it lands
        (
            XCLUSTER_DEFAULT,
            256,
            r"host vm-001 \(index 256\): ipam.ranges\[0\]\[0\].subnet is '11.0.256.0/24' "
            r"\(from template '11.0.%.0/24'\); expected a network in CIDR form.*too large for where it lands",
        ),
        (SEED_DEFAULT, 1000, r"subnet is '11.0.1000.0/24'.*too large"),
        ("2001:db8:%::/64", 12345, r"'2001:db8:12345::/64'.*too large"),
        (
            LAB_IPVLAN,
            128,
            r"rangeStart is '198.19.128.0' .*expected an address inside its subnet 198.19.0.0/17",
        ),
        # subnets are networks
        (
            _range(subnet="11.0.x.1/24"),
            2,
            r"subnet is '11.0.2.1/24'.*expected a network address with no host bits set",
        ),
        (_range(subnet="11.0.x.0"), 2, r"subnet is '11.0.2.0'.*expected a network in CIDR form"),
        (_range(subnet="11.0.x.0/255.255.255.0"), 2, r"expected a network in CIDR form"),
        (_range(subnet="11.0.x.0/33"), 2, r"expected a prefix length of at most 32"),
        (_range(subnet="11.0.x.0/31"), 2, r"expected a network large enough to allocate from"),
        (_range(subnet="2001:db8:%::/127"), 2, r"prefix <= 126"),
        (_range(subnet=" 11.0.x.0/24"), 2, r"expected a network in CIDR form"),
        # addresses inside their subnet and of its family
        (
            _range(subnet="11.0.x.0/24", gateway="11.1.x.1"),
            2,
            r"gateway is '11.1.2.1'.*inside its subnet 11.0.2.0/24",
        ),
        (
            _range(subnet="11.0.x.0/24", rangeStart="2001:db8::%"),
            2,
            r"rangeStart .* expected an IPv4 address like",
        ),
        (
            _range(subnet="11.0.x.0/24", rangeEnd="11.0.x"),
            2,
            r"rangeEnd is '11.0.2'.*expected an IPv4 or IPv6 address",
        ),
        (
            _range(subnet="11.0.x.0/24", rangeEnd="11.0.x.%x"),
            2,
            r"rangeEnd is '11.0.2.2x'.*an IPv4 or IPv6 address",
        ),
        (
            _range(subnet="11.0.x.0/24", rangeStart="11.0.x.9", rangeEnd="11.0.x.8"),
            2,
            r"rangeEnd is '11.0.2.8'.*expected rangeStart <= rangeEnd",
        ),
        (_range(subnet="11.0.x.0/24", rangeStart="11.0.x.255"), 2, r"expected rangeStart <= rangeEnd"),
        (_range(subnet=5, gateway="11.0.x.1"), 2, r"subnet is 5.*expected a string"),
        (_range(gateway="11.0.x.1"), 2, r"expected a 'subnet' in every range"),
        # structure
        (
            {"ipam": {"type": "whereabouts", "range": "11.0.x.0/24"}},
            2,
            r"ipam.type is 'whereabouts'.*'host-local'",
        ),
        ({"ipam": {"type": "host-local"}, "x": ".x"}, 2, r"expected 'ranges'"),
        ({"ipam": {"ranges": []}, "x": ".x"}, 2, r"ipam.ranges is \[\].*non-empty list of range sets"),
        ({"ipam": {"ranges": [[]]}, "x": ".x"}, 2, r"ipam.ranges\[0\] is \[\].*non-empty list of ranges"),
        (
            {"foo": "11.0.x.0/24"},
            2,
            r"expected a host-local config: a dict with 'ipam', 'ranges' or 'subnet'",
        ),
        ([[{"subnet": "11.0.x.0/24"}, {"subnet": "2001:db8:%::/64"}]], 2, r"ranges of one address family"),
        (
            {"ranges": [[{"subnet": "11.0.x.0/24"}], [{"subnet": "11.0.x.128/25"}]]},
            2,
            r"ranges\[0\]\[0\] \(11.0.2.1-11.0.2.254\) overlaps ranges\[1\]\[0\].*disjoint",
        ),
        (
            {"ipam": {"ranges": [[{"subnet": "11.0.x.0/24"}]], "routes": [{"dst": "1.2.x.0"}]}},
            2,
            r"routes\[0\].dst is '1.2.2.0'.*network in CIDR form",
        ),
    ],
)
def test_node_subst_invalid(template, index, match):
    with pytest.raises(NodeIndexError, match=match):
        ni.node_subst(template, index, host="vm-001")


def test_node_subst_without_host_names_index():
    with pytest.raises(NodeIndexError, match=r"^node index 300: .*'11.0.300.0/24'"):
        ni.node_subst(SEED_DEFAULT, 300)


def test_node_subst_validate_false_keeps_any_string():
    assert ni.node_subst("pod-%.x", 3, validate=False) == "pod-3.3"
    with pytest.raises(NodeIndexError, match="no placeholder"):
        ni.node_subst("pod", 3, validate=False)


def test_effective_ranges_follow_host_local():
    (v4,) = ni.validate_ipam({"subnet": "198.19.0.0/24"})
    assert (str(v4["start"]), str(v4["end"])) == ("198.19.0.1", "198.19.0.254")  # no broadcast
    (v6,) = ni.validate_ipam({"subnet": "2001:db8::/120"})
    assert (str(v6["start"]), str(v6["end"])) == ("2001:db8::1", "2001:db8::ff")
    (r,) = ni.validate_ipam({"subnet": "198.18.0.0/16", "rangeStart": "198.18.3.0"})
    assert (str(r["start"]), str(r["end"])) == ("198.18.3.0", "198.18.255.254")


# ------------------------------------------------------------------------- inventory check


def _hosts(n, start=1):
    return {f"vm-{i:03d}": i for i in range(start, start + n)}


def test_check_inventory_lab_ok():
    out = ni.check_inventory(
        _hosts(8), {"default": LAB_DEFAULT, "macvlan": LAB_MACVLAN, "ipvlan": LAB_IPVLAN}
    )
    assert out["vm-003"]["macvlan"]["ipam"]["ranges"][0][0]["rangeStart"] == "198.18.3.0"
    assert out["vm-008"]["default"]["ipam"]["ranges"][1][0]["subnet"] == "2001:db8:11::198.19.8.0/120"
    assert sorted(out) == sorted(_hosts(8))


def test_check_inventory_xcluster_default_ok_for_200_nodes():
    out = ni.check_inventory(_hosts(200), {"default": XCLUSTER_DEFAULT})
    assert len(out) == 200


def test_check_inventory_xcluster_macvlan_overlaps_and_shows_fix():
    with pytest.raises(NodeIndexError) as err:
        ni.check_inventory(_hosts(4), {"macvlan": XCLUSTER_MACVLAN})
    msg = str(err.value)
    assert "node-local config 'macvlan': the ranges of two hosts overlap" in msg
    assert "vm-001 ipam.ranges[0][0] 15.0.1.0-15.0.255.254 in 15.0.0.0/16 (no rangeEnd" in msg
    assert "overlaps vm-002 ipam.ranges[0][0] 15.0.2.0-15.0.255.254" in msg
    assert "Fix: add rangeEnd: 15.0.%.255 next to rangeStart: 15.0.%.0" in msg
    assert "Fix: add rangeEnd: 4000::15.0.%.255 next to rangeStart: 4000::15.0.%.0" in msg


def test_check_inventory_seed_style_fix_uses_dot_x():
    template = _range(subnet="15.0.0.0/16", rangeStart="15.0.x.0")
    with pytest.raises(NodeIndexError, match=r"Fix: add rangeEnd: 15.0.x.255 next to rangeStart: 15.0.x.0"):
        ni.check_inventory({"vm-001": 1, "vm-002": 2}, {"macvlan": template})


def test_check_inventory_the_fix_works():
    fixed = copy.deepcopy(XCLUSTER_MACVLAN)
    fixed["ipam"]["ranges"][0][0]["rangeEnd"] = "15.0.%.255"
    fixed["ipam"]["ranges"][1][0]["rangeEnd"] = "4000::15.0.%.255"
    out = ni.check_inventory(_hosts(200), {"macvlan": fixed})
    assert out["vm-200"]["macvlan"]["ipam"]["ranges"][1][0]["rangeEnd"] == "4000::15.0.200.255"


def test_check_inventory_overlap_without_simple_fix():
    template = _range(subnet="198.19.0.0/16", rangeStart="198.19.x.0", rangeEnd="198.19.x.255")
    wide = _range(subnet="198.19.0.0/16", rangeStart="198.19.1.0", rangeEnd="198.19.9.x")
    with pytest.raises(
        NodeIndexError,
        match=r"vm-001 ipam.ranges\[0\]\[0\] 198.19.1.0-198.19.9.1 .*overlaps vm-002 "
        r".*198.19.2.0-198.19.2.255.*Fix: make subnet, rangeStart and rangeEnd depend on the node index",
    ):
        ni.check_inventory({"vm-001": 1, "vm-002": 2}, {"n": template}, host_configs={"vm-001": {"n": wide}})


def test_check_inventory_only_same_config_name_compared():
    a = _range(subnet="198.19.x.0/24")
    ni.check_inventory({"vm-001": 1, "vm-002": 2}, {"a": a, "b": copy.deepcopy(a)})


def test_check_inventory_duplicate_index():
    with pytest.raises(
        NodeIndexError, match=r"hosts node-a and vm-003 both have node index 3; expected a different"
    ):
        ni.check_inventory({"vm-003": 3, "node-a": "3", "vm-001": 1}, {"default": LAB_DEFAULT})


@pytest.mark.parametrize(
    ("indexes", "configs", "host_configs", "match"),
    [
        ({}, {}, None, r"indexes \{\} are invalid; expected a dict host -> node index"),
        ({"vm-001": 0}, {}, None, r"host vm-001: node index 0 is invalid"),
        ({"vm-001": 1}, [], None, r"configs \[\] are invalid"),
        ({"vm-001": 1}, {}, [], r"host_configs \[\] are invalid"),
        ({"vm-001": 1}, {}, {"vm-001": "x"}, r"host vm-001: host_configs entry 'x' is invalid"),
        ({"vm-001": 1}, {}, {"vm-01": {}}, r"host_configs name hosts \['vm-01'\] that have no index"),
        (
            {"vm-256": 256},
            {"default": XCLUSTER_DEFAULT},
            None,
            r"node-local config 'default': host vm-256 \(index 256\): .*'11.0.256.0/24'.*too large",
        ),
        (
            {"vm-001": 1},
            {"fixed": _range(subnet="11.0.0.0/24")},
            None,
            r"config 'fixed': host vm-001 .*no placeholder",
        ),
    ],
)
def test_check_inventory_bad_input(indexes, configs, host_configs, match):
    with pytest.raises(NodeIndexError, match=match):
        ni.check_inventory(indexes, configs, host_configs)


# ------------------------------------------------------------------------- missing netaddr


def test_missing_netaddr_is_a_clear_error():
    code = (
        "import sys; sys.modules['netaddr'] = None; sys.path.insert(0, sys.argv[1])\n"
        "from ansible_collections.xcluster.multus.plugins.plugin_utils import nodeindex as ni\n"
        "assert ni.node_index('vm-002') == 2 and ni.substitute('a.x', 2) == 'a.2'\n"
        "assert ni.node_subst('a.x', 2, validate=False) == 'a.2'\n"
        "try:\n    ni.node_subst('11.0.x.0/24', 2)\nexcept ni.NodeIndexError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(COLLECTIONS)], capture_output=True, text=True, check=True
    ).stdout
    assert "netaddr is required (pip install netaddr)" in out


@settings(max_examples=50)
@given(st.integers(min_value=1, max_value=255))
def test_prop_lab_templates_valid_to_255(index):
    for template in (LAB_DEFAULT, LAB_MACVLAN, SEED_DEFAULT, XCLUSTER_DEFAULT):
        ni.node_subst(template, index)
