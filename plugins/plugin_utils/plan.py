# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The roles' contract, without Ansible: the public result every role gives (its entry in the
host fact ``xcluster_multus_plan``) and what the playbooks make of it.

A role's entry, ``xcluster_multus_plan[<role>]``, set by the role's ``files`` entry point
(its preflight: the action xcluster.multus.role_plan, plugin_utils/roleplan.py) and kept up to
date by its own steps::

    files:        push_files items (no secret among them)
    secrets:      push_files items that hold a secret (a kubeconfig); their task output is hidden
    directories:  push_files directory items
    report:       what is installed, one line for the summary ("v1.0.1", "3.9.3 (multus, thin), ...")
    changed:      what the last push changed among files and secrets (set by whoever pushed)
    notes:        what the role's own steps on the node changed ("CHANGED: ...", "started ...")
    made_dirs:    directories the role's steps make on the node (uninstall removes them when empty)
    overlay:      for playbooks/ovl.yml: index, index_vars (the node index the files hold and the
                  variables it comes from), drop (dests left out of the overlay), templates
                  ({dest: content} kept with placeholders), base_drop (dests left out with
                  ovl_setup None), files (push_files items only the overlay holds, e.g. the
                  multus config's variants the .rc picks from at boot), conf_src (where the
                  multus config waits until the activation writes it), workers_only (dests
                  the .rc keeps only on nodes from FIRST_WORKER up, as xcluster's
                  25whereabouts.rc writes whereabouts.conf); what the .rc reads of
                  the roles' variables: index_file (node_local), activate_path, cni_info,
                  delegates (multus)
    node:         what site.yml's install (the action xcluster.multus.role_install) asks of the
                  node around its one push: precheck (must hold before anything is pushed),
                  probe (does the configure have work although no file changed), after (roles
                  whose changed files give it work), always (work on every run on this host);
                  plugin_utils/nodestep.py

The list of roles (the registry) exists once, in playbooks/vars/xcluster_multus.yml: one item
per role, ``{name, auto, not_installed}``; ``auto`` (default true) says whether the role is on
when its switch ``xcluster_multus_<name>`` is auto, ``not_installed`` what the summary says when
it is not."""

from __future__ import annotations

import re

SWITCH_ON = ("true", "yes")
SWITCH_OFF = ("false", "no")
SWITCHES = ("auto",) + SWITCH_ON + SWITCH_OFF
_ENTRY_KEYS = {
    *("files", "secrets", "directories", "report", "changed", "notes", "made_dirs", "overlay", "node"),
}


class PlanError(ValueError):
    """Bad input to the contract: the message names the host, the value and what is expected."""


def _entry(plan, role, host="this host"):
    if not isinstance(plan, dict) or not isinstance(plan.get(role), dict):
        raise PlanError(
            f"host {host}: xcluster_multus_plan has no entry for role {role!r} (has "
            f"{sorted(plan) if isinstance(plan, dict) else plan!r}); expected the role's files entry "
            f"point (tasks/files.yml) to have run for this host"
        )
    unknown = set(plan[role]) - _ENTRY_KEYS
    if unknown:
        raise PlanError(
            f"host {host}: xcluster_multus_plan[{role!r}] has unknown keys {sorted(unknown)}; "
            f"expected only {sorted(_ENTRY_KEYS)}"
        )
    return plan[role]


def role_names(registry):
    """The roles' names, in the order they run."""
    names = [r["name"] for r in registry]
    if len(set(names)) != len(names):
        raise PlanError(f"the list of roles names a role twice: {names}")
    return names


def host_roles(registry, switches, host):
    """The roles this host gets, in order: switches is {role: the value of xcluster_multus_<role>
    (default auto)}; a role is on when its switch is true/yes, or auto and its ``auto`` holds."""
    out = []
    for r in registry:
        name = r["name"]
        raw = switches.get(name, "auto")
        value = str(raw).lower() if raw is not None else "auto"
        if value not in SWITCHES:
            raise PlanError(
                f"host {host}: xcluster_multus_{name} is {raw!r}; expected one of {', '.join(SWITCHES)}"
            )
        auto = r.get("auto", True)
        if isinstance(auto, str):
            auto = auto.strip().lower() in ("true", "yes", "1")
        if value in SWITCH_ON or (value == "auto" and auto):
            out.append(name)
    return out


def tagged(roles, run_tags, skip_tags, steps=("install", "configure")):
    """{<role>_<step>: selected} for --tags / --skip-tags (untagged runs select everything)."""
    run, skip = set(run_tags or ["all"]), set(skip_tags or [])
    out = {}
    for role in roles:
        for step in steps:
            tag = f"{role}_{step}"
            out[tag] = bool(run & {"all", "tagged", tag}) and tag not in skip
    return out


def push_items(plan, roles, selected=None, host="this host"):
    """What one push of these roles installs: {files, directories, secret}. A role whose
    <role>_install is not selected keeps its files out."""
    files, dirs, secret = [], [], False
    for role in roles:
        if selected is not None and not selected.get(f"{role}_install", True):
            continue
        e = _entry(plan, role, host)
        files += list(e.get("files") or []) + list(e.get("secrets") or [])
        dirs += list(e.get("directories") or [])
        secret = secret or bool(e.get("secrets"))
    return {"files": files, "directories": dirs, "secret": secret}


def pushed(plan, results, roles, host="this host"):
    """The plan with each of these roles' ``changed`` set from push_files results (one result or a
    list; skipped results count as nothing changed): the dests among the role's files and secrets
    that a push changed, in the push's order. Whoever pushed (a role alone, site.yml's one push
    for every role) calls this; the role's configure reads ``changed``."""
    if isinstance(results, dict):
        results = [results]
    changed_files = []
    for r in results or []:
        for f in (r or {}).get("changed_files") or []:
            if f not in changed_files:
                changed_files.append(f)
    out = dict(plan)
    for role in roles:
        e = _entry(plan, role, host)
        dests = {f["dest"] for f in list(e.get("files") or []) + list(e.get("secrets") or [])}
        out[role] = dict(e, changed=[f for f in changed_files if f in dests])
    return out


def note(plan, role, notes=None, report=None, host="this host"):
    """The plan with lines added to the role's ``notes`` (what its steps changed on the node)
    and, when given, its ``report`` replaced."""
    e = dict(_entry(plan, role, host))
    if notes:
        e["notes"] = list(e.get("notes") or []) + [n for n in notes if n not in (e.get("notes") or [])]
    if report is not None:
        e["report"] = report
    return dict(plan, **{role: e})


def set_secrets(plan, role, items, host="this host"):
    """The plan with these secret push_files items among the role's ``secrets``, each replacing
    one with the same dest (a kubeconfig made after the role's files were rendered, e.g. from a
    token the API gave)."""
    e = dict(_entry(plan, role, host))
    dests = {i["dest"] for i in items}
    e["secrets"] = [s for s in e.get("secrets") or [] if s["dest"] not in dests] + [
        dict(i, secret=True) for i in items
    ]
    return dict(plan, **{role: e})


def _grouped(files):
    """/a/b/x, /a/b/y, /c/z -> ['/a/b/{x,y}', '/c/z'] (directories in order of appearance)."""
    out, dirs = [], []
    for f in files:
        d = f.rsplit("/", 1)[0]
        if d not in dirs:
            dirs.append(d)
    for d in dirs:
        items = [f for f in files if re.match("^" + re.escape(d) + "/[^/]+$", f)]
        out.append(
            d + "/{" + ",".join(i.rsplit("/", 1)[1] for i in items) + "}" if len(items) > 1 else items[0]
        )
    return out


def summary(plan, host, registry, switches, selected, *, check_mode=False):
    """site.yml's summary of one host, one line per role of the registry."""
    lines = [f"{host}:"]
    for r in registry:
        role = r["name"]
        if role not in plan:
            raw = switches.get(role, "auto")
            value = str(raw).lower() if raw is not None else "auto"
            line = (
                r.get("not_installed", "not installed")
                if value == "auto"
                else f"not installed: xcluster_multus_{role} is {value}"
            )
        elif not (selected.get(f"{role}_install") or selected.get(f"{role}_configure")):
            line = "not run (tags)"
        else:
            e = _entry(plan, role, host)
            changed = list(e.get("changed") or []) + list(e.get("notes") or [])
            files = [c for c in changed if c.startswith("/")]
            other = [re.sub("^CHANGED: ", "", c) for c in changed if not c.startswith("/")]
            verb = "would change" if check_mode else "changed"
            what = e.get("report", "")
            line = f"{what} | " + (
                "unchanged" if not changed else f"{verb}: " + "; ".join(_grouped(files) + other)
            )
        lines.append(f"  {role:<15} {line}")
    return lines


def remove_lists(plan, roles, keep_dirs=(), host="this host"):
    """uninstall.yml's lists for one host: {files: every dest of these roles (sorted), absent:
    the push_files items that remove them, dirs: every
    directory on the way to them and to the roles' directories and made_dirs, children before
    parents, top-level ones and keep_dirs left out}."""
    files, dirs = set(), []
    for role in roles:
        e = _entry(plan, role, host)
        files |= {f["dest"] for f in list(e.get("files") or []) + list(e.get("secrets") or [])}
        dirs += [d["path"] for d in e.get("directories") or []] + list(e.get("made_dirs") or [])
    candidates = set()
    for p in [f.rsplit("/", 1)[0] for f in files] + dirs:
        d = p.rstrip("/")
        while d.count("/") > 1:
            candidates.add(d)
            d = d.rsplit("/", 1)[0]
    keep = {k.rstrip("/") for k in keep_dirs}
    return {
        "files": sorted(files),
        "absent": [{"dest": f, "state": "absent"} for f in sorted(files)],
        "dirs": sorted(candidates - keep, reverse=True),
    }


def overlay_item(plan, roles, index, base_only=False, host="this host"):
    """ovl.yml's item for one host: {index, sources: [{name, files, directories}], drop,
    templates, workers_only}. Every node index the roles' files hold must be the one the overlay's .rc takes
    from the host name (``index``)."""
    sources, drop, templates, wrong, index_vars, workers_only = [], [], {}, [], [], []
    for role in roles:
        e = _entry(plan, role, host)
        ovl = e.get("overlay") or {}
        if "index" in ovl:
            index_vars.append(ovl.get("index_vars", role))
            if int(ovl["index"]) != int(index):
                wrong.append(ovl["index"])
        base_drop = set(ovl.get("base_drop") or []) if base_only else set()
        files = [
            f for f in list(e.get("files") or []) + list(e.get("secrets") or []) if f["dest"] not in base_drop
        ]
        files += [f for f in ovl.get("files") or [] if f["dest"] not in base_drop]
        sources.append({"name": role, "files": files, "directories": list(e.get("directories") or [])})
        drop += [d for d in ovl.get("drop") or [] if d not in drop]
        templates.update(ovl.get("templates") or {})
        shipped = {f["dest"] for f in files}
        for d in ovl.get("workers_only") or []:
            if d not in shipped:
                raise PlanError(
                    f"{host}: xcluster_multus_plan[{role!r}].overlay.workers_only names {d!r}; expected a"
                    f" file the role ships ({sorted(shipped)})"
                )
            if d not in workers_only and d not in drop:
                workers_only.append(d)
    if wrong:
        first = next(
            (plan[r]["overlay"]["index"] for r in roles if "index" in (plan[r].get("overlay") or {})),
            wrong[0],
        )
        raise PlanError(
            f"{host}: the overlay's .rc takes the node index from the host name ({index}), but this "
            f"host's is {first} ({', '.join(index_vars)}); "
            "expected hosts named vm-NNN without explicit indexes"
        )
    return {
        "index": int(index),
        "sources": sources,
        "drop": drop,
        "templates": templates,
        "workers_only": [d for d in workers_only if d not in drop],
    }


def installed_plugins(plan, roles, bin_dir):
    """The names of the CNI plugins these roles' files put in ``bin_dir``."""
    bin_dir = bin_dir.rstrip("/")
    names = []
    for role in roles:
        e = plan.get(role) or {}
        for f in list(e.get("files") or []) + list(e.get("secrets") or []):
            d, name = f["dest"].rsplit("/", 1)
            if d == bin_dir and name not in names:
                names.append(name)
    return names


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0", "")


def as_bool(value, name, host="this host"):
    """A boolean variable as Ansible's ``bool`` reads it: True/False, or a string such as
    ``-e name=false`` gives (which Python would take as true); anything else raises."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise PlanError(f"host {host}: {name} is {value!r}; expected true or false")


def nad_check(plan, roles, bin_dir, manifest_dir, *, allow=False, base_only=False, host="this host"):
    """No example NAD without its plugin (multus.missing_nad_plugins): the manifests are the
    multus role's files in ``manifest_dir`` (with ``base_only``, those the overlay keeps), the
    plugins what these roles put in ``bin_dir``. Raises naming the host, each NAD and plugin and
    the fixes, unless ``allow``; returns [[nad, [missing plugins]]]."""
    from .multus import MultusError, missing_nad_plugins  # noqa: PLC0415 (multus needs netaddr, plan does not)

    allow = as_bool(allow, "multus_nads_without_plugin", host)
    e = _entry(plan, "multus", host)
    mdir = manifest_dir.rstrip("/") + "/"
    drop = set((e.get("overlay") or {}).get("base_drop") or []) if base_only else set()
    files = e.get("files") or []
    manifests = [f for f in files if f["dest"].startswith(mdir) and "content" in f and f["dest"] not in drop]
    try:
        missing = missing_nad_plugins(manifests, installed_plugins(plan, roles, bin_dir), host, allow)
    except MultusError as exc:
        raise PlanError(str(exc)) from exc
    return [[n, list(ps)] for n, ps in missing]


def secret(plan, roles=None):
    """Whether any of these roles' files holds a secret (its tasks' output is hidden)."""
    return any(bool((plan.get(r) or {}).get("secrets")) for r in (plan if roles is None else roles))
