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
``found`` what the action obtained (``artifact``: artifacts.resolve's result; ``role_dir``;
``hosts``: {host: variables} of every play host when the role asks for it), ``entry`` the
contract entry, ``facts`` the role's private facts its later entry points read (summary,
configure, uninstall)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from . import argspec, artifacts, nodeindex, preflight

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
