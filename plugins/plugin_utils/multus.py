# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The multus role's rendering: pure logic, unit-tested without Ansible running.

- ``flavour(version, arch)``: what a multus version means, in ONE place: v3.x ships the binary
  ``multus-cni`` and its config says ``"type": "multus-cni"``; v4.x ships ``multus`` (the thin
  plugin) and ``"type": "multus"``; the archive member is ``multus-cni_<ver>_linux_<arch>/<binary>``.
- ``multus_config(...)``: ``/etc/cni/net.d/10-multus.conf`` as xcluster writes it, in
  clusterNetwork mode or with inline ``delegates`` (xcluster's DELEGATES=yes) whose node
  placeholders are replaced by the node index (the placeholder rule of ``nodeindex``).
- ``manifests(...)``: the NetworkAttachmentDefinition CRD, the example NADs (bridge, ipvlan,
  ipvlan2, macvlan, host-device) and the multus-alpine DaemonSet, as YAML text with each NAD's
  CNI config as JSON inside (``spec.config``).
- ``activate_script(body, settings)``: the activation script (roles/multus/files/activate.sh)
  with its settings block filled in, shell-quoted.
- ``whereabouts_dual_stack(version)``: whereabouts >= v0.6 takes ``ipRanges`` (dual-stack).
- ``ipam_range(address, config)``: the host-local range of a rendered config an address is in.
- ``jmespath_search(data, expression)``: the jmespath library, with errors that name the
  expression (the collection's replacement for community.general.json_query).

Bad input raises MultusError naming the host (when given), the value and what is expected.
"""

from __future__ import annotations

import json
import re
import shlex

import yaml

from . import fastyaml
from .nodeindex import NodeIndexError, has_placeholder, substitute, validate_ipam

try:
    import jmespath
except ImportError:  # pragma: no cover - exercised by a test that hides jmespath
    jmespath = None

try:
    import netaddr
except ImportError:  # pragma: no cover
    netaddr = None


class MultusError(ValueError):
    """Bad input for the multus role's rendering."""


# One place: what each multus major version installs and what its config calls it.
_FLAVOURS = {
    3: {"binary": "multus-cni", "type": "multus-cni"},
    4: {"binary": "multus", "type": "multus"},
}
_VERSION_RE = re.compile(r"^v?(?P<major>[0-9]+)\.(?P<minor>[0-9]+)(?:\.[0-9]+)?(?:[-+][0-9A-Za-z.+-]+)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")  # CNI network names, NAD names (kept simple)
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_LOG_LEVELS = ("debug", "verbose", "error", "panic")
MODES = ("cluster_network", "delegates")


def _who(host):
    return f"host {host}: " if host else ""


def _fail(host, what, value, expected):
    raise MultusError(f"{_who(host)}{what} is {value!r}; expected {expected}")


def _abs_path(host, what, value, *, optional=False):
    if optional and (value is None or value == ""):
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\n" in value or "\0" in value:
        _fail(host, what, value, "an absolute path" + (" or empty" if optional else ""))
    return value


def _name(host, what, value, pattern=_NAME_RE, expected="a name of [A-Za-z0-9_.-]"):
    if not isinstance(value, str) or not pattern.match(value):
        _fail(host, what, value, expected)
    return value


# ----------------------------------------------------------------------------- versions


def parse_version(version, what="multus_version", host=None):
    """(major, minor) of '3.8', 'v3.8', '4.3.0', 'v4.3.0-rc1'."""
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)  # 3.8 given unquoted in YAML
    m = _VERSION_RE.match(version) if isinstance(version, str) else None
    if not m:
        _fail(host, what, version, "a release version such as 3.8, v3.9.3 or 4.3.0")
    return int(m.group("major")), int(m.group("minor"))


def flavour(version, arch="amd64", host=None):
    """What multus ``version`` installs: binary, config type, archive member.

    >>> flavour("3.8")["member"]
    'multus-cni_3.8_linux_amd64/multus-cni'
    """
    major, _minor = parse_version(version, host=host)
    if major not in _FLAVOURS:
        _fail(
            host,
            "multus_version",
            version,
            "a 3.x release (binary multus-cni) or a 4.x release (binary multus)",
        )
    if not isinstance(arch, str) or not re.match(r"^[a-z0-9_]+$", arch):
        _fail(host, "multus_arch", arch, "an architecture name such as amd64")
    bare = str(version).lstrip("v")
    out = dict(_FLAVOURS[major])
    out.update(
        {
            "major": major,
            "version": bare,
            "directory": f"multus-cni_{bare}_linux_{arch}",
        }
    )
    out["member"] = f"{out['directory']}/{out['binary']}"
    return out


def whereabouts_dual_stack(version, host=None):
    """True when whereabouts ``version`` takes ``ipRanges`` (v0.6 and later); None if unknown."""
    if version is None or version == "":
        return None
    major, minor = parse_version(version, what="whereabouts version", host=host)
    return (major, minor) >= (0, 6)


# ------------------------------------------------------------------------- 10-multus.conf


def _delegate(delegate, i, index, host):
    what = f"multus_delegates[{i}]"
    if not isinstance(delegate, dict):
        _fail(host, what, delegate, "a CNI network config (a dict)")
    if not isinstance(delegate.get("name"), str) or not delegate["name"]:
        _fail(host, f"{what}.name", delegate.get("name"), "the network's name (a non-empty string)")
    if not isinstance(delegate.get("type"), str) and not isinstance(delegate.get("plugins"), list):
        _fail(host, what, delegate, "a config with a 'type' (or a conflist with 'plugins')")
    if not has_placeholder(delegate):
        return delegate
    if index is None:
        _fail(host, "the node index", index, f"a node index: {what} holds a node placeholder ('%' or '.x')")
    try:
        out = substitute(delegate, index, host)
        ipam = out.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            validate_ipam({"ipam": ipam}, host=host, index=index, template={"ipam": delegate.get("ipam")})
    except NodeIndexError as exc:
        raise MultusError(f"{what}: {exc}") from exc
    return out


def multus_config(
    *,
    version,
    mode="cluster_network",
    cni_version="0.4.0",
    name="multus",
    log_file="/var/log/multus.log",
    log_level="debug",
    log_to_stderr=None,
    kubeconfig="/etc/kubernetes/kubeconfig.token",
    conf_dir="/etc/cni/multus/net.d",
    cni_dir="/var/lib/cni/multus",
    bin_dir="/opt/cni/bin",
    cluster_network="bridge",
    default_networks=(),
    delegates=(),
    extra=None,
    index=None,
    host=None,
):
    """The 10-multus.conf dict, keys in xcluster's order; empty values are left out.

    ``mode``: ``cluster_network`` (``clusterNetwork`` + ``defaultNetworks``) or ``delegates``
    (the inline ``delegates`` list; their placeholders get ``index``). ``extra`` is merged last
    (any other multus option, e.g. ``readinessindicatorfile``).
    """
    fl = flavour(version, host=host)
    delegates, default_networks, extra = plain(delegates), plain(default_networks), plain(extra)
    if mode not in MODES:
        _fail(host, "multus_mode", mode, f"one of {', '.join(MODES)}")
    if not isinstance(cni_version, str) or not re.match(r"^[0-9]+\.[0-9]+\.[0-9]+$", cni_version):
        _fail(host, "multus_cni_version", cni_version, "a CNI spec version such as 0.4.0 or 1.0.0")
    _name(host, "multus_name", name)
    if log_level not in _LOG_LEVELS and log_level not in (None, ""):
        _fail(host, "multus_log_level", log_level, f"one of {', '.join(_LOG_LEVELS)} or empty")
    conf = {"cniVersion": cni_version, "name": name, "type": fl["type"]}
    log_file = _abs_path(host, "multus_log_file", log_file, optional=True)
    if log_file:
        conf["logFile"] = log_file
    if log_level:
        conf["logLevel"] = log_level
    if log_to_stderr is not None:
        if not isinstance(log_to_stderr, bool):
            _fail(host, "multus_log_to_stderr", log_to_stderr, "true, false or null")
        conf["logToStderr"] = log_to_stderr
    kubeconfig = _abs_path(host, "multus_kubeconfig", kubeconfig, optional=True)
    if kubeconfig:
        conf["kubeconfig"] = kubeconfig
    conf["confDir"] = _abs_path(host, "multus_conf_dir", conf_dir)
    conf["cniDir"] = _abs_path(host, "multus_cni_dir", cni_dir)
    conf["binDir"] = _abs_path(host, "multus_bin_dir", bin_dir)
    if mode == "cluster_network":
        _name(host, "multus_cluster_network", cluster_network)
        if not isinstance(default_networks, (list, tuple)) or not all(
            isinstance(n, str) and _NAME_RE.match(n) for n in default_networks
        ):
            _fail(host, "multus_default_networks", default_networks, "a list of network names")
        conf["clusterNetwork"] = cluster_network
        conf["defaultNetworks"] = list(default_networks)
    else:
        if not isinstance(delegates, (list, tuple)) or not delegates:
            _fail(host, "multus_delegates", delegates, "a non-empty list of CNI configs (mode delegates)")
        conf["delegates"] = [_delegate(d, i, index, host) for i, d in enumerate(delegates)]
    if extra:
        if not isinstance(extra, dict):
            _fail(host, "multus_config_extra", extra, "a dict of more multus options")
        conf.update(extra)
    return conf


# ------------------------------------------------------------------------------ manifests


class _Literal(str):
    """A string dumped in YAML's literal block style (the CNI config JSON)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", str(s), style="|"))


def _yaml(doc):
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


NAD_API = "k8s.cni.cncf.io/v1"
CRD_NAME = "network-attachment-definitions.k8s.cni.cncf.io"


def nad_crd():
    """The NetworkAttachmentDefinition CRD (apiextensions.k8s.io/v1)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": "k8s.cni.cncf.io",
            "scope": "Namespaced",
            "names": {
                "plural": "network-attachment-definitions",
                "singular": "network-attachment-definition",
                "kind": "NetworkAttachmentDefinition",
                "shortNames": ["net-attach-def"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "A network the pods of a namespace may attach to (multus).",
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {
                                    "type": "object",
                                    "properties": {"config": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def nad(name, namespace, config=None):
    """A NetworkAttachmentDefinition; ``config`` (a dict) becomes ``spec.config`` as JSON."""
    doc = {"apiVersion": NAD_API, "kind": "NetworkAttachmentDefinition", "metadata": {"name": name}}
    if namespace:
        doc["metadata"]["namespace"] = namespace
    if config is not None:
        doc["spec"] = {"config": _Literal(json.dumps(config, indent=2) + "\n")}
    return doc


def _ipam_whereabouts(ranges, dual_stack):
    """whereabouts IPAM over ``ranges`` [(range, gateway or None)]: ``ipRanges`` or one ``range``."""
    if dual_stack:
        return {"type": "whereabouts", "ipRanges": [{"range": r} for r, _gw in ranges]}
    (rng, gw) = ranges[0]
    ipam = {"type": "whereabouts", "range": rng}
    if gw:
        ipam["gateway"] = gw
    return ipam


def example_networks(p, host=None):
    """The example NADs' CNI configs: name -> (namespace, config dict or None), in apply order.

    ``p`` holds the role's variables without the ``multus_`` prefix (see the role's
    argument_specs): nad_namespace, nad_cni_version, nad_bridge_name, nad_bridge_namespace,
    nad_ipvlan_name, nad_ipvlan2_name, nad_ipvlan_master, nad_ipvlan_ipv4_range,
    nad_ipvlan_ipv4_gateway, nad_ipvlan_ipv6_range, nad_ipvlan_ipv6_gateway,
    nad_macvlan_name, nad_macvlan_master, nad_macvlan_cfg, nad_host_device_name,
    nad_host_device_device, whereabouts_dual_stack (null: derived from whereabouts_version).
    """
    ns = _name(
        host, "multus_nad_namespace", p["nad_namespace"], _DNS_LABEL_RE, "a namespace name (DNS label)"
    )
    bridge_ns = _name(
        host, "multus_nad_bridge_namespace", p["nad_bridge_namespace"], _DNS_LABEL_RE, "a namespace name"
    )
    names = {}
    for key in ("bridge", "ipvlan", "ipvlan2", "macvlan", "host_device"):
        var = f"nad_{key}_name"
        names[key] = _name(host, f"multus_{var}", p[var], _DNS_NAME_RE, "a NAD name (lower case DNS name)")
    taken = [n for n in names.values() if list(names.values()).count(n) > 1]
    if taken:
        _fail(host, "the NAD names", names, f"a different name for every NAD ({sorted(set(taken))} repeat)")
    cniv = p["nad_cni_version"]
    if not isinstance(cniv, str) or not re.match(r"^[0-9]+\.[0-9]+\.[0-9]+$", cniv):
        _fail(host, "multus_nad_cni_version", cniv, "a CNI spec version such as 0.4.0")
    for var in ("nad_ipvlan_master", "nad_macvlan_master", "nad_host_device_device"):
        _name(host, f"multus_{var}", p[var], _IFNAME_RE, "a network interface name (1-15 characters)")
    _name(host, "multus_nad_macvlan_cfg", p["nad_macvlan_cfg"], re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"))
    v4 = (p["nad_ipvlan_ipv4_range"], p.get("nad_ipvlan_ipv4_gateway") or None)
    v6 = (p["nad_ipvlan_ipv6_range"], p.get("nad_ipvlan_ipv6_gateway") or None)
    for what, (rng, gw) in (("ipv4", v4), ("ipv6", v6)):
        if not isinstance(rng, str) or "/" not in rng:
            _fail(host, f"multus_nad_ipvlan_{what}_range", rng, "a CIDR range such as 16.0.0.0/24")
        if gw is not None and not isinstance(gw, str):
            _fail(host, f"multus_nad_ipvlan_{what}_gateway", gw, "an address or empty")
    dual = p.get("whereabouts_dual_stack")
    if dual is None:  # derived from the whereabouts version; unknown: the seed's (no dual-stack)
        dual = bool(whereabouts_dual_stack(p.get("whereabouts_version"), host))
    if not isinstance(dual, bool):
        _fail(
            host,
            "multus_whereabouts_dual_stack",
            dual,
            "true or false (derived from the whereabouts version)",
        )

    def ipvlan(ranges):
        return {
            "cniVersion": cniv,
            "type": "ipvlan",
            "master": p["nad_ipvlan_master"],
            "ipam": _ipam_whereabouts(ranges, dual),
        }

    # Without dual-stack whereabouts, ipvlan is IPv6 only and ipvlan2 IPv4 only (the seed's);
    # with it, ipvlan has both families. ipvlan2 (multus-service's network) stays IPv4.
    return {
        names["bridge"]: (bridge_ns, None),
        names["ipvlan"]: (ns, ipvlan([v4, v6] if dual else [v6])),
        names["ipvlan2"]: (ns, ipvlan([v4])),
        names["macvlan"]: (
            ns,
            {
                "cniVersion": cniv,
                "type": "macvlan",
                "master": p["nad_macvlan_master"],
                "ipam": {"type": "node-local", "cfg": p["nad_macvlan_cfg"]},
            },
        ),
        names["host_device"]: (
            ns,
            {"cniVersion": cniv, "type": "host-device", "device": p["nad_host_device_device"]},
        ),
    }


def daemonset(p, networks, host=None):
    """The multus-alpine DaemonSet: one pod per node, attached to ``networks`` (NAD names)."""
    name = _name(host, "multus_daemonset_name", p["daemonset_name"], _DNS_LABEL_RE, "a DNS label")
    image = p["daemonset_image"]
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        _fail(
            host, "multus_daemonset_image", image, "an image reference such as docker.io/library/alpine:3.8"
        )
    annotation = json.dumps([{"name": n} for n in networks])
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": p["nad_namespace"]},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"k8s.v1.cni.cncf.io/networks": annotation},
                },
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "command": ["/bin/sh", "-c", p.get("daemonset_command") or "sleep 60m"],
                            "env": [
                                {
                                    "name": "NODE_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                }
                            ],
                        }
                    ]
                },
            },
        },
    }


def manifest_file(kind, name=None):
    """The file name a manifest gets in the manifest directory (xcluster's names)."""
    if kind == "crd":
        return "multus-crd.yaml"
    if kind == "nad":
        return f"multus-crd-{name}.yaml"
    if kind == "daemonset":
        return f"{name}.yaml"
    raise MultusError(f"manifest kind {kind!r} is unknown; expected crd, nad or daemonset")


def manifests(p, host=None):
    """Every manifest file: a list of {file, kind, name, names, namespace, content (YAML text)}
    in apply order, at xcluster's paths (multus_manifest_dir, /etc/kubernetes/multus):

    multus-crd.yaml (the CRD), multus-crd-<nad>.yaml for bridge, ipvlan (the ipvlan AND ipvlan2
    NADs, two YAML documents, as xcluster's), macvlan and host-device, then the DaemonSet
    (multus-alpine.yaml) attached to ipvlan, macvlan and host-device. ``nads_skip`` (optional):
    NAD names left out (and off the DaemonSet's networks). ``name`` is a file's first object.
    """
    if not isinstance(p, dict):
        _fail(host, "the manifest settings", p, "a dict")
    p = plain(p)
    skip = p.get("nads_skip") or []
    if not isinstance(skip, list) or not all(isinstance(n, str) for n in skip):
        _fail(host, "multus_nads_skip", skip, "a list of NAD names")
    out = [
        {
            "file": manifest_file("crd"),
            "kind": "CustomResourceDefinition",
            "name": CRD_NAME,
            "names": [CRD_NAME],
            "namespace": None,
        }
    ]
    out[0]["content"] = _yaml(nad_crd())
    nets = example_networks(p, host)
    unknown = sorted(set(skip) - set(nets))
    if unknown:
        _fail(
            host,
            "multus_nads_skip",
            skip,
            f"names of the example NADs ({', '.join(nets)}); {unknown} are not",
        )
    # ipvlan2 goes into ipvlan's file (xcluster's multus-crd-ipvlan.yaml holds both)
    file_of = {name: name for name in nets}
    file_of[p["nad_ipvlan2_name"]] = p["nad_ipvlan_name"]
    by_file = {}
    for name, (namespace, config) in nets.items():
        if name in skip:
            continue
        fname = manifest_file("nad", file_of[name])
        entry = by_file.get(fname)
        doc = _yaml(nad(name, namespace, config))
        if entry is None:
            entry = by_file[fname] = {
                "file": fname,
                "kind": "NetworkAttachmentDefinition",
                "name": name,
                "names": [],
                "namespace": namespace,
                "content": "",
            }
            out.append(entry)
        entry["names"].append(name)
        entry["content"] += ("---\n" if entry["content"] else "") + doc
    attached = [
        n for n in (p["nad_ipvlan_name"], p["nad_macvlan_name"], p["nad_host_device_name"]) if n not in skip
    ]
    ds = daemonset(p, attached, host)
    out.append(
        {
            "file": manifest_file("daemonset", ds["metadata"]["name"]),
            "kind": "DaemonSet",
            "name": ds["metadata"]["name"],
            "names": [ds["metadata"]["name"]],
            "namespace": ds["metadata"]["namespace"],
            "content": _yaml(ds),
        }
    )
    return out


# ---------------------------------------------------------------------- activation script

SETTINGS_BEGIN = "# --- settings (rendered by the role xcluster.multus.multus) ---"
SETTINGS_END = "# --- end of settings ---"
_SETTINGS = (
    "NET_DIR",
    "BASE_CONF",
    "BASE_NAME",
    "MOVED_DIR",
    "NEW_NAME",
    "CONF_SRC",
    "MULTUS_CONF",
    "LINKS",
    "STATE_DIR",
)


def activate_script(body, settings, host=None):
    """``body`` (activate.sh) with the lines between the settings markers replaced.

    ``settings``: multus_conf (the active 10-multus.conf), conf_src (where it waits until the
    base config is moved), moved_dir (multus's confDir), state_dir (absolute paths); base_conf
    (an absolute path, or empty: the first config in multus_conf's directory by name, see
    ``base_config``); base_name (empty: any), new_name (network names); links (interface names).
    """
    if not isinstance(body, str) or SETTINGS_BEGIN not in body or SETTINGS_END not in body:
        raise MultusError(
            "the activation script body has no settings markers; expected roles/multus/files/activate.sh"
        )
    if not isinstance(settings, dict):
        _fail(host, "the activation settings", settings, "a dict")
    links = settings.get("links")
    if not isinstance(links, (list, tuple)) or not all(
        isinstance(x, str) and _IFNAME_RE.match(x) for x in links
    ):
        _fail(
            host, "multus_links_up", links, "a list of interface names (1-15 characters of [A-Za-z0-9_.:-])"
        )
    multus_conf = _abs_path(host, "multus_conf_file", settings.get("multus_conf"))
    base_conf = settings.get("base_conf") or ""
    base_name = settings.get("base_name") or ""
    values = {
        "NET_DIR": multus_conf.rsplit("/", 1)[0] or "/",
        "BASE_CONF": _abs_path(host, "multus_base_conf", base_conf) if base_conf else "",
        "BASE_NAME": _name(host, "multus_base_network_name", base_name) if base_name else "",
        "MOVED_DIR": _abs_path(host, "multus_conf_dir", settings.get("moved_dir")).rstrip("/") or "/",
        "NEW_NAME": _name(host, "multus_cluster_network", settings.get("new_name")),
        "CONF_SRC": _abs_path(host, "the staged multus config", settings.get("conf_src")),
        "MULTUS_CONF": multus_conf,
        "LINKS": " ".join(links),
        "STATE_DIR": _abs_path(host, "multus_state_dir", settings.get("state_dir")),
    }
    if values["BASE_CONF"] in (values["MULTUS_CONF"], values["CONF_SRC"]):
        _fail(host, "multus_base_conf", values["BASE_CONF"], "a path other than multus's own config")
    if values["BASE_CONF"] and not values["BASE_CONF"].endswith(CONF_EXTENSIONS):
        _fail(host, "multus_base_conf", values["BASE_CONF"], "a CNI config (*.conf, *.conflist or *.json)")
    if values["CONF_SRC"] == values["MULTUS_CONF"]:
        _fail(
            host, "the staged multus config", values["CONF_SRC"], f"a path other than {values['MULTUS_CONF']}"
        )
    block = "\n".join(f"{k}={shlex.quote(values[k])}" for k in _SETTINGS)
    head, rest = body.split(SETTINGS_BEGIN, 1)
    _old, tail = rest.split(SETTINGS_END, 1)
    return f"{head}{SETTINGS_BEGIN}\n{block}\n{SETTINGS_END}{tail}"


# ------------------------------------------------------------------ the node's base config

CONF_EXTENSIONS = (".conf", ".conflist", ".json")
BASE_MARK = "XCM-BASE"


def api_probe(kubectl, timeout, kubeconfig=""):
    """The shell command that asks the API server whether it is ready, with kubectl on the
    control-plane host: prints ``XCM-API-UP``, or ``XCM-API-NO: <why>`` (no kubectl, or its last
    line of error). Read-only; the manifests step and site.yml's read before the push run it."""
    q = shlex.quote
    k = f"{q(kubectl)} --request-timeout={int(timeout)}s"
    if kubeconfig:
        k += " " + q("--kubeconfig=" + kubeconfig)
    missing = q(f"XCM-API-NO: no {kubectl} on this node")
    return (
        f"if ! command -v {q(kubectl)} >/dev/null 2>&1; then echo {missing}; "
        f"elif out=$({k} get --raw /readyz 2>&1); then echo 'XCM-API-UP'; "
        'else echo "XCM-API-NO: $(printf \'%s\' "$out" | tail -n 1)"; fi'
    )


def base_config_probe(multus_conf, state_dir):
    """The shell command (one raw read) that lists what ``base_config`` needs from a node.

    Its output: one ``XCM-BASE file <name>`` line per regular file in multus_conf's directory,
    and ``XCM-BASE moved <path>`` when an earlier activation moved the base config (its record
    in state_dir and the moved copy both exist).
    """
    net_dir = multus_conf.rsplit("/", 1)[0] or "/"
    q = shlex.quote
    return (
        f'for f in {q(net_dir)}/*; do [ -f "$f" ] && printf \'{BASE_MARK} file %s\\n\' "${{f##*/}}"; done; '
        f'm=$(cat {q(state_dir.rstrip("/") + "/moved.path")} 2>/dev/null) && [ -f "$m" ] && '
        f"printf '{BASE_MARK} moved %s\\n' \"$m\"; true"
    )


def base_config(probe_output, multus_conf, base_conf="", host=None):
    """The base CNI config the activation will move, from ``base_config_probe``'s output.

    The rule (the activation script's, a test proves they agree): ``base_conf`` when set,
    else the first file of multus_conf's directory by name (C order) ending in .conf,
    .conflist or .json, multus_conf excluded. Returns {path, moved}: the path to move (None
    when an earlier activation moved it already: ``moved`` is then where it is). A node with
    neither raises MultusError naming the host, the directory and what it holds.
    """
    if not isinstance(probe_output, str):
        _fail(host, "the node's CNI config listing", probe_output, "the probe's output (text)")
    net_dir = multus_conf.rsplit("/", 1)[0] or "/"
    files, moved = [], None
    for line in probe_output.splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) == 3 and parts[0] == BASE_MARK:
            if parts[1] == "file":
                files.append(parts[2])
            elif parts[1] == "moved":
                moved = parts[2]
    mine = multus_conf.rsplit("/", 1)[-1]
    if base_conf:
        candidates = [base_conf] if base_conf.rsplit("/", 1)[-1] in files else []
    else:
        candidates = [
            f"{net_dir.rstrip('/')}/{n}"
            for n in sorted(files, key=lambda n: n.encode())
            if n != mine and n.endswith(CONF_EXTENSIONS)
        ]
    if candidates:
        return {"path": candidates[0], "moved": moved}
    if moved:
        return {"path": None, "moved": moved}
    want = base_conf or f"a *.conf, *.conflist or *.json other than {mine} in {net_dir}"
    raise MultusError(
        f"{_who(host)}no base CNI config for multus to wrap: expected {want} (the primary CNI's, "
        f"e.g. xcluster's 10-bridge.conf); found {', '.join(sorted(files)) or 'nothing'} in {net_dir} "
        "and no earlier activation. Start the primary CNI first (or set multus_base_conf)"
    )


# ------------------------------------------------------------------ the overlay at boot


def boot_confs(conf, delegates, cluster_network, default_networks=(), host=None):
    """The two 10-multus.conf an overlay carries, so /etc/profile's DELEGATES picks at boot.

    ``conf``: this host's rendered config (either mode). Returns {cluster_network: dict,
    delegates: dict}: the first with clusterNetwork and defaultNetworks, the second with the
    inline delegates, their node placeholders kept (the .rc substitutes the node index, as
    for the index file). Every other member is the same in both.
    """
    conf = plain(conf)
    if not isinstance(conf, dict) or not conf.get("type"):
        _fail(host, "the rendered multus config", conf, "a 10-multus.conf dict")
    common = {k: v for k, v in conf.items() if k not in ("clusterNetwork", "defaultNetworks", "delegates")}
    delegates = plain(delegates)
    if not isinstance(delegates, (list, tuple)) or not delegates:
        _fail(host, "multus_delegates", delegates, "a non-empty list of CNI configs (DELEGATES=yes at boot)")
    for i, d in enumerate(delegates):
        _delegate(d, i, 1, host)  # valid once a node index is in
    _name(host, "multus_cluster_network", cluster_network)
    return {
        "cluster_network": dict(
            common, clusterNetwork=cluster_network, defaultNetworks=list(plain(default_networks) or [])
        ),
        "delegates": dict(common, delegates=list(delegates)),
    }


def rc_name(layout="auto"):
    """The overlay's init.d script name: it must sort after the rc that writes the base config.

    xcluster's bridge rc is 20bridge.rc (2022 images) or 26bridge.rc (since 2023, whose own
    multus rc is 27multus.rc). ``auto`` and ``head`` give 27multus.rc, which runs after both;
    ``2022`` gives 25multus.rc (the 2022 overlay's name). Any other value must be a file name
    ending in .rc.
    """
    names = {"auto": "27multus.rc", "head": "27multus.rc", "2022": "25multus.rc"}
    layout = str(layout)
    if layout in names:
        return names[layout]
    if re.match(r"^[0-9A-Za-z_.-]+\.rc$", layout):
        return layout
    raise MultusError(
        f"ovl_rc_name {layout!r} is invalid; expected auto, head, 2022 or a file name ending in .rc"
    )


# ------------------------------------------------------------- NADs and their plugins


def nad_plugins(manifest_list):
    """The CNI plugins each NAD of ``manifests()`` needs: [(nad name, [plugin, ...])].

    A NAD's plugin is its config's ``type`` and its IPAM's ``type`` (each plugin of a
    conflist too). The bridge NAD (no config) needs nothing of its own.
    """
    out = []
    for m in manifest_list:
        for doc in fastyaml.load_all(m["content"]):
            if not doc or doc.get("kind") != "NetworkAttachmentDefinition":
                continue
            cfg = (doc.get("spec") or {}).get("config")
            if not cfg:
                continue
            c = json.loads(cfg)
            need = []
            for p in c.get("plugins") or [c]:
                for t in (p.get("type"), (p.get("ipam") or {}).get("type")):
                    if t and t not in need:
                        need.append(t)
            out.append((doc["metadata"]["name"], need))
    return out


def missing_nad_plugins(manifest_list, installed, host=None, allow=False):
    """Preflight: every NAD's plugins must be installed. ``installed``: plugin names (the files
    in the CNI bin dir the roles install). Raises MultusError naming each NAD and its missing
    plugin and how to fix it, unless ``allow``; returns [(nad, missing plugins)] either way.
    """
    have = set(installed or [])
    missing = [(n, [p for p in need if p not in have]) for n, need in nad_plugins(manifest_list)]
    missing = [(n, ps) for n, ps in missing if ps]
    if missing and not allow:
        what = "; ".join(f"NAD {n} uses {', '.join(ps)}" for n, ps in missing)
        raise MultusError(
            f"{_who(host)}{what}, which is not installed: pods attached to it would hang in creation. "
            "Configure it (whereabouts: WHEREABOUTS_DIR / whereabouts_src_dir, whereabouts_binary, "
            "whereabouts_url), or leave these NADs out (SETUP=None for the overlay, "
            "multus_nads_skip: [names]), or install them anyway with multus_nads_without_plugin: true"
        )
    return missing


# -------------------------------------------------------------------------- ipam ranges


def ipam_range(address, config, host=None):
    """The range of a rendered host-local ``config`` that ``address`` lies in, or None.

    ``address``: an address, with or without a prefix length (``198.18.2.0/16``). Returns
    ``{subnet, start, end}`` (strings; start and end as host-local computes them: rangeStart
    and rangeEnd, or the subnet's bounds).
    """
    if netaddr is None:
        raise MultusError("netaddr is required (pip install netaddr) on the controller")
    try:
        ip = netaddr.IPNetwork(str(address)).ip
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise MultusError(f"{_who(host)}address {address!r} is invalid; expected an IP address") from exc
    try:
        entries = validate_ipam(plain(config), host=host)
    except NodeIndexError as exc:
        raise MultusError(f"ipam_range: {exc}") from exc
    for e in entries:
        if e["family"] == ip.version and e["start"] <= ip <= e["end"]:
            return {"subnet": str(e["subnet"]), "start": str(e["start"]), "end": str(e["end"])}
    return None


# ------------------------------------------------------------------------------ jmespath


def plain(value):
    """``value`` as plain dicts, lists, str, int, float, bool and None.

    jmespath's functions check types by exact name, so Ansible's tagged str/dict/list
    subclasses must be turned back into the builtins first.
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise MultusError(f"value {value!r} of type {type(value).__name__} is not JSON data")


def jmespath_search(data, expression):
    """``jmespath.search(expression, data)`` over plain data; a bad expression raises naming it."""
    if jmespath is None:
        raise MultusError("jmespath is required (pip install jmespath) on the controller")
    if not isinstance(expression, str) or not expression:
        raise MultusError(f"jmespath expression {expression!r} is invalid; expected a non-empty string")
    try:
        return jmespath.search(expression, plain(data))
    except jmespath.exceptions.JMESPathError as exc:
        raise MultusError(f"jmespath expression {expression!r}: {exc}") from exc
