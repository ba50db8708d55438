# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A role's preflight and rendering for one host, without Ansible (the action
xcluster.multus.role_plan is the thin part that reads the variables and files).

For each role: its variables (the role's defaults under the host's variables, the role's own
vars/main.yml over both, as include_role layers them) are checked against the role's argument
spec (meta/argument_specs.yml, entry point ``preflight``: the only statement of types, choices
and defaults), then the cross-field checks of plugins/plugin_utils/preflight.py run with what the
preflight found (the archive), then the files are rendered into the role's entry of the contract
``xcluster_multus_plan[<role>]`` (plugins/plugin_utils/plan.py). ``ROLES`` maps a role to its
``Role``: what it needs from outside (an archive, every play host's values) and its renderer.

Each renderer is ``fn(host, v, found) -> (entry, facts)``: ``v`` the role's variables (templated),
``found`` what the action obtained (``prepare``'s result, ``artifact``: artifacts.resolve's result; ``role_dir``;
``hosts``: {host: variables} of every play host when the role asks for it), ``entry`` the
contract entry, ``facts`` the role's private facts its later entry points read (summary,
configure, uninstall)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from . import argspec, artifacts, nodeindex, plan as contract, preflight
from . import multus as mu

ENTRY_POINT = "preflight"


class RolePlanError(ValueError):
    """Bad input for a role: the message names the host, the value and what is expected."""


# ------------------------------------------------------------------ variables and their spec


def layered(defaults, host_vars, role_vars):
    """The names a role reads and their raw (untemplated) values, as include_role layers them:
    the role's defaults, under the host's variables (inventory, play, -e), under the role's own
    vars/main.yml. Returns {name: raw value} for the names of defaults and role_vars."""
    out = {}
    for name, value in (defaults or {}).items():
        out[name] = host_vars[name] if name in host_vars else value
    out.update(role_vars or {})
    return out


def role_spec(argument_specs, role, entry=ENTRY_POINT):
    """The argument spec of the role's entry point (meta/argument_specs.yml's content)."""
    try:
        options = argument_specs["argument_specs"][entry].get("options") or {}
    except (KeyError, TypeError, AttributeError):
        raise RolePlanError(
            f"role {role}: meta/argument_specs.yml has no entry point {entry!r}; expected every role to "
            "declare it"
        ) from None
    return argspec.spec_from_options(options)


def validate(host, role, spec, values):
    """The role's variables against its spec (the names the spec declares); raises naming the
    host, the role and every error, as Ansible's role argument validation would find them."""
    given = {k: values[k] for k in spec if k in values}
    result = ArgumentSpecValidator(spec).validate(given)
    errors = [e for e in result.errors if not isinstance(e, UnsupportedError)]
    if errors:
        raise RolePlanError(
            f"{host}: role xcluster.multus.{role}: "
            + "; ".join(e.error_message for e in errors)
            + " (its argument spec, meta/argument_specs.yml, entry point preflight)"
        )


def _strip(path):
    return str(path).rstrip("/") or "/"


def _nice_json(value, indent):
    """Ansible's to_nice_json for plain data."""
    return json.dumps(value, indent=indent, sort_keys=True, separators=(",", ": "))


# ------------------------------------------------------------------ the archive, once per play


def archive_request(v, prefix, host, *, version_str=False):
    """What a host asks for (the fields that must be the same for every host of a play)."""
    version = v[f"{prefix}_version"]
    return {
        "version": str(version) if version_str else version,
        "arch": v[f"{prefix}_arch"],
        "url": v[f"{prefix}_url"],
        "checksum": v[f"{prefix}_checksum"],
        "dirs": v[f"{prefix}_archive_dirs"],
        "download": v[f"{prefix}_download"],
        "cache_dir": v[f"{prefix}_cache_dir"],
        "host": host,
    }


def run_key():
    """This ansible-playbook run: its process (the workers' parent) and that process's start."""
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/stat", encoding="ascii") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "0"
    return f"{ppid}-{start}"


def resolve_once(artifact_name, want, *, env, home, key=None, resolver=None):
    """artifacts.resolve for a host's request ``want`` (archive_request), once per run (``key``,
    default run_key()) and request: the first host's worker resolves it under a lock, the others
    read its result from the cache (``<cache>/plans/``, removed after a day); a failure is not
    kept, each host reports it."""
    resolver = resolver or artifacts.resolve
    cache = want["cache_dir"] or artifacts.cache_root(env)
    request = {k: want[k] for k in ("version", "arch", "url", "checksum", "dirs", "download")}
    args = {
        "archive": None,
        "artifact": artifact_name,
        "version": str(request["version"]),
        "arch": request["arch"],
        "checksum": request["checksum"] or None,
        "url": request["url"],
        "dirs": request["dirs"],
        "download_ok": bool(request["download"]),
        "home": home,
        "archive_env": env.get("ARCHIVE") or None,
        "cache": cache,
    }
    plans = os.path.join(cache, "plans")
    os.makedirs(plans, exist_ok=True)
    artifacts.clean_stale(plans, "run-", now=time.time())
    digest = hashlib.sha256(
        json.dumps([artifact_name, request, args["archive_env"], home], sort_keys=True).encode()
    ).hexdigest()[:24]
    memo = os.path.join(plans, f"run-{key or run_key()}-{digest}.json")
    with artifacts.locked(memo + ".lock"):
        try:
            with open(memo, encoding="utf-8") as f:
                out = json.load(f)
            if os.path.isdir(out.get("unpacked") or ""):
                return out
        except (OSError, ValueError):
            pass
        out = resolver(**args)
        tmp = f"{memo}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f)
        os.replace(tmp, memo)
    return out


# ------------------------------------------------------------------ cni_plugins

def cni_plugins_problems(host, v, found):
    """This host's inputs, and every plugin asked for is in the archive (the same archive for
    every host: cni_plugins_play)."""
    mine = archive_request(v, "cni_plugins", host)
    return preflight.problems(
        "cni_plugins",
        host,
        {
            "cni_plugins_bin_dir": v["cni_plugins_bin_dir"],
            "cni_plugins_list": v["cni_plugins_list"],
            "cni_plugins_archive_dirs": v["cni_plugins_archive_dirs"],
            "mine": mine,
            "want": mine,
            "artifact": found["artifact"],
            "not_plugins": v["_cni_plugins_not_plugins"],
        },
    )


def same_archive_play(kind, fact):
    """A play check: every host asks for the archive the play's first host asks for."""

    def check(hosts):
        items = list(hosts.items())
        want = items[0][1][fact]
        out = []
        for h, facts in items[1:]:
            mine = dict(facts[fact], host=want["host"])
            problems = preflight.same_archive(kind, h, mine, want)
            out += [f"{h}: {p}" for p in problems]
        return out

    return check


def cni_plugins_render(host, v, found):
    art = found["artifact"]
    if v["cni_plugins_list"]:
        names = list(dict.fromkeys(v["cni_plugins_list"]))
    else:
        names = sorted(set(f for f in art["files"] if "/" not in f) - set(v["_cni_plugins_not_plugins"]))
    bin_dir = _strip(v["cni_plugins_bin_dir"])
    files = [
        {"src": f"{art['root']}/{n}", "dest": f"{bin_dir}/{n}", "mode": v["_cni_plugins_mode"]} for n in names
    ]
    entry = {"files": files, "secrets": [], "directories": [], "report": art["version"]}
    facts = {
        "_cni_plugins_artifact": art,
        "_cni_plugins_files": files,
        "_cni_plugins_dirs": [],
        "_cni_plugins_want": archive_request(v, "cni_plugins", host),
    }
    return entry, facts


# ------------------------------------------------------------------ node_local


def _node_local_ask(v):
    configs, host_configs = v["node_local_configs"], v["node_local_host_configs"]
    ok = isinstance(configs, dict) and isinstance(host_configs, dict)
    merged = {**configs, **host_configs} if ok else None
    return {"bin_dir": v["node_local_bin_dir"], "conf_dir": v["node_local_conf_dir"], "configs": merged}


def node_local_problems(host, v, found):
    """This host's paths and config names (node_local_play checks every host's, with the indexes
    and ranges)."""
    return preflight.problems(
        "node_local", host, {"asks": {host: _node_local_ask(v)}, "cfg_re": v["_node_local_cfg_re"]}
    )


def node_local_play(hosts):
    """A play check: every host's inputs, then no two hosts share an index and no two hosts'
    ranges of one config overlap (nodeindex.check_inventory; raises NodeIndexError)."""
    first = next(iter(hosts.values()))
    problems = preflight.problems(
        "node_local",
        next(iter(hosts)),
        {"asks": {h: f["_node_local_ask"] for h, f in hosts.items()}, "cfg_re": first["_node_local_cfg_re"]},
    )
    if problems:
        return problems
    nodeindex.check_inventory(
        {h: f["_node_local_index"] for h, f in hosts.items()},
        {},
        {h: f["_node_local_ask"]["configs"] for h, f in hosts.items()},
    )
    return []


def node_local_render(host, v, found):
    index = nodeindex.node_index(host, pattern=v["node_local_index_pattern"], index=v["node_local_index"])
    ask = _node_local_ask(v)
    templates = ask["configs"]
    bin_dir, conf = _strip(v["node_local_bin_dir"]), _strip(v["node_local_conf_dir"])
    script, index_file = v["_node_local_script"], v["_node_local_index_file"]
    files = [
        {"src": f"{found['role_dir']}/files/{script}", "dest": f"{bin_dir}/{script}", "mode": "0755"},
        {"content": f"{index}\n", "dest": f"{conf}/{index_file}", "mode": "0644"},
    ]
    files += [
        {"content": _nice_json(t, 2) + "\n", "dest": f"{conf}/{name}", "mode": "0644"}
        for name, t in templates.items()
    ]
    dirs = [{"path": conf, "mode": "0755"}]
    entry = {
        "files": files,
        "secrets": [],
        "directories": dirs,
        "report": f"index {index}, configs " + " ".join(templates),
        "overlay": {
            "index": int(index),
            "index_vars": "node_local_index / node_local_index_pattern",
            "drop": [f"{conf}/{index_file}"],
            "index_file": f"{conf}/{index_file}",  # the overlay's .rc writes it at boot
        },
    }
    facts = {
        "_node_local_index": index,
        "_node_local_templates": templates,
        "_node_local_files": files,
        "_node_local_dirs": dirs,
        "_node_local_ask": ask,
        "_node_local_cfg_re": v["_node_local_cfg_re"],
    }
    return entry, facts


# ------------------------------------------------------------------ multus


def _multus(what, fn, *args, **kwargs):
    """A plugin_utils.multus function, its error named as its filter names it."""
    try:
        return fn(*args, **kwargs)
    except mu.MultusError as e:
        raise RolePlanError(f"{what}: {e}") from None


def multus_prepare(host, v):
    """What multus_version installs (binary, archive member), before the archive is looked up."""
    return {"flavour": _multus("multus_flavour", mu.flavour, v["multus_version"], v["multus_arch"], host)}


def multus_problems(host, v, found):
    """Paths, the kubectl timeout, the kubeconfig given one way; the archive holds the binary of
    this release (the same archive for every host: the play check)."""
    mine = archive_request(v, "multus", host, version_str=True)
    names = (
        "multus_bin_dir multus_conf_file multus_activate_path multus_manifest_dir multus_kubectl_timeout"
        " multus_kubeconfig multus_kubeconfig_server multus_kubeconfig_token multus_kubeconfig_content"
    ).split()
    values = {n: v[n] for n in names}
    values.update(
        multus_version=str(v["multus_version"]),
        mine=mine,
        want=mine,
        artifact=found["artifact"],
        flavour=found["flavour"],
    )
    return preflight.problems("multus", host, values)


def multus_kubeconfig_text(v):
    """The kubeconfig multus (and whereabouts) use: multus_kubeconfig_content, else one made of
    server, token (and CA data), else ''."""
    if v["multus_kubeconfig_content"]:
        return v["multus_kubeconfig_content"]
    if not v["multus_kubeconfig_server"]:
        return ""
    from ansible.plugins.filter.core import to_nice_yaml  # noqa: PLC0415 (the text users had)

    cluster = {"server": v["multus_kubeconfig_server"]}
    if v["multus_kubeconfig_ca_data"]:
        cluster["certificate-authority-data"] = v["multus_kubeconfig_ca_data"]
    else:
        cluster["insecure-skip-tls-verify"] = True
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "xcluster", "cluster": cluster}],
        "users": [{"name": "multus", "user": {"token": v["multus_kubeconfig_token"]}}],
        "contexts": [{"name": "multus", "context": {"cluster": "xcluster", "user": "multus"}}],
        "current-context": "multus",
    }
    return to_nice_yaml(doc, indent=2)


_MANIFEST_SETTINGS = (
    "nad_namespace nad_cni_version nad_bridge_name nad_bridge_namespace nad_ipvlan_name nad_ipvlan2_name"
    " nad_ipvlan_master nad_ipvlan_ipv4_range nad_ipvlan_ipv4_gateway nad_ipvlan_ipv6_range"
    " nad_ipvlan_ipv6_gateway nad_macvlan_name nad_macvlan_master nad_macvlan_cfg nad_host_device_name"
    " nad_host_device_device daemonset_name daemonset_image daemonset_command whereabouts_dual_stack"
    " nads_skip"
).split()
_CONF_SETTINGS = (
    "mode cni_version name log_file log_level log_to_stderr kubeconfig conf_dir cni_dir bin_dir"
    " cluster_network default_networks delegates"
).split()


def multus_render(host, v, found):
    """10-multus.conf (waiting at conf_src), the activation script, the manifests, the binary,
    the kubeconfig (a secret) when one is given, and what the overlay does differently (both
    10-multus.conf variants for the .rc to pick from at boot; with ovl_setup None only the CRD
    and the cluster network's NAD)."""
    flav, art = found["flavour"], found["artifact"]
    version, mode = str(v["multus_version"]), v["multus_mode"]
    idx = None
    if mode == "delegates":
        try:
            idx = nodeindex.node_index(
                host, pattern=v["multus_node_index_pattern"], index=v["multus_node_index"]
            )
        except nodeindex.NodeIndexError as e:
            raise RolePlanError(str(e)) from None
    settings = {k: v[f"multus_{k}"] for k in _CONF_SETTINGS}
    settings.update(version=version, extra=v["multus_config_extra"])
    conf = _multus("multus_config", mu.multus_config, index=idx, host=host, **settings)
    conf_src = v["_multus_conf_src"]
    with open(os.path.join(found["role_dir"], "files", v["_multus_activate_body"]), encoding="utf-8") as f:
        body = f.read().rstrip()  # as the file lookup reads it
    activate = _multus(
        "multus_activate_script",
        mu.activate_script,
        body,
        {
            "base_conf": v["multus_base_conf"],
            "moved_dir": v["multus_conf_dir"],
            "conf_src": conf_src,
            "multus_conf": v["multus_conf_file"],
            "base_name": v["multus_base_network_name"],
            "new_name": v["multus_cluster_network"],
            "links": v["multus_links_up"],
            "state_dir": v["multus_state_dir"],
        },
        host,
    )
    msettings = {k: v[f"multus_{k}"] for k in _MANIFEST_SETTINGS}
    msettings["whereabouts_version"] = str(v["multus_whereabouts_version"])
    try:
        manifests = _multus("multus_manifests", mu.manifests, msettings, host)
    except KeyError as e:
        raise RolePlanError(f"multus_manifests: the setting {e} is missing") from None
    mdir = _strip(v["multus_manifest_dir"])
    files = [
        {"src": f"{art['root']}/{flav['binary']}", "dest": f"{_strip(v['multus_bin_dir'])}/{flav['binary']}", "mode": "0755"},
        {"content": _nice_json(conf, 4) + "\n", "dest": conf_src, "mode": "0644"},
        {"content": activate, "dest": v["multus_activate_path"], "mode": "0755"},
    ]
    files += [{"content": m["content"], "dest": f"{mdir}/{m['file']}", "mode": "0644"} for m in manifests]
    kubeconfig = multus_kubeconfig_text(v)
    secrets = (
        [{"content": kubeconfig, "dest": v["multus_kubeconfig"], "mode": "0600", "secret": True}] if kubeconfig else []
    )
    boot = _multus(
        "multus_boot_confs",
        mu.boot_confs,
        conf,
        v["multus_delegates"],
        v["multus_cluster_network"],
        v["multus_default_networks"],
        host,
    )
    boot_text = {k: _nice_json(boot[k], 4) + "\n" for k in ("cluster_network", "delegates")}
    control = host in (found.get("groups") or {}).get("xcluster_control_plane", [])
    state = (
        "not this host"
        if not control
        else "not asked (multus_manifests_apply: false)"
        if not v["multus_manifests_apply"]
        else "skipped: not run (tags)"
    )
    overlay = {"index": int(idx), "index_vars": "multus_node_index"} if mode == "delegates" else {}
    overlay.update(
        base_drop=[
            f"{mdir}/{m['file']}"
            for m in manifests
            if m["kind"] != "CustomResourceDefinition" and m["name"] != v["multus_nad_bridge_name"]
        ],
        conf_src=conf_src,
        templates={conf_src: boot_text[mode]},
        files=[
            {"content": boot_text["cluster_network"], "dest": f"{conf_src}.cluster_network", "mode": "0644"},
            {"content": boot_text["delegates"], "dest": f"{conf_src}.delegates", "mode": "0644"},
        ],
        # what ovl.yml's .rc needs of this role's variables
        activate_path=v["multus_activate_path"],
        cni_info=f"multus+{v['multus_cluster_network']}",
        delegates=mode == "delegates",
    )
    entry = {
        "files": files,
        "secrets": secrets,
        "directories": [],
        "report": f"{version} ({flav['binary']}, {mode}), manifests {state}",
        "made_dirs": [v["multus_state_dir"], v["multus_conf_dir"], os.path.dirname(v["multus_activate_path"])],
        "overlay": overlay,
    }
    facts = {
        "_multus_flavour": flav,
        "_multus_artifact": art,
        "_multus_want": archive_request(v, "multus", host, version_str=True),
        "_multus_index": idx,
        "_multus_conf": conf,
        "_multus_activate": activate,
        "_multus_manifests": manifests,
        "_multus_files": files,
        "_multus_secret_files": secrets,
        "_multus_about": {
            "version": version,
            "binary": flav["binary"],
            "mode": mode,
            "manifests_apply": v["multus_manifests_apply"],
        },
        # what site.yml's and ovl.yml's NAD check reads of this role's variables
        "_multus_nad_check": {
            "bin_dir": v["multus_bin_dir"],
            "manifest_dir": v["multus_manifest_dir"],
            "allow": v["multus_nads_without_plugin"],
        },
    }
    return entry, facts


def nad_check(host, host_plan, settings, base_only=False):
    """No example NAD without its plugin, over the host's whole plan (plan.nad_check; raises
    PlanError naming the host, each NAD and plugin, and the fixes); ``settings`` the multus
    role's bin_dir, manifest_dir and allow (multus_nads_without_plugin)."""
    return contract.nad_check(
        host_plan,
        list(host_plan),
        settings["bin_dir"],
        settings["manifest_dir"],
        allow=settings["allow"],
        base_only=base_only,
        host=host,
    )


# ------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class Role:
    """What the action does for a role. ``render`` and ``problems`` (per host, see above);
    ``archive``: (artifacts' name, variable prefix) when the role installs a release archive
    (resolved once per run for each request); ``play``: the check across the play's hosts,
    ``fn({host: {fact: value}}) -> [problem]`` over ``play_facts`` (facts render set on each host),
    run once for the play (the action with scope play, run_once)."""

    render: Callable
    problems: Callable = None
    prepare: Callable = None
    archive: tuple = None
    play: Callable = None
    play_facts: tuple = ()


ROLES = {
    "cni_plugins": Role(
        render=cni_plugins_render,
        problems=cni_plugins_problems,
        archive=("cni-plugins", "cni_plugins"),
        play=same_archive_play("cni-plugins", "_cni_plugins_want"),
        play_facts=("_cni_plugins_want",),
    ),
    "multus": Role(
        render=multus_render,
        problems=multus_problems,
        prepare=multus_prepare,
        archive=("multus", "multus"),
        play=same_archive_play("multus", "_multus_want"),
        play_facts=("_multus_want",),
    ),
    "node_local": Role(
        render=node_local_render,
        problems=node_local_problems,
        play=node_local_play,
        play_facts=("_node_local_index", "_node_local_ask", "_node_local_cfg_re"),
    ),
}


def plan(role, host, v, found):
    """The role's checks for this host, then its entry and private facts; raises
    RolePlanError naming the host and every problem."""
    r = ROLES[role]
    problems = r.problems(host, v, found) if r.problems else []
    if problems:
        named = all(p.startswith(f"{host}: ") for p in problems)  # node_local's name their host
        raise RolePlanError(("" if named else f"{host}: ") + "; ".join(problems))
    try:
        return r.render(host, v, found)
    except nodeindex.NodeIndexError as e:
        raise RolePlanError(str(e)) from None


def play_check(role, hosts):
    """The role's check across the play's hosts ({host: facts}, the play's order); raises
    RolePlanError with every problem (each names its host)."""
    r = ROLES[role]
    if r.play is None or not hosts:
        return
    try:
        problems = r.play(hosts)
    except nodeindex.NodeIndexError as e:
        raise RolePlanError(str(e)) from None
    if problems:
        raise RolePlanError("; ".join(problems))
