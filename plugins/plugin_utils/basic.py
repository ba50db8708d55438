# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The rules of the basic check (playbooks/basic.yml, playbooks/tasks/basic_api.yml), in Python.

The playbook reads things on the nodes (the installed multus config, the NADs, ``ip -j addr``
in the pod, the node-local configs, the pods' network-status from the API) and hands them to
these functions through the filter xcluster.multus.basic; the tasks keep plain expressions.
Pure functions: no Ansible, no I/O.
"""

from __future__ import annotations

import json

from ansible_collections.xcluster.multus.plugins.plugin_utils.multus import MultusError, ipam_range, plain
from ansible_collections.xcluster.multus.plugins.plugin_utils.nodeindex import NodeIndexError, node_subst

NAD_KIND = "NetworkAttachmentDefinition"
# What the check's own multus config leaves out of the installed one (no API server is asked).
DROPPED_KEYS = ("kubeconfig", "clusterNetwork", "defaultNetworks")


class BasicError(Exception):
    """Bad input to the basic check's rules (the message names host and value)."""


def _who(host):
    return f"{host}: " if host else ""


def _json(text, what, host):
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise BasicError(f"{_who(host)}{what} is not JSON: {str(text)[:200]!r} ({exc})") from exc


def nad_configs(docs, names, host=None):
    """The CNI config of each NAD in ``names`` found in ``docs`` (Kubernetes objects).

    ``docs``: the objects of the manifests on the node, or the API's list's items. Returns
    ``{name: config}`` for each name whose first NetworkAttachmentDefinition of that name has a
    ``spec.config``; the config is that JSON with ``name`` set to the NAD's name unless the
    config names itself. Names without a config are left out (the playbook says which).
    """
    out = {}
    docs = [d for d in plain(docs or []) if isinstance(d, dict)]
    for name in plain(names):
        nads = [
            d for d in docs if d.get("kind") == NAD_KIND and (d.get("metadata") or {}).get("name") == name
        ]
        cfg = ((nads[0].get("spec") or {}).get("config")) if nads else None
        if cfg:
            parsed = _json(cfg, f"the spec.config of NAD {name}", host)
            if not isinstance(parsed, dict):
                raise BasicError(f"{_who(host)}the spec.config of NAD {name} is not a JSON object: {cfg!r}")
            out[name] = {"name": name, **parsed}
    return out


def attached(names, ipvlan_on):
    """The NADs the pod gets, in order, from ``names`` = ``[ipvlan, macvlan, host_device]``:
    ipvlan only where it is on. multus names them net1, net2, ... in this order."""
    ipvlan, macvlan, host_device = plain(names)
    return ([ipvlan] if ipvlan_on else []) + [macvlan, host_device]


def node_local_ipam(conf, cfg):
    """``conf`` (a NAD's CNI config) with whereabouts IPAM replaced by node-local IPAM from ``cfg``."""
    conf = plain(conf)
    if (conf.get("ipam") or {}).get("type", "") == "whereabouts":
        return {**conf, "ipam": {"type": "node-local", "cfg": cfg}}
    return conf


def delegates(multus, nads, names, *, ipvlan_on, ipvlan_cfg, api_on=False, cluster=None, host=None):
    """The pod's delegates: the cluster network first, then the attached NADs' configs.

    ``multus``: the installed multus config. The cluster network is its inline ``delegates``,
    nothing against the API (multus reads it itself), else ``cluster`` (the moved base config's
    JSON text). ``nads``: nad_configs' result; ``names``: ``[ipvlan, macvlan, host_device]``, the
    pod's order (see attached()). The ipvlan NAD's whereabouts IPAM is replaced by node-local
    IPAM from cfg ``ipvlan_cfg`` (no API server to ask).
    """
    multus, nads = plain(multus), plain(nads)
    if "delegates" in multus:
        first = list(multus["delegates"])
    elif api_on:
        first = []
    else:
        if not cluster:
            raise BasicError(
                f"{_who(host)}the installed multus config has neither inline delegates nor a readable "
                f"clusterNetwork config ({multus.get('clusterNetwork')!r})"
            )
        first = [_json(cluster, "the cluster network's config", host)]
    out = []
    for name in attached(names, ipvlan_on):
        if name not in nads:
            raise BasicError(f"{_who(host)}no installed config for NAD {name!r}; have {sorted(nads)}")
        out.append(node_local_ipam(nads[name], ipvlan_cfg) if name == plain(names)[0] else nads[name])
    return first + out


def check_conf(multus, nets, log):
    """The check's own multus config: the installed one without its API keys, logging to
    ``log``, with ``nets`` as inline delegates."""
    conf = {k: v for k, v in plain(multus).items() if k not in DROPPED_KEYS}
    conf.update({"logFile": log, "logToStderr": False, "delegates": plain(nets)})
    return conf


def node_local_cfgs(nets):
    """The node-local cfg names of ``nets`` (the delegates), in order."""
    return [
        n["ipam"]["cfg"]
        for n in plain(nets)
        if isinstance(n.get("ipam"), dict) and n["ipam"].get("type") == "node-local"
    ]


def _cfg_of(net):
    ipam = net.get("ipam") if isinstance(net.get("ipam"), dict) else {}
    return ipam.get("cfg", "") if ipam.get("type", "") == "node-local" else ""


def _link(links, ifname):
    for link in links:
        if isinstance(link, dict) and link.get("ifname") == ifname:
            return link
    return None


def _global_addrs(link):
    return [
        {"local": a.get("local"), "prefixlen": a.get("prefixlen")}
        for a in (link.get("addr_info") or [])
        if a.get("scope") == "global"
    ]


def pod_interfaces(nets, links, cfg_docs, host=None):
    """The pod's interfaces as multus names them by position (eth0, net1, ...), with their global
    addresses and, for node-local IPAM, the range of this node's rendered config each lies in.

    ``links``: ``ip -j addr show`` in the pod. ``cfg_docs``: the node index then the node-local
    configs of node_local_cfgs(nets), in that order (as the playbook reads them). Each entry:
    ``{ifname, network, type, cfg, present, addresses: [{local, prefixlen, range}]}``, range
    ``{subnet, start, end}`` or None (outside this node's ranges; no cfg: None).
    """
    nets, links, docs = plain(nets), plain(links or []), plain(cfg_docs or [])
    cfgs = node_local_cfgs(nets)
    if cfgs:
        if len(docs) != len(cfgs) + 1:
            raise BasicError(
                f"{_who(host)}expected the node index and {len(cfgs)} node-local configs ({cfgs}), "
                f"read {len(docs)} documents"
            )
        try:
            rendered = {c: node_subst(d, docs[0], host=host) for c, d in zip(cfgs, docs[1:])}
        except NodeIndexError as exc:
            raise BasicError(str(exc)) from exc
    else:
        rendered = {}
    out = []
    for i, net in enumerate(nets):
        ifname = "eth0" if i == 0 else f"net{i}"
        link = _link(links, ifname)
        cfg = _cfg_of(net)
        addresses = []
        for a in _global_addrs(link) if link else []:
            try:
                rng = ipam_range(a["local"], rendered[cfg], host) if cfg else None
            except MultusError as exc:
                raise BasicError(str(exc)) from exc
            addresses.append({**a, "range": rng})
        out.append(
            {
                "ifname": ifname,
                "network": net.get("name"),
                "type": net.get("type"),
                "cfg": cfg,
                "present": link is not None,
                "addresses": addresses,
            }
        )
    return out


def pod_lines(pod):
    """The lines that show pod_interfaces' result (the seed's "ifconfig -a" check)."""
    lines = []
    for i in plain(pod):
        shown = []
        for a in i["addresses"]:
            text = f"{a['local']}/{a['prefixlen']}"
            if i["cfg"]:
                rng = a.get("range")
                where = f"{rng['start']}-{rng['end']}" if rng else "OUT OF THIS NODE'S RANGES"
                text += f" (node-local {i['cfg']} {where})"
            shown.append(text)
        state = (", ".join(shown) or "no address") if i["present"] else "MISSING"
        lines.append(f"{i['ifname']!s:<5} {i['network']!s:<12} {i['type']!s:<12} {state}")
    return lines


def api_pods(hosts, ipvlan_on, names, namespace, netns):
    """The Pod objects of the check (a v1 List): one per host, bound to it by spec.nodeName,
    its k8s.v1.cni.cncf.io/networks annotation naming the NADs it attaches.

    ``ipvlan_on``: host -> whether that host attaches ipvlan. ``names``: ``[ipvlan, macvlan,
    host_device]`` NAD names.
    """
    items = []
    for h in plain(hosts):
        nets = attached(names, bool(plain(ipvlan_on).get(h)))
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{netns}-{h}",
                    "namespace": namespace,
                    "labels": {"app": "xcm-basic"},
                    "annotations": {"k8s.v1.cni.cncf.io/networks": ",".join(nets)},
                },
                "spec": {
                    "nodeName": h,
                    "containers": [{"name": "alpine", "image": "alpine", "command": ["sleep", "60m"]}],
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}


def _pod_object(pods, name):
    for item in plain(pods).get("items") or []:
        if (item.get("metadata") or {}).get("name") == name:
            return item
    return None


def pod_uid(pods, name):
    """The UID of the Pod ``name`` in a kubectl ``get pods -o json`` list ('' when absent)."""
    obj = _pod_object(pods, name)
    return ((obj or {}).get("metadata") or {}).get("uid") or ""


def network_status(pods, name, host=None):
    """The parsed k8s.v1.cni.cncf.io/network-status annotation of the Pod ``name`` ([] when absent)."""
    obj = _pod_object(pods, name)
    raw = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(
        "k8s.v1.cni.cncf.io/network-status"
    )
    if not raw:
        return []
    status = _json(raw, f"the network-status of pod {name}", host)
    if not isinstance(status, list):
        raise BasicError(f"{_who(host)}the network-status of pod {name} is not a list: {raw!r}")
    return status


def status_interfaces(status, links):
    """The API's network-status set against the pod's interfaces (``ip -j addr`` in the pod).

    Each entry: ``{ifname, network (the NAD's name without namespace), present, ips (the API's),
    addresses (the pod's global ones), match (same addresses)}``.
    """
    links = plain(links or [])
    out = []
    for s in plain(status):
        link = _link(links, s.get("interface", ""))
        have = _global_addrs(link) if link else []
        ips = s.get("ips") or []
        out.append(
            {
                "ifname": s.get("interface", "?"),
                "network": str(s.get("name", "")).rsplit("/", 1)[-1],
                "present": link is not None,
                "ips": ips,
                "addresses": have,
                "match": sorted(ips) == sorted(a["local"] for a in have),
            }
        )
    return out


def status_lines(pod):
    """The lines that show status_interfaces' result."""
    return [
        " ".join(
            [
                i["ifname"],
                i["network"],
                ",".join(i["ips"]),
                "in-pod" if i["present"] else "MISSING-IN-POD",
                "same-addresses" if i["match"] else "ADDRESSES-DIFFER",
            ]
        )
        for i in plain(pod)
    ]


def status_problems(pod, attach, pinged):
    """Whether the API's network-status names the cluster network and every attached network
    once, each interface is in the pod with the API's addresses, and every pinged network has
    addresses. Returns the list of what is wrong (empty when all is well)."""
    pod, attach, pinged = plain(pod), plain(attach), plain(pinged)
    networks = [i["network"] for i in pod]
    wrong = []
    if len(pod) != len(attach) + 1:
        wrong.append(f"{len(pod)} interfaces, expected {len(attach) + 1}")
    extra = list(dict.fromkeys(n for n in networks if n not in attach))
    if len(extra) != 1:
        wrong.append(f"networks besides the attached ones (the cluster network): {extra}")
    lacking = [n for n in attach if n not in networks]
    if lacking:
        wrong.append(f"not in the network-status: {lacking}")
    wrong += [f"{i['ifname']} not in the pod" for i in pod if not i["present"]]
    wrong += [f"{i['ifname']} addresses differ" for i in pod if not i["match"]]
    wrong += [
        f"{i['ifname']} ({i['network']}) has no address"
        for i in pod
        if i["network"] in pinged and not i["ips"]
    ]
    return wrong


def ping_targets(pods, me, pinged):
    """``[net, host, addr]`` for every address of every other host's pod on a pinged network.

    ``pods``: host -> that host's pod (pod_interfaces' or status_interfaces' result; addresses
    taken from ``ips`` when present, else from ``addresses``), in the play's host order.
    """
    out = []
    for h, pod in plain(pods).items():
        if h == me:
            continue
        for i in pod or []:
            if i["network"] not in plain(pinged):
                continue
            addrs = i["ips"] if "ips" in i else [a["local"] for a in i["addresses"]]
            out += [[i["network"], h, a] for a in addrs]
    return out


def pings(stdout_lines, host):
    """The ping script's JSON lines, and the matrix as lines ``host -> net to addr ok|LOST``."""
    rows = [json.loads(line) for line in plain(stdout_lines) if line.lstrip().startswith("{")]
    table = [f"{host} -> {r['net']} {r['to']} {r['addr']} {'ok' if r['ok'] else 'LOST'}" for r in rows]
    return {"pings": rows, "lost": [r for r in rows if not r["ok"]], "table": table}
