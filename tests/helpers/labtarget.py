# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Python-less SSH nodes for tests that drive them one by one: a lab of their own from the
shared lab (tests/lab/lab, LAB=netns), with what such tests need on top of it.

A netns lab (prefix ``xpp<pid>``, ``LAB_NET=auto``) of ``nodes`` nodes vm-001 ...; every
address is the lab's (network rule). On top of the lab:

- ``ssh(k, cmd, user=...)``: a command on node k (through the lab's ssh_config and guard);
- ``inventory(path, user, transfer, extra)``: an inventory of the nodes for a given remote
  user and ssh transfer method (the lab's connection settings otherwise);
- a non-root user ``xcmuser`` on every node who may ``sudo`` without a password (become
  tests; only when the host has sudo, which the netns nodes share);
- ``node_path(k, path)``: the host-side view of a node path under its /tmp, /run or /root (the
  lab keeps a netns node's writes in its state dir);
- ``wrap(argv)``: argv in a PID namespace of its own, so that ``kill_controller()`` kills
  ansible-playbook, its workers, ssh clients and ssh control masters at once, and nothing
  else; ``port(k)`` and ``in_fabric(argv)``: node k's link on the lab's fabric (for tc).

Teardown is the lab's own ``down`` (by recorded names and PIDs); what a killed run leaves is
removed by ``down`` with the same prefix (tests/lab/selftest proves crash safety).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LABCMD = os.path.join(REPO, "tests", "lab", "lab")
USER = "xcmuser"
UID = 4242
TOOLS = ("ip", "dropbear", "dropbearkey", "ssh", "ssh-keygen", "unshare", "tc")  # sudo: optional
KILL_WRAP = ("unshare", "--pid", "--fork", "--kill-child")


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
        self.name = name or f"xpp{os.getpid() % 100000}"
        self.env = dict(os.environ, LAB="netns", LAB_PREFIX=self.name, LAB_NET="auto", LAB_NODES=str(nodes))
        self.state = None

    # ------------------------------------------------------------ up
    def lab(self, *args, check=True, timeout=600):
        p = subprocess.run(
            [LABCMD, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and p.returncode != 0:
            raise RuntimeError(f"tests/lab/lab {' '.join(args)}: rc={p.returncode}\n{p.stdout}{p.stderr}")
        return p

    def up(self):
        if os.geteuid() != 0:
            raise RuntimeError("root is needed for the lab")
        os.makedirs(self.work, exist_ok=True)
        try:
            self.lab("up")
            inventory = self.lab("inventory").stdout.strip()
            self.state = os.path.dirname(inventory)
            with open(inventory) as f:
                self.hosts = yaml.safe_load(f)["all"]["children"]["xcluster"]["hosts"]
            for k in range(1, self.n + 1):
                self._add_user(k)
        except BaseException:
            self.down()
            raise
        return self

    def _add_user(self, k):
        """xcmuser (uid 4242, home /var/lib/xcmuser: the lab hides /home) with root's key."""
        home = f"/var/lib/{USER}"
        self.ssh(
            k,
            f"echo '{USER}:x:{UID}:{UID}:push test:{home}:/bin/sh' >>/etc/passwd && "
            f"echo '{USER}:x:{UID}:' >>/etc/group && echo '{USER}:*:19000:0:99999:7:::' >>/etc/shadow && "
            f"mkdir -p {home}/.ssh && cp /root/.ssh/authorized_keys {home}/.ssh/ && "
            f"chown -R {UID}:{UID} {home} && chmod 700 {home} {home}/.ssh && "
            f"if [ -d /etc/sudoers.d ]; then printf 'Defaults !fqdn\\n{USER} ALL=(ALL:ALL) NOPASSWD: ALL\\n' "
            f">/etc/sudoers.d/{USER} && chmod 440 /etc/sudoers.d/{USER}; fi",
        )

    # ------------------------------------------------------------ use
    def addr(self, k):
        return self.hosts[f"vm-{k:03d}"]["ansible_host"]

    def node_dir(self, k):
        return os.path.join(self.state, "nodes", f"vm-{k:03d}")

    def ssh(self, k, cmd, user="root", check=True, timeout=60):
        args = ["ssh", "-F", os.path.join(self.state, "ssh_config"), "-l", user, f"vm-{k:03d}", cmd]
        r = subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"ssh {k} {cmd!r}: rc={r.returncode} {r.stderr}")
        return r

    def inventory(self, path, user="root", transfer="sftp", extra=None):
        """An INI inventory of the nodes (vm-001 ...) with the lab's connection settings."""
        st = self.state
        common = f"-F {st}/ssh_config -o UserKnownHostsFile={st}/known_hosts"
        lines = ["[xcluster]"]
        for k in range(1, self.n + 1):
            lines.append(
                f"vm-{k:03d} ansible_host={self.addr(k)} ansible_user={user} "
                f"ansible_ssh_private_key_file={st}/id_ed25519 ansible_ssh_transfer_method={transfer} "
                f"ansible_ssh_common_args='{common}' "
                + " ".join(f"{a}={b}" for a, b in (extra or {}).items())
            )
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def wrap(self, argv):
        """argv in a PID namespace of its own (what kill_controller kills)."""
        return [*KILL_WRAP, *argv]

    def port(self, k):
        """Node k's eth0 on the lab's fabric: shaping it slows controller -> node traffic."""
        return f"n{k:03d}e0"

    def in_fabric(self, argv):
        return ["ip", "netns", "exec", f"{self.name}-fabric", *argv]

    def node_path(self, k, path):
        """Host-side view of a node path under its /tmp, /run (bind mounts of the node's dirs)
        or /root (the overlay's upper dir: what the node wrote there)."""
        for top, host in (("/tmp", "tmp"), ("/run", "run"), ("/root", "upper/root")):
            if path == top or path.startswith(top + "/"):
                return os.path.join(self.node_dir(k), host, path[len(top) + 1 :])
        raise ValueError(f"{path} is not in /tmp, /run or /root")

    def kill_controller(self):
        """The controller dies at once: every wrapped command this process started (its PID
        namespace: ansible, its detached workers, ssh clients, the ssh mux masters) is killed
        with SIGKILL together, so that none can react to another's death. Returns the pids."""
        me, killed = os.getpid(), []
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == me and tuple(a.decode() for a in argv[: len(KILL_WRAP)]) == KILL_WRAP:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # --kill-child: its namespace goes with it
                killed.append(pid)
        return killed

    # ------------------------------------------------------------ down
    def down(self):
        self.lab("down", check=False)
