# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""plugins/plugin_utils/multus.py and its filters: the multus config per version and mode, the
manifests (valid YAML with JSON inside), the activation script's settings, jmespath, ipam_range;
and the roles' defaults rendered through them (xcluster's 10-multus.conf, the network rule for
the lab's overrides)."""

from __future__ import annotations

import ipaddress
import json
import pathlib

import jinja2
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.xcluster.multus.plugins.filter import ipam_range as f_range
from ansible_collections.xcluster.multus.plugins.filter import jmespath as f_jmespath
from ansible_collections.xcluster.multus.plugins.filter import multus_activate_script as f_activate
from ansible_collections.xcluster.multus.plugins.filter import multus_config as f_config
from ansible_collections.xcluster.multus.plugins.filter import multus_flavour as f_flavour
from ansible_collections.xcluster.multus.plugins.filter import multus_manifests as f_manifests
from ansible_collections.xcluster.multus.plugins.plugin_utils import multus as m
from ansible_collections.xcluster.multus.plugins.plugin_utils import nodeindex as ni
from ansible_collections.xcluster.multus.plugins.plugin_utils import ovl

REPO = pathlib.Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((REPO / "roles/multus/defaults/main.yml").read_text())
NL_DEFAULTS = yaml.safe_load((REPO / "roles/node_local/defaults/main.yml").read_text())
LAB_MULTUS = yaml.safe_load((REPO / "tests/lab/group_vars/all/multus.yml").read_text())
LAB_NODE_LOCAL = yaml.safe_load((REPO / "tests/lab/group_vars/all/node_local.yml").read_text())
ACTIVATE = (REPO / "roles/multus/files/activate.sh").read_text()

# xcluster's 10-multus.conf (ovl/multus/default/etc/init.d/25multus.rc, clusterNetwork mode).
XCLUSTER_CONF = {
    "cniVersion": "0.4.0",
    "name": "multus",
    "type": "multus-cni",
    "logFile": "/var/log/multus.log",
    "logLevel": "debug",
    "kubeconfig": "/etc/kubernetes/kubeconfig.token",
    "confDir": "/etc/cni/multus/net.d",
    "cniDir": "/var/lib/cni/multus",
    "binDir": "/opt/cni/bin",
    "clusterNetwork": "bridge",
    "defaultNetworks": [],
}


def _kubeconfig(d):
    """multus_kubeconfig's default follows multus_serviceaccount (its Jinja, rendered here)."""
    env = jinja2.Environment(autoescape=False)
    env.filters["bool"] = lambda v: str(v).lower() in ("true", "yes", "1", "on")
    return env.from_string(d["multus_kubeconfig"]).render(d).strip()


def role_settings(defaults=DEFAULTS, **over):
    """The settings the role passes to multus_config, from its defaults."""
    d = {k: v for k, v in defaults.items()}
    d.update({f"multus_{k}": v for k, v in over.items()})
    d["multus_kubeconfig"] = _kubeconfig(d)
    return {
        "version": str(d["multus_version"]),
        "mode": d["multus_mode"],
        "cni_version": d["multus_cni_version"],
        "name": d["multus_name"],
        "log_file": d["multus_log_file"],
        "log_level": d["multus_log_level"],
        "log_to_stderr": d["multus_log_to_stderr"],
        "kubeconfig": d["multus_kubeconfig"],
        "conf_dir": d["multus_conf_dir"],
        "cni_dir": d["multus_cni_dir"],
        "bin_dir": d["multus_bin_dir"],
        "cluster_network": d["multus_cluster_network"],
        "default_networks": d["multus_default_networks"],
        "delegates": d["multus_delegates"],
        "extra": d["multus_config_extra"],
    }


def manifest_settings(defaults=DEFAULTS, **over):
    d = {k[len("multus_") :]: v for k, v in defaults.items() if k.startswith("multus_")}
    keys = [k for k in d if k.startswith(("nad_", "daemonset_", "whereabouts_"))]
    out = {k: d[k] for k in keys}
    out["whereabouts_version"] = ""  # the role's default templates it from whereabouts_version
    out.update(over)
    return out


def config_filter(settings, index=None, host=None):
    return f_config.FilterModule().filters()["multus_config"](settings, index=index, host=host)


def manifests_filter(settings, host=None):
    return f_manifests.FilterModule().filters()["multus_manifests"](settings, host)


# ------------------------------------------------------------------------------- flavour


@pytest.mark.parametrize(
    ("version", "binary", "member"),
    [
        ("3.8", "multus-cni", "multus-cni_3.8_linux_amd64/multus-cni"),
        ("v3.9.3", "multus-cni", "multus-cni_3.9.3_linux_amd64/multus-cni"),
        ("4.3.0", "multus", "multus-cni_4.3.0_linux_amd64/multus"),
        ("v4.0.0-rc1", "multus", "multus-cni_4.0.0-rc1_linux_amd64/multus"),
        (3.8, "multus-cni", "multus-cni_3.8_linux_amd64/multus-cni"),  # unquoted in YAML
    ],
)
def test_flavour(version, binary, member):
    fl = f_flavour.FilterModule().filters()["multus_flavour"](version)
    assert fl["binary"] == binary
    assert fl["type"] == binary  # the config's type is the binary's name, both lines
    assert fl["member"] == member


@pytest.mark.parametrize("version", ["2.0", "5.0.1", "abc", "", None, "3", "v"])
def test_flavour_rejects(version):
    with pytest.raises(
        AnsibleFilterError, match=r"multus_flavour: host vm-002: multus_version is .*expected"
    ):
        f_flavour.FilterModule().filters()["multus_flavour"](version, "amd64", "vm-002")


def test_flavour_rejects_arch():
    with pytest.raises(AnsibleFilterError, match=r"multus_arch is 'AMD 64'"):
        f_flavour.FilterModule().filters()["multus_flavour"]("3.8", "AMD 64")


# ------------------------------------------------------------------------ 10-multus.conf


def test_role_defaults_give_xclusters_conf():
    """The role's defaults render exactly what 25multus.rc writes (same keys, same order)."""
    conf = config_filter(role_settings())
    assert conf == XCLUSTER_CONF
    assert list(conf) == list(XCLUSTER_CONF)
    assert json.loads(json.dumps(conf)) == conf


def test_v4_has_type_multus():
    conf = config_filter(role_settings(version="4.3.0"))
    assert conf["type"] == "multus"
    assert {k: v for k, v in conf.items() if k != "type"} == {
        k: v for k, v in XCLUSTER_CONF.items() if k != "type"
    }


@pytest.mark.parametrize("version", ["3.8", "4.3.0"])
@pytest.mark.parametrize("index", [1, 4, 99])
def test_delegates_mode_per_node(version, index):
    """xcluster's DELEGATES=yes: bridge cbr0, host-local 11.0.$i.0/24 and 1100::${i}00/120."""
    conf = config_filter(
        role_settings(version=version, mode="delegates"), index=index, host=f"vm-{index:03d}"
    )
    assert "clusterNetwork" not in conf and "defaultNetworks" not in conf
    assert conf["type"] == m.flavour(version)["type"]
    (bridge,) = conf["delegates"]
    assert bridge["type"] == "bridge" and bridge["bridge"] == "cbr0" and bridge["isDefaultGateway"] is True
    assert bridge["ipam"]["ranges"] == [
        [{"subnet": f"11.0.{index}.0/24"}],
        [{"subnet": f"1100::{index}00/120"}],
    ]
    assert json.loads(json.dumps(conf)) == conf


def test_delegates_xclusters_ipv6_range_stops_at_99():
    """xcluster's 1100::${i}00/120 is no address from vm-100 on: preflight says so, naming it."""
    with pytest.raises(
        AnsibleFilterError,
        match=r"multus_delegates\[0\]: host vm-100 \(index 100\): ipam.ranges\[1\]\[0\].subnet is "
        r"'1100::10000/120' \(from template '1100::%00/120'\); expected a network",
    ):
        config_filter(role_settings(mode="delegates"), index=100, host="vm-100")


def test_delegates_without_placeholder_are_kept():
    d = [
        {"name": "a", "type": "macvlan", "master": "eth3"},
        {"name": "b", "type": "host-device", "device": "eth4"},
    ]
    conf = config_filter(dict(role_settings(mode="delegates"), delegates=d))
    assert conf["delegates"] == d


def test_delegates_need_an_index():
    with pytest.raises(
        AnsibleFilterError, match=r"host vm-002: the node index is None; expected a node index"
    ):
        config_filter(role_settings(mode="delegates"), host="vm-002")


def test_delegates_bad_range_names_host_and_value():
    bad = [
        {
            "name": "x",
            "type": "bridge",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "11.0.%.0/24"}]]},
        }
    ]
    with pytest.raises(
        AnsibleFilterError, match=r"multus_delegates\[0\]: host vm-300 \(index 300\).*11\.0\.300\.0/24"
    ):
        config_filter(dict(role_settings(mode="delegates"), delegates=bad), index=300, host="vm-300")


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"mode": "both"}, r"multus_mode is 'both'; expected one of cluster_network, delegates"),
        ({"conf_dir": "etc/cni"}, r"multus_conf_dir is 'etc/cni'; expected an absolute path"),
        ({"log_level": "loud"}, r"multus_log_level is 'loud'"),
        ({"cluster_network": ""}, r"multus_cluster_network is ''"),
        ({"default_networks": ["ok", "not ok"]}, r"multus_default_networks"),
        ({"mode": "delegates", "delegates": []}, r"multus_delegates is \[\]"),
        ({"mode": "delegates", "delegates": [{"type": "bridge"}]}, r"multus_delegates\[0\]\.name is None"),
        ({"cni_version": "4"}, r"multus_cni_version is '4'"),
        ({"bogus": 1}, r"unknown settings \['bogus'\]"),
    ],
)
def test_config_rejects(over, match):
    with pytest.raises(AnsibleFilterError, match=match):
        config_filter(dict(role_settings(), **over), index=2, host="vm-002")


def test_config_optional_fields_left_out_and_extra_merged():
    conf = config_filter(
        dict(
            role_settings(),
            log_file="",
            kubeconfig="",
            log_level="",
            log_to_stderr=False,
            extra={"readinessindicatorfile": "/run/ready"},
        )  # fmt: skip
    )
    assert "logFile" not in conf and "kubeconfig" not in conf and "logLevel" not in conf
    assert conf["logToStderr"] is False
    assert conf["readinessindicatorfile"] == "/run/ready"


# ----------------------------------------------------------------------------- manifests


def load(ms):
    """Every object of the manifest files, keyed multus-crd-<name>.yaml for a NAD (the ipvlan
    file holds two), by its file otherwise."""
    out = {}
    for x in ms:
        docs = list(yaml.safe_load_all(x["content"]))
        assert [d["metadata"]["name"] for d in docs] == x["names"]
        for d in docs:
            key = (
                f"multus-crd-{d['metadata']['name']}.yaml"
                if d["kind"] == "NetworkAttachmentDefinition"
                else x["file"]
            )
            out[key] = d
    return out


def test_manifests_defaults_valid_yaml_with_json_configs():
    ms = manifests_filter(manifest_settings())
    assert [x["file"] for x in ms] == [
        "multus-crd.yaml",
        "multus-crd-bridge.yaml",
        "multus-crd-ipvlan.yaml",  # the NADs ipvlan AND ipvlan2, as xcluster's
        "multus-crd-macvlan.yaml",
        "multus-crd-host-device.yaml",
        "multus-alpine.yaml",
    ]
    assert ms[2]["names"] == ["ipvlan", "ipvlan2"] and ms[2]["content"].count("\n---\n") == 1
    docs = load(ms)
    crd = docs["multus-crd.yaml"]
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "network-attachment-definitions.k8s.cni.cncf.io"
    assert crd["spec"]["names"]["kind"] == "NetworkAttachmentDefinition"
    assert crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "config"
    ] == {"type": "string"}
    bridge = docs["multus-crd-bridge.yaml"]
    assert bridge["metadata"] == {"name": "bridge", "namespace": "kube-system"}
    assert "spec" not in bridge
    cfg = {
        f: json.loads(d["spec"]["config"]) for f, d in docs.items() if "spec" in d and "config" in d["spec"]
    }
    # The seed's configs: ipvlan IPv6 only, ipvlan2 IPv4 (whereabouts without dual-stack).
    assert cfg["multus-crd-ipvlan.yaml"] == {
        "cniVersion": "0.4.0",
        "type": "ipvlan",
        "master": "eth2",
        "ipam": {"type": "whereabouts", "range": "4000::16.0.0.0/120", "gateway": "4000::16.0.0.0"},
    }
    assert cfg["multus-crd-ipvlan2.yaml"]["ipam"] == {
        "type": "whereabouts",
        "range": "16.0.0.0/24",
        "gateway": "16.0.0.0",
    }
    assert cfg["multus-crd-macvlan.yaml"] == {
        "cniVersion": "0.4.0",
        "type": "macvlan",
        "master": "eth3",
        "ipam": {"type": "node-local", "cfg": "macvlan"},
    }
    assert cfg["multus-crd-host-device.yaml"] == {
        "cniVersion": "0.4.0",
        "type": "host-device",
        "device": "eth4",
    }
    ds = docs["multus-alpine.yaml"]
    assert ds["kind"] == "DaemonSet" and ds["apiVersion"] == "apps/v1"
    tmpl = ds["spec"]["template"]
    assert ds["spec"]["selector"]["matchLabels"] == tmpl["metadata"]["labels"] == {"app": "multus-alpine"}
    assert json.loads(tmpl["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]) == [
        {"name": "ipvlan"},
        {"name": "macvlan"},
        {"name": "host-device"},
    ]
    assert tmpl["spec"]["containers"][0]["command"] == ["/bin/sh", "-c", "sleep 60m"]
    # the config is a readable literal block, not a one-line quoted string
    assert "config: |" in next(x["content"] for x in ms if x["file"] == "multus-crd-macvlan.yaml")


@pytest.mark.parametrize(
    ("dual", "version", "expect_dual"),
    [
        (True, "", True),
        (False, "v0.9.2", False),
        (None, "v0.6.0", True),
        (None, "0.9.2", True),
        (None, "v0.5.4", False),
        (None, "", False),
    ],  # fmt: skip
)
def test_manifests_dual_stack(dual, version, expect_dual):
    ms = manifests_filter(manifest_settings(whereabouts_dual_stack=dual, whereabouts_version=version))
    docs = load(ms)
    ipvlan = json.loads(docs["multus-crd-ipvlan.yaml"]["spec"]["config"])["ipam"]
    ipvlan2 = json.loads(docs["multus-crd-ipvlan2.yaml"]["spec"]["config"])["ipam"]
    if expect_dual:
        assert ipvlan == {
            "type": "whereabouts",
            "ipRanges": [{"range": "16.0.0.0/24"}, {"range": "4000::16.0.0.0/120"}],
        }
        assert ipvlan2 == {"type": "whereabouts", "ipRanges": [{"range": "16.0.0.0/24"}]}
    else:
        assert ipvlan["range"] == "4000::16.0.0.0/120" and "ipRanges" not in ipvlan
        assert ipvlan2["range"] == "16.0.0.0/24"


def test_manifests_every_name_master_and_range_is_a_variable():
    s = manifest_settings(
        nad_namespace="net", nad_bridge_name="cni", nad_bridge_namespace="kube-net", nad_ipvlan_name="ipv",
        nad_ipvlan2_name="ipv2", nad_ipvlan_master="ens5", nad_ipvlan_ipv4_range="198.18.9.0/24",
        nad_ipvlan_ipv4_gateway="", nad_ipvlan_ipv6_range="2001:db8:9::/120", nad_ipvlan_ipv6_gateway="",
        nad_macvlan_name="mac", nad_macvlan_master="ens6", nad_macvlan_cfg="mymac", nad_host_device_name="hd",
        nad_host_device_device="ens7", daemonset_name="pods", daemonset_image="registry.example/alpine:3",
        nad_cni_version="1.0.0",
    )  # fmt: skip
    docs = load(manifests_filter(s))
    assert set(docs) == {
        "multus-crd.yaml", "multus-crd-cni.yaml", "multus-crd-ipv.yaml", "multus-crd-ipv2.yaml",
        "multus-crd-mac.yaml", "multus-crd-hd.yaml", "pods.yaml",
    }  # fmt: skip
    ipv = json.loads(docs["multus-crd-ipv.yaml"]["spec"]["config"])
    assert ipv == {"cniVersion": "1.0.0", "type": "ipvlan", "master": "ens5",
                   "ipam": {"type": "whereabouts", "range": "2001:db8:9::/120"}}  # fmt: skip
    assert docs["multus-crd-ipv.yaml"]["metadata"]["namespace"] == "net"
    assert docs["multus-crd-cni.yaml"]["metadata"] == {"name": "cni", "namespace": "kube-net"}
    assert json.loads(docs["multus-crd-mac.yaml"]["spec"]["config"])["ipam"]["cfg"] == "mymac"
    assert json.loads(docs["multus-crd-hd.yaml"]["spec"]["config"])["device"] == "ens7"
    ds = docs["pods.yaml"]
    assert ds["metadata"]["namespace"] == "net"
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/alpine:3"
    annotation = ds["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
    assert [n["name"] for n in json.loads(annotation)] == ["ipv", "mac", "hd"]


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"nad_macvlan_name": "ipvlan"}, r"the NAD names is .*; expected a different name for every NAD"),
        ({"nad_ipvlan_master": "eth2 eth3"}, r"multus_nad_ipvlan_master is 'eth2 eth3'"),
        ({"nad_host_device_device": "a-very-long-interface-name"}, r"multus_nad_host_device_device"),
        ({"nad_namespace": "Default"}, r"multus_nad_namespace is 'Default'"),
        ({"nad_ipvlan_name": "ip_vlan"}, r"multus_nad_ipvlan_name is 'ip_vlan'"),
        (
            {"nad_ipvlan_ipv4_range": "16.0.0.0"},
            r"multus_nad_ipvlan_ipv4_range is '16.0.0.0'; expected a CIDR",
        ),
        ({"whereabouts_dual_stack": "yes"}, r"multus_whereabouts_dual_stack is 'yes'"),
        ({"whereabouts_version": "latest"}, r"whereabouts version is 'latest'"),
        ({"daemonset_image": "alpine 3"}, r"multus_daemonset_image is 'alpine 3'"),
        ({"nad_macvlan_cfg": ".index"}, r"multus_nad_macvlan_cfg is '.index'"),
    ],
)
def test_manifests_reject(over, match):
    with pytest.raises(AnsibleFilterError, match=f"multus_manifests: host vm-001: {match}"):
        manifests_filter(manifest_settings(**over), "vm-001")


def test_manifests_missing_setting():
    s = manifest_settings()
    del s["nad_macvlan_master"]
    with pytest.raises(AnsibleFilterError, match=r"the setting 'nad_macvlan_master' is missing"):
        manifests_filter(s)


# ------------------------------------------------------------------------- activation


SETTINGS = {
    "base_conf": "/etc/cni/net.d/10-bridge.conf",
    "moved_dir": "/etc/cni/multus/net.d",
    "conf_src": "/usr/lib/xcluster-multus/10-multus.conf",
    "multus_conf": "/etc/cni/net.d/10-multus.conf",
    "base_name": "cni-x",
    "new_name": "bridge",
    "links": ["eth2", "eth3", "eth4"],
    "state_dir": "/var/lib/xcluster-multus",
}


def activate(settings, host=None):
    return f_activate.FilterModule().filters()["multus_activate_script"](ACTIVATE, settings, host)


def test_activate_settings_block():
    out = activate(dict(SETTINGS, base_conf="/etc/cni/net.d/10 bridge.conf"))
    block = out.split(m.SETTINGS_BEGIN)[1].split(m.SETTINGS_END)[0].strip().splitlines()
    assert block == [
        "NET_DIR=/etc/cni/net.d",
        "BASE_CONF='/etc/cni/net.d/10 bridge.conf'",
        "BASE_NAME=cni-x",
        "MOVED_DIR=/etc/cni/multus/net.d",
        "NEW_NAME=bridge",
        "CONF_SRC=/usr/lib/xcluster-multus/10-multus.conf",
        "MULTUS_CONF=/etc/cni/net.d/10-multus.conf",
        "LINKS='eth2 eth3 eth4'",
        "STATE_DIR=/var/lib/xcluster-multus",
    ]
    # everything outside the block is the body, unchanged
    assert out.split(m.SETTINGS_BEGIN)[0] == ACTIVATE.split(m.SETTINGS_BEGIN)[0]
    assert out.split(m.SETTINGS_END)[1] == ACTIVATE.split(m.SETTINGS_END)[1]


def test_activate_defaults_in_body_are_the_roles():
    """The body's own settings (used when it runs unrendered) are the role's defaults."""
    d = DEFAULTS
    rendered = activate(
        {
            "base_conf": d["multus_base_conf"],
            "moved_dir": d["multus_conf_dir"],
            "conf_src": d["multus_activate_path"].rsplit("/", 1)[0]
            + "/"
            + d["multus_conf_file"].rsplit("/", 1)[1],
            "multus_conf": d["multus_conf_file"],
            "base_name": d["multus_base_network_name"],
            "new_name": d["multus_cluster_network"],
            "links": d["multus_links_up"],
            "state_dir": d["multus_state_dir"],
        }
    )
    assert rendered == ACTIVATE


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"links": ["eth2", "eth 3"]}, r"multus_links_up is \['eth2', 'eth 3'\]"),
        ({"links": "eth2"}, r"multus_links_up is 'eth2'"),
        ({"base_conf": "10-bridge.conf"}, r"multus_base_conf is '10-bridge.conf'; expected an absolute path"),
        ({"base_name": "cni x"}, r"multus_base_network_name is 'cni x'"),
        ({"new_name": "br/0"}, r"multus_cluster_network is 'br/0'"),
        (
            {"base_conf": "/etc/cni/net.d/10-multus.conf"},
            r"multus_base_conf is .*; expected a path other than multus's own config",
        ),
        ({"base_conf": "/etc/cni/net.d/10-bridge"}, r"multus_base_conf is .*; expected a CNI config"),
        ({"state_dir": "/var/lib\n/x"}, r"multus_state_dir"),
    ],
)
def test_activate_rejects(over, match):
    with pytest.raises(AnsibleFilterError, match=f"host vm-003: {match}"):
        activate(dict(SETTINGS, **over), "vm-003")


def test_activate_needs_markers():
    with pytest.raises(AnsibleFilterError, match=r"no settings markers"):
        f_activate.FilterModule().filters()["multus_activate_script"]("#!/bin/sh\n", SETTINGS)


# ---------------------------------------------------------------- jmespath, ipam_range

IP_J_ADDR = [
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "addr_info": [
        {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
    {"ifindex": 3, "ifname": "net2", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "addr_info": [
        {"family": "inet", "local": "198.18.2.0", "prefixlen": 16, "scope": "global"},
        {"family": "inet6", "local": "2001:db8:15::c612:200", "prefixlen": 112, "scope": "global"},
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
]  # fmt: skip


def jq(data, expr):
    return f_jmespath.FilterModule().filters()["jmespath"](data, expr)


def test_jmespath_reads_ip_j_output():
    assert jq(IP_J_ADDR, "[?ifname=='net2'] | [0].addr_info[?scope=='global'].local") == [
        "198.18.2.0",
        "2001:db8:15::c612:200",
    ]
    assert jq(IP_J_ADDR, "[?contains(flags, 'UP')].ifname") == ["lo", "net2"]
    assert jq(IP_J_ADDR, "[?ifname=='net9'] | [0]") is None


def test_jmespath_works_on_ansible_tagged_values():
    """contains() checks types by exact name: Ansible's tagged str/list must not break it."""
    from ansible._internal._datatag._tags import Origin  # noqa: PLC0415 - 2.19 internals, test only

    tagged = Origin(path="/x").tag(["UP", "LOWER_UP"])
    tagged_up = Origin(path="/y").tag("UP")
    assert type(tagged) is not list
    assert jq({"flags": tagged, "want": tagged_up}, "contains(flags, want)") is True


@pytest.mark.parametrize("expr", ["[?", "", None, "foo(bar)"])
def test_jmespath_bad_expression_names_it(expr):
    with pytest.raises(AnsibleFilterError, match=r"jmespath: jmespath expression"):
        jq(IP_J_ADDR, expr)


def test_ipam_range_node_local_macvlan():
    rendered = ni.node_subst(LAB_NODE_LOCAL["node_local_configs"]["macvlan"], 2, host="vm-002")
    rng = f_range.FilterModule().filters()["ipam_range"]
    assert rng("198.18.2.0/16", rendered) == {
        "subnet": "198.18.0.0/16",
        "start": "198.18.2.0",
        "end": "198.18.2.255",
    }
    assert rng("2001:db8:15::c612:2ff", rendered)["end"] == "2001:db8:15::c612:2ff"
    assert rng("198.18.3.0", rendered) is None  # the next node's
    assert rng("2001:db8:15::c612:300/112", rendered) is None
    with pytest.raises(AnsibleFilterError, match=r"address 'nope' is invalid"):
        rng("nope", rendered, "vm-002")


# --------------------------------------------------------------------- the roles' data


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


LAB_V4 = ipaddress.ip_network("198.18.0.0/15")
LAB_V6 = ipaddress.ip_network("2001:db8::/32")


@pytest.mark.parametrize("index", [1, 2, 4, 64])
def test_lab_overrides_keep_the_network_rule(index):
    """Every address the lab's multus/node_local overrides give a node is in the rule's ranges."""
    seen = 0
    for value in (LAB_NODE_LOCAL, {k: v for k, v in LAB_MULTUS.items() if k.startswith("multus_")}):
        for s in _strings(ni.substitute(value, index)):
            try:
                net = ipaddress.ip_network(s, strict=False)
            except ValueError:
                continue
            assert net.subnet_of(LAB_V4 if net.version == 4 else LAB_V6), s
            seen += 1
    assert seen > 15


def test_lab_node_local_configs_pass_the_inventory_check():
    hosts = {f"vm-{i:03d}": i for i in range(1, 65)}
    ni.check_inventory(hosts, LAB_NODE_LOCAL["node_local_configs"])
    ni.check_inventory(hosts, NL_DEFAULTS["node_local_configs"])


def test_node_local_defaults_fix_the_overlap():
    """The seed's macvlan config (no rangeEnd) fails the check; the role's defaults pass it."""
    seed = json.loads(json.dumps(NL_DEFAULTS["node_local_configs"]["macvlan"]))
    for rset in seed["ipam"]["ranges"]:
        del rset[0]["rangeEnd"]
    with pytest.raises(ni.NodeIndexError, match=r"overlap"):
        ni.check_inventory({"vm-001": 1, "vm-002": 2}, {"macvlan": seed})
    ni.check_inventory({"vm-001": 1, "vm-002": 2}, NL_DEFAULTS["node_local_configs"])


# ------------------------------------------- base config, boot confs, rc name, NAD plugins


def test_base_config_rule():
    listing = (
        "XCM-BASE file 99-loopback.conf\nXCM-BASE file 10-multus.conf\nXCM-BASE file 20-flannel.conflist\n"
    )
    conf = "/etc/cni/net.d/10-multus.conf"
    assert m.base_config(listing, conf) == {"path": "/etc/cni/net.d/20-flannel.conflist", "moved": None}
    assert (
        m.base_config(listing, conf, "/etc/cni/net.d/99-loopback.conf")["path"]
        == "/etc/cni/net.d/99-loopback.conf"
    )
    moved = "XCM-BASE file 10-multus.conf\nXCM-BASE moved /etc/cni/multus/net.d/bridge.conf\n"
    assert m.base_config(moved, conf) == {"path": None, "moved": "/etc/cni/multus/net.d/bridge.conf"}
    with pytest.raises(
        m.MultusError,
        match=r"host vm-004: no base CNI config .* found 10-multus.conf, notes.txt in /etc/cni/net.d",
    ):
        m.base_config("XCM-BASE file 10-multus.conf\nXCM-BASE file notes.txt\nnoise\n", conf, host="vm-004")
    with pytest.raises(
        m.MultusError, match=r"expected /etc/cni/net.d/10-bridge.conf .*found 20-flannel.conflist"
    ):
        m.base_config("XCM-BASE file 20-flannel.conflist\n", conf, "/etc/cni/net.d/10-bridge.conf")


def test_boot_confs_give_both_modes_from_one_rendered_config():
    live = m.multus_config(version="3.8")
    both = m.boot_confs(live, DEFAULTS["multus_delegates"], "bridge")
    assert both["cluster_network"] == live
    d = both["delegates"]
    assert "clusterNetwork" not in d and "defaultNetworks" not in d
    assert d["delegates"][0]["ipam"]["ranges"][0][0]["subnet"] == "11.0.%.0/24"  # placeholders kept
    # the delegates variant, substituted at boot, is what the live push renders in mode delegates
    live_d = m.multus_config(version="3.8", mode="delegates", delegates=DEFAULTS["multus_delegates"], index=7)
    assert json.loads(ovl.boot_subst(json.dumps(d), 7)) == live_d
    with pytest.raises(m.MultusError, match="multus_delegates"):
        m.boot_confs(live, [], "bridge")


@pytest.mark.parametrize(
    ("layout", "name"),
    [("auto", "27multus.rc"), ("head", "27multus.rc"), ("2022", "25multus.rc"), ("30x.rc", "30x.rc")],
)
def test_rc_name_sorts_after_both_bridge_rcs(layout, name):
    assert m.rc_name(layout) == name
    if layout in ("auto", "head"):
        assert sorted([name, "20bridge.rc", "26bridge.rc"])[-1] == name


def test_rc_name_rejects():
    with pytest.raises(m.MultusError, match=r"ovl_rc_name 'x y' is invalid"):
        m.rc_name("x y")


def test_no_nad_without_its_plugin():
    ms = manifests_filter(manifest_settings())
    assert m.nad_plugins(ms) == [
        ("ipvlan", ["ipvlan", "whereabouts"]),
        ("ipvlan2", ["ipvlan", "whereabouts"]),
        ("macvlan", ["macvlan", "node-local"]),
        ("host-device", ["host-device"]),
    ]
    have = ["bridge", "host-local", "ipvlan", "macvlan", "host-device", "node-local", "multus-cni"]
    with pytest.raises(
        m.MultusError,
        match=r"vm-001: NAD ipvlan uses whereabouts; NAD ipvlan2 uses whereabouts, which is not installed"
        r".*SETUP=None",
    ):
        m.missing_nad_plugins(ms, have, "vm-001")
    assert m.missing_nad_plugins(ms, have, allow=True) == [
        ("ipvlan", ["whereabouts"]),
        ("ipvlan2", ["whereabouts"]),
    ]
    assert m.missing_nad_plugins(ms, have + ["whereabouts"]) == []
    skipped = manifests_filter(manifest_settings(nads_skip=["ipvlan", "ipvlan2"]))
    assert [x["file"] for x in skipped] == [
        "multus-crd.yaml", "multus-crd-bridge.yaml", "multus-crd-macvlan.yaml", "multus-crd-host-device.yaml",
        "multus-alpine.yaml",
    ]  # fmt: skip
    assert m.missing_nad_plugins(skipped, have) == []
    ds = load(skipped)["multus-alpine.yaml"]
    assert json.loads(ds["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]) == [
        {"name": "macvlan"}, {"name": "host-device"}
    ]  # fmt: skip
    with pytest.raises(AnsibleFilterError, match=r"multus_nads_skip"):
        manifests_filter(manifest_settings(nads_skip=["nope"]))


def test_serviceaccount_switches_the_kubeconfig_path():
    """multus_serviceaccount: multus reads its own ServiceAccount's kubeconfig (upstream's path)."""
    conf = config_filter(role_settings(serviceaccount=True))
    assert conf["kubeconfig"] == "/etc/cni/net.d/multus.d/multus.kubeconfig"
    assert (
        config_filter(role_settings(serviceaccount="false"))["kubeconfig"]
        == "/etc/kubernetes/kubeconfig.token"
    )
