# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Python-less SSH nodes in network namespaces, for the push_files tests and bench.

A minimal stand-in for the shared lab (tests/lab), self-contained so that the push_files
tests need nothing else: a controller namespace ``<name>-c`` with a bridge at
198.18.254.254/24 and nodes ``<name>-<k>`` at 198.18.254.<k> (network rule: only addresses
inside namespaces created here). Ansible runs inside the controller namespace
(``ip netns exec``), so nothing is added to the host's own network.

Each node: dropbear in its own mount namespace where /bin/sh is busybox (whose applets
come before PATH: sha256sum, stat, tar, mv ... are busybox's, as on xcluster), every
python binary is covered by /dev/null, root's shell is /bin/sh, /root, /home and /tmp are
private directories under the work dir (visible from the host for assertions), and a
non-root user ``xcmuser`` may ``sudo`` without password (for become tests; when sudo is
installed on the host).

Teardown kills exactly the processes inside the namespaces made here (``ip netns pids``),
then deletes the namespaces. What a killed run left (namespaces named after a process that
is gone) is removed by the next ``up``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

NET = "198.18.254"
CTL_ADDR = f"{NET}.254"
USER = "xcmuser"
UID = 4242
TOOLS = ("ip", "dropbear", "dropbearkey", "busybox", "ssh-keygen", "unshare")  # sudo: optional


def missing_tools():
    return [t for t in TOOLS if shutil.which(t) is None] + (
        [] if os.path.exists("/usr/lib/sftp-server") else ["/usr/lib/sftp-server (openssh-sftp-server)"]
    )


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


class Target:
    def __init__(self, workdir, nodes=1, name=None):
        self.work = os.path.abspath(workdir)
        self.n = nodes
        self.name = name or f"xpf{os.getpid()}"
        self.ctl = f"{self.name}-c"
        self.nodes = [f"{self.name}-{k}" for k in range(1, nodes + 1)]
        self.pids = {}
        self.key = os.path.join(self.work, "id_ed25519")

    # ------------------------------------------------------------ up
    def addr(self, k):
        return f"{NET}.{k}"

    def node_dir(self, k):
        return os.path.join(self.work, f"node{k}")

    def up(self):
        if os.geteuid() != 0:
            raise RuntimeError("root is needed for network namespaces")
        reap_stale()
        miss = missing_tools()
        if miss:
            raise RuntimeError(f"missing tools: {', '.join(miss)}")
        os.makedirs(self.work, exist_ok=True)
        self._save()
        try:
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key)
            sh("ip", "netns", "add", self.ctl)
            ctl = ("ip", "-n", self.ctl)
            sh(*ctl, "link", "set", "lo", "up")
            sh(*ctl, "link", "add", "name", "br0", "type", "bridge")
            sh(*ctl, "addr", "add", f"{CTL_ADDR}/24", "dev", "br0")
            sh(*ctl, "link", "set", "br0", "up")
            for k in range(1, self.n + 1):
                self._node_up(k)
            self._save()
            for k in range(1, self.n + 1):
                self._wait_ssh(k)
        except BaseException:
            self.down()
            raise
        return self

    def _node_up(self, k):
        ns, d = self.nodes[k - 1], self.node_dir(k)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        veth = ("link", "add", "name", f"v{k}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.ctl, *veth)
        sh("ip", "-n", self.ctl, "link", "set", f"v{k}", "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{self.addr(k)}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        for sub in ("root/.ssh", f"home/{USER}/.ssh", "tmp", "etc"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, "tmp"), 0o1777)
        os.chmod(os.path.join(d, "root"), 0o700)
        with open(self.key + ".pub") as f:
            pub = f.read()
        for home, uid in (("root", 0), (f"home/{USER}", UID)):
            ak = os.path.join(d, home, ".ssh", "authorized_keys")
            with open(ak, "w") as f:
                f.write(pub)
            os.chmod(ak, 0o600)
            os.chmod(os.path.dirname(ak), 0o700)
            for p in (os.path.join(d, home), os.path.dirname(ak), ak):
                os.chown(p, uid, uid)
        etc = os.path.join(d, "etc")
        with open("/etc/passwd") as f:
            pw = [ln if not ln.startswith("root:") else "root:x:0:0:root:/root:/bin/sh\n" for ln in f]
        pw.append(f"{USER}:x:{UID}:{UID}:push test:/home/{USER}:/bin/sh\n")
        with open(os.path.join(etc, "passwd"), "w") as f:
            f.writelines(pw)
        shutil.copy("/etc/group", os.path.join(etc, "group"))
        with open(os.path.join(etc, "group"), "a") as f:
            f.write(f"{USER}:x:{UID}:\n")
        shutil.copy("/etc/shadow", os.path.join(etc, "shadow"))
        with open(os.path.join(etc, "shadow"), "a") as f:
            f.write(f"{USER}:*:19000:0:99999:7:::\n")
        sudoers = os.path.join(etc, "sudoers")
        with open(sudoers, "w") as f:
            f.write(f"Defaults !fqdn\nroot ALL=(ALL:ALL) ALL\n{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        os.chmod(sudoers, 0o440)
        with open(os.path.join(etc, "hostname"), "w") as f:
            f.write(f"vm-{k:03d}\n")
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write(f"127.0.0.1 localhost vm-{k:03d}\n")
        sh("dropbearkey", "-t", "ed25519", "-f", os.path.join(d, "hostkey"))
        # the node's directory is seen at /mnt first: later binds and dropbear use it from there
        binds = [(d, "/mnt"), ("/mnt/root", "/root"), ("/mnt/home", "/home"), ("/mnt/tmp", "/tmp")]
        etc_files = ("passwd", "group", "shadow", "hosts") + (
            ("sudoers",) if os.path.exists("/etc/sudoers") else ()
        )
        binds += [(f"/mnt/etc/{n}", f"/etc/{n}") for n in etc_files]
        pythons = sorted(
            {os.path.realpath(p) for p in glob.glob("/usr/bin/python*") + glob.glob("/usr/local/bin/python*")}
        )
        script = [f"hostname vm-{k:03d}", "set -e"]
        script += [f"mount --bind '{a}' '{b}'" for a, b in binds]
        script += [f"mount --bind /dev/null '{p}'" for p in pythons if os.path.isfile(p)]
        # /bin/sh -> dash: make dash busybox (applets first, as on xcluster's busybox)
        script.append(f"mount --bind '{shutil.which('busybox')}' \"$(readlink -f /bin/sh)\"")
        script.append(
            f"exec dropbear -F -E -s -j -k -p {self.addr(k)}:22 -P /tmp/dropbear.pid -r /mnt/hostkey"
        )
        with open(os.path.join(d, "dropbear.log"), "w") as log:
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, "unshare", "--mount", "--uts", "--propagation", "private", "--",
                 "/bin/sh", "-c", "\n".join(script)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pids[ns] = p.pid

    def _wait_ssh(self, k, timeout=15):
        end = time.time() + timeout
        while True:
            r = self.ssh(k, "echo ok", check=False)
            if r.returncode == 0 and "ok" in r.stdout:
                return
            if time.time() > end:
                with open(os.path.join(self.node_dir(k), "dropbear.log")) as f:
                    log = f.read()
                raise RuntimeError(f"node {k} does not answer ssh: {r.stderr}\n{log}")
            time.sleep(0.2)

    # ------------------------------------------------------------ use
    def ssh_opts(self):
        return [
            "-i", self.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
        ]  # fmt: skip

    def ssh(self, k, cmd, user="root", check=True, timeout=60):
        args = ["ip", "netns", "exec", self.ctl, "ssh", *self.ssh_opts(), f"{user}@{self.addr(k)}", cmd]
        r = subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"ssh {k} {cmd!r}: rc={r.returncode} {r.stderr}")
        return r

    def inventory(self, path, user="root", transfer="sftp", extra=None):
        """An INI inventory of the nodes (vm-001 ...), ssh from the controller namespace."""
        common = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        lines = ["[xcluster]"]
        for k in range(1, self.n + 1):
            lines.append(
                f"vm-{k:03d} ansible_host={self.addr(k)} ansible_user={user} "
                f"ansible_ssh_private_key_file={self.key} ansible_ssh_transfer_method={transfer} "
                f"ansible_ssh_common_args='{common}' "
                + " ".join(f"{a}={b}" for a, b in (extra or {}).items())
            )
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def wrap(self, argv):
        """argv run inside the controller namespace."""
        return ["ip", "netns", "exec", self.ctl, *argv]

    def node_path(self, k, path):
        """Host-side view of a node path under its private /tmp, /root or /home."""
        for top in ("/tmp", "/root", "/home"):
            if path == top or path.startswith(top + "/"):
                return os.path.join(self.node_dir(k), top[1:], path[len(top) + 1 :])
        raise ValueError(f"{path} is not in a node-private directory")

    def kill_controller(self):
        """The controller dies at once: every process in the controller namespace (ansible, its
        detached workers, ssh clients, the ssh mux master) is stopped first, so that none can
        react to another's death (retry, clean up), then killed. Returns the pids."""
        killed = []
        for _ in range(50):
            pids = [int(p) for p in sh("ip", "netns", "pids", self.ctl).stdout.split()]
            if not pids:
                break
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            killed += pids
            time.sleep(0.05)
        return killed

    # ------------------------------------------------------------ down
    def _save(self):
        with open(os.path.join(self.work, "target.json"), "w") as f:
            json.dump({"name": self.name, "n": self.n, "pids": self.pids}, f)

    def down(self):
        """Kill the processes inside our namespaces (by namespace, recorded names), delete them."""
        for ns in [*self.nodes, self.ctl]:
            if sh("ip", "netns", "pids", ns, check=False).returncode != 0:
                continue
            for _ in range(50):
                pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()]
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
            sh("ip", "netns", "del", ns, check=False)
        for pid in self.pids.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    @classmethod
    def load(cls, workdir):
        with open(os.path.join(workdir, "target.json")) as f:
            d = json.load(f)
        t = cls(workdir, d["n"], d["name"])
        t.pids = d["pids"]
        return t


def reap_stale():
    """Remove what a killed run left: our namespaces (xpf<pid>-c, xpf<pid>-<k>, names made only
    here) whose creating process is gone, and the processes inside them."""
    out = sh("ip", "netns", "list", check=False).stdout
    stale = {}
    for line in out.splitlines():
        m = re.match(r"^(xpf(\d+))-(c|\d+)\b", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            stale.setdefault(m.group(1), []).append(m.group(0))
    for name, spaces in stale.items():
        t = Target(tempfile.gettempdir(), 0, name)
        t.nodes = [n for n in spaces if not n.endswith("-c")]
        t.down()
