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
``Role``: what it needs from outside (an archive, a build, a download, its templates rendered),
its checks (for one host, and across the play's hosts) and its renderer.

Each renderer is ``fn(host, v, found) -> (entry, facts)``: ``v`` the role's variables
(templated), ``found`` what was obtained (``prepare``'s and ``obtain``'s results; ``artifact``:
artifacts.resolve's result; ``role_dir``; ``groups``; ``templates``), ``entry`` the contract
entry, ``facts`` the role's private facts its later entry points and the play checks read."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shlex
import time
from dataclasses import dataclass
from typing import Callable

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from . import argspec, artifacts, gobuild, mservice, nodeindex, nodestep, preflight
from . import multus as mu
from . import plan as contract

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
        out[name] = host_vars.get(name, value)
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
    host, the role and every error, as Ansible's role argument validation would find them.
    Returns the booleans as the spec reads them ({name: bool}: ``-e x=false`` gives the string
    'false', which the renders must read as False, as ``| bool`` does in the roles' tasks)."""
    given = {k: values[k] for k in spec if k in values}
    result = ArgumentSpecValidator(spec).validate(given)
    errors = [e for e in result.errors if not isinstance(e, UnsupportedError)]
    if errors:
        raise RolePlanError(
            f"{host}: role xcluster.multus.{role}: "
            + "; ".join(e.error_message for e in errors)
            + " (its argument spec, meta/argument_specs.yml, entry point preflight)"
        )
    done = result.validated_parameters
    return {k: done[k] for k in given if spec[k].get("type") == "bool" and k in done}


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


def _start(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def run_key():
    """This ansible-playbook run: its process (the workers' parent) and that process's start."""
    ppid = os.getppid()
    return f"{ppid}-{_start(ppid)}"


_RUN_MEMO = re.compile(r"^run-([0-9]+)-([0-9]+)-")


def prune_finished(plans, now=None):
    """Remove the memos of runs that ended (their process is gone, or is another one now) and,
    as before, anything older than artifacts.STALE_SECONDS (a memo of a run with no /proc)."""
    artifacts.clean_stale(plans, "run-", now=time.time() if now is None else now)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(plans):
            m = _RUN_MEMO.match(entry.name)
            if m and _start(m.group(1)) != m.group(2):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _memo_path(cache, parts, key=None):
    plans = os.path.join(cache, "plans")
    os.makedirs(plans, exist_ok=True)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return os.path.join(plans, f"run-{key or run_key()}-{digest}.json")


def once(cache, parts, fn, *, key=None, valid=lambda out: True):
    """fn() once per run (``key``, default run_key()) and ``parts`` (what decides its result):
    the first host's worker runs it under a lock, the others read its result from
    ``<cache>/plans/`` (removed once their run ended: prune_finished, when a memo is written). A
    failure is not kept: each host reports it."""
    memo = _memo_path(cache, parts, key)
    with artifacts.locked(memo + ".lock"):
        try:
            with open(memo, encoding="utf-8") as f:
                out = json.load(f)
            if valid(out):
                return out
        except (OSError, ValueError):
            pass
        prune_finished(os.path.dirname(memo))
        out = fn()
        tmp = f"{memo}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f)
        os.replace(tmp, memo)
    return out


def first_asker(cache, parts, host, want, *, key=None):
    """The first host of this run (and task: ``parts``) to ask, and what it asked for: its
    request is recorded, every later host gets it back to compare with its own."""
    return once(cache, ["first", *parts], lambda: {"host": host, "want": want}, key=key)


def resolve_once(artifact_name, want, *, env, home, key=None, resolver=None):
    """artifacts.resolve for a host's request ``want`` (archive_request), once per run and
    request (``once``)."""
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
    parts = [artifact_name, request, args["archive_env"], home]
    return once(
        cache,
        parts,
        lambda: resolver(**args),
        key=key,
        valid=lambda o: os.path.isdir(o.get("unpacked") or ""),
    )


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
    entry = {
        "files": files,
        "secrets": [],
        "directories": [],
        "report": art["version"],
        "node": {"after": []},  # its configure has nothing to do (nodestep.py)
    }
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
        # its configure checks the script answers: when it or host-local changed, or it does not
        "node": {"probe": node_local_probe(f"{bin_dir}/{script}"), "after": ["node_local", "cni_plugins"]},
        "overlay": {
            "index": int(index),
            "index_vars": "node_local_index / node_local_index_pattern",
            "drop": [f"{conf}/{index_file}"],
            "index_file": f"{conf}/{index_file}",  # the overlay's .rc writes it at boot
        },
    }
    facts = {
        "_node_local_index": index,
        # tasks/configure.yml's check (the same as the probe's)
        "_node_local_check": {
            m: node_local_check(f"{bin_dir}/{script}", m, host, v["node_local_bin_dir"])
            for m in ("apply", "check")
        },
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
    names = [
        "multus_bin_dir",
        "multus_conf_file",
        "multus_activate_path",
        "multus_manifest_dir",
        "multus_kubectl_timeout",
        "multus_kubeconfig",
        "multus_kubeconfig_server",
        "multus_kubeconfig_token",
        "multus_kubeconfig_content",
    ]
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


_MANIFEST_SETTINGS = [
    "nad_namespace",
    "nad_cni_version",
    "nad_bridge_name",
    "nad_bridge_namespace",
    "nad_ipvlan_name",
    "nad_ipvlan2_name",
    "nad_ipvlan_master",
    "nad_ipvlan_ipv4_range",
    "nad_ipvlan_ipv4_gateway",
    "nad_ipvlan_ipv6_range",
    "nad_ipvlan_ipv6_gateway",
    "nad_macvlan_name",
    "nad_macvlan_master",
    "nad_macvlan_cfg",
    "nad_host_device_name",
    "nad_host_device_device",
    "daemonset_name",
    "daemonset_image",
    "daemonset_command",
    "whereabouts_dual_stack",
    "nads_skip",
]
_CONF_SETTINGS = [
    "mode",
    "cni_version",
    "name",
    "log_file",
    "log_level",
    "log_to_stderr",
    "kubeconfig",
    "conf_dir",
    "cni_dir",
    "bin_dir",
    "cluster_network",
    "default_networks",
    "delegates",
]


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
        {
            "src": f"{art['root']}/{flav['binary']}",
            "dest": f"{_strip(v['multus_bin_dir'])}/{flav['binary']}",
            "mode": "0755",
        },
        {"content": _nice_json(conf, 4) + "\n", "dest": conf_src, "mode": "0644"},
        {"content": activate, "dest": v["multus_activate_path"], "mode": "0755"},
    ]
    files += [{"content": m["content"], "dest": f"{mdir}/{m['file']}", "mode": "0644"} for m in manifests]
    kubeconfig = multus_kubeconfig_text(v)
    secrets = (
        [{"content": kubeconfig, "dest": v["multus_kubeconfig"], "mode": "0600", "secret": True}]
        if kubeconfig
        else []
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
    api = mu.api_probe(v["multus_kubectl"], v["multus_kubectl_timeout"], v["multus_kubectl_kubeconfig"])
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
    node = {
        # nothing is pushed to a node that has no base CNI config to wrap
        "precheck": {
            "cmd": mu.base_config_probe(v["multus_conf_file"], v["multus_state_dir"]),
            "check": "multus_base",
            "args": {"conf_file": v["multus_conf_file"], "base_conf": v["multus_base_conf"]},
        },
        # activated already (the script's own check says nothing would change)? On the
        # control-plane host also: does an API server answer (then the manifests are applied)?
        "probe": multus_probe(v["multus_activate_path"], v["_multus_would_marker"])
        + (
            "; "
            + manifests_probe(
                api,
                f"{version} ({flav['binary']}, {mode}), manifests skipped: ",
                f"{host}: skipped applying the manifests in {mdir}: no API server answered ",
            )
            if control and v["multus_manifests_apply"]
            else ""
        ),
        "after": ["multus"],
    }
    entry = {
        "files": files,
        "secrets": secrets,
        "directories": [],
        "report": f"{version} ({flav['binary']}, {mode}), manifests {state}",
        "node": node,
        "made_dirs": [
            v["multus_state_dir"],
            v["multus_conf_dir"],
            os.path.dirname(v["multus_activate_path"]),
        ],
        "overlay": overlay,
    }
    facts = {
        "_multus_flavour": flav,
        "_multus_artifact": art,
        "_multus_want": archive_request(v, "multus", host, version_str=True),
        "_multus_index": idx,
        "_multus_conf": conf,
        "_multus_activate": activate,
        "_multus_api_probe": api,  # tasks/manifests.yml's probe
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


# ------------------------------------------------------------------ whereabouts


def whereabouts_want(v):
    """What a host asks for (built or fetched once: the same for every host of the play)."""
    names = ["binary", "url", "url_sha256", "src_dir", "go", "build_env", "arch", "extra_binaries", "rebuild"]
    return dict({n: v[f"whereabouts_{n}"] for n in names}, crds_dir=v["_whereabouts_crds_src"])


def _built(result):
    """A build's result as the go_build action registers it (changed: it built)."""
    return dict(result, changed=bool(result["built"]))


def clone_build(host, v, ctx, *, prefix, name, recipe, expect):
    """A role's clone built once per run (gobuild; skipped when the clone has not changed), from
    its variables <prefix>_src_dir, _go, _arch, _build_env, _rebuild."""
    args = {
        "name": name,
        "src": os.path.expanduser(v[f"{prefix}_src_dir"]),
        "recipe": recipe,
        "go": v[f"{prefix}_go"],
        "arch": v[f"{prefix}_arch"],
        "env": {k: str(x) for k, x in (v[f"{prefix}_build_env"] or {}).items()},
        "expect": expect,
        "force": bool(v[f"{prefix}_rebuild"]),
    }
    try:
        return ctx.once(["build", args], lambda: _built(gobuild.build(**args)))
    except gobuild.BuildError as e:
        raise RolePlanError(f"{host}: {e}") from None


def same_source(ctx, role, host, want, what):
    """Every host of the play asks for the same source as the run's first asker (it is built or
    fetched once); ``what`` names the thing and its variables for the message."""
    first = ctx.first(role, want)
    if first["want"] != want:
        raise RolePlanError(
            f"the hosts of this play ask for different {what} must be the same for all): "
            + json.dumps({first["host"]: first["want"], host: want})
        )


def whereabouts_obtain(host, v, ctx):
    """The checks, then the binaries (prebuilt, downloaded once, or built once) and the CRD files."""
    problems = preflight.problems("whereabouts", host, v)
    if problems:
        raise RolePlanError(f"{host}: " + "; ".join(problems))
    want = whereabouts_want(v)
    same_source(
        ctx,
        "whereabouts",
        host,
        want,
        "whereabouts sources (whereabouts_binary, _url, _url_sha256, _src_dir, _go, _build_env, _arch,"
        " _extra_binaries, _rebuild, _crds_dir",
    )
    source = v["_whereabouts_source"]
    build = {"skipped": True, "changed": False}
    if source == "binary":
        b = v["whereabouts_binary"]
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            raise RolePlanError(
                f"{host}: whereabouts_binary {b} is not an executable file on the controller; expected a"
                " built whereabouts binary"
            )
        binaries, version = {"whereabouts": b}, f"prebuilt {b}"
    elif source == "url":
        sha = v["whereabouts_url_sha256"].lower()
        sha = sha[len("sha256:") :] if sha.startswith("sha256:") else sha
        args = {
            "archive": f"{sha[:12]}-{os.path.basename(v['whereabouts_url'])}",
            "url": v["whereabouts_url"],
            "checksum": v["whereabouts_url_sha256"],
            "unpack_ok": False,
            "home": ctx.home,
            "archive_env": ctx.env.get("ARCHIVE") or None,
            "cache": artifacts.cache_root(ctx.env),
        }
        try:
            asset = ctx.once(["asset", args], lambda: artifacts.resolve(**args))
        except artifacts.ArtifactError as e:
            raise RolePlanError(f"{host}: {e}") from None
        binaries, version = {"whereabouts": asset["path"]}, v["whereabouts_url"]
    else:
        names = list(dict.fromkeys(["whereabouts", *v["whereabouts_extra_binaries"]]))
        build = clone_build(
            host, v, ctx, prefix="whereabouts", name="whereabouts", recipe="build-go-sh", expect=names
        )
        binaries = {n: build["binaries"][n] for n in names}
        version = build.get("version") or f"build {build['key'][:12]}"
    crds_src = v["_whereabouts_crds_src"]
    present = (
        sorted(os.path.basename(p) for p in glob.glob(f"{crds_src}/whereabouts.cni.cncf.io_*.yaml"))
        if crds_src
        else []
    )

    def crd_file(name):
        return re.sub("^(.*)$", v["_whereabouts_crd_file"], name)

    missing = [crd_file(n) for n in v["_whereabouts_crds_required"] if crd_file(n) not in present]
    if crds_src and missing:
        raise RolePlanError(
            f"{host}: {crds_src} has no {', '.join(missing)}; expected whereabouts' CRD files (doc/crds of a"
            " whereabouts clone, or set whereabouts_crds_dir)"
        )
    crds = [
        crd_file(n)
        for n in list(v["_whereabouts_crds_required"]) + list(v["_whereabouts_crds_optional"])
        if crd_file(n) in present
    ]
    warnings = (
        []
        if crds_src
        else [
            "whereabouts: no CRDs are shipped or applied: there is no clone (whereabouts_src_dir)"
            " and no whereabouts_crds_dir"
        ]
    )
    return {
        "binaries": binaries,
        "version": version,
        "build": build,
        "crds": crds,
        "want": want,
        "warnings": warnings,
    }


def whereabouts_render(host, v, found):
    """The binaries, the CRD files, the kubeconfig when given (a secret), whereabouts.conf (0600,
    as upstream's install-cni.sh writes it)."""
    items = [
        {"src": path, "dest": f"{v['whereabouts_bin_dir']}/{name}", "mode": "0755"}
        for name, path in sorted(found["binaries"].items())
    ]
    items += [
        {
            "src": f"{v['_whereabouts_crds_src']}/{crd}",
            "dest": f"{v['whereabouts_manifest_dir']}/{crd}",
            "mode": "0644",
        }
        for crd in found["crds"]
    ]
    if v["whereabouts_kubeconfig_content"]:
        items.append(
            {
                "content": v["whereabouts_kubeconfig_content"],
                "dest": v["whereabouts_kubeconfig"],
                "mode": "0600",
                "secret": True,
            }
        )
    conf = {
        "datastore": "kubernetes",
        "kubernetes": {"kubeconfig": v["whereabouts_kubeconfig"]},
        "log_file": v["whereabouts_log_file"],
        "log_level": v["whereabouts_log_level"],
    }
    items.append(
        {
            "content": _nice_json(conf, 2) + "\n",
            "dest": f"{v['whereabouts_conf_dir']}/whereabouts.conf",
            "mode": "0600",
        }
    )
    dirs = [
        {"path": v["whereabouts_conf_dir"], "mode": "0755"},
        {"path": v["whereabouts_manifest_dir"], "mode": "0755"},
    ]
    entry = {
        "files": [i for i in items if "secret" not in i],
        "secrets": [i for i in items if "secret" in i],
        "directories": dirs,
        "report": found["version"],
        # its configure works on the control-plane host only: the CRDs, on every run
        "node": {
            "after": [],
            "always": bool(
                v["whereabouts_apply_crds"]
                and found["crds"]
                and host in (found.get("groups") or {}).get("xcluster_control_plane", [])
            ),
        },
        # in an overlay, kept only on nodes FIRST_WORKER..200 (xcluster's 25whereabouts.rc)
        "overlay": {"workers_only": [f"{v['whereabouts_conf_dir']}/whereabouts.conf"]},
    }
    facts = {
        "_whereabouts_dirs": dirs,
        "_whereabouts_secret": bool(v["whereabouts_kubeconfig_content"]),
        "_whereabouts_files": items,
        "_whereabouts_binaries": found["binaries"],
        "_whereabouts_version": found["version"],
        "_whereabouts_crds": found["crds"],
        "_whereabouts_build": found["build"],
        "_whereabouts_want": found["want"],
    }
    return entry, facts


# ------------------------------------------------------------------ multus_service


def multus_service_source(host, v, ctx):
    """Where the binaries come from (plugin_utils/mservice.py): the clone, or prebuilt ones in
    multus_service_prebuilt_dir (default $GOPATH/bin, as xcluster's)."""
    try:
        return mservice.choose(
            v["multus_service_source"],
            v["multus_service_src_dir"],
            v["multus_service_prebuilt_dir"],
            ctx.env.get("GOPATH", ""),
            ctx.env.get("HOME") or ctx.home,
            required=True,
            host=host,
        )
    except mservice.MserviceError as e:
        raise RolePlanError(str(e)) from None


def multus_service_binaries(host, v, ctx, source):
    """multus-proxy and multus-service-controller: prebuilt, or the clone built once per run with
    go install ./cmd/... (skipped when unchanged). Returns (binaries {name: path}, version,
    build result)."""
    if source["source"] == "prebuilt":
        return dict(source["binaries"]), source["report"], {"skipped": True}
    expect = list(v["_multus_service_binaries"])
    build = clone_build(
        host, v, ctx, prefix="multus_service", name="multus-service", recipe="go-install", expect=expect
    )
    binaries = {n: build["binaries"][n] for n in v["_multus_service_binaries"]}
    version = build.get("version") or f"build {build['key'][:12]}"
    return binaries, f"{version}, {source['report']}", build


def multus_service_obtain(host, v, ctx):
    """The source, the checks, every host asking for the same source, then the binaries."""
    source = multus_service_source(host, v, ctx)
    problems = preflight.problems("multus_service", host, dict(v, all_hosts=ctx.all_hosts))
    if problems:
        raise RolePlanError(f"{host}: " + "; ".join(problems))
    names = ["source", "src_dir", "prebuilt_dir", "go", "build_env", "arch", "rebuild"]
    want = {n: v[f"multus_service_{n}"] for n in names}
    same_source(
        ctx,
        "multus_service",
        host,
        want,
        "multus-service builds (multus_service_source, _src_dir, _prebuilt_dir, _go, _build_env, _arch,"
        " _rebuild",
    )
    binaries, version, build = multus_service_binaries(host, v, ctx, source)
    return {"binaries": binaries, "version": version, "build": build, "want": want}


def multus_service_render(host, v, found):
    """The two binaries and the manifests (the role's templates, rendered by the action)."""
    bin_dir, mdir = v["multus_service_bin_dir"], v["multus_service_manifest_dir"]
    files = [
        {"src": found["binaries"][n], "dest": f"{bin_dir}/{n}", "mode": "0755"}
        for n in v["_multus_service_binaries"]
    ]
    files += [
        {"content": found["templates"][f"{name}.j2"], "dest": f"{mdir}/{name}", "mode": "0644"}
        for name in ("svc.yaml", "deployment.yaml")
    ]
    dirs = [{"path": mdir, "mode": "0755"}]
    control = host in (found.get("groups") or {}).get("xcluster_control_plane", [])
    start = v["multus_service_start"] and v["_multus_service_daemons"]
    node = {
        "after": ["multus_service"] if start else [],  # a replaced binary: its daemon restarted
        "always": bool(control and v["multus_service_manifests_apply"]),
    }
    if start:  # a daemon that does not run is started
        with open(os.path.join(found["role_dir"], "files", "daemon.sh"), encoding="utf-8") as f:
            daemon_sh = f.read()
        node["probe"] = multus_service_probe(
            daemon_sh,
            [d["name"] for d in v["_multus_service_daemons"]],
            v["multus_service_bin_dir"],
            v["multus_service_run_dir"],
        )
    entry = {
        "files": files,
        "secrets": [],
        "directories": dirs,
        "report": found["version"],
        "node": node,
    }
    facts = {
        "_multus_service_version": found["version"],
        "_multus_service_dirs": dirs,
        "_multus_service_files": files,
        "_multus_service_build": found["build"],
        "_multus_service_want": found["want"],
    }
    return entry, facts


# ------------------------------------------------------------------ probes (nodestep.py)
# Read-only shell run before the push (role_install's one read of the node): each prints
# nodestep.NEEDED when the role's configure has work although none of its files changed.


def node_local_check(script, mode, host="", bin_dir=""):
    """The one check that the node-local script runs on the node: jq there, the script answers
    CNI_COMMAND=VERSION (host-local beside it). Prints what it answered; when it does not answer,
    ``apply`` (the role's configure) fails naming the host and what it needs, ``check`` (check
    mode) only reports, ``probe`` (site.yml's read before the push) prints nodestep.NEEDED."""
    q = shlex.quote(script)
    otherwise = {
        "apply": "echo "
        + shlex.quote(
            f"{host}: node-local cannot run: it needs jq on the node and host-local in {bin_dir}"
            " (role xcluster.multus.cni_plugins); it answered the above"
        )
        + "; exit 1",
        "check": ":",
        "probe": f"echo '{nodestep.NEEDED} node-local does not answer'",
    }[mode]
    return (
        "out=$(command -v jq >/dev/null 2>&1 || echo 'node-local: jq not found on the node'; "
        f'if [ -x {q} ]; then echo \'{{"cniVersion":"0.4.0"}}\' | CNI_COMMAND=VERSION {q} 2>&1; '
        "else echo 'node-local: not installed yet'; fi); "
        "printf '%s\\n' \"$out\"; "
        f"case $out in '{{'*'\"supportedVersions\"'*) ;; *) {otherwise} ;; esac"
    )


def node_local_probe(script):
    """site.yml's probe: node_local_check's probe."""
    return node_local_check(script, "probe")


def multus_probe(activate, would):
    """The activation script's own check: anything it would change (or no script yet)."""
    q = shlex.quote(activate)
    return (
        f"if [ -x {q} ]; then out=$({q} check 2>&1) || echo '{nodestep.NEEDED} the check failed'; "
        f"printf '%s\\n' \"$out\"; case $out in *{shlex.quote(would)}*) echo '{nodestep.NEEDED}' ;; esac; "
        f"else echo {shlex.quote(f'{nodestep.NEEDED} {activate} not installed')}; fi"
    )


def manifests_probe(api, report, say):
    """On the control-plane host: the API server answers (the configure applies the manifests),
    or what the summary and the run say when it does not (its report, a warning: the configure
    does not run for that alone)."""
    return (
        f"a=$({api}); case $a in XCM-API-UP) echo '{nodestep.NEEDED} an API server answers' ;; "
        f"*) r=${{a#XCM-API-NO: }}; printf '%s%s\\n' {shlex.quote(nodestep.REPORT + ' ' + report)} \"$r\"; "
        f"printf '%s(%s)\\n' {shlex.quote(nodestep.SAY + ' ' + say)} \"$r\" ;; esac"
    )


def multus_service_probe(daemon_sh, names, bin_dir, run_dir):
    """Each daemon of this host runs (daemon.sh status, the script sent once: a node's ssh server
    limits a command's length, dropbear's to 9000 bytes)."""
    bin_dir, run_dir = bin_dir.rstrip("/"), run_dir.rstrip("/")
    args = " ".join(f"{shlex.quote(f'{bin_dir}/{n}')} {shlex.quote(f'{run_dir}/{n}.pid')}" for n in names)
    return (
        f"s=$(sh -s -- status {args} <<'XCM_DAEMON_EOF'\n{daemon_sh.rstrip()}\nXCM_DAEMON_EOF\n); "
        f"printf '%s\\n' \"$s\"; case $s in *XCM-NOT-RUNNING*|\"\") echo '{nodestep.NEEDED}' ;; esac"
    )


# ------------------------------------------------------------------ the registry


@dataclass
class Context:
    """What ``obtain`` gets from the action: the environment, the home directory, and the run's
    memo (``key``: the run; ``task``: the task's id, so two plays do not share a first asker)."""

    env: dict
    home: str
    host: str = ""
    all_hosts: tuple = ()
    task: str = ""
    key: str = None

    def once(self, parts, fn):
        return once(artifacts.cache_root(self.env), parts, fn, key=self.key)

    def first(self, role, want):
        return first_asker(artifacts.cache_root(self.env), [role, self.task], self.host, want, key=self.key)


@dataclass(frozen=True)
class Role:
    """What the action does for a role. ``render`` and ``problems`` (per host, see above);
    ``archive``: (artifacts' name, variable prefix) when the role installs a release archive
    (resolved once per run for each request); ``obtain``: ``fn(host, v, ctx) -> found`` when the
    role obtains its files otherwise (a build, a download: ``ctx.once(parts, fn)`` once per run,
    ``ctx.first(role, want)`` the first asker of this run and task, ``ctx.env``, ``ctx.home``,
    ``ctx.all_hosts``); ``templates``: the role's templates/ the action renders with the role's
    variables (``found['templates'][name]``); ``play``: the check across the play's hosts,
    ``fn({host: {fact: value}}) -> [problem]`` over ``play_facts`` (facts render set on each host),
    run once for the play (the action with scope play, run_once)."""

    render: Callable
    problems: Callable = None
    prepare: Callable = None
    obtain: Callable = None
    templates: tuple = ()
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
    "whereabouts": Role(render=whereabouts_render, obtain=whereabouts_obtain),
    "multus_service": Role(
        render=multus_service_render,
        obtain=multus_service_obtain,
        templates=("svc.yaml.j2", "deployment.yaml.j2"),
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
