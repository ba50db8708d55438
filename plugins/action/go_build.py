# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""go_build: build Go binaries from a user's clone on the controller, once per clone content
(docs: plugins/modules/go_build.py).

Thin: the logic is in plugin_utils/gobuild.py. Runs entirely on the controller and never
uses the host's connection (``_requires_connection = False``).
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.xcluster.multus.plugins.plugin_utils import argspec, gobuild


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False  # controller only: the node is never contacted

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True  # builds into the controller's cache only
        self._supports_async = False
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", "localhost")
        try:  # the arguments are those of plugins/modules/go_build.py's DOCUMENTATION
            args = argspec.validate(host, "go_build", self._task.args)
        except argspec.ArgSpecError as e:
            raise AnsibleActionFail(str(e)) from None
        src = args["src"]
        try:
            out = gobuild.build(
                name=args["name"],
                src=os.path.expanduser(src) if src else src,
                recipe=args["recipe"],
                go=args["go"],
                arch=args["arch"],
                env={k: to_text(v) for k, v in args["env"].items()},
                exclude=args["exclude"],
                expect=args["expect"],
                force=args["force"],
                cache=args["cache_dir"],
            )
        except gobuild.BuildError as e:
            raise AnsibleActionFail(f"{host}: {to_text(e)}") from None
        result.update(out)
        # Nodes are untouched; a build is reported as a change of the controller's cache.
        result["changed"] = out["built"]
        return result
