# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""push_files: put files on a node without Python (docs: plugins/modules/push_files.py).

Thin: the decisions are in plugin_utils/push.py. This file only talks to the connection:
one command reads the node, put_file uploads (one tar, or single files), one command
finalizes (and writes the node's records of what it installed: the record rule in
plugin_utils/push.py). Nothing is ever sent to the node as a module.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible_collections.xcluster.multus.plugins.plugin_utils import argspec, artifacts, push


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        self._supports_async = False
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", self._play_context.remote_addr)
        return self._push(host, self._task.args, result)

    def _push(self, host, raw, result, before=None):
        """The push of raw (push_files' arguments) into result; also role_install's push.
        before: (cmd, check), another read-only command for the same round trip as the node's
        state read (role_install's prechecks and probes); check(its output) runs before
        anything is planned or uploaded, and may raise."""
        try:  # the arguments are those of plugins/modules/push_files.py's DOCUMENTATION
            args = argspec.validate(host, "push_files", raw)
        except argspec.ArgSpecError as e:
            raise AnsibleActionFail(str(e)) from None
        upload_dir, batch, compress = args["upload_dir"], args["batch"], args["compress"]
        if not upload_dir.startswith("/"):
            raise AnsibleActionFail(f"{host}: upload_dir: {upload_dir!r} is not an absolute path")
        state_dir = args["state_dir"]
        if state_dir is None:
            state_dir = ""
        if not isinstance(state_dir, str) or (state_dir and not push.is_plain_abs(state_dir)):
            raise AnsibleActionFail(
                f"{host}: state_dir: {state_dir!r} is not an absolute path; expected a directory"
                " on the node for push_files' records, or '' for none"
            )

        try:
            files, dirs = push.normalize(
                host,
                raw.get("files", []),  # as given: normalize refuses what the types would convert
                raw.get("directories"),  # (an integer mode); the types above are checked
                find_source=self._find_source,
                cache_dir=self._sha_dir(),
            )
        except push.PushError as e:
            raise AnsibleActionFail(str(e)) from None
        if not files and not dirs:
            if before:
                before[1](self._read(before[0], host))
            result.update(push.report(push.Plan()))
            return result

        user = re.sub(r"[^A-Za-z0-9_.-]", "_", str(self._get_remote_user() or "unknown"))
        globs = push.leftover_globs(files, dirs, upload_dir, user)
        trips = 1
        censor = any(f.secret for f in files)
        state_cmd = push.state_command(files, dirs, globs, state_dir)
        if before:  # one round trip for both reads when the command stays short enough
            mark = "::xcm-state-" + secrets.token_hex(8)
            both = push.read_first(before[0], state_cmd, mark)
            if both is None:
                before[1](self._read(before[0], host))
                out = self._run_cmd(state_cmd, censor, host, "read")
                trips += 1
            else:
                try:
                    first, out = push.split_first(host, self._run_cmd(both, censor, host, "read"), mark)
                except push.PushError as e:
                    raise AnsibleActionFail(str(e)) from None
                before[1](first)
        else:
            out = self._run_cmd(state_cmd, censor, host, "read")
        try:
            state, leftovers = push.parse_state(host, out, files, dirs)
            plan = push.plan(host, files, dirs, state, leftovers, records=bool(state_dir))
        except push.PushError as e:
            raise AnsibleActionFail(str(e)) from None

        texts = {}
        want_diff = self._task.diff or self._play_context.diff
        if want_diff:  # before anything changes: the node's old content of text files
            after, fetch = push.diff_texts(plan, C.MAX_FILE_SIZE_FOR_DIFF)
            old = {}
            if fetch:
                token = "::xcm-" + secrets.token_hex(8)
                out = self._run_cmd(push.fetch_command(fetch, token), False, host, "diff read")
                trips += 1
                try:
                    old = push.parse_fetch(host, out, fetch, token)
                except push.PushError as e:
                    raise AnsibleActionFail(str(e)) from None
            texts = {d: (old.get(d), new) for d, new in after.items()}

        sent, transport = 0, None
        # plan.record alone (files right, their records missing or stale): one more command
        # that writes the records, no change
        if (plan.changed or plan.record) and not self._task.check_mode:
            local_tmp = tempfile.mkdtemp(prefix="xcm-push-", dir=C.DEFAULT_LOCAL_TMP)
            uploads, extra = [], []
            try:
                token = secrets.token_hex(8)
                base = f"{upload_dir.rstrip('/')}/{push.UPLOAD_PREFIX}{user}.{token}"
                if any(f.secret for f in plan.transfer):
                    # secret content: upload into a directory only the login user can enter
                    # (sftp/scp create the upload with the local file's mode, piped's dd with
                    # the umask): one more round trip, only when secrets move
                    private = base + ".d"
                    mk = f"umask 077 && mkdir {push.q(private)} && echo {push.OK_MARK}"
                    self._run_cmd(mk, False, host, "private upload directory", sudoable=False)
                    trips += 1
                    extra.append(private)
                    base = private + "/u"
                if len(plan.transfer) > 1 and batch:
                    transport = "tar"
                    parts = push.tar_parts(plan.transfer)  # the binaries apart: one tar for every host
                    for k, part in enumerate(parts):
                        last = k == len(parts) - 1
                        local, size = push.shared_tar(
                            C.DEFAULT_LOCAL_TMP,
                            [plan.transfer[i] for i in part],
                            compress=compress,
                            extra=push.record_members(plan, state_dir) if last else (),
                            indexes=part,
                        )
                        remote = f"{base}.{k}.tar"
                        uploads.append((remote, part))
                        self._put(
                            local, remote, host, size=size, uploaded=uploads + extra, upload_dir=upload_dir
                        )
                        sent += size
                        trips += 1
                elif plan.transfer:
                    transport = "files"
                    for i, f in enumerate(plan.transfer):
                        local = f.src
                        if f.content is not None:
                            local = os.path.join(local_tmp, f"c{i}")
                            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                            with open(fd, "wb") as fh:
                                fh.write(f.content)
                        uploads.append((f"{base}.{i}", i))
                        self._put(
                            local,
                            f"{base}.{i}",
                            host,
                            size=f.size,
                            uploaded=uploads + extra,
                            upload_dir=upload_dir,
                        )
                        sent += f.size
                        trips += 1
            except AnsibleActionFail:
                raise  # _put cleaned what it could and said why
            except BaseException:
                if uploads or extra:  # best effort; leftovers are cleaned by the next run anyway
                    paths = [u[0] for u in uploads] + extra
                    with contextlib.suppress(Exception):
                        self._low_level_execute_command("rm -rf " + " ".join(push.q(p) for p in paths))
                raise
            finally:
                shutil.rmtree(local_tmp, ignore_errors=True)
            zipped = compress and transport == "tar"
            cmd = push.finalize_command(
                plan,
                uploads,
                tar_compressed=zipped,
                extra_cleanup=extra,
                state_dir=state_dir,
                records_in_tar=True,
            )
            self._run_cmd(cmd, False, host, "finalize")
            trips += 1

        result.update(push.report(plan, bytes_transferred=sent, round_trips=trips, transport=transport))
        if want_diff:
            result["diff"] = push.diff(plan, texts)
        return result

    @staticmethod
    def _sha_dir():
        """Where the sha256 of source files is kept across runs (artifacts.sha256_file): a rerun
        does not read 125 MiB of binaries again; Ansible's per-run temp when the cache is not
        writable."""
        return artifacts.sha256_dir() or C.DEFAULT_LOCAL_TMP

    def _find_source(self, src):
        try:
            return self._find_needle("files", src)
        except AnsibleError as e:
            raise push.PushError(f"{src!r} was not found on the controller: {e}") from None

    def _put(self, local, remote, host, *, size, uploaded, upload_dir):
        """One upload. When it fails: remove this run's uploads at once if the connection still
        works (else the next run does), and say why (push.upload_failure)."""
        try:
            self._connection.put_file(local, remote)
            return
        except AnsibleError as e:
            error = str(e)
        paths = [u[0] if isinstance(u, tuple) else u for u in uploaded]
        cleaned, free, after = False, None, ""
        try:
            res = self._low_level_execute_command(push.cleanup_command(paths, upload_dir), sudoable=False)
            cleaned = res.get("rc") == 0 and push.OK_MARK in res.get("stdout", "")
            free = push.free_kib(res.get("stdout", ""))
            after = "" if cleaned else res.get("stderr", "")
        except Exception as e:  # noqa: BLE001 - the connection is gone: the next run cleans
            after = str(e)
        raise AnsibleActionFail(
            push.upload_failure(host, remote, error, size, cleaned=cleaned, free=free, after=after)
        )

    def _read(self, cmd, host):
        """A read-only command of another step (role_install's prechecks and probes), alone in its
        round trip; its output."""
        return self._run_cmd(cmd, False, host, "read", ok_mark=False)

    def _run_cmd(self, cmd, censor, host, what, *, sudoable=True, ok_mark=True):
        """One round trip. censor: hide the node's answer even at -vvv (secret checksums).
        ok_mark: the command ends by printing push.OK_MARK (every command of push.py does)."""
        # the ssh connection logs (rc, stdout, stderr) at -vvv unless its play context says no_log
        pc = getattr(self._connection, "_play_context", None) or self._play_context
        saved = pc.no_log
        pc.no_log = saved or censor
        try:
            res = self._low_level_execute_command(cmd, sudoable=sudoable)
        finally:
            pc.no_log = saved
        out = res.get("stdout", "")
        if res.get("rc") != 0 or (ok_mark and push.OK_MARK not in out):
            detail = res.get("stderr", "") + ("(stdout hidden: secret items)" if censor else out)
            detail = detail[-2000:]
            rc = res.get("rc")
            why = push.command_failure_cause(detail)
            raise AnsibleActionFail(f"{host}: the {what} step failed on the node{why} (rc={rc}): {detail}")
        return out
