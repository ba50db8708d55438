# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""role_install: one host's install from the contract (docs: plugins/modules/role_install.py).

Thin: one read of the node for the roles' prechecks and probes (plugin_utils/nodestep.py),
then push_files' push of every role's files (plugins/action/push_files.py, the same code), then
the contract updated (plugin_utils/plan.py) and the roles whose configure has work named.
Nothing is ever sent to the node as a module.
"""

from __future__ import annotations

import secrets

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible_collections.xcluster.multus.plugins.action.push_files import ActionModule as PushFiles
from ansible_collections.xcluster.multus.plugins.plugin_utils import argspec, nodestep, plan, preload

preload.warm()  # in the main process, before the workers fork (plugin_utils/preload.py)


class ActionModule(PushFiles):
    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        self._supports_async = False
        result = super(PushFiles, self).run(tmp, task_vars)  # ActionBase's, not push_files' run
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", self._play_context.remote_addr)
        try:  # the arguments are those of plugins/modules/role_install.py's DOCUMENTATION
            args = argspec.validate(host, "role_install", self._task.args)
        except argspec.ArgSpecError as e:
            raise AnsibleActionFail(str(e)) from None
        contract = task_vars.get("xcluster_multus_plan")
        if not isinstance(contract, dict):
            raise AnsibleActionFail(
                f"{host}: xcluster_multus_plan is {contract!r}; expected the contract the roles' preflight "
                "sets (playbooks/tasks/preflight.yml, or each role's entry point files)"
            )
        roles, selected = args["roles"], args["selected"]
        try:
            items = plan.push_items(contract, roles, selected, host)
            token = "::xcm-node-" + secrets.token_hex(8)
            cmd = nodestep.read_command(contract, roles, selected, token, host)
            outputs = {}

            def check(out):  # the node's answers: a failed precheck stops the host before the push
                outputs.update(nodestep.parse(out, token))
                nodestep.prechecks(host, contract, roles, outputs)

            if items["files"] or items["directories"]:
                raw = {"files": items["files"], "directories": items["directories"]}
                if args["state_dir"] is not None:
                    raw["state_dir"] = args["state_dir"]
                # the read (read-only: also in check mode) in the push's own first round trip
                self._push(host, raw, result, before=(cmd, check) if cmd else None)
            elif cmd:
                check(self._read(cmd, host))
            updated = plan.pushed(contract, result if "changed_files" in result else [], roles, host)
            work = nodestep.to_configure(
                updated, roles, outputs, selected, check_mode=self._task.check_mode, host=host
            )
            reports, says = nodestep.untouched(roles, outputs, [r for r, _why in work])
            for role, report in reports.items():
                updated = plan.note(updated, role, report=report, host=host)
        except (plan.PlanError, nodestep.NodeStepError) as e:
            raise AnsibleActionFail(to_text(e)) from None
        if says:
            result.setdefault("warnings", []).extend(says)
        result["plan"] = updated
        result["plan_changed"] = bool(result.get("changed_files") or reports)  # or a report from a probe
        result["configure"] = [role for role, _why in work]
        result["configure_why"] = {r: why[:300] for r, why in work}
        result["install_changed"] = bool(result.get("changed"))
        if args["group"] and (result["plan_changed"] or work):  # site.yml's configure play
            result["add_group"], result["parent_groups"] = args["group"], []
        if items["secret"]:  # a kubeconfig among the files: the result is hidden
            result["_ansible_no_log"] = True
        return result
