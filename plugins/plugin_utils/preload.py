# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The collection's Python, imported once in the controller's main process.

Ansible runs a task in a worker forked per host. A worker that templates one of this
collection's filters loads every filter file of the collection and what they import (netaddr,
jmespath, tarfile, urllib, the plugin_utils): ~90 ms of CPU per host and task, measured 0.55 s
per task at 16 hosts on 2 cores (a set_fact with `no_log: "{{ x | xcluster.multus.plan('secret') }}"`
took 0.75 s against 0.20 s without the filter). Modules already imported before the fork are
found in sys.modules and cost nothing. The linear and free strategies load an action plugin's
class in the main process before they fork its workers (to read BYPASS_HOST_LOOP), so the actions
that start the playbooks' plays (role_plan, role_install) call warm() when they are imported. The
same holds for what the actions parse from files that never change during a run: each module
stub's DOCUMENTATION (argspec.module_spec, ~7 ms per action and host) is parsed here once.
"""

from __future__ import annotations

import importlib
import pkgutil

from ansible_collections.xcluster.multus.plugins import filter as _filters
from ansible_collections.xcluster.multus.plugins import modules as _modules
from ansible_collections.xcluster.multus.plugins.plugin_utils import argspec


def warm():
    """Import every filter module of the collection and parse every module stub's argument spec
    (a no-op when they already are)."""
    for mod in pkgutil.iter_modules(_filters.__path__):
        importlib.import_module(f"{_filters.__name__}.{mod.name}")
    for mod in pkgutil.iter_modules(_modules.__path__):
        argspec.module_spec(mod.name)
