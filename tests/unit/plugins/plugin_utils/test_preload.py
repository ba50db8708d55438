# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""plugin_utils/preload.py: importing the actions that start the playbooks' plays (what the
linear strategy does in the controller's main process before it forks the workers) leaves every
filter module and every module stub's argument spec loaded, so a worker
forked afterwards finds them and loads nothing again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))

PROBE = r"""
import json, sys, importlib
before = set(sys.modules)
importlib.import_module(sys.argv[1])
from ansible_collections.xcluster.multus.plugins.plugin_utils import argspec
out = {
    "filters": sorted(m.rsplit(".", 1)[1] for m in set(sys.modules) - before
                      if m.startswith("ansible_collections.xcluster.multus.plugins.filter.")),
    "specs": sorted(argspec._CACHE),
}
print(json.dumps(out))
"""


def _loaded(module):
    env = dict(
        os.environ,
        PYTHONPATH=os.path.join(REPO, "collections"),
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
    )
    p = subprocess.run(
        [sys.executable, "-c", PROBE, module], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


def _names(sub):
    d = os.path.join(REPO, "plugins", sub)
    return sorted(f[:-3] for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_"))


def test_role_plan_import_loads_filters_and_specs():
    got = _loaded("ansible_collections.xcluster.multus.plugins.action.role_plan")
    assert got["filters"] == _names("filter")
    assert got["specs"] == _names("modules")


def test_role_install_import_loads_filters_and_specs():
    got = _loaded("ansible_collections.xcluster.multus.plugins.action.role_install")
    assert got["filters"] == _names("filter")
    assert got["specs"] == _names("modules")
