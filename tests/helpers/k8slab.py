# Copyright: xcluster.multus contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The K8s lab of the integration tests (tests/integration/test_k8s*.py), on labrun's: a lab of
a test module's own with the lab's control plane (LAB_K8S=1, tests/lab/k8s.sh: kube-apiserver
+ etcd beside the nodes, the token kubeconfig on every node, kubectl on vm-001), the clone
stand-ins the roles build from (tests/artifacts/*-src), and what the tests do against it:
playbooks whose output must never show a token, kubectl with the lab's admin kubeconfig
(k8s_pods.kubectl), ssh, playbooks/basic.yml's pods and pings read back, and whereabouts run
directly on the nodes, concurrently. The tests keep their own assertions."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import k8s_pods as kp
import labrun

# XCM_K8S_LAB=vm runs a module written for either backend on the VM lab (ipvlan works there);
# netns by default.
BACKEND = os.environ.get("XCM_K8S_LAB", "netns")
GO_BIN = "/usr/local/go/bin"
# The clone stand-ins (tests/artifacts/TOOL DEST) and the variable that points the lab at them.
STANDINS = {
    "WHEREABOUTS_DIR": ("whereabouts-src", "whereabouts"),
    "MSERVICE_DIR": ("multus-service-src", "multus-service"),
}

# CNI_COMMAND=cmd of whereabouts (the node's /opt/cni/bin/whereabouts, the conf on stdin) for the
# pods tag-first, tag-(first+step), ... tag-last in netns tag, all at once; prints "out.N RESULT".
WHEREABOUTS = r"""
cd /tmp && rm -rf {tag} && mkdir {tag} && cd {tag} || exit 1
ip netns add {tag} 2>/dev/null
cat >conf
for i in $(seq {first} {step} {last}); do
  CNI_COMMAND={cmd} CNI_CONTAINERID={tag}-$i CNI_NETNS=/run/netns/{tag} CNI_IFNAME=net1 \
  CNI_PATH=/opt/cni/bin CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={tag}-$i" \
  /opt/cni/bin/whereabouts <conf >out.$i 2>err.$i &
done
wait
for f in out.*; do printf '%s %s\n' "$f" "$(tr -d '\n' <$f)"; done
cat err.* | head -n 20
[ {cmd} = ADD ] || ip netns del {tag}
"""

# playbooks/basic.yml, then each pod's network-status and ping lines saved as JSON to {out}.
BASIC_SAVE = """
- ansible.builtin.import_playbook: {repo}/playbooks/basic.yml
- name: Save each pod's network-status and pings
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Save them
      ansible.builtin.copy:
        dest: {out}
        mode: "0644"
        content: >-
          {{{{ dict(groups['xcluster'] | zip(groups['xcluster'] | map('extract', hostvars, '_basic_pod')
             | zip(groups['xcluster'] | map('extract', hostvars, '_basic_ping')
                   | map(attribute='stdout_lines')))) | to_json }}}}
"""


def k8s_env(prefix, nodes, backend=BACKEND):
    """labrun.lab_env with the control plane (LAB_K8S=1), a patient ssh (LAB_SSH_TIMEOUT, default
    400 s: TCG VMs boot slowly) and the go command's environment for the roles' builds (the
    project's Go caches, the local toolchain, /usr/local/go/bin last on PATH)."""
    go = os.path.join(labrun.CACHE, "go")
    env = labrun.lab_env(
        prefix,
        nodes,
        backend=backend,
        json_results=False,
        LAB_SSH_TIMEOUT=os.environ.get("LAB_SSH_TIMEOUT", "400"),
        LAB_K8S="1",
        GOFLAGS="-modcacherw",
        GOTOOLCHAIN="local",
        GOMODCACHE=os.path.join(go, "modcache"),
        GOCACHE=os.path.join(go, "build-cache"),
    )
    env["PATH"] = os.pathsep.join([env["PATH"], GO_BIN])
    return env


def clone_standins(env, tmp, variables):
    """Each variable of STANDINS (WHEREABOUTS_DIR, MSERVICE_DIR) set in env to a clone stand-in
    made in tmp."""
    for var in variables:
        tool, name = STANDINS[var]
        dest = os.path.join(tmp, name)
        p = subprocess.run(
            [os.path.join(labrun.REPO, "tests", "artifacts", tool), dest],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert p.returncode == 0, p.stderr
        env[var] = dest


def recap_changed(out):
    """{host: changed=N} of a play's recap."""
    return {host: counts.get("changed", 0) for host, counts in labrun.Result(0, out).recap.items()}


class K8sLab(labrun.Lab):
    """A lab with the control plane. secrets: what no playbook output may show (the lab's token,
    and whatever a test adds); k8s: the control plane's directory (kubeconfigs, pki);
    up_seconds: how long its lab up took."""

    def __init__(self, env, name=""):
        super().__init__(env, name)
        self.k8s = os.path.join(self.state, "k8s")
        self.secrets = []
        self.up_seconds = None

    def up(self, timeout=1800):
        t0 = time.monotonic()
        super().up(timeout)
        self.up_seconds = time.monotonic() - t0
        with open(os.path.join(self.k8s, "tokens.csv")) as f:
            self.secrets.append(f.read().split(",")[0])

    def playbook(self, playbook, *args, ok=True, timeout=1200):
        """labrun's play, asserting its rc (ok: 0, else not 0) and that no secret showed -> out."""
        res = self.play(playbook, *args, timeout=timeout)
        assert (res.rc == 0) == ok, res.out[-8000:]
        for s in self.secrets:
            assert s not in res.out, "a token showed in the output"
        return res.out

    def basic(self, tmp_path, *args):
        """playbooks/basic.yml against the API (basic_api=required), ipvlan required on VMs (auto
        on netns: the host kernel has none), then args; as playbook (no secret shown), files in
        tmp_path -> (out, {host: [its pod's network-status as basic.yml reads it, its pings]})."""
        save, res = tmp_path / "basic.yml", tmp_path / "basic.json"
        save.write_text(BASIC_SAVE.format(repo=labrun.REPO, out=res))
        ipvlan = "required" if self.env["LAB"] == "vm" else "auto"
        out = self.playbook(str(save), "-e", "basic_api=required", "-e", f"basic_ipvlan={ipvlan}", *args)
        return out, json.loads(res.read_text())

    def kubectl(self, *args, data=None):
        """kubectl with the lab's admin kubeconfig (must succeed) -> stdout."""
        return kp.kubectl(self.env, *args, data=data)

    def ssh(self, node, cmd, data=None):
        """labrun's ssh; node: its number or its name (vm-002)."""
        if isinstance(node, str):
            node = int(node.removeprefix("vm-"))
        return super().ssh(node, cmd, data)

    def ssh_run(self, node, cmd):
        """cmd on node whatever its exit status -> the CompletedProcess (text)."""
        return subprocess.run(
            [labrun.LABCMD, "ssh", str(node), cmd], env=self.env, capture_output=True, text=True, check=False
        )

    def whereabouts(self, conf, cmd, total, tag):
        """CNI_COMMAND=cmd of whereabouts for the pods tag-0 .. tag-(total-1), spread over the
        nodes, concurrently on all of them (WHEREABOUTS) -> their "out.N RESULT" lines."""
        procs = [
            subprocess.Popen(
                [labrun.LABCMD, "ssh", str(n)]
                + [WHEREABOUTS.format(tag=tag, first=n - 1, step=len(self.nodes), last=total - 1, cmd=cmd)],
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in self.nodes
        ]
        outs = [p.communicate(json.dumps(conf), timeout=600) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        return "".join(o for o, _e in outs)


@contextlib.contextmanager
def running(tmp_path_factory, prefix, nodes, *, backend=BACKEND, standins=(), archives=labrun.ARCHIVES):
    """A K8sLab (LAB_PREFIX prefix + the pid) up with the clone stand-ins of standins, taken down
    whatever happens; skipped without root, failing without the archives (labrun.require_lab)."""
    labrun.require_lab(archives)
    env = k8s_env(f"{prefix}{os.getpid() % 100000}", nodes, backend)
    clone_standins(env, str(tmp_path_factory.mktemp(prefix)), standins)
    lab = K8sLab(env, prefix)
    with labrun.running(lab):
        yield lab
