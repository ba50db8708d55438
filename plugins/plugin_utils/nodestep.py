# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What a host's install asks of the node around the push, from the contract's ``node`` key
(plugins/plugin_utils/plan.py), without Ansible: one read before anything is pushed (each role's
precheck and probe, one command), then which roles' entry point ``configure`` has work.

A role's ``node`` entry (all keys optional; role_plan renders it, plugin_utils/roleplan.py)::

    precheck: {cmd, check, args}  what the node must already have before anything is pushed to
              it: ``cmd`` is a read-only shell command, ``check`` names the rule in CHECKS that
              reads its output (``check(host, output, **args)`` raises naming the host and what
              the node holds; the host then gets nothing)
    probe:    a read-only shell command that prints NEEDED (a line) when the role's configure
              has work on the node although none of its files changed (multus: not activated,
              or on the control plane an API server answers; node_local: the script does not
              answer; multus_service: a daemon not running); when the configure does not run,
              its lines ``XCM-REPORT <text>`` replace the role's report and ``XCM-SAY <text>``
              are said (multus on the control plane: no API server, the manifests skipped)
    after:    roles whose changed files give the configure work (default: the role itself)
    always:   the configure runs on every run on this host (the control plane's kubectl apply)

A role with no ``node`` entry has its configure run whenever it is selected (as before).
"""

from __future__ import annotations

import re

from . import multus

NEEDED = "XCM-NEEDED"
REPORT = "XCM-REPORT"  # a probe's line: the role's report when its configure does not run
SAY = "XCM-SAY"  # a probe's line: what the run says (a warning) when the configure does not run
_KEYS = {"precheck", "probe", "after", "always"}


class NodeStepError(ValueError):
    """A node that fails a precheck, or a malformed node entry: the message names the host."""


def _multus_base(host, output, conf_file, base_conf=""):
    try:
        multus.base_config(output, conf_file, base_conf, host)
    except multus.MultusError as e:
        raise NodeStepError(str(e)) from None


CHECKS = {"multus_base": _multus_base}


def _node(entry, role, host):
    node = (entry or {}).get("node")
    if node is None:
        return None
    if not isinstance(node, dict) or set(node) - _KEYS:
        raise NodeStepError(
            f"host {host}: xcluster_multus_plan[{role!r}].node is {node!r}; expected a dict with only "
            f"{sorted(_KEYS)}"
        )
    pre = node.get("precheck")
    if pre is not None and (not isinstance(pre, dict) or pre.get("check") not in CHECKS):
        raise NodeStepError(
            f"host {host}: xcluster_multus_plan[{role!r}].node.precheck is {pre!r}; expected "
            f"{{cmd, check, args}} with check one of {sorted(CHECKS)}"
        )
    return node


def _selected(selected, role):
    """The role's configure is selected (--tags); None: everything is."""
    return selected is None or selected.get(f"{role}_configure", True)


def read_command(plan, roles, selected, token, host="this host"):
    """One shell command for every precheck and probe of these roles (those whose configure is
    selected), each output after a line ``<token> <role> <precheck|probe>``; None when there is
    nothing to read. Each part runs in a subshell: one part's failure does not stop the rest."""
    parts = []
    for role in roles:
        node = _node(plan.get(role), role, host) if _selected(selected, role) else None
        if not node:
            continue
        for kind in ("precheck", "probe"):
            cmd = node.get(kind)
            if isinstance(cmd, dict):
                cmd = cmd.get("cmd")
            if cmd:
                parts.append(f"echo '{token} {role} {kind}'; ( {cmd}\n) 2>&1")
    return "; ".join(parts) + "; true" if parts else None


def parse(output, token):
    """{(role, kind): text} from read_command's output."""
    out, key = {}, None
    head = re.compile(r"^" + re.escape(token) + r" (\S+) (precheck|probe)$")
    for line in (output or "").splitlines():
        m = head.match(line)
        if m:
            key = (m.group(1), m.group(2))
            out[key] = ""
        elif key is not None:
            out[key] += line + "\n"
    return out


def prechecks(host, plan, roles, outputs):
    """Every precheck of these roles against the node's answers; raises NodeStepError naming the
    host and what the node holds (the first that fails)."""
    for role in roles:
        node = _node(plan.get(role), role, host) or {}
        pre = node.get("precheck")
        if pre and (role, "precheck") in outputs:
            CHECKS[pre["check"]](host, outputs[(role, "precheck")], **(pre.get("args") or {}))


def to_configure(plan, roles, outputs, selected=None, *, check_mode=False, host="this host"):
    """[(role, why)] of the roles whose configure has work on this host, in order: no node entry
    (always, as before), ``always``, a file of a role in ``after`` changed (``changed`` of that
    role, set by plan.pushed), or the probe said NEEDED. Roles whose configure is not selected
    are left out. In check mode a change the push would make counts as changed."""
    out = []
    for role in roles:
        if not _selected(selected, role):
            continue
        node = _node(plan.get(role), role, host)
        if node is None:
            out.append((role, "no node entry"))
            continue
        if node.get("always"):
            out.append((role, "every run on this host"))
            continue
        changed = [r for r in node.get("after", [role]) if (plan.get(r) or {}).get("changed")]
        if changed:
            out.append((role, f"{', '.join(changed)} changed" + (" (check mode)" if check_mode else "")))
            continue
        probe = outputs.get((role, "probe"))
        if node.get("probe") and (probe is None or NEEDED in probe):
            out.append((role, "the node needs it: " + (probe or "no answer").strip().replace("\n", "; ")))
    return out


def untouched(roles, outputs, configured):
    """({role: report}, [what to say]) from the probes of the roles whose configure does not
    run (not in configured): their XCM-REPORT and XCM-SAY lines."""
    reports, says = {}, []
    for role in roles:
        if role in configured:
            continue
        for line in (outputs.get((role, "probe")) or "").splitlines():
            if line.startswith(REPORT + " "):
                reports[role] = line[len(REPORT) + 1 :]
            elif line.startswith(SAY + " "):
                says.append(line[len(SAY) + 1 :])
    return reports, says
