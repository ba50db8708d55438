# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""role_plan: the roles' preflight and rendering for one host, or their checks across the play
(docs: plugins/modules/role_plan.py).

Thin: reads each role's defaults/main.yml, vars/main.yml and meta/argument_specs.yml, templates
the role's variables with the host's, and hands them to plugins/plugin_utils/roleplan.py (the
spec check, the cross-field checks, the archive once per run, the rendering). Controller only
(``_requires_connection = False``): the same in check mode, no node is contacted.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible_collections.xcluster.multus.plugins.plugin_utils import (
    argspec,
    artifacts,
    fastyaml,
    plan,
    preload,
    roleplan,
)

CREDENTIALS_GROUP = "xcluster_multus_credentials"
COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
preload.warm()  # in the main process, before the workers fork (plugin_utils/preload.py)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False  # controller only: the node is never contacted

    def _load(self, role, name):
        """A role's defaults or vars, trusted as templates (as include_role loads them). Read
        only: unsafe=True skips the loader's deep copy of what it parsed (most of this action's
        time per host; nothing here changes the loaded data)."""
        path = os.path.join(COLLECTION, "roles", role, name)
        if not os.path.isfile(path):
            return {}
        return self._loader.load_from_file(path, trusted_as_template=True, unsafe=True) or {}

    @staticmethod
    def _known(role):
        if role not in roleplan.ROLES:
            raise roleplan.RolePlanError(
                f"role {role!r} has no plan in plugins/plugin_utils/roleplan.py; expected one of "
                f"{sorted(roleplan.ROLES)}"
            )

    def _role(self, role):
        """(defaults, vars, argument spec of the entry point preflight) of a role, loaded once."""
        self._known(role)
        memo = self.__dict__.setdefault("_xcm_roles", {})
        if role not in memo:
            spec_path = os.path.join(COLLECTION, "roles", role, "meta", "argument_specs.yml")
            with open(spec_path, encoding="utf-8") as f:  # plain data, never templated
                specs = fastyaml.load(f)
            memo[role] = (
                self._load(role, "defaults/main.yml"),
                self._load(role, "vars/main.yml"),
                roleplan.role_spec(specs, role),
            )
        return memo[role]

    def _switches(self, names, task_vars):
        """{role: the host's xcluster_multus_<role>, templated (default auto)}."""
        out = {}
        for name in names:
            var = f"xcluster_multus_{name}"
            out[name] = self._templar.template(task_vars[var]) if var in task_vars else "auto"
        return out

    def _host(self, roles, host, task_vars):
        plan = dict(task_vars.get("xcluster_multus_plan") or {})
        facts, seen, warnings, credentials = {}, {}, [], []
        for role in roles:
            defaults, role_vars, spec = self._role(role)
            host_vars = dict(seen)
            host_vars.update(task_vars)  # the host's variables win over every role's defaults
            raw = roleplan.layered(defaults, host_vars, role_vars)
            templar = self._templar.copy_with_new_env(available_variables={**host_vars, **raw})
            v = templar.template(raw)
            v.update(roleplan.validate(host, role, spec, v))  # booleans as the spec reads them
            found = {
                "role_dir": os.path.join(COLLECTION, "roles", role),
                "groups": task_vars.get("groups") or {},
            }
            r = roleplan.ROLES[role]
            if r.prepare:
                found.update(r.prepare(host, v))
            if r.obtain:
                ctx = roleplan.Context(
                    env=dict(os.environ),
                    home=os.path.expanduser("~"),
                    host=host,
                    all_hosts=tuple((task_vars.get("groups") or {}).get("all") or ()),
                    task=self._task._uuid,
                )
                found.update(r.obtain(host, v, ctx))
                warnings += found.pop("warnings", [])
            for name in r.templates:  # the role's own templates, with its variables
                with open(os.path.join(found["role_dir"], "templates", name), encoding="utf-8") as f:
                    text = trust_as_template(f.read())
                found.setdefault("templates", {})[name] = templar.copy_with_new_env(
                    available_variables={**host_vars, **v}
                ).template(text)
            if r.archive:
                name, prefix = r.archive
                try:
                    found["artifact"] = roleplan.resolve_once(
                        name,
                        roleplan.archive_request(v, prefix, host),
                        env=os.environ,
                        home=os.path.expanduser("~"),
                    )
                except artifacts.ArtifactError as e:
                    raise roleplan.RolePlanError(f"{host}: {to_text(e)}") from None
            entry, role_facts = roleplan.plan(role, host, v, found)
            if v.get(f"{role}_serviceaccount"):  # its entry point credentials has work
                credentials.append(role)
            plan[role] = entry
            facts.update(role_facts)
            seen.update({k: v[k] for k in defaults})  # visible to the next roles, as include_role public
        facts["xcluster_multus_plan"] = plan
        return facts, warnings, credentials

    def _play(self, roles, task_vars, nad_check):
        hostvars = task_vars["hostvars"]
        hosts = task_vars.get("ansible_play_hosts") or [task_vars["inventory_hostname"]]
        if nad_check != "none":  # over each host's whole plan (every role's preflight has run)
            for h in hosts:
                hv = hostvars[h]
                if "_multus_nad_check" in hv and "multus" in (hv.get("xcluster_multus_plan") or {}):
                    try:
                        roleplan.nad_check(
                            h, hv["xcluster_multus_plan"], hv["_multus_nad_check"], nad_check == "base"
                        )
                    except plan.PlanError as e:
                        raise roleplan.RolePlanError(str(e)) from None
        for role in roles:
            r = roleplan.ROLES.get(role)
            if r is None or r.play is None:
                continue
            facts = {}
            for h in hosts:  # the hosts that have this role
                hv = hostvars[h]
                if all(f in hv for f in r.play_facts):
                    facts[h] = {f: hv[f] for f in r.play_facts}
            roleplan.play_check(role, facts)

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True  # the controller's cache only
        self._supports_async = False
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", "localhost")
        try:  # the arguments are those of plugins/modules/role_plan.py's DOCUMENTATION
            args = argspec.validate(
                host,
                "role_plan",
                self._task.args,
                required_one_of=[["roles", "registry"]],
                mutually_exclusive=[["roles", "registry"]],
            )
        except argspec.ArgSpecError as e:
            raise AnsibleActionFail(str(e)) from None
        if args["registry"] is not None:  # the roles this host gets: the switches xcluster_multus_<role>
            registry = args["registry"]
            try:
                switches = args["switches"]
                if switches is None:  # as the host's variables give them (default auto)
                    switches = self._switches(plan.role_names(registry), task_vars)
                result["host_roles"] = plan.host_roles(registry, switches, host)
            except plan.PlanError as e:
                raise AnsibleActionFail(to_text(e)) from None
            roles = list(result["host_roles"])
            # what the playbooks read after the preflight, computed here once per host
            result["switches"] = switches
            result["tagged"] = plan.tagged(
                roles, task_vars.get("ansible_run_tags"), task_vars.get("ansible_skip_tags")
            )
            result["registry"] = [
                {k: r[k] for k in ("name", "not_installed", "credentials") if k in r} for r in registry
            ]
        else:
            roles = list(dict.fromkeys(args["roles"]))
        if args["unknown"] == "skip":
            roles = [r for r in roles if r in roleplan.ROLES]
        try:
            for role in roles:  # every role is known before anything runs
                self._known(role)
            if args["scope"] == "play":
                self._play(roles, task_vars, args["nad_check"])
            else:
                facts, warnings, result["credentials"] = self._host(roles, host, task_vars)
                if result["credentials"] and args["registry"] is not None:  # site.yml's credentials play
                    result["add_group"], result["parent_groups"] = CREDENTIALS_GROUP, []
                facts[args["fact"]] = facts.pop("xcluster_multus_plan")
                result["ansible_facts"] = facts
                if warnings:
                    result["warnings"] = warnings
                # a kubeconfig among the files: the result is hidden (errors, raised above, are not)
                if any((facts[args["fact"]].get(r) or {}).get("secrets") for r in roles):
                    result["_ansible_no_log"] = True
        except roleplan.RolePlanError as e:
            raise AnsibleActionFail(to_text(e)) from None
        result["roles"] = roles
        result["changed"] = False  # nodes are untouched
        return result
