# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""One runner for the integration tests that bring up a lab of their own (tests/lab/lab) and
run playbooks against it: the environment, the lab up/down, ssh to a node, a node's writes
(its overlay upper dir), and ansible-playbook against the lab's inventory with the lab's
archives (vars/lab-archives.yml), giving rc and output. The tests keep their own assertions."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess

import pytest
from nodetree import snapshot

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LABCMD = os.path.join(REPO, "tests", "lab", "lab")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
PLAYBOOK = os.path.join(VENV_BIN, "ansible-playbook")
LAB_VARS = os.path.join(REPO, "tests", "integration", "vars", "lab-archives.yml")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xcluster-multus")
ARCHIVES_DIR = os.path.join(CACHE, "archives")
ARCHIVES = ["cni-plugins-linux-amd64-v1.0.1.tgz", "multus-cni_3.9.3_linux_amd64.tar.gz"]
# What the multus activation makes on a node (the overlay's .rc and the live push alike).
ACTIVATION_MADE = frozenset(
    {
        "etc/cni/net.d/10-multus.conf",
        "etc/cni/multus/net.d/bridge.conf",
        "var/lib/xcluster-multus/base.conf",
        "var/lib/xcluster-multus/base.path",
        "var/lib/xcluster-multus/moved.path",
        "var/lib/xcluster-multus/links-up",
    }
)
# The user's sources the roles' defaults would pick up: the labs use their own (or none).
USER_SOURCES = ("ARCHIVE", "WHEREABOUTS_DIR", "MSERVICE_DIR")


def missing_archives(names=ARCHIVES):
    """The lab's archives (tests/artifacts/build-all) that are not in the cache."""
    return [a for a in names if not os.path.isfile(os.path.join(ARCHIVES_DIR, a))]


def require_lab(names=ARCHIVES):
    """In a lab fixture: skip without root (the labs need it); fail when the lab's archives
    are missing (they are made by tests/artifacts/build-all, not fetched here)."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    missing = missing_archives(names)
    assert not missing, f"{missing} missing in {ARCHIVES_DIR}: run tests/artifacts/build-all"


def lab_env(prefix, nodes, *, backend="netns", base=None, json_results=True, **extra):
    """The environment of a lab and its playbooks: the venv first on PATH, the checkout's
    ansible.cfg, no colours, (json_results) one-line json results; none of the user's sources,
    and a GOPATH without prebuilt multus-service (xcluster's $GOPATH/bin default)."""
    env = dict(os.environ if base is None else base)
    for var in USER_SOURCES:
        env.pop(var, None)
    env.update(
        LAB=backend,
        LAB_PREFIX=prefix,
        LAB_NET="auto",
        LAB_NODES=str(nodes),
        PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        GOPATH="/nonexistent/gopath",
    )
    if json_results:
        env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"  # messages on one line, unwrapped
    env.update(extra)
    return env


class Result:
    """An ansible-playbook run: rc, out (stdout + stderr), recap {host: {ok: n, changed: n, ...}}."""

    def __init__(self, rc, out):
        self.rc, self.out = rc, out

    @property
    def recap(self):
        return {
            m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", self.out, re.M)
        }


class Lab:
    """A lab of tests/lab/lab, by its environment (lab_env)."""

    def __init__(self, env, name=""):
        self.env, self.name = env, name
        self.prefix = env["LAB_PREFIX"]
        self.nodes = tuple(range(1, int(env.get("LAB_NODES", "1")) + 1))
        self.state = os.path.join(env.get("LAB_STATE_DIR", "/run/xcluster-multus-lab"), self.prefix)
        self.inventory = os.path.join(self.state, "inventory.yml")
        self.fresh = None

    def up(self, timeout=600):
        p = subprocess.run(
            [LABCMD, "up"], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert p.returncode == 0, f"lab up failed:\n{p.stdout[-3000:]}{p.stderr[-3000:]}"

    def down(self, timeout=300):
        subprocess.run([LABCMD, "down"], env=self.env, capture_output=True, timeout=timeout, check=False)

    def node_dir(self, n):
        return os.path.join(self.state, "nodes", f"vm-{n:03d}")

    def upper(self, n):
        """Node n's writes (its overlay upper dir), as nodetree.snapshot gives them."""
        return snapshot(os.path.join(self.node_dir(n), "upper"))

    def ssh(self, node, cmd, data=None):
        """cmd on node (stdin data: str, or bytes for a binary stdin and a str result)."""
        binary = isinstance(data, bytes)
        p = subprocess.run(
            [LABCMD, "ssh", str(node), cmd],
            env=self.env,
            input=data,
            capture_output=True,
            text=not binary,
            check=False,
        )
        out, err = (p.stdout.decode(), p.stderr.decode()) if binary else (p.stdout, p.stderr)
        where = f"{self.name} vm-{node:03d}".strip()
        assert p.returncode == 0, f"{where}: {cmd[:300]}: {out[-2000:]} {err[-2000:]}"
        return out

    def play(self, playbook, *args, inventory=None, env=None, cwd=REPO, vars_files=(LAB_VARS,), timeout=1200):
        """ansible-playbook PLAYBOOK against the lab's inventory with -e @each vars file, then
        args -> Result (rc, out, recap). env: the whole environment (default the lab's)."""
        cmd = [PLAYBOOK, "-i", inventory or self.inventory, playbook]
        for f in vars_files:
            cmd += ["-e", f"@{f}"]
        p = subprocess.run(
            [*cmd, *args],
            env=env or self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(p.returncode, p.stdout + p.stderr)


@contextlib.contextmanager
def running(*labs):
    """The labs up (in order), taken down whatever happens."""
    try:
        for lab in labs:
            lab.up()
        yield labs
    finally:
        for lab in labs:
            lab.down()
