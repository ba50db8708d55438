# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A test aid (not part of the collection): task timestamps and a hook at a chosen task.

Enable it beside the normal output with
    ANSIBLE_CALLBACK_PLUGINS=tests/callback_plugins ANSIBLE_CALLBACKS_ENABLED=xcm_probe
- XCM_PROBE_LOG=FILE: at the end of the run, JSON written to FILE: every task in the order it
  started, {play, task, action, start, end, hosts: {host: status}} (times in seconds since the
  epoch; end = the last host's result; push_files tasks also push: {host: [bytes_transferred,
  round_trips, transferred]}), plus the run's start and end.
- XCM_PROBE_HOOK_TASK=TEXT and XCM_PROBE_HOOK_CMD=COMMAND: when the first task whose name
  contains TEXT starts (before any host runs it), COMMAND runs through /bin/sh and must succeed.
  Callbacks run in ansible-playbook's main process, so the hook is done before the task's
  workers start: a way to break something at an exact point of a run (bench/ and the fault
  tests in tests/integration/ use it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: xcm_probe
type: aggregate
short_description: task timestamps and a hook at a chosen task (xcluster.multus tests)
description: Writes task start/end times to $XCM_PROBE_LOG; runs $XCM_PROBE_HOOK_CMD when the
  first task whose name contains $XCM_PROBE_HOOK_TASK starts.
requirements: [enable in callbacks_enabled]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "xcm_probe"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._log = os.environ.get("XCM_PROBE_LOG")
        self._hook_task = os.environ.get("XCM_PROBE_HOOK_TASK")
        self._hook_cmd = os.environ.get("XCM_PROBE_HOOK_CMD")
        self._tasks = []
        self._play = None
        self._start = time.time()

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()

    def _task_start(self, task):
        name = task.get_name()
        now = time.time()
        entry = {"play": self._play, "task": name, "action": task.action, "start": now, "end": None}
        self._tasks.append({**entry, "hosts": {}})
        if self._hook_task and self._hook_cmd and self._hook_task in name:
            self._hook_task = None  # once
            subprocess.run(["/bin/sh", "-c", self._hook_cmd], check=True)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task)

    def _result(self, result, status):
        if self._tasks:
            t = self._tasks[-1]
            t["end"] = time.time()
            host = result._host.get_name()
            t["hosts"][host] = status
            r = result._result
            if "bytes_transferred" in r:  # xcluster.multus.push_files
                t.setdefault("push", {})[host] = [
                    r["bytes_transferred"],
                    r.get("round_trips"),
                    r.get("transferred"),
                ]

    def v2_runner_on_ok(self, result):
        self._result(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        if not self._log:
            return
        with open(self._log, "w") as f:
            json.dump({"start": self._start, "end": time.time(), "tasks": self._tasks}, f)
