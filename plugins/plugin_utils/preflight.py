# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The roles' cross-field preflight checks, without Ansible. Types, choices and defaults are
the role's argument spec's (checked at its entry point preflight); what depends on more than
one value, or on what the preflight found (the archive, the other hosts), is here, once.

CHECKS maps a role to its check functions, each ``fn(host, values) -> [problem, ...]``; the
role's preflight passes ``values`` (its variables and what it found) to the filter
xcluster.multus.preflight_problems, and one assert shows "host: problem; problem". One more
check is one more function in the role's list."""

from __future__ import annotations

import json
import re

_PLUGIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_FILE_PATH = re.compile(r"^/[^\n]*[^/]$")


def _j(value):
    """Ansible's to_json for plain data."""
    return json.dumps(value)


def _str_match(pattern, value):
    return isinstance(value, str) and re.match(pattern, value) is not None


def _is_list(value):
    return isinstance(value, (list, tuple))


def _int(value):
    """Jinja's int: 0 when it is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return 0


def same_archive(kind, host, mine, want):
    """Every host of the play asks for the archive the first one asks for (it is fetched once)."""
    if mine == want:
        return []
    return [
        f"the hosts of this play ask for different {kind} archives (version, arch, url, checksum, dirs,"
        f" download, cache_dir must be the same for all): {want['host']} asks for {_j(want)},"
        f" {host} for {_j(mine)}"
    ]


def cni_plugins_inputs(host, v):
    """cni_plugins_bin_dir, cni_plugins_list, cni_plugins_archive_dirs; the same archive as the
    play's first host; every plugin asked for is in the archive."""
    out = []
    plugins = v["cni_plugins_list"]
    list_ok = _is_list(plugins) and all(isinstance(p, str) and _PLUGIN_NAME.match(p) for p in plugins)
    if not (
        _str_match("^/", v["cni_plugins_bin_dir"]) and list_ok and _is_list(v["cni_plugins_archive_dirs"])
    ):
        out.append(
            f"expected cni_plugins_bin_dir an absolute path (got {_j(v['cni_plugins_bin_dir'])}),"
            f" cni_plugins_list a list of plain file names, no '/', not starting with '.' (got {_j(plugins)};"
            """ on the command line: -e '{"cni_plugins_list": ["bridge", "host-local"]}'),"""
            f" cni_plugins_archive_dirs a list of directories (got {_j(v['cni_plugins_archive_dirs'])})"
        )
    out += same_archive("cni-plugins", host, v["mine"], v["want"])
    artifact = v["artifact"]
    shipped = [f for f in artifact["files"] if "/" not in f and f not in v["not_plugins"]]
    if list_ok:
        missing = []
        for p in plugins:
            if p not in shipped and p not in missing:
                missing.append(p)
        if missing:
            out.append(
                f"cni_plugins_list names {_j(missing)}, not in {artifact['archive']}; it has "
                + ", ".join(sorted(shipped))
            )
    return out


def multus_inputs(host, v):
    """Paths, the kubectl timeout, a kubeconfig given one way with its path; the same archive as
    the play's first host, and that archive holds this release's binary."""
    out = []
    server, token, content = (
        v["multus_kubeconfig_server"],
        v["multus_kubeconfig_token"],
        v["multus_kubeconfig_content"],
    )
    if not (
        _str_match("^/", v["multus_bin_dir"])
        and _str_match(_FILE_PATH, v["multus_conf_file"])
        and _str_match(_FILE_PATH, v["multus_activate_path"])
        and _str_match("^/", v["multus_manifest_dir"])
        and _int(v["multus_kubectl_timeout"]) > 0
        and (server == "") == (token == "")
        and (content == "" or server == "")
        and (v["multus_kubeconfig"] != "" or (content == "" and server == ""))
    ):
        out.append(
            f"multus_bin_dir, multus_manifest_dir ({_j(v['multus_bin_dir'])},"
            f" {_j(v['multus_manifest_dir'])}) must be absolute paths, multus_conf_file and"
            f" multus_activate_path ({_j(v['multus_conf_file'])},"
            f" {_j(v['multus_activate_path'])}) absolute file paths, multus_kubectl_timeout"
            f" ({_j(v['multus_kubectl_timeout'])}) a number of seconds > 0; a kubeconfig is given either as"
            " multus_kubeconfig_content or as multus_kubeconfig_server together with multus_kubeconfig_token,"
            " and needs multus_kubeconfig (the path) set"
        )
    same = same_archive("multus", host, v["mine"], v["want"])
    artifact, flavour = v["artifact"], v["flavour"]
    if same:
        out += same
    elif flavour["member"] not in artifact["members"]:
        out.append(
            f"{artifact['archive']} has no {flavour['member']} (multus {v['multus_version']} ships"
            f" {flavour['binary']}); it holds " + ", ".join(artifact["members"])
        )
    return out


def node_local_inputs(host, v):
    """Every host's node_local_bin_dir, node_local_conf_dir and config names (v['asks']: {host:
    {bin_dir, conf_dir, configs}}, checked once for the play; v['cfg_re']: the names the
    node-local script accepts)."""
    out = []
    for h, a in v["asks"].items():
        configs = a["configs"]
        ok = (
            _str_match("^/", a["bin_dir"])
            and _str_match("^/", a["conf_dir"])
            and isinstance(configs, dict)
            and all(isinstance(c, dict) for c in configs.values())
            and all(re.match(v["cfg_re"], str(k)) for k in configs)
            and not any(re.search(r"\.\.", str(k)) for k in configs)
        )
        if not ok:
            out.append(
                f"{h}: node_local_bin_dir {_j(a['bin_dir'])} and node_local_conf_dir {_j(a['conf_dir'])}"
                " must be absolute paths; node_local_configs and node_local_host_configs must be dicts"
                " name -> host-local config (a dict), names of [A-Za-z0-9_.-] not starting with '.'"
                " and without '..'; got "
                + (f"the names {_j(list(configs))}" if isinstance(configs, dict) else "no dicts")
            )
    return out


def whereabouts_inputs(host, v):
    """A source (a prebuilt binary, a release asset URL with its sha256, or a clone to build);
    extra binaries only from a build."""
    binary, url, src = v["whereabouts_binary"], v["whereabouts_url"], v["whereabouts_src_dir"]
    out = []
    if not (binary or url or src):
        out.append(
            "whereabouts has no source: whereabouts_binary, whereabouts_url and whereabouts_src_dir"
            " (default $WHEREABOUTS_DIR, unset) are all empty; expected the path of your whereabouts"
            " clone, a prebuilt binary, or a release asset URL with its sha256"
        )
    sha = v["whereabouts_url_sha256"]
    if url and not binary and not (isinstance(sha, str) and re.match(r"^(sha256:)?[0-9a-fA-F]{64}$", sha)):
        out.append(f"whereabouts_url_sha256 {_j(sha)} is not a sha256; expected 64 hex digits for {url}")
    source = "binary" if binary else "url" if url else "build"
    if v["whereabouts_extra_binaries"] and source != "build":
        out.append(
            f"whereabouts_extra_binaries {_j(v['whereabouts_extra_binaries'])} needs a build of your clone,"
            f" but the binary comes from {source}; expected []"
        )
    return out


def multus_service_inputs(host, v):
    """The daemons' hosts in the inventory (v['all_hosts']) when they start;
    the Service's port, replicas and IP families in range."""
    out = []
    if v["multus_service_start"]:
        controller, proxies = v["_multus_service_controller"], v["_multus_service_proxies"]
        strangers = [p for p in proxies if p not in v["all_hosts"]]
        if controller not in v["all_hosts"] or strangers:
            out.append(
                f"multus_service_controller_host {_j(controller)} /"
                f" multus_service_proxy_hosts {_j(strangers)}"
                " are not inventory hosts; expected hosts of group xcluster"
            )
    port, fams = v["multus_service_port"], v["multus_service_ip_families"]
    replicas, client = v["multus_service_replicas"], v["multus_service_client_replicas"]
    if not (
        1 <= _int(port) <= 65535
        and _int(replicas) >= 0
        and _int(client) >= 0
        and _is_list(fams)
        and len(fams) in (1, 2)
        and len(set(map(str, fams))) == len(fams)
    ):
        out.append(
            f"multus_service_port {port}, replicas {replicas}/{client}, ip families {_j(fams)}: expected a"
            " port 1-65535, replicas >= 0 and one or two different families"
        )
    return out


CHECKS = {
    "cni_plugins": [cni_plugins_inputs],
    "multus": [multus_inputs],
    "node_local": [node_local_inputs],
    "whereabouts": [whereabouts_inputs],
    "multus_service": [multus_service_inputs],
}


def problems(role, host, values):
    """Every problem the role's checks find, in order."""
    if role not in CHECKS:
        raise ValueError(f"no preflight checks for role {role!r}; expected one of {sorted(CHECKS)}")
    out = []
    for check in CHECKS[role]:
        out += check(host, values)
    return out
