# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""artifact: find or download, verify and unpack a release archive on the controller
(docs: plugins/modules/artifact.py).

Thin: the logic is in plugin_utils/artifacts.py. Runs entirely on the controller and never
uses the host's connection (``_requires_connection = False``), so it is the same in check
mode: it changes nothing on any node.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.xcluster.multus.plugins.plugin_utils import argspec, artifacts


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False  # controller only: the node is never contacted

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True  # reads/fills the controller's cache only
        self._supports_async = False
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", "localhost")
        try:  # the arguments are those of plugins/modules/artifact.py's DOCUMENTATION
            args = argspec.validate(
                host, "artifact", self._task.args, required_one_of=[["archive", "artifact"]]
            )
        except argspec.ArgSpecError as e:
            raise AnsibleActionFail(str(e)) from None
        env = os.environ
        try:
            out = artifacts.resolve(
                archive=args["archive"],
                artifact=args["artifact"],
                version=args["version"],
                arch=args["arch"],
                checksum=args["checksum"],
                url=args["url"],
                dirs=args["dirs"],
                download_ok=args["download"],
                unpack_ok=args["unpack"],
                home=os.path.expanduser("~"),
                archive_env=env.get("ARCHIVE") or None,
                cache=args["cache_dir"] or artifacts.cache_root(env),
                timeout=args["timeout"],
            )
        except artifacts.ArtifactError as e:
            raise AnsibleActionFail(f"{host}: {to_text(e)}") from None
        result["warnings"] = out.pop("warnings")
        result.update(out)
        result["changed"] = False  # nodes are untouched; the cache is the controller's own
        return result
