# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""ovl_archive: write an xcluster overlay tar from the roles' push_files lists, on the
controller (docs: plugins/modules/ovl_archive.py).

Thin: the logic is in plugin_utils/ovl.py. Never uses the host's connection.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.xcluster.multus.plugins.plugin_utils import argspec, ovl

# The collection's root (plugins/action/ -> ../..): relative srcs are a role's files/.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _resolve(role, src):
    path = os.path.join(_ROOT, "roles", role, "files", src)
    if not os.path.isfile(path) and not os.path.isdir(path):
        raise ovl.push.PushError(f"{src!r} is not in {os.path.dirname(path)}; expected a file of role {role}")
    return path


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False  # controller only: no node is contacted

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        self._supports_async = False
        result = super().run(tmp, task_vars)
        host = (task_vars or {}).get("inventory_hostname", "localhost")
        try:  # the arguments are those of plugins/modules/ovl_archive.py's DOCUMENTATION
            args = argspec.validate(host, "ovl_archive", self._task.args)
        except argspec.ArgSpecError as e:
            raise AnsibleActionFail(str(e)) from None
        dest = args["dest"]
        try:
            per_host, indexes = {}, {}
            for host, item in args["hosts"].items():
                if not isinstance(item, dict) or "sources" not in item:
                    raise ovl.OvlError(
                        f"{host}: {item!r} is not {{sources, index}}; expected the host's lists"
                    )
                per_host[host] = ovl.collect(host, item["sources"], _resolve)
                if item.get("index") is not None:
                    indexes[host] = int(item["index"])
            per_host = ovl.at_boot(per_host, indexes, args["drop"], args["templates"])
            ovl.check_same(per_host)
            files, dirs = next(iter(per_host.values()))
            members = [i.name for i, _f in ovl.members(files, dirs)]
        except (ovl.OvlError, ValueError) as e:
            raise AnsibleActionFail(to_text(e)) from None
        result.update(files=sorted(f.dest for f in files), members=len(members), dest=dest)
        if self._task.check_mode:
            result["changed"] = True
            return result
        mtime = args["mtime"] if args["mtime"] is not None else int(time.time())
        fd, part = tempfile.mkstemp(prefix=".ovl-", suffix=".tar", dir=os.path.dirname(dest) or ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                ovl.write(fh, files, dirs, mtime)
            os.chmod(part, 0o600)  # it may hold secrets (kubeconfigs)
            os.replace(part, dest)
        except BaseException:
            if os.path.exists(part):
                os.unlink(part)
            raise
        h = hashlib.sha256()
        with open(dest, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        result.update(changed=True, size=os.path.getsize(dest), sha256=h.hexdigest())
        return result
